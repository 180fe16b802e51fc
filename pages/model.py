"""Model: architecture, training curves and the held-out evaluation shipped in assets/."""

import numpy as np
import pandas as pd
import streamlit as st

from audiocnn.labels import MAJOR_CATEGORIES, class_info
from audiocnn.model import POOLINGS, count_parameters
from ui import components, explain_table, plots, resources
from ui import robustness as robustness_view

model = resources.predictor()
metadata = model.checkpoint.metadata
st.title("🧠 Model")

st.markdown("### Architecture")
table = resources.architecture()
config = model.feature_config
columns = st.columns(4)
columns[0].metric("Parameters", f"{count_parameters(model.model):,}")
columns[1].metric("Input (mels × frames)", f"{config.n_mels} × {config.num_frames}")
columns[2].metric("Window", f"{config.clip_seconds:g} s at {config.sample_rate} Hz")
columns[3].metric("Classes", len(model.class_names))
stem = "a 7×7 stem with max-pool" if model.model_config.stem_pool else "a 7×7 stem without max-pool"
st.caption(
    f"ResNet-style CNN over log-mel spectrograms (n_fft {config.n_fft}, hop {config.hop_length}, "
    f"{config.f_min:g}–{config.f_max:g} Hz, dB floor {config.top_db:g} dB below the clip's peak): input batch-norm, "
    f"{stem}, {len(model.model_config.widths)} stages of residual blocks, "
    f"{POOLINGS[model.model_config.pooling]} and a linear head."
)
st.caption(
    "Runs here in bf16, which this CPU computes natively: about half the time of fp32 (on the shipped model "
    "it changes the top class of 1 of the 2000 ESC-50 clips, and no probability by more than 0.9 points)."
    if model.bf16
    else "Runs here in fp32 (this CPU has no native bf16)."
)
with st.expander("Every layer: output shape and parameters", expanded=False):
    st.dataframe(table, hide_index=True, width="stretch")

st.markdown("### Training")
history = metadata.get("history") or []
facts = {
    "epochs trained": metadata.get("epochs_trained"),
    "selected epoch": metadata.get("selected_epoch"), "train folds": metadata.get("train_folds"),
    "test folds": metadata.get("test_folds"), "device": metadata.get("devices") or metadata.get("device"),
}  # fmt: skip
st.caption(" · ".join(f"{key}: {value}" for key, value in facts.items() if value not in (None, "", [])))
if start := metadata.get("initialised_from"):  # a fine-tuned model: its curves are the fine-tuning's only
    st.caption(
        f"Fine-tuned from a model trained {start.get('epochs_trained', '?')} epochs on folds "
        f"{start.get('train_folds', '?')}; the curves below are the fine-tuning's."
    )
if isinstance(metadata.get("recipe"), dict):
    with st.expander("Training recipe"):
        st.json(metadata["recipe"], expanded=False)
if history:
    components.chart(plots.training_curves_figure(history))
else:
    st.info("This checkpoint carries no training history.")

def _held_out_evaluation() -> None:
    """The shipped evaluation; without it the page says how to make one (and still ends normally)."""
    st.markdown("### Held-out evaluation")
    metrics = resources.metrics()
    if metrics is None:
        st.info(
            "No evaluation metrics are shipped yet (assets/metrics.json is missing). Create them with "
            "`python -m training.evaluate --data-dir <ESC-50 folder> --folds 5 --output assets/metrics.json`."
        )
        return
    if not resources.metrics_describe(metrics, model):
        st.warning(
            "assets/metrics.json was computed for another checkpoint than the one loaded (its training "
            "facts or class names differ): the figures below describe that model. Re-evaluate this one with "
            "`python -m training.evaluate --data-dir <ESC-50 folder> --folds 5 --output assets/metrics.json`."
        )
    _headline(metrics)
    names = metrics["class_names"]
    confusion = np.asarray(metrics["confusion"], dtype=np.int64)
    _confusion_matrix(names, confusion)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Per-class accuracy**, worst first")
        per_class = {name: value for name, value in metrics["per_class"].items() if value is not None}
        components.chart(plots.per_class_figure(per_class))
    with right:
        _most_confused(names, confusion)


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


def _confusion_matrix(names: list[str], confusion: np.ndarray) -> None:
    st.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
    left, right = st.columns([2, 1])
    category = left.selectbox("Classes", ["All 50 classes", *MAJOR_CATEGORIES], key="confusion_category")
    normalise = right.toggle("Share of each true class", value=True, key="confusion_normalise")
    keep = [i for i, name in enumerate(names) if category.startswith("All") or class_info(name).category == category]
    height = 800 if len(keep) > 10 else 450
    totals = confusion.sum(axis=1)[keep]  # every clip of the class, also those predicted outside the category
    subset = confusion[np.ix_(keep, keep)]
    components.chart(plots.confusion_figure(subset, [names[i] for i in keep], normalise, height, totals))


def _most_confused(names: list[str], confusion: np.ndarray) -> None:
    st.markdown("**Most-confused pairs**")
    totals = confusion.sum(axis=1)
    pairs = [
        {"true": plots.class_label(names[i]), "predicted as": plots.class_label(names[j]),
         "clips": int(confusion[i, j]), "share of true class": confusion[i, j] / totals[i] if totals[i] else 0.0}
        for i, j in zip(*np.nonzero(confusion)) if i != j
    ]  # fmt: skip
    pairs.sort(key=lambda row: -row["clips"])
    if pairs:
        st.dataframe(
            pd.DataFrame(pairs[:20]), hide_index=True, width="stretch",
            column_config={"share of true class": st.column_config.NumberColumn(format="percent")},
        )  # fmt: skip
    else:
        st.success("No confusions: every clip was classified correctly.")


_held_out_evaluation()
robustness_view.show_table((resources.metrics() or {}).get("robustness"))

# ---- Explanation faithfulness (issue 14): the table training.explain_eval stores -------------------------
explain_table.show(resources.metrics())
