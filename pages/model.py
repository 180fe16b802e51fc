"""Model: the served checkpoint's architecture, training curves and held-out evaluation."""

import streamlit as st

from audiocnn.features import LEVEL_INVARIANT_VERSION
from audiocnn.model import POOLINGS, count_parameters
from ui import components, confusions, explain_table, history, model_page, resources
from ui import robustness as robustness_view

model = resources.predictor()
metadata = model.checkpoint.metadata
st.title("🧠 Model")
model_page.checkpoint_caption()  # issue 19: which checkpoint this page describes

st.markdown("### Architecture")
table = resources.architecture()
config = model.feature_config
columns = st.columns(4)
columns[0].metric("Parameters", f"{count_parameters(model.model):,}")
columns[1].metric("Input (mels × frames)", f"{config.n_mels} × {config.num_frames}")
columns[2].metric("Window", f"{config.clip_seconds:g} s at {config.sample_rate} Hz")
columns[3].metric("Classes", len(model.class_names))
stem = "a 7×7 stem with max-pool" if model.model_config.stem_pool else "a 7×7 stem without max-pool"
if config.version == LEVEL_INVARIANT_VERSION:
    scale = f"dB referenced to the clip's loudest bin, floored {config.top_db:g} dB below it: level-invariant"
else:
    scale = f"dB floor {config.top_db:g} dB below the clip's peak"
st.caption(
    f"ResNet-style CNN over log-mel spectrograms (n_fft {config.n_fft}, hop {config.hop_length}, "
    f"{config.f_min:g}–{config.f_max:g} Hz, {scale}; feature version {config.version}): input batch-norm, "
    f"{stem}, {len(model.model_config.widths)} stages of residual blocks, "
    f"{POOLINGS[model.model_config.pooling]} and a linear head."
)
st.caption(
    "Runs here in bf16, which this CPU computes natively: about half the time of fp32 (on the shipped model "
    "it changes the top class of none of the 2000 ESC-50 clips, and no probability by more than 0.72 points)."
    if model.bf16
    else "Runs here in fp32 (this CPU has no native bf16)."
)
with st.expander("Every layer: output shape and parameters", expanded=False):
    st.dataframe(table, hide_index=True, width="stretch")

st.markdown("### Training")
facts = {
    "epochs trained": metadata.get("epochs_trained"),
    "selected epoch": metadata.get("selected_epoch"), "train folds": metadata.get("train_folds"),
    "test folds": metadata.get("test_folds"), "device": metadata.get("devices") or metadata.get("device"),
}  # fmt: skip
st.caption(" · ".join(f"{key}: {value}" for key, value in facts.items() if value not in (None, "", [])))
if isinstance(metadata.get("recipe"), dict):
    with st.expander("Training recipe"):
        st.json(metadata["recipe"], expanded=False)
history.show(metadata)  # every stage of the model's training, fine-tuning included (issue 16)


def _held_out_evaluation() -> None:
    """The shipped evaluation; without it the page says how to make one (and still ends normally)."""
    st.markdown("### Held-out evaluation")
    metrics = resources.metrics()
    if metrics is None:  # issue 19: the served checkpoint's own metrics, or an offer to compute them
        model_page.no_metrics(model)
        return
    if not resources.metrics_describe(metrics, model):
        model_page.other_metrics(model)
    _headline(metrics)
    confusions.section(metrics, model)  # matrix, cells you can hear, per-class accuracy, most-confused pairs


def _headline(metrics: dict) -> None:
    columns = st.columns(3)
    columns[0].metric("Accuracy", f"{metrics['accuracy']:.1%}")
    columns[1].metric("Clips", f"{metrics['num_clips']:,}")
    columns[2].metric("Folds", ", ".join(map(str, metrics["folds"])))
    cross_validation = components.cv_summary(metrics.get("cv"))
    if cross_validation:
        st.caption(cross_validation)
    views = metrics.get("views", 1)
    scoring = f"probabilities averaged over {views} time-rolled views per clip" if views > 1 else "one view per clip"
    match = "as this app predicts" if views == model.views else f"this app averages {model.views}"
    st.caption(f"Checkpoint evaluated: `{metrics.get('checkpoint', '?')}`; {scoring}, {match}.")


_held_out_evaluation()
robustness_view.show_table((resources.metrics() or {}).get("robustness"))

# ---- Explanation faithfulness (issue 14): the table training.explain_eval stores -------------------------
explain_table.show(resources.metrics())
