"""The robustness views: the Analyze page's per-prediction curves and the Model page's table.

The curves come from ``audiocnn.robustness`` and the table from ``training.robustness``'s stored
output: both apply the conditions of ``audiocnn.perturb``, so the app and the evaluation measure
the same damage.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from audiocnn.inference import Predictor
from audiocnn.robustness import RobustnessCurve, robustness_curves

from . import components, state
from .model_cache import model_key
from .plots import class_label

CLASS_COLOUR = "#F58518"
TOP_COLOUR = "#7F7F7F"
CACHE = "audiocnn_robustness"

STEEP_MEANS = (
    "A flat curve means the prediction survives that kind of recording; a steep one means it hinges on "
    "how clean the clip is, so a phone recording of the same sound may be heard as something else."
)


def robustness_figure(curves: Sequence[RobustnessCurve], class_names: Sequence[str], class_index: int,
                      height: int = 300) -> go.Figure:  # fmt: skip
    """One small panel per kind of damage: the explained class's probability (orange) and the top class's
    (grey, dashed; an ✕ where the top class is no longer the clean window's)."""
    fig = make_subplots(rows=1, cols=len(curves), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[curve.family.title for curve in curves])  # fmt: skip
    explained = class_label(class_names[class_index])
    for col, curve in enumerate(curves, start=1):
        labels = curve.labels
        tops = [class_label(class_names[i]) for i in curve.top_index]
        fig.add_trace(go.Scatter(
            x=labels, y=curve.class_probability, mode="lines+markers", name=explained, legendgroup="class",
            showlegend=col == 1, line={"color": CLASS_COLOUR, "width": 3},
            hovertemplate=f"{curve.family.axis} %{{x}}: {explained} %{{y:.1%}}<extra></extra>",
        ), row=1, col=col)  # fmt: skip
        fig.add_trace(go.Scatter(
            x=labels, y=curve.top_probability, mode="lines+markers", name="top class", legendgroup="top",
            showlegend=col == 1, line={"color": TOP_COLOUR, "dash": "dash"},
            marker={"symbol": ["circle" if keep else "x" for keep in curve.keeps_top_class], "size": 9},
            customdata=tops, hovertemplate=f"{curve.family.axis} %{{x}}: top %{{customdata}} %{{y:.1%}}<extra></extra>",
        ), row=1, col=col)  # fmt: skip
        fig.update_xaxes(title_text=curve.family.axis, row=1, col=col)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1, title_text="Probability")
    fig.update_layout(height=height, margin={"l": 70, "r": 20, "t": 40, "b": 60},
                      legend={"orientation": "h", "y": -0.35})  # fmt: skip
    return fig


def cached_curves(clip: state.Clip, model: Predictor, index: int, class_index: int) -> list[RobustnessCurve]:
    """The curves of one window and class, computed once per session (17 windows, one batched call)."""
    key = (model_key(model), clip.id, index, class_index)  # one model's curves are not another's
    store = st.session_state.setdefault(CACHE, {})
    if key not in store:
        while len(store) >= state.MAX_EXPLANATIONS:
            store.pop(next(iter(store)))  # oldest first: dicts keep insertion order
        store[key] = robustness_curves(model, state.analysis(clip, model, index).waveform, class_index)
    return store[key]


def show_panel(clip: state.Clip, model: Predictor, index: int, class_index: int) -> None:
    """On demand (one batched pass): how the explained class fares as the window is damaged."""
    if not st.toggle("How robust is this prediction? Make the window quieter, noisier, narrower, reverberant",
                     key="robustness"):  # fmt: skip
        return
    with st.spinner("Classifying damaged copies of the window…"):
        curves = cached_curves(clip, model, index, class_index)
    components.chart(robustness_figure(curves, model.class_names, class_index))
    flips = [curve.family.title.lower() for curve in curves if not curve.keeps_top_class.all()]
    changed = f" The top class changes when the window is made {', '.join(flips)}." if flips else ""
    st.caption(
        f"{STEEP_MEANS} Orange: {class_label(model.class_names[class_index])}; grey: whichever class is on top "
        f"(✕ where it is no longer the clean window's).{changed} Noise is white at the given signal-to-noise "
        "ratio; rooms are synthetic (exponentially decaying reverberation); each damaged copy is scored as the "
        "clean one is."
    )


def robustness_frame(table: dict) -> pd.DataFrame:
    """The stored robustness evaluation as rows of conditions and, per model, accuracy and change (points)."""
    frame = pd.DataFrame({"condition": table["conditions"]})
    for name, model in table["models"].items():
        rows = {row["condition"]: row for row in model["conditions"]}
        frame[f"{name}: accuracy"] = [f"{rows[c]['accuracy']:.1%}" for c in table["conditions"]]
        frame[f"{name}: change"] = [
            "" if c == "clean" else f"{rows[c]['change'] * 100:+.1f} [{rows[c]['change_95'][0] * 100:+.1f}, "
            f"{rows[c]['change_95'][1] * 100:+.1f}]" for c in table["conditions"]
        ]  # fmt: skip
    return frame


def show_table(table: dict | None) -> None:
    """The Model page's robustness section, or a note of how to compute it."""
    st.subheader("Robustness to real recordings")
    if not table:
        st.info("No robustness evaluation is stored yet: `python -m training.robustness --data-dir data/esc50 "
                "--output assets/metrics.json` computes it.")  # fmt: skip
        return
    st.caption(
        f"Accuracy on fold(s) {', '.join(map(str, table['folds']))} ({table['num_clips']} held-out clips) with only "
        "the input changed, scored as the app scores. Change: points of accuracy against clean, with a 95 % paired "
        "bootstrap interval over clips."
    )
    st.dataframe(robustness_frame(table), hide_index=True, width="stretch")
