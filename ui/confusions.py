"""Confusions you can hear: a confusion-matrix cell (clicked, picked, or a most-confused pair)
lists its clips with their probabilities and a player, and sends any of them to Analyze.

The per-clip records come from the held-out evaluation (``held_out_clips`` in the metrics,
written by ``training.evaluate --update-clips``). Clicking works on an invisible marker laid on
every cell: Streamlit 1.67 returns no selection for a Plotly heat map itself (streamlit#8760,
#15042), but does for scatter points. The two selectors below the matrix are the same choice in
words and always work (keyboard, tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from audiocnn.evaluation import CLIPS_KEY
from audiocnn.heldout import ESC50_ENV, bundled_clips, esc50_setting_problem, find_clip, local_esc50_dir
from audiocnn.inference import Predictor
from audiocnn.labels import MAJOR_CATEGORIES, class_info

from . import components, plots, resources, state

TRUE_KEY = "confusion_true"
PREDICTED_KEY = "confusion_predicted"
CHART_KEY = "confusion_chart"
PAIRS_KEY = "confusion_pairs"
CONTRAST_KEY = "contrast_classes"
"""``(a, b)`` class indices: the Analyze page's contrastive map ("why A and not B", issue 14) reads it."""
MAX_LISTED = 12


@dataclass(frozen=True)
class CellClip:
    """One scored clip of a cell: what the evaluation gave its true and its predicted class."""

    name: str
    target: int
    predicted: int
    top: tuple[tuple[int, float], ...]

    def probability(self, index: int) -> float | None:
        """The clip's probability of a class, None when it was below the recorded top classes."""
        return next((p for i, p in self.top if i == index), None)


def records(metrics: dict) -> list[CellClip]:
    """The per-clip records of a metrics document ([] when it has none: an older evaluation)."""
    rows = (metrics.get(CLIPS_KEY) or {}).get("clips") or []
    return [
        CellClip(row["clip"], int(row["target"]), int(row["top"][0][0]),
                 tuple((int(i), float(p)) for i, p in row["top"]))
        for row in rows if row.get("top")
    ]  # fmt: skip


def records_confusion(clips: Sequence[CellClip], size: int) -> np.ndarray:
    confusion = np.zeros((size, size), dtype=np.int64)
    for clip in clips:
        confusion[clip.target, clip.predicted] += 1
    return confusion


def cell(clips: Sequence[CellClip], true: int, predicted: int) -> list[CellClip]:
    """The clips of one cell, the most confident in the predicted class first."""
    found = [clip for clip in clips if clip.target == true and clip.predicted == predicted]
    return sorted(found, key=lambda clip: (-(clip.probability(predicted) or 0.0), clip.name))


def in_category(names: Sequence[str], category: str) -> list[int]:
    """Class indices shown for a category filter ("All ..." keeps every class)."""
    return [i for i, name in enumerate(names) if category.startswith("All") or class_info(name).category == category]


def confused_pairs(confusion: np.ndarray, keep: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(true, predicted, clips)`` off the diagonal whose true class is kept, most clips first."""
    kept = set(keep)
    pairs = [(int(i), int(j), int(confusion[i, j])) for i, j in zip(*np.nonzero(confusion)) if i != j and i in kept]
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def matrix_figure(
    confusion: np.ndarray, names: Sequence[str], keep: Sequence[int], normalise: bool, selected: tuple[int, int] | None
) -> go.Figure:
    """The matrix of the kept classes, one clickable (invisible) marker per cell, the chosen cell outlined."""
    totals = confusion.sum(axis=1)[list(keep)]  # all the class's clips, also those predicted outside the filter
    subset = confusion[np.ix_(keep, keep)]
    height = 820 if len(keep) > 10 else 480
    fig = plots.confusion_figure(subset, [names[i] for i in keep], normalise, height, totals)
    labels = [plots.class_label(names[i]) for i in keep]
    rows, cols = np.meshgrid(np.arange(len(keep)), np.arange(len(keep)), indexing="ij")
    counts = subset[rows, cols].ravel()
    shares = np.divide(counts, totals[rows.ravel()], out=np.zeros(counts.shape), where=totals[rows.ravel()] > 0)
    fig.add_trace(
        go.Scatter(
            x=[labels[c] for c in cols.ravel()], y=[labels[r] for r in rows.ravel()], mode="markers",
            marker={"symbol": "square", "size": 14 if len(keep) > 10 else 40, "opacity": 0},
            customdata=[[keep[r], keep[c], int(n), float(f)] for r, c, n, f in zip(rows.ravel(), cols.ravel(), counts,
                                                                                     shares)],
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[2]:.0f} clips (%{customdata[3]:.0%})"
            "<br>click to list them<extra></extra>", showlegend=False, name="cells",
        )
    )  # fmt: skip
    fig.data[0].hoverinfo = "skip"
    if selected is not None and selected[0] in keep and selected[1] in keep:
        r, c = keep.index(selected[0]), keep.index(selected[1])
        outline = {"color": "#E45756", "width": 2}
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5, line=outline)
    # Every class named (none skipped), and the ranges of the heat map itself: the markers would pad them.
    size = len(keep)
    fig.update_xaxes(tickmode="array", tickvals=labels, ticktext=labels, range=[-0.5, size - 0.5], showgrid=False)
    fig.update_yaxes(tickmode="array", tickvals=labels, ticktext=labels, range=[size - 0.5, -0.5], showgrid=False,
                     autorange=False)  # fmt: skip
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def point_data(point: dict) -> list:
    """A selected point's customdata as a list (the frontend may send an array as an index-keyed object)."""
    data = point["customdata"]
    return [data[key] for key in sorted(data, key=int)] if isinstance(data, dict) else list(data)


def _on_cell_click() -> None:
    """A click on the matrix chooses that cell in the two selectors."""
    event = st.session_state.get(CHART_KEY)
    points = (event or {}).get("selection", {}).get("points") or []
    data = next((point_data(point) for point in points if point.get("customdata") is not None), None)
    if data is not None:
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = int(data[0]), int(data[1])


def _on_pair_pick(pairs: list[tuple[int, int, int]]) -> None:
    """A row picked in the most-confused pairs chooses that cell."""
    event = st.session_state.get(PAIRS_KEY)
    rows = (event or {}).get("selection", {}).get("rows") or []
    if rows and rows[0] < len(pairs):
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = pairs[rows[0]][0], pairs[rows[0]][1]


def section(metrics: dict, model: Predictor) -> None:
    """Matrix, chosen cell, per-class accuracy and the most-confused pairs of the shipped evaluation."""
    names = metrics["class_names"]
    confusion = np.asarray(metrics["confusion"], dtype=np.int64)
    clips = records(metrics)
    st.markdown("**Confusion matrix** (rows: true class, columns: predicted) — click a cell to hear its clips")
    left, right = st.columns([2, 1])
    category = left.selectbox("Classes", ["All 50 classes", *MAJOR_CATEGORIES], key="confusion_category")
    normalise = right.toggle("Share of each true class", value=True, key="confusion_normalise")
    keep = in_category(names, category)
    pairs = confused_pairs(confusion, keep)
    if pairs and TRUE_KEY not in st.session_state:  # the most-confused pair is the first cell shown
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = pairs[0][0], pairs[0][1]
    selected = (st.session_state.get(TRUE_KEY), st.session_state.get(PREDICTED_KEY))
    figure = matrix_figure(confusion, names, keep, normalise, selected if None not in selected else None)
    st.plotly_chart(figure, width="stretch", theme=None, key=CHART_KEY, on_select=_on_cell_click,
                    selection_mode="points", config={"displaylogo": False})  # fmt: skip
    _cell_view(names, confusion, clips, model)
    accuracy, confused = st.columns(2, gap="large")
    with accuracy:
        st.markdown("**Per-class accuracy**, worst first")
        per_class = {name: value for name, value in metrics["per_class"].items() if value is not None}
        per_class = {name: value for name, value in per_class.items() if names.index(name) in keep}
        components.chart(plots.per_class_figure(per_class, height=900 if len(per_class) > 10 else 380))
    with confused:
        _most_confused(names, confusion, pairs, category)


def _most_confused(
    names: Sequence[str], confusion: np.ndarray, pairs: list[tuple[int, int, int]], category: str
) -> None:
    scope = "" if category.startswith("All") else f" (true class in {category})"
    st.markdown(f"**Most-confused pairs**{scope} — pick a row to hear its clips")
    if not pairs:
        st.success("No confusions here: every clip of these classes was classified correctly.")
        return
    totals = confusion.sum(axis=1)
    shown = pairs[:20]
    frame = pd.DataFrame([
        {"true": plots.class_label(names[i]), "predicted as": plots.class_label(names[j]), "clips": count,
         "share of true class": count / totals[i] if totals[i] else 0.0}
        for i, j, count in shown
    ])  # fmt: skip
    st.dataframe(
        frame, hide_index=True, width="stretch", key=PAIRS_KEY, on_select=lambda: _on_pair_pick(shown),
        selection_mode="single-row",
        column_config={"share of true class": st.column_config.NumberColumn(format="percent")},
    )  # fmt: skip


def _cell_view(names: Sequence[str], confusion: np.ndarray, clips: list[CellClip], model: Predictor) -> None:
    order = list(range(len(names)))
    left, right = st.columns(2)
    label = lambda i: plots.class_label(names[i])  # noqa: E731
    true = left.selectbox("True class", order, format_func=label, key=TRUE_KEY)
    predicted = right.selectbox("Predicted as", order, format_func=label, key=PREDICTED_KEY)
    count = int(confusion[true, predicted])
    kind = "correctly classified" if true == predicted else f"taken for {label(predicted)}"
    st.markdown(f"**{count} clip{'s' if count != 1 else ''} of {label(true)} {kind}**")
    if not clips:
        st.info("These metrics carry no per-clip records. Record them with `python -m training.evaluate --data-dir "
                "<ESC-50 folder> --folds 5 --update-clips assets/metrics.json`.")  # fmt: skip
        return
    found = cell(clips, true, predicted)
    if not found:
        return
    bundled = {clip.name: clip.path for clip in bundled_clips()}
    esc50 = local_esc50_dir()
    if problem := esc50_setting_problem():
        st.warning(problem)
    for clip in found[:MAX_LISTED]:
        _clip_row(clip, names, find_clip(clip.name, bundled, esc50), model)
    if len(found) > MAX_LISTED:
        st.caption(f"…and {len(found) - MAX_LISTED} more.")
    if any(find_clip(clip.name, bundled, esc50) is None for clip in found):
        st.caption(f"Clips marked 🔇 are not bundled (every misclassified clip is). Point `{ESC50_ENV}` at a local "
                   "ESC-50 copy, or download one to `data/esc50` (`python -m training.data download data/esc50`), "
                   "and every cell plays.")  # fmt: skip


def _clip_row(clip: CellClip, names: Sequence[str], path: Path | None, model: Predictor) -> None:
    true, predicted = clip.target, clip.predicted
    shares = f"{plots.class_label(names[predicted])} {clip.probability(predicted):.1%}"
    if predicted != true:
        p_true = clip.probability(true)
        shown = f"{p_true:.1%}" if p_true is not None else "below its top 5"
        shares += f" · {plots.class_label(names[true])} {shown}"
    runner_up = next(((i, p) for i, p in clip.top if i != predicted), None)
    if predicted == true and runner_up:
        shares += f" · next: {plots.class_label(names[runner_up[0]])} {runner_up[1]:.1%}"
    name_col, play_col, act_col = st.columns([2, 3, 2], vertical_alignment="center")
    name_col.markdown(f"`{clip.name}`  \n{shares}")
    with play_col:
        if path is None:
            st.caption("🔇 not bundled")
        else:
            st.audio(path.read_bytes(), format=f"audio/{path.suffix.lstrip('.').lower()}")
    if path is None:
        return
    with act_col:
        if st.button("Analyze", key=f"cell_analyze_{clip.name}", help="Make this the current clip on every page"):
            send_to_analyze(clip.name, true, path, names, model)
        if true != predicted and st.button(
            "Why this and not that?", key=f"cell_contrast_{clip.name}",
            help=f"Analyze it and compare {names[true]} (true) with {names[predicted]} (predicted)",
        ):  # fmt: skip
            send_to_analyze(clip.name, true, path, names, model, contrast=(true, predicted))


def held_out_clip(name: str, target: int, path: Path, names: Sequence[str], model: Predictor) -> state.Clip:
    """A held-out ESC-50 clip as a session clip (the same id as its bundled sample, if it is one)."""
    waveform = resources.sample_waveform(str(path))
    note = "held-out fold 5" + (" · bundled OGG Vorbis copy" if path.suffix.lower() == ".ogg" else "")
    return state.Clip(f"sample:{name}", name, "sample", waveform, model.feature_config.sample_rate,
                      label=names[target], note=note)  # fmt: skip


def send_to_analyze(
    name: str, target: int, path: Path, names: Sequence[str], model: Predictor, contrast: tuple[int, int] | None = None
) -> None:
    """Make the clip the current one and open Analyze; ``contrast`` asks it for "why A and not B"."""
    state.use_clip(held_out_clip(name, target, path, names, model))
    if contrast is not None:
        st.session_state[CONTRAST_KEY] = contrast
    st.switch_page(components.ANALYZE_PAGE)
