"""Layers: browse every activation of the current clip, stage -> block -> sub-layer -> channel."""

import streamlit as st

from audiocnn.model import activation_tree
from ui import components, plots, resources, state
from ui.axes import cell_milliseconds, map_axes, node_strides
from ui.layers import channel_ranking, is_nonnegative, node_stats, short_name

NODE = "audiocnn_layer_node"  # the selected node, kept across pages (widget state is not)
DEFAULT_NODE = "layer1.block0.relu1"
GRID_CHANNELS = 12
MEANINGS = {
    "conv": "convolution output (signed)",
    "conv1": "first 3×3 convolution (signed)",
    "conv2": "second 3×3 convolution (signed)",
    "bn": "after batch-norm (signed; ReLU keeps only the positive part)",
    "bn1": "after batch-norm (signed; ReLU keeps only the positive part)",
    "bn2": "after batch-norm, before the residual sum (signed)",
    "relu": "after ReLU (non-negative: zeros are switched-off units)",
    "relu1": "after ReLU (non-negative: zeros are switched-off units)",
    "pool": "after 3×3 max-pool, the stem's output (non-negative)",
    "stem out": "the stem's output, unpooled: the same values as relu (non-negative)",
    "shortcut": "the residual path (identity, or a 1×1 projection when the shape changes; signed)",
    "out": "block output: ReLU(bn2 + shortcut) (non-negative)",
}

model = resources.predictor()
config = model.feature_config
st.title("🧅 Layers")
clip = components.require_clip()
window = state.window_index(clip, model)
start, end = state.window_span(clip, model, window)
with st.spinner("Analysing…"):
    result = state.analysis(clip, model, window)
st.caption(
    f"{components.clip_title(clip)} · window {start:.1f}–{end:.1f} s · "
    f"predicted {components.top_class(result.prediction)}"
)

tree = activation_tree(model.model_config)
stored = st.session_state.get(NODE, DEFAULT_NODE)
if stored not in result.activations:
    stored = DEFAULT_NODE
stored_stage = stored.split(".")[0]
stored_block = next(b for b, names in tree[stored_stage].items() if stored in names)
st.session_state.setdefault("layers_stage", stored_stage)
st.session_state.setdefault("layers_block", stored_block)
st.session_state.setdefault("layers_sub", short_name(stored, model.model_config.stem_pool))

stage = st.radio("Stage", list(tree), horizontal=True, key="layers_stage")
blocks = list(tree[stage])
if st.session_state["layers_block"] not in blocks:
    st.session_state["layers_block"] = blocks[0]
block = st.radio("Residual block", blocks, horizontal=True, key="layers_block", format_func=lambda b: b.split(".")[-1])
nodes = {short_name(node, model.model_config.stem_pool): node for node in tree[stage][block]}
if st.session_state["layers_sub"] not in nodes:
    st.session_state["layers_sub"] = next(iter(nodes))
sub = st.radio("Sub-layer", list(nodes), horizontal=True, key="layers_sub")
node = nodes[sub]
st.session_state[NODE] = node

values = result.activations[node]
stats = node_stats(values)
nonnegative = is_nonnegative(node)
stride = node_strides(model.model)[node]
axes = map_axes(config, values.shape[1:], stride)

st.markdown(f"#### `{node}` — {MEANINGS.get(sub, '')}")
columns = st.columns(5)
columns[0].metric("Shape (channels × freq × time)", " × ".join(map(str, values.shape)))
columns[1].metric("Mean", f"{stats.mean:.3g}")
columns[2].metric("Max", f"{stats.maximum:.3g}")
if nonnegative:
    columns[3].metric("Zeros (after ReLU)", f"{stats.share_zero:.1%}")
else:
    columns[3].metric("Negative (a ReLU would zero)", f"{stats.share_negative:.1%}")
columns[4].metric("Cell (mel bands × ms)", f"{stride[0]} × {cell_milliseconds(config, stride):.0f}")

scale = plots.activation_scale(values, nonnegative)
mean_map = values.mean(axis=0)
ranking = channel_ranking(values)
channel_means = values.reshape(values.shape[0], -1).mean(axis=1)
left, right = st.columns(2, gap="large")
with left:
    st.markdown("**Mean over all channels**")
    components.chart(plots.map_figure(mean_map, axes, plots.activation_scale(mean_map, nonnegative), height=340))
with right:
    st.markdown(f"**The {min(GRID_CHANNELS, len(ranking))} most active channels** (one colour scale for the node)")
    shown = ranking[:GRID_CHANNELS]
    components.chart(plots.channel_grid_figure(values[shown], [f"ch {c}" for c in shown], axes, scale, columns=4))

st.markdown("### One channel")
channel = st.selectbox(
    "Channel (most active first)",
    [int(c) for c in ranking],
    format_func=lambda c: f"ch {c} · mean {channel_means[c]:.3g}",
    key=f"layers_channel_{node}",
)
left, right = st.columns(2, gap="large")
with left:
    components.chart(plots.map_figure(values[channel], axes, scale, title=f"{node} · channel {channel}"))  # fmt: skip
with right:
    st.markdown(f"**Which bundled clips excite channel {channel} most?**")
    index = resources.cached_sample_index()
    if not resources.samples():
        st.caption("No bundled samples were found in assets/samples.")
    elif index is None and st.button(
        f"Find them (runs the {len(resources.samples())} bundled clips through the model once)", key="build_index"
    ):
        resources.sample_index()
        st.rerun()  # draw the answer without the button
    if index is not None:
        st.caption(f"Mean activation over the map; this clip: {channel_means[channel]:.3g}.")
        for rank, (sample, value) in enumerate(index.top_clips(node, channel, 5), 1):
            st.markdown(f"{rank}. {plots.class_label(sample.label)} · `{sample.name}` · mean {value:.3g}")
            components.sample_player(sample)
