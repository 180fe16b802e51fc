"""Analyze (landing page): bring a sound, hear and see it, read the ranked predictions and why."""

import streamlit as st

from audiocnn.audio import MAX_DURATION_SECONDS, MAX_FILE_BYTES, is_silent
from audiocnn.explain import CAM_LAYERS, DEFAULT_CAM_LAYER, OCCLUSION_SECONDS
from ui import components, plots, resources, state, timeline_view
from ui import robustness as robustness_view
from ui.axes import cell_milliseconds, input_axes, node_strides

# Microphone rate: st.audio_input's 16 kHz default would cut the band the model hears (up to 11 kHz).
# The decoder always reads the real rate from the WAV header, whatever the browser delivers.
RECORDING_RATE = 44100
# Recordings up to this long also get a player for the whole file (longer ones only the window).
FULL_PLAYBACK_SECONDS = 120

model = resources.predictor()
config = model.feature_config

st.title("🎧 What does the CNN hear?")
st.caption(
    f"An audio CNN trained on ESC-50 (50 environmental sound classes) listens to {config.clip_seconds:g}-second "
    f"windows at {config.sample_rate} Hz. Bring a sound, then see what it predicts and why."
)


def _take_inputs() -> None:
    upload_tab, record_tab, sample_tab = st.tabs(["📄 Upload a file", "🎙️ Record", "📦 Bundled samples"])
    with upload_tab:
        uploaded = st.file_uploader(
            f"WAV, FLAC, OGG or MP3 · up to {MAX_FILE_BYTES // 2**20} MB and {MAX_DURATION_SECONDS / 60:.0f} minutes",
            type=["wav", "flac", "ogg", "mp3"],
            max_upload_size=MAX_FILE_BYTES // 2**20,
            key="upload",
        )
        if uploaded is not None and state.is_new_input(uploaded.file_id):
            with st.spinner(f"Decoding {uploaded.name}…"):
                state.ingest(uploaded.getvalue(), uploaded.name, "upload", model)
    with record_tab:
        recording = st.audio_input("Record from the microphone", sample_rate=RECORDING_RATE, key="record")
        if recording is not None and state.is_new_input(recording.file_id):
            with st.spinner("Decoding the recording…"):
                state.ingest(recording.getvalue(), "microphone recording", "recording", model)
    if uploaded is None and recording is None:  # a refused file was removed: its message goes with it
        state.clear_input_error()
    with sample_tab:
        by_label = {clip.label: None for clip in resources.samples()}
        if not by_label:
            st.warning("No bundled samples were found in assets/samples.")
            return
        left, right, button = st.columns([3, 3, 2], vertical_alignment="bottom")
        label = left.selectbox("Class", list(by_label), format_func=plots.class_label, key="sample_class")
        options = resources.samples_for(label)
        sample = right.selectbox("Clip", options, format_func=lambda clip: clip.name, key="sample_clip")
        if button.button("Analyze this sample", key="sample_go", type="primary") and sample is not None:
            waveform = resources.sample_waveform(str(sample.path))
            state.use_clip(state.sample_clip(sample, waveform, config.sample_rate))


def _show_clip(clip: state.Clip) -> None:
    st.subheader(components.clip_title(clip))
    st.caption(components.clip_caption(clip))
    index = timeline_view.choose_window(clip, model)
    start, end = state.window_span(clip, model, index)
    with st.spinner("Analysing…"):
        result = state.analysis(clip, model, index)
    prediction = result.prediction
    if is_silent(result.waveform):  # the clip has sound (checked on upload), but not in this window
        st.warning(
            "This window is silent (no sound above -80 dBFS): the prediction below means nothing. "
            "Pick another window on the timeline above."
        )

    sound, ranking = st.columns([3, 2], gap="large")
    with sound:
        span = timeline_view.span_label(start, end)
        st.markdown(f"**Listen** ({span}, as the model hears it at {config.sample_rate} Hz)")
        components.player(result.waveform, config.sample_rate)
        if note := timeline_view.padding_note(clip, config):
            st.caption(note)
        if clip.duration > config.clip_seconds and clip.duration <= FULL_PLAYBACK_SECONDS:
            st.caption("The whole recording:")
            components.player(clip.waveform, clip.sample_rate)
        highlight = (start, end) if clip.duration > config.clip_seconds else None  # a window within a longer clip
        components.chart(plots.waveform_figure(clip.waveform, clip.sample_rate, highlight))
        st.markdown("**Log-mel spectrogram** — exactly the input the model sees")
        components.chart(plots.spectrogram_figure(result.logmel, input_axes(config)))
    with ranking:
        st.markdown("### Top 5 predictions")
        top = prediction.ranked(1)[0]
        line = f"The model hears **{plots.class_label(top[0])}** ({top[1]:.1%})."
        if clip.label:
            line += f" The true class is {plots.class_label(clip.label)}: {components.verdict(prediction, clip.label)}."
        st.markdown(line)
        components.top_predictions(prediction, 5)
        components.full_ranking(prediction)

    _show_why(clip, index, result)


def _show_why(clip: state.Clip, index: int, result) -> None:
    st.markdown("### Why — Grad-CAM")
    prediction = result.prediction
    names = prediction.class_names
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    class_index = left.selectbox(
        "Explain the class",
        [int(i) for i in prediction.order],
        format_func=lambda i: f"{plots.class_label(names[i])} — {prediction.probabilities[i]:.1%}",
        key=f"cam_class_{clip.id}_{index}",
    )
    strides = node_strides(model.model)
    layers = [name for name in CAM_LAYERS if name in strides]  # a shallower model has fewer stages
    default = layers.index(DEFAULT_CAM_LAYER) if DEFAULT_CAM_LAYER in layers else len(layers) - 1
    layer = right.radio("Layer", layers, index=default, horizontal=True, key="cam_layer")
    with st.spinner("Explaining…"):
        cams = state.explanation(clip, model, index, class_index)
    stride = strides[layer]
    cell_ms = cell_milliseconds(config, stride)
    components.chart(plots.spectrogram_figure(result.logmel, input_axes(config), cams[layer]))
    st.caption(
        f"Where the {layer} features that raise the score of {plots.class_label(names[class_index])} sit in time "
        f"and frequency. Each {layer} cell covers {stride[0]} mel bands × {cell_ms:.0f} ms, so deeper layers "
        "give coarser maps. Grad-CAM has no absolute unit: each map is scaled to its own peak; an all-clear map "
        "means nothing in that layer speaks for the class."
    )
    _show_occlusion(clip, index, class_index)
    robustness_view.show_panel(clip, model, index, class_index)


def _show_occlusion(clip: state.Clip, index: int, class_index: int) -> None:
    """A second opinion that asks the model itself rather than its gradients (on demand: ~0.3 s)."""
    label = plots.class_label(model.class_names[class_index])
    if not st.toggle(f"Check by occlusion: silence each {OCCLUSION_SECONDS:g} s in turn", key="occlusion"):
        return
    with st.spinner("Silencing each stretch in turn…"):
        result = state.occlusion(clip, model, index, class_index)
    components.chart(plots.occlusion_figure(result, config.clip_seconds))
    st.caption(
        f"The model gives {label} {result.base:.1%}. Each bar is what that falls by when the stretch is set "
        "to the clip's floor (silence), as training's time masks do. Tall bars are stretches the prediction "
        "needs; low bars everywhere mean the evidence repeats or is spread out (several barks, a steady hum); "
        "a blue bar is a stretch that spoke against the class."
    )


_take_inputs()
if message := state.input_error():
    st.error(message)
current = state.current_clip()
if current is None:
    st.info("Upload a file, record a sound or pick a bundled sample to start.")
else:
    _show_clip(current)
