"""Compare: a class's bundled clips side by side, any two clips layer by layer, and two models."""

import numpy as np
import streamlit as st

from audiocnn.inference import Prediction
from ui import components, model_compare, plots, resources, state
from ui.axes import input_axes, map_axes, node_strides
from ui.layers import browsable_nodes, is_nonnegative
from ui.similarity import layer_similarities

model = resources.predictor()
config = model.feature_config
st.title("⚖️ Compare")


def _class_samples() -> None:
    st.markdown("### A class's bundled clips")
    labels = list(dict.fromkeys(clip.label for clip in resources.samples()))
    if not labels:
        st.warning("No bundled samples were found in assets/samples.")
        return
    current = state.current_clip()
    default = current.label if current is not None and current.label in labels else labels[0]
    st.session_state.setdefault("compare_class", default)
    label = st.selectbox("Class", labels, format_func=plots.class_label, key="compare_class")
    samples = resources.samples_for(label)
    views = [resources.sample_view(str(sample.path)) for sample in samples]
    scale = plots.db_scale([logmel for logmel, _ in views])
    for column, sample, (logmel, probabilities) in zip(st.columns(len(samples)), samples, views):
        prediction = Prediction(probabilities, model.class_names)
        with column:
            st.markdown(f"**`{sample.name}`**")
            verdict = components.verdict(prediction, sample.label)
            st.markdown(f"Predicted {components.top_class(prediction)} · {verdict}")
            components.sample_player(sample)
            components.chart(plots.spectrogram_figure(logmel, input_axes(config), height=260, scale=scale))  # fmt: skip


def _clip_choices() -> dict[str, state.Clip | str]:
    """Session clips first, newest first (uploads, recordings, samples already analysed), then every
    bundled sample (``components.clip_choice`` names them)."""
    choices: dict[str, state.Clip | str] = {}
    for clip in reversed(state.clips()):
        choices[components.clip_choice(clip)] = clip
    for sample in resources.samples():
        choices.setdefault(f"📦 {sample.name} · {plots.class_label(sample.label)}", str(sample.path))
    return choices


def _resolve(choice: state.Clip | str) -> state.Clip:
    if isinstance(choice, state.Clip):
        return choice
    sample = next(s for s in resources.samples() if str(s.path) == choice)
    return state.sample_clip(sample, resources.sample_waveform(choice), config.sample_rate)


def _contrast(choices: dict[str, state.Clip | str], first: str) -> str:
    """A default partner for clip A: the first bundled sample of another class than A's (predicted) class."""
    clip = _resolve(choices[first])
    label = clip.label or state.analysis(clip, model).prediction.top_label
    labels = {str(sample.path): sample.label for sample in resources.samples()}
    others = [name for name, choice in choices.items() if isinstance(choice, str) and labels[choice] != label]
    return others[0] if others else next(name for name in choices if name != first)


def _two_clips() -> None:
    st.markdown("### Two clips, layer by layer")
    choices = _clip_choices()
    names = list(choices)
    if len(names) < 2:
        st.info("Two clips are needed: upload or record another clip on the Analyze page.")
        return
    st.session_state.setdefault("compare_a", names[0])
    if "compare_b" not in st.session_state:  # choosing the default analyses clip A: only once
        st.session_state["compare_b"] = _contrast(choices, names[0])
    left, right = st.columns(2)
    name_a = left.selectbox("Clip A", names, key="compare_a")
    name_b = right.selectbox("Clip B", names, key="compare_b")
    clip_a, clip_b = _resolve(choices[name_a]), _resolve(choices[name_b])
    with st.spinner("Analysing both clips…"):
        result_a = state.analysis(clip_a, model)
        result_b = state.analysis(clip_b, model)

    for column, clip, result in ((left, clip_a, result_a), (right, clip_b, result_b)):
        with column:
            caption = components.clip_caption(clip)
            if clip.duration > config.clip_seconds:  # a long clip is compared on its chosen window
                start, end = state.window_span(clip, model, state.window_index(clip, model))
                caption += f" · window {start:.1f}–{end:.1f} s"
            st.caption(caption)
            components.top_predictions(result.prediction, 3)
    both = list(dict.fromkeys(
        [name for name, _ in result_a.prediction.ranked(3)] + [name for name, _ in result_b.prediction.ranked(3)]
    ))  # fmt: skip
    indices = [model.class_names.index(name) for name in both]
    probabilities = {"A": result_a.prediction.probabilities[indices], "B": result_b.prediction.probabilities[indices]}
    components.chart(plots.probability_comparison_figure(both, probabilities))

    nodes = browsable_nodes(model.model_config)
    series = layer_similarities(result_a.activations, result_b.activations, nodes)
    spatial = series["whole maps"]
    st.markdown("**Where the representations diverge**")
    components.chart(plots.similarity_figure(nodes, series))
    lowest = nodes[int(np.argmin(spatial))]
    verdict = (
        "The two clips give identical activations." if min(spatial) > 0.9999
        else f"The maps differ most at `{lowest}`."
    )  # fmt: skip
    st.caption(
        "Cosine similarity of the two clips' activations at every node. Whole maps compare what fires where; "
        f"channel means compare which features fire at all. {verdict}"
    )
    node = st.selectbox("Node to look at", nodes, index=nodes.index(lowest), key="compare_node")
    values = [result_a.activations[node].mean(axis=0), result_b.activations[node].mean(axis=0)]
    scale = plots.activation_scale(values, is_nonnegative(node))
    axes = map_axes(config, values[0].shape, node_strides(model.model)[node])
    for column, label, value in zip(st.columns(2), ("A", "B"), values):
        with column:
            components.chart(plots.map_figure(value, axes, scale, title=f"{label}: {node}, mean over channels"))


_class_samples()
_two_clips()
model_compare.section(model)  # issue 19: a second model (ui.model_compare)
