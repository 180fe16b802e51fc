"""The Analyze page's "Why" panel: a method (and layer), a class or a contrast, the map with its own
faithfulness line and chart, and the two halves of the sound it implies, each played and scored.

Entry point for other pages: set ``st.session_state[CONTRAST] = (a, b)`` (two class names or class
indices; e.g. the true and the predicted class of a confusion cell) before switching to Analyze. The
panel then explains "why A and not B" for the current clip: the contrast is switched on with A as the
explained class and B as the other. A request is applied once per clip window (``APPLIED`` remembers
it, the key itself stays for the page that set it); after that the widgets are the user's.

Everything computed is kept per session (``state.cached``), keyed by model, clip, window, method and target:
reruns, method switches back and forth and the keep slider never recompute a map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from audiocnn import attribution, faithfulness, listen
from audiocnn.inference import Analysis, Predictor

from . import components, plots, resources, state
from .axes import cell_milliseconds, input_axes, node_strides

CONTRAST = "contrast_classes"
APPLIED = "audiocnn_contrast_applied"
MAPS = "audiocnn_attribution_maps"
FAITHFULNESS = "audiocnn_faithfulness"
LISTENINGS = "audiocnn_listenings"
MAX_ITEMS = 24

FAMILIES = ("Grad-CAM", "Integrated Gradients", "SmoothGrad", "Occlusion (time)", "Occlusion (frequency)",
            "Occlusion (time-frequency)")  # fmt: skip
KEEP_SHARES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def family_of(key: str) -> str:
    m = attribution.method(key)
    return m.family if m.family != "Occlusion" else m.label


def key_of(family: str, layer: str | None) -> str:
    if family == "Grad-CAM":
        return f"gradcam-{layer}"
    return next(m.key for m in attribution.METHODS.values() if m.label == family or m.family == family)


def default_method(layers: list[str]) -> tuple[str, dict[str, Any] | None]:
    """The default method (``attribution.chosen`` from the shipped evaluation) and that evaluation."""
    tables = (resources.metrics() or {}).get("explanations") or None
    return attribution.chosen(tables, layers), tables


def _class_index(value: Any, names: tuple[str, ...]) -> int | None:
    if isinstance(value, str):
        return names.index(value) if value in names else None
    if isinstance(value, int | np.integer) and 0 <= int(value) < len(names):
        return int(value)
    return None


def _take_contrast_request(names: tuple[str, ...], where: tuple[str, int], a_key: str, b_key: str) -> None:
    """Apply a contrast another page asked for (``CONTRAST``), once per clip window."""
    request = st.session_state.get(CONTRAST)
    if not request or st.session_state.get(APPLIED) == (*where, tuple(request)):
        return
    st.session_state[APPLIED] = (*where, tuple(request))
    a, b = (_class_index(v, names) for v in request) if len(request) == 2 else (None, None)
    if a is None or b is None or a == b:
        st.warning(f"Cannot contrast {request!r}: two different classes of the model are needed.")
        return
    st.session_state[a_key], st.session_state[b_key], st.session_state["contrast_on"] = a, b, True


def show(clip: state.Clip, index: int, result: Analysis, model: Predictor) -> int:
    """The whole panel for one window of a clip; returns the class it explains."""
    st.markdown("### Why")
    prediction = result.prediction
    names = prediction.class_names
    order = [int(i) for i in prediction.order]
    a_key, b_key = f"cam_class_{clip.id}_{index}", f"contrast_b_{clip.id}_{index}"
    _take_contrast_request(names, (clip.id, index), a_key, b_key)
    strides = node_strides(model.model)
    layers = [name for name in attribution.CAM_LAYERS if name in strides]  # a shallower model has fewer stages
    default, tables = default_method(layers)

    def label(i: int) -> str:
        return f"{plots.class_label(names[i])} — {prediction.probabilities[i]:.1%}"

    left, middle, right = st.columns([3, 3, 2], vertical_alignment="bottom")
    class_index = left.selectbox("Explain the class", order, format_func=label, key=a_key)
    families = [f for f in FAMILIES if f != "Grad-CAM" or layers]
    family = middle.selectbox("Method", families, index=families.index(family_of(default)), key="explain_method")
    contrast = right.toggle("Why not another class?", key="contrast_on")
    other = None
    if contrast:
        others = [i for i in order if i != class_index]
        if st.session_state.get(b_key) == class_index:
            del st.session_state[b_key]  # A moved onto B: fall back to the best other class
        other = st.selectbox(f"…rather than (what raises {plots.class_label(names[class_index])}'s score "
                             "relative to this class's)", others, format_func=label, key=b_key)  # fmt: skip
    layer = None
    if family == "Grad-CAM":
        start = layers.index(attribution.chosen_cam_layer(tables, layers))
        layer = st.radio("Layer", layers, index=start, horizontal=True, key="cam_layer")
    key = key_of(family, layer)
    target: attribution.Target = (class_index, other) if other is not None else class_index
    with st.spinner(f"Explaining with {attribution.method(key).label}…"):
        relevance = _map(clip, index, result, model, key, target)
    components.chart(
        plots.spectrogram_figure(result.logmel, input_axes(model.feature_config), attribution.display_map(relevance),
                                 cam_title=f"{attribution.method(key).family}<br>(share of peak)")
    )  # fmt: skip
    st.caption(_map_caption(key, layer, strides, model, names, target))
    _default_note(key, default, tables)
    _faithfulness(clip, index, result, model, key, target, relevance, names)
    _listening(clip, index, result, model, key, target, relevance, names)
    return class_index


def _target_text(target: attribution.Target, names: tuple[str, ...]) -> str:
    if isinstance(target, tuple):
        return f"{plots.class_label(names[target[0]])}'s share against {plots.class_label(names[target[1]])}"
    return plots.class_label(names[target])


def _map_caption(key: str, layer: str | None, strides: dict, model: Predictor, names, target) -> str:
    m = attribution.method(key)
    what = _target_text(target, names)
    if isinstance(target, tuple):
        what = (f"the difference between the scores of {plots.class_label(names[target[0]])} and "
                f"{plots.class_label(names[target[1]])}")  # fmt: skip
    text = f"{m.label} of {what}: {m.about}; {m.cost}."
    if layer is not None:
        stride = strides[layer]
        ms = cell_milliseconds(model.feature_config, stride)
        text += f" Each {layer} cell covers {stride[0]} mel bands × {ms:.0f} ms, so deeper layers give coarser maps."
    return text + " Each map is scaled to its own peak (only cells that speak for the score are coloured)."


def _default_note(key: str, default: str, tables: dict[str, Any] | None) -> None:
    held, chosen = (tables or {}).get("heldout") or {}, (tables or {}).get("selection") or {}
    row = (held.get("methods") or {}).get(default, {}).get("impute")
    if key != default or row is None or "clips" not in chosen:
        return
    st.caption(
        f"Default: {attribution.method(default).label}, the best deletion gap among methods that beat a random "
        f"ranking in both orders on {chosen['clips']} clips of folds 1-4 (the model's training data). "
        f"On {held['clips']} held-out fold-5 clips its gap is {row['gap']['mean']:.2f} ± {row['gap']['std']:.2f}; "
        f"it falls faster than random by {row['margin_most_first']['mean']:.2f} and holds better by "
        f"{row['margin_least_first']['mean']:.2f} (see the Model page)."
    )


def _map(clip, index, result: Analysis, model: Predictor, key: str, target) -> np.ndarray:
    m = attribution.method(key)
    if m.layer is not None and target == result.cam_class:
        return result.cams[m.layer]  # the analysis's own backward pass already made it
    features = model.logmel(result.waveform)
    hop = model.feature_config.hop_length / model.feature_config.sample_rate
    return state.cached(MAPS, model, (clip.id, index, key, target), MAX_ITEMS,
                        lambda: attribution.attribute(model.forward, features, target, key, hop))  # fmt: skip


def _faithfulness(clip, index, result: Analysis, model: Predictor, key: str, target, relevance, names) -> None:
    features = model.logmel(result.waveform)
    curves = state.cached(
        FAITHFULNESS, model, (clip.id, index, key, target), MAX_ITEMS,
        lambda: faithfulness.measure(model.forward, features, relevance, target, removals=tuple(faithfulness.REMOVALS)),
    )  # fmt: skip
    line = faithfulness_line(curves[attribution.SELECTION_REMOVAL], _target_text(target, names), views=model.views)
    st.markdown(f"**How far to trust this map** — {line}")
    st.caption(faithfulness_verdict(curves))
    components.chart(faithfulness_figure(curves))


REMOVAL_WORDS = {"floor": "set to the clip's floor", "impute": "each cell filled in from its neighbours"}
"""How the plain-words line says a cell was deleted, per ``faithfulness.REMOVALS``."""


def faithfulness_line(curves: faithfulness.Faithfulness, what: str, share: float = 0.1, views: int = 1) -> str:
    """The plain-words sentence: what deleting the map's top cells does, against a random share.

    The curves score the one unrolled view the map is computed on (as the explanation table does, by
    which the default method was chosen); where the prediction above averages ``views`` > 1 views, the
    line says so, or its starting score would read as a different number for the same class.
    """
    at = curves.at(share)
    start = f"{curves.base:.0%}"
    if views > 1:
        start += f" (its score on the one view the map explains; the prediction averages {views} views)"
    return (
        f"Deleting the {share:.0%} of the spectrogram this map ranks highest ({REMOVAL_WORDS[curves.removal]}) "
        f"takes {what} from {start} to {at['most_first']:.0%}; deleting a random {share:.0%} leaves "
        f"{at['random']:.0%}, and deleting the {share:.0%} it ranks lowest leaves {at['least_first']:.0%}."
    )


def faithfulness_verdict(curves: dict[str, faithfulness.Faithfulness]) -> str:
    """Areas under both removals, and whether the map beats chance in each order."""
    parts = []
    for removal, c in curves.items():
        most, least, rand = c.area("most_first"), c.area("least_first"), c.area("random")
        verdict = ("better than chance in both orders" if most < rand < least else
                   "better than chance only when its top cells are deleted" if most < rand else
                   "better than chance only when its top cells are kept" if least > rand else
                   "no better than a random ranking")  # fmt: skip
        parts.append(f"{'set to the floor' if removal == 'floor' else 'imputed from neighbours'}: "
                     f"most-first {most:.2f}, least-first {least:.2f}, random {rand:.2f} — {verdict}")  # fmt: skip
    return ("Area under the score-vs-share-deleted curve over 0–50 % (relative to the untouched window; lower "
            "most-first and higher least-first are better), one view of the window, with deleted cells "
            + "; ".join(parts) + ".")  # fmt: skip


def faithfulness_figure(curves: dict[str, faithfulness.Faithfulness], height: int = 260) -> go.Figure:
    """The three deletion curves per removal (solid: floor, dotted: imputed)."""
    colours = {"most_first": "#E45756", "least_first": "#4C78A8", "random": "#9D9D9D"}
    names = {"most_first": "top first", "least_first": "bottom first", "random": "random"}
    fig = go.Figure()
    for removal, c in curves.items():
        for order in faithfulness.ORDERS:
            fig.add_trace(go.Scatter(
                x=100 * c.shares, y=getattr(c, order), mode="lines+markers",
                name=f"{names[order]} ({'floor' if removal == 'floor' else 'imputed'})",
                line={"color": colours[order], "dash": "solid" if removal == "floor" else "dot"},
            ))  # fmt: skip
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 10, "b": 40},
                      xaxis_title="share of the spectrogram deleted (%)", yaxis_title="score",
                      yaxis={"range": [0, 1.02], "tickformat": ".0%"}, legend={"font": {"size": 10}})  # fmt: skip
    return fig


def _listening(clip, index, result: Analysis, model: Predictor, key: str, target, relevance, names) -> None:
    st.markdown("**Listen to the explanation**")
    share = st.select_slider("Share of the map kept", KEEP_SHARES, value=listen.DEFAULT_KEEP,
                             format_func=lambda s: f"{s:.0%}", key="listen_keep")  # fmt: skip
    heard = state.cached(LISTENINGS, model, (clip.id, index, key, target, share), MAX_ITEMS,
                         lambda: listen.listen(model, result.waveform, relevance, target, share))  # fmt: skip
    rate = model.feature_config.sample_rate
    what = _target_text(target, names)
    parts = (
        (f"What the model listened to (the top {share:.0%} of the map)", heard.kept, heard.kept_score,
         heard.kept_top, "fidelity-in " + ("kept" if heard.fidelity_in else "lost")),
        (f"What it ignored (the other {1 - share:.0%})", heard.removed, heard.removed_score, heard.removed_top,
         "fidelity-out " + ("the class is gone" if heard.fidelity_out else "the class survives")),
    )  # fmt: skip
    for column, (title, audio, score, top, fidelity) in zip(st.columns(2, gap="large"), parts):
        with column:
            st.markdown(title)
            components.player(audio, rate)
            st.caption(f"Alone, this part gives {what} {score:.0%}; top class {plots.class_label(names[top])} — "
                       f"{fidelity}.")  # fmt: skip
