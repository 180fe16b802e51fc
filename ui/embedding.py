"""The embedding map: held-out clips where the model puts them, the current clip among them, its
nearest neighbours, and any point sent on to Analyze or Compare.

The reference clips' features are shipped for the shipped checkpoint (``assets/embedding.npz``,
keyed by the checkpoint file's SHA-256). For any other checkpoint they are computed once per
process from the clips this machine can open (the bundled samples and misclassified clips, and
all of fold 5 with a local ESC-50 copy), behind a lock, and kept per checkpoint identity.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import streamlit as st

from audiocnn.embedding import (
    FEATURE_NODE,
    EmbeddingError,
    Projection,
    ReferenceClips,
    checkpoint_identity,
    fit_pca,
    nearest,
    place,
    pooled_features,
    tsne,
)
from audiocnn.heldout import bundled_clips, find_clip, local_esc50_dir
from audiocnn.inference import Predictor
from audiocnn.labels import MAJOR_CATEGORIES, class_info

from . import components, confusions, plots, resources, state

EMBEDDING_PATH = Path(__file__).resolve().parent.parent / "assets" / "embedding.npz"
HELD_OUT_FOLD = 5
NEIGHBOURS = 8


@dataclass(frozen=True)
class EmbeddingMap:
    """Reference clips, the PCA fitted on them with their PCA coordinates, and their t-SNE map."""

    reference: ReferenceClips
    projection: Projection
    coordinates: np.ndarray  # (clips, 2) PCA
    layout: np.ndarray  # (clips, 2) t-SNE
    origin: str  # where the features came from, for the page's caption
    seconds: float  # time to load or compute the features and fit the maps

    def points(self, layout: str) -> np.ndarray:
        return self.layout if layout == TSNE else self.coordinates

    def locate(self, feature: np.ndarray, layout: str, row: int | None) -> np.ndarray:
        """A clip's place: its own point when it is a reference clip, else projected (PCA) or placed
        among its nearest reference clips (t-SNE); neither re-fits the map."""
        if row is not None:
            return self.points(layout)[row]
        if layout == TSNE:
            return place(feature, self.reference.features, self.layout)
        return self.projection.transform(feature)


TSNE, PCA = "t-SNE", "PCA"
PLACEMENT = {TSNE: "at the similarity-weighted mean of its 8 nearest clips' places",
             PCA: "projected with the fitted transform"}  # fmt: skip
LAYOUTS = {TSNE: "t-SNE (keeps neighbourhoods)", PCA: "PCA (linear: axes are feature directions)"}


def build_map(reference: ReferenceClips, origin: str, started: float) -> EmbeddingMap:
    """Fit the PCA, and the t-SNE unless the reference clips bring theirs (it takes seconds, not ms)."""
    projection = fit_pca(reference.features)
    coordinates = projection.transform(reference.features)
    layout = reference.layout if reference.layout is not None else tsne(reference.features)
    return EmbeddingMap(reference, projection, coordinates, layout, origin, time.perf_counter() - started)


@st.cache_data(max_entries=8, show_spinner=False)
def _identity(path: str, mtime: float, size: int) -> str:
    return checkpoint_identity(path)


def identity(model: Predictor) -> str:
    """The loaded checkpoint's SHA-256 (hashed once per file version: path, mtime and size)."""
    path = model.path
    if path is None or not Path(path).is_file():
        return f"unsaved:{id(model.checkpoint)}"
    info = Path(path).stat()
    return _identity(str(path), info.st_mtime, info.st_size)


def _available_clips() -> list[tuple[str, int, Path]]:
    """(name, class, file) of every held-out clip this machine can play: all of fold 5 with a local
    ESC-50 copy, else the bundled ones."""
    bundled = {clip.name: clip for clip in bundled_clips()}
    found = {name: (name, clip.target, clip.path) for name, clip in bundled.items() if clip.fold == HELD_OUT_FOLD}
    esc50 = local_esc50_dir()
    meta = esc50 / "meta" / "esc50.csv" if esc50 is not None else None
    if meta is not None and meta.is_file():
        with meta.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                name = Path(row.get("filename", "")).stem
                if row.get("fold") == str(HELD_OUT_FOLD) and name not in found:
                    path = find_clip(name, None, esc50)
                    if path is not None:
                        found[name] = (name, int(row["target"]), path)
    return sorted(found.values())


class _MapSlot:
    """Maps built in this process, one per checkpoint identity, behind a lock (sessions share them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.maps: dict[str, EmbeddingMap] = {}


@st.cache_resource
def _slot() -> _MapSlot:
    return _MapSlot()


def embedding_map(model: Predictor) -> EmbeddingMap:
    """The map of the loaded checkpoint: shipped when it is the shipped one, else built once here."""
    key = identity(model)
    slot = _slot()
    with slot.lock:
        if key in slot.maps:
            return slot.maps[key]
        started = time.perf_counter()
        shipped = None
        if EMBEDDING_PATH.is_file():
            try:
                shipped = ReferenceClips.load(EMBEDDING_PATH)
            except EmbeddingError as error:
                st.warning(f"{error}; the map is computed here instead.")
        if shipped is not None and shipped.checkpoint == key:
            slot.maps[key] = build_map(shipped, f"the {len(shipped.names)} held-out (fold 5) clips, shipped", started)
            return slot.maps[key]
        clips = _available_clips()
        bar = st.progress(0.0, text=f"Placing {len(clips)} held-out clips for this checkpoint (once)…")
        waveforms = [model.load(path) for _, _, path in clips]
        features = pooled_features(model, waveforms, lambda done: bar.progress(done, text=f"Clips placed: {done:.0%}"))
        bar.empty()
        reference = ReferenceClips(tuple(n for n, _, _ in clips), np.array([t for _, t, _ in clips]), features, key)
        origin = f"the {len(clips)} held-out (fold 5) clips this machine can open, computed for this checkpoint"
        slot.maps[key] = build_map(reference, origin, started)
        return slot.maps[key]


def clip_feature(clip: state.Clip, model: Predictor) -> np.ndarray:
    """The current clip's feature: the ``pool`` activation of the window the other pages show."""
    return np.asarray(state.analysis(clip, model).activations[FEATURE_NODE], dtype=np.float32)


def reference_row(clip: state.Clip, names: Sequence[str]) -> int | None:
    """The row of a clip that is itself a reference clip (a bundled or held-out ESC-50 clip)."""
    if clip.source != "sample" or not clip.id.startswith("sample:"):
        return None
    name = clip.id.removeprefix("sample:")
    return names.index(name) if name in names else None


def class_colours(count: int) -> list[str]:
    """One colour per class along Turbo: the classes of a major category (consecutive indices) share a hue."""
    return plotly.colors.sample_colorscale("Turbo", [0.05 + 0.9 * i / max(1, count - 1) for i in range(count)])


def map_figure(
    emap: EmbeddingMap,
    class_names: Sequence[str],
    by_category: bool,
    predicted: dict[str, int],
    current: tuple[np.ndarray, str] | None = None,
    neighbours: Sequence[int] = (),
    layout: str = PCA,
    height: int = 640,
) -> go.Figure:
    """Every reference clip as a point (customdata: its row), a cross over those the model gets
    wrong, the current clip as a star with a line to each of its neighbours."""
    coordinates, targets = emap.points(layout), emap.reference.targets
    names = emap.reference.names
    fig = go.Figure()
    groups = (
        [(category, [i for i, t in enumerate(targets) if class_info(class_names[t]).category == category])
         for category in MAJOR_CATEGORIES]
        if by_category
        else [(plots.class_label(class_names[c]), [i for i, t in enumerate(targets) if t == c])
              for c in range(len(class_names))]
    )  # fmt: skip
    colours = class_colours(len(class_names))
    for index, (group, rows) in enumerate(groups):
        if not rows:
            continue
        colour = plots.CATEGORY_COLOURS.get(group, "#999999") if by_category else colours[index]
        heard = [plots.class_label(class_names[predicted[names[i]]]) if names[i] in predicted else "?" for i in rows]
        fig.add_trace(
            go.Scatter(
                x=coordinates[rows, 0], y=coordinates[rows, 1], mode="markers", name=group,
                marker={"color": colour, "size": 9, "line": {"width": 0.5, "color": "white"}},
                customdata=np.array([[i, names[i], plots.class_label(class_names[targets[i]]), h]
                                     for i, h in zip(rows, heard)], dtype=object),
                hovertemplate="%{customdata[1]}<br>%{customdata[2]}<br>heard as %{customdata[3]}<extra></extra>",
            )
        )  # fmt: skip
    wrong = [i for i, name in enumerate(names) if predicted.get(name, targets[i]) != targets[i]]
    if wrong:
        fig.add_trace(
            go.Scatter(
                x=coordinates[wrong, 0], y=coordinates[wrong, 1], mode="markers", name="misclassified",
                marker={"symbol": "x-thin", "size": 9, "line": {"width": 1.5, "color": "#222222"}},
                customdata=np.array([[i, names[i], plots.class_label(class_names[targets[i]]),
                                      plots.class_label(class_names[predicted[names[i]]])] for i in wrong],
                                    dtype=object),
                hovertemplate="%{customdata[1]}<br>%{customdata[2]}<br>heard as %{customdata[3]}<extra></extra>",
            )
        )  # fmt: skip
    if current is not None:
        point, label = current
        for row in neighbours:
            fig.add_trace(
                go.Scatter(x=[point[0], coordinates[row, 0]], y=[point[1], coordinates[row, 1]], mode="lines",
                           line={"color": "#333333", "width": 1, "dash": "dot"}, hoverinfo="skip",
                           showlegend=False)
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=[point[0]], y=[point[1]], mode="markers+text", name="current clip", text=[label],
                textposition="top center", marker={"symbol": "star", "size": 20, "color": "#FFD400",
                                                   "line": {"width": 1.5, "color": "black"}},
                hovertemplate=f"current clip: {label}<extra></extra>",
            )
        )  # fmt: skip
    explained = emap.projection.explained
    titles = ((f"PC 1 ({explained[0]:.0%} of variance)", f"PC 2 ({explained[1]:.0%} of variance)") if layout == PCA
              else ("t-SNE 1 (no unit: only neighbourhoods count)", "t-SNE 2"))  # fmt: skip
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 40, "b": 45}, clickmode="event+select", dragmode="pan",
        xaxis={"title": titles[0], "zeroline": False}, yaxis={"title": titles[1], "zeroline": False},
        legend={"font": {"size": 10}, "itemsizing": "constant"},
    )  # fmt: skip
    return fig


def nearest_rows(
    emap: EmbeddingMap, feature: np.ndarray, rows: Sequence[int] | None, exclude: int | None, k: int = NEIGHBOURS
) -> list[tuple[int, float]]:
    """``(row, cosine)`` of the nearest reference clips, among ``rows`` only when given."""
    subset = list(range(len(emap.reference.names))) if rows is None else list(rows)
    position = subset.index(exclude) if exclude in subset else None
    found = nearest(feature, emap.reference.features[subset], k, position)
    return [(subset[i], similarity) for i, similarity in found]


def send_to_compare(current: state.Clip, other: state.Clip) -> None:
    """Open Compare with the current clip as A and ``other`` as B."""
    state.remember_clip(other)
    st.session_state["compare_a"], st.session_state["compare_b"] = (components.clip_choice(current),
                                                                     components.clip_choice(other))  # fmt: skip
    st.switch_page(components.COMPARE_PAGE)


def _actions(name: str, target: int, path: Path | None, model: Predictor, current: state.Clip | None, key: str) -> None:
    """A player and the two ways on for one reference clip."""
    class_names = model.class_names
    if path is None:
        st.caption("🔇 not bundled: a local ESC-50 copy plays it (README, AUDIOCNN_ESC50)")
        return
    st.audio(path.read_bytes(), format=f"audio/{path.suffix.lstrip('.').lower()}")
    left, right = st.columns(2)
    if left.button("Analyze", key=f"{key}_analyze", help="Make this the current clip on every page"):
        confusions.send_to_analyze(name, target, path, class_names, model)
    if (
        current is not None
        and current.id != f"sample:{name}"
        and right.button("Compare", key=f"{key}_compare", help="Compare it with the current clip, layer by layer")
    ):
        send_to_compare(current, confusions.held_out_clip(name, target, path, class_names, model))


def show(model: Predictor) -> None:
    """The Map page: the map, the current clip placed on it with its neighbours, and a chosen point."""
    emap = embedding_map(model)
    class_names = model.class_names
    metrics = resources.metrics()
    describes = metrics is not None and resources.metrics_describe(metrics, model)  # another model's: not shown
    predicted = {r.name: r.predicted for r in confusions.records(metrics)} if describes else {}
    names = emap.reference.names
    bundled = {clip.name: clip.path for clip in bundled_clips()}
    esc50 = local_esc50_dir()
    paths = [find_clip(name, bundled, esc50) for name in names]
    playable = [row for row, path in enumerate(paths) if path is not None]
    left, middle, right = st.columns(3)
    layout = left.radio("Map", list(LAYOUTS), format_func=LAYOUTS.__getitem__, key="map_layout")
    by_category = middle.radio("Colour by", ["Major category", "Class"], key="map_colour") != "Class"
    only_playable = len(playable) < len(names) and right.toggle(
        f"Neighbours only among the {len(playable)} clips that play here", value=True, key="map_playable",
        help="Without a local ESC-50 copy only the bundled clips (samples and misclassified clips) can be played.",
    )  # fmt: skip
    clip = state.current_clip()
    current, found, placed_ms = None, [], None
    if clip is not None:
        with st.spinner("Placing the current clip…"):
            feature = clip_feature(clip, model)
        started = time.perf_counter()
        row = reference_row(clip, names)
        point = emap.locate(feature, layout, row)
        found = nearest_rows(emap, feature, playable if only_playable else None, row)
        placed_ms = (time.perf_counter() - started) * 1000
        current = (point, clip.name)
    figure = map_figure(emap, class_names, by_category, predicted, current, [r for r, _ in found], layout)
    event = st.plotly_chart(figure, width="stretch", theme=None, key="map_chart", on_select="rerun",
                            selection_mode="points", config={"displaylogo": False})  # fmt: skip
    st.caption(
        f"Each point is one of {emap.origin}: its pooled penultimate features (the {emap.reference.features.shape[1]} "
        f"numbers the classifier reads), mapped to 2-D. × marks a clip the model gets wrong. Map ready in "
        f"{emap.seconds:.2f} s" + (f"; the current clip placed in {placed_ms:.1f} ms without re-fitting the map "
                                   f"({PLACEMENT[layout]})." if placed_ms is not None else ".")
        + " Click a point to hear it."
    )  # fmt: skip
    chosen = [p for p in (event.selection.points if event else []) if p.get("customdata") is not None]
    if chosen:
        row = int(confusions.point_data(chosen[0])[0])
        name, target = names[row], int(emap.reference.targets[row])
        st.markdown(
            f"**Chosen point: `{name}`** · {plots.class_label(class_names[target])}"
            + (f" · heard as {plots.class_label(class_names[predicted[name]])}" if name in predicted else "")
        )
        _actions(name, target, paths[row], model, clip, f"point_{row}")
    if clip is None:
        st.info("Analyze a clip (upload, record or pick one on the Analyze page) to place it on the map.")
        st.page_link(components.ANALYZE_PAGE, label="Go to Analyze", icon="🎧")
        return
    st.markdown(f"### The model hears `{clip.name}` as most like these")
    scope = f"among the {len(playable)} bundled ones" if only_playable else f"among all {len(names)}"
    st.caption(f"Nearest held-out clips ({scope}) by cosine similarity of the full feature vectors; the 2-D map "
               "only approximates those distances.")  # fmt: skip
    for rank, (row, similarity) in enumerate(found, 1):
        name, target = names[row], int(emap.reference.targets[row])
        text, player = st.columns([2, 3], vertical_alignment="center")
        wrong = predicted.get(name, target) != target
        heard = f" · heard as {plots.class_label(class_names[predicted[name]])}" if wrong else ""
        text.markdown(f"**{rank}.** `{name}` · {plots.class_label(class_names[target])}{heard}  \n"
                      f"similarity {similarity:.3f}")  # fmt: skip
        with player:
            _actions(name, target, paths[row], model, clip, f"neighbour_{row}")
