"""The Compare page's two-model view: one clip under model A (this session's) and model B, side by
side, and both models over the bundled samples (agreement, stage-by-stage linear CKA).

The expensive part, a survey of the bundled samples (one forward pass per clip and model), is
computed on demand with progress and cached per checkpoint (``model_key``) for the process:
any pair of surveyed models then compares instantly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from audiocnn import attribution
from audiocnn.checkpoint import CheckpointError
from audiocnn.explain import CAM_LAYERS
from audiocnn.inference import Analysis, Predictor
from audiocnn.representations import Comparison, Survey, compare, survey

from . import components, explanations, model_picker, plots, resources, state
from .axes import input_axes
from .model_cache import model_key

SECOND = "audiocnn_second_model"  # session state: model B's path, kept across pages
PICK = "compare_model_b"
MAX_SURVEYS = 8
"""Surveys kept per process: each holds a few 100 x 100 Grams (about 0.5 MB)."""
METHODS = ("Grad-CAM", "Occlusion")


class _Surveys:
    """Surveys by model key, least recently used out first; one survey computed at a time (it holds
    a few hundred MB of stage outputs while it runs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.compute_lock = threading.Lock()
        self.items: OrderedDict[str, Survey] = OrderedDict()

    def get(self, key: str) -> Survey | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: str, value: Survey) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > MAX_SURVEYS:
                self.items.popitem(last=False)


@st.cache_resource
def _surveys() -> _Surveys:
    return _Surveys()


def section(model: Predictor) -> None:
    """Choose model B; then the current clip under both, and both over the bundled samples."""
    st.markdown("### Two models")
    served = str(resources.served_path())
    choices = [path for path in model_picker.options() if path != served]
    if not choices:
        st.info("Only one model is available. Train one (its runs folder is listed here), or open a checkpoint "
                "file in the sidebar, to compare two.")  # fmt: skip
        return
    if PICK not in st.session_state:  # widget state goes when the page is left: model B is remembered apart
        remembered = st.session_state.get(SECOND)
        st.session_state[PICK] = remembered if remembered in choices else None
    path = st.selectbox("Model B (model A is the one served in the sidebar)", choices, index=None, key=PICK,
                        format_func=lambda p: model_picker.summary(p).label(),
                        placeholder="Choose a second model")  # fmt: skip
    st.session_state[SECOND] = path
    if path is None:
        return
    try:
        other = resources.load(path)
    except CheckpointError as error:
        st.error(f"Model B cannot be served: {error}")
        return
    st.caption(f"A: {model_picker.summary(served).label()}  \nB: {model_picker.summary(path).label()}")
    _one_clip(model, other)
    _over_samples(model, other)


def _clip(model: Predictor) -> state.Clip | None:
    """The current clip, else the first bundled sample."""
    clip = state.current_clip()
    if clip is not None or not resources.samples():
        return clip
    sample = resources.samples()[0]
    waveform = resources.sample_waveform(str(sample.path), model)
    return state.sample_clip(sample, waveform, model.feature_config.sample_rate)


def _one_clip(a: Predictor, b: Predictor) -> None:
    fa, fb = a.feature_config, b.feature_config
    st.markdown("#### One clip, two models")
    if (fa.sample_rate, fa.clip_seconds) != (fb.sample_rate, fb.clip_seconds):
        st.info(f"A hears {fa.clip_seconds:g} s windows at {fa.sample_rate} Hz, B {fb.clip_seconds:g} s at "
                f"{fb.sample_rate} Hz: they cannot be shown the same window. The comparison over the bundled "
                "samples below still works.")  # fmt: skip
        return
    clip = _clip(a)
    if clip is None:
        st.info("No clip yet: pick or upload one on the Analyze page.")
        return
    index = state.window_index(clip, a)
    with st.spinner("Analysing the clip with both models…"):
        results = {"A": state.analysis(clip, a, index), "B": state.analysis(clip, b, index)}
    start, end = state.window_span(clip, a, index)
    st.caption(f"{components.clip_title(clip)} · window {start:.1f}–{end:.1f} s")
    for column, (name, result) in zip(st.columns(2), results.items()):
        with column:
            st.markdown(f"**Model {name}**")
            components.top_predictions(result.prediction, 5)
    _disagreement(results["A"], results["B"])
    _explanations(clip, index, {"A": a, "B": b}, results)


def _probability(result: Analysis, name: str) -> float:
    names = result.prediction.class_names
    return float(result.prediction.probabilities[names.index(name)]) if name in names else 0.0


def _disagreement(a: Analysis, b: Analysis) -> None:
    top_a, top_b = a.prediction.top_label, b.prediction.top_label
    if top_a == top_b:
        st.markdown(f"Both models hear **{plots.class_label(top_a)}**.")
    else:
        st.markdown(f"**They disagree:** A hears {plots.class_label(top_a)} ({_probability(a, top_a):.0%}; B gives it "
                    f"{_probability(b, top_a):.0%}), B hears {plots.class_label(top_b)} ({_probability(b, top_b):.0%}; "
                    f"A gives it {_probability(a, top_b):.0%}).")  # fmt: skip
    shown = list(dict.fromkeys([n for n, _ in a.prediction.ranked(3)] + [n for n, _ in b.prediction.ranked(3)]))
    series = {name: [_probability(result, label) for label in shown] for name, result in (("A", a), ("B", b))}
    components.chart(plots.probability_comparison_figure(shown, series))


def _explanations(clip: state.Clip, index: int, models: dict[str, Predictor], results: dict[str, Analysis]) -> None:
    """The same method and class for both models, each map over its own model's input."""
    a, b = models["A"], models["B"]
    common = [name for name in a.class_names if name in b.class_names]
    if not common:
        st.info("The two models share no class: their explanations cannot be compared.")
        return
    top = results["A"].prediction.top_label
    left, middle, right = st.columns([3, 2, 3], vertical_alignment="bottom")
    label = left.selectbox("Explain the class (for both)", common, index=common.index(top) if top in common else 0,
                           format_func=plots.class_label, key="compare_models_class")  # fmt: skip
    method = middle.radio("Method", METHODS, horizontal=True, key="compare_models_method")
    layers = [n for n in CAM_LAYERS if n in results["A"].activations and n in results["B"].activations]
    default = attribution.method(explanations.default_method(layers)[0]).layer
    layer = default if default in layers else layers[-1]  # the Analyze page's default stage when it is Grad-CAM
    if method == "Grad-CAM":
        layer = right.radio("Layer", layers, index=layers.index(layer), horizontal=True, key="compare_models_layer")
    for column, (name, model) in zip(st.columns(2), models.items()):
        class_index = model.class_names.index(label)
        with column:
            st.markdown(f"**Model {name}** · {plots.class_label(label)} {_probability(results[name], label):.1%}")
            if method == "Grad-CAM":
                with st.spinner("Explaining…"):
                    cams = state.explanation(clip, model, index, class_index)
                logmel = results[name].logmel
                figure = plots.spectrogram_figure(logmel, input_axes(model.feature_config), cams[layer])
            else:
                with st.spinner("Silencing each stretch in turn…"):
                    occlusion = state.occlusion(clip, model, index, class_index)
                figure = plots.occlusion_figure(occlusion, model.feature_config.clip_seconds)
            # keyed: two identical models draw identical figures, which Streamlit would take for one element
            st.plotly_chart(figure, width="stretch", theme=None, key=f"compare_models_map_{name}")
    st.caption("Each map is its own model's answer for the same class on the same window; Grad-CAM maps are scaled "
               "to their own peak, occlusion bars are falls in that model's probability.")  # fmt: skip


def cached_survey(model: Predictor) -> Survey | None:
    return _surveys().get(model_key(model))


def ensure_survey(model: Predictor, name: str) -> Survey:
    """The model's survey of the bundled samples, computed once per checkpoint (with a progress bar)."""
    surveys = _surveys()
    key = model_key(model)
    with surveys.compute_lock:
        found = surveys.get(key)
        if found is None:
            clips = resources.samples()
            bar = st.progress(0.0, text=f"Model {name}: running the {len(clips)} bundled samples…")
            waveforms = [resources.sample_waveform(str(clip.path), model) for clip in clips]
            found = survey(model, waveforms, lambda done: bar.progress(done, text=f"Model {name}: {done:.0%}"))
            surveys.put(key, found)
            bar.empty()
    return found


def _over_samples(a: Predictor, b: Predictor) -> None:
    samples = resources.samples()
    st.markdown("#### Over the bundled samples")
    if len(samples) < 2:
        st.info("The bundled samples (assets/samples) are missing: nothing to compare the models over.")
        return
    missing = [name for name, model in (("A", a), ("B", b)) if cached_survey(model) is None]
    if missing:
        st.caption(f"Runs the {len(samples)} bundled samples through model {' and '.join(missing)} once "
                   "(each model's result is kept for every later comparison).")  # fmt: skip
        if not st.button(f"Compare the two models over the {len(samples)} bundled samples", key="compare_models_go"):
            return
    result = compare(ensure_survey(a, "A"), ensure_survey(b, "B"), [clip.label for clip in samples])
    _agreement(result, samples)
    components.chart(cka_figure(result))
    st.caption(
        "Linear CKA (Kornblith et al. 2019) between each stage of A (rows) and each stage of B (columns), over the "
        f"{len(samples)} bundled clips: 1 means the two stages represent the clips alike up to a rotation and scale, "
        "0 that they share nothing. A bright diagonal that fades with depth is a fine-tuning that changed the "
        "later stages; a dim diagonal from the stem on is a different network."
    )


def _agreement(result: Comparison, samples: list) -> None:
    columns = st.columns(3)
    columns[0].metric("Same top class", f"{result.agreement:.0%}")
    columns[1].metric("A right (true class)", f"{result.accuracy_a:.0%}")
    columns[2].metric("B right (true class)", f"{result.accuracy_b:.0%}")
    split = sorted((share, label) for label, share in result.per_class.items() if share < 1)
    if not result.disagreements:
        st.success("Both models give every bundled clip the same top class.")
        return
    parted = ", ".join(f"{plots.class_label(label)} ({share:.0%} agree)" for share, label in split)
    st.caption(f"Classes where they part: {parted}.")
    rows = [
        {
            "clip": samples[i].name,
            "true class": plots.class_label(samples[i].label),
            "A hears": plots.class_label(x),
            "B hears": plots.class_label(y),
        }
        for i, x, y in result.disagreements
    ]
    with st.expander(f"The {len(rows)} clips where the two models disagree"):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def cka_figure(result: Comparison, height: int = 420) -> go.Figure:
    """The CKA of every stage pair, with its value written in each cell."""
    fig = go.Figure(
        go.Heatmap(
            z=result.cka, x=list(result.stages_b), y=list(result.stages_a), zmin=0.0, zmax=1.0,
            colorscale="Viridis", text=np.round(result.cka, 2), texttemplate="%{text:.2f}",
            colorbar={"title": "CKA"},
            hovertemplate="A %{y} · B %{x}<br>CKA %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 30, "b": 50},
        xaxis={"title": "model B stage", "side": "bottom"}, yaxis={"title": "model A stage", "autorange": "reversed"},
    )  # fmt: skip
    return fig
