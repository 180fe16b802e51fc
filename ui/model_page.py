"""The Model page's part that follows the served checkpoint: which file it is, and its held-out
evaluation (found beside it, or computed here from a local ESC-50 copy, with progress, and
stored beside it as ``<checkpoint>.metrics.json``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import streamlit as st

from audiocnn.checkpoint import DEFAULT_CHECKPOINT
from audiocnn.esc50 import DatasetError
from audiocnn.evaluation import EvaluationError, evaluate_folds, held_out_folds
from audiocnn.inference import Predictor

from . import model_choice, model_picker, resources

EVALUATE = "model_evaluate"


def checkpoint_caption() -> None:
    """The served checkpoint, as the sidebar labels it."""
    path = resources.served_path()
    st.caption(f"Checkpoint `{model_choice.display_path(path)}` · {model_picker.summary(path).label()}")


def _command(path: Path, folds: list[int]) -> str:
    output = model_choice.display_path(model_choice.metrics_path(path))
    return (f"`python -m training.evaluate --checkpoint {model_choice.display_path(path)} --data-dir <ESC-50 folder> "
            f"--folds {' '.join(map(str, folds))} --output {output}`")  # fmt: skip


def _write_atomically(text: str, path: Path) -> None:
    """A temp file in the same folder, then a rename: a reader never sees half a metrics file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f"{path.name}-", suffix=".tmp", delete=False,
                                     encoding="utf-8") as handle:  # fmt: skip
        handle.write(text)
    try:
        os.replace(handle.name, path)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def no_metrics(model: Predictor) -> None:
    """Says that no metrics belong to this checkpoint, and offers to compute them."""
    path = resources.served_path()
    if path == DEFAULT_CHECKPOINT:
        st.info(f"No evaluation metrics are shipped yet ({model_choice.display_path(model_choice.SHIPPED_METRICS)} is "
                "missing).")  # fmt: skip
    else:
        st.info(f"No metrics file belongs to this checkpoint (none beside it: "
                f"{model_choice.display_path(model_choice.metrics_path(path))}).")  # fmt: skip
    offer_evaluation(model)


def other_metrics(model: Predictor) -> None:
    """Warns that the metrics found beside the checkpoint describe another one, and offers to compute its own."""
    st.warning(
        "The metrics file beside this checkpoint was computed for another checkpoint than the one loaded (its "
        "training facts or class names differ): the figures below describe that model."
    )
    offer_evaluation(model)


def offer_evaluation(model: Predictor) -> None:
    """A button that scores the checkpoint on its held-out folds of the configured ESC-50 copy."""
    path = resources.served_path()
    folds = held_out_folds(model.checkpoint.metadata)
    data_dir = resources.launch_options().data_dir
    if not folds:
        st.caption("This checkpoint saw every ESC-50 fold in training: it has no held-out fold to be scored on.")
        return
    if data_dir is None:
        st.caption(f"Compute it with {_command(path, folds)}, or start the app with `--data-dir <ESC-50 folder>` "
                   f"(or ${model_choice.DATA_ENV}) to compute it here.")  # fmt: skip
        return
    target = model_choice.metrics_path(path)
    label = f"Compute the held-out evaluation (fold {', '.join(map(str, folds))} of {data_dir})"
    if not st.button(label, key=EVALUATE, type="primary"):
        st.caption(f"The result is stored beside the checkpoint as `{model_choice.display_path(target)}`.")
        return
    bar = st.progress(0.0, text="Scoring the held-out clips…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Scored {done} of {total} held-out clips")

    try:
        document = evaluate_folds(model, data_dir, folds, model_choice.display_path(path), progress=progress)
        _write_atomically(json.dumps(document, ensure_ascii=False) + "\n", target)
    except (DatasetError, EvaluationError, OSError) as error:
        bar.empty()
        st.error(f"The evaluation could not be computed: {error}")
        return
    bar.empty()
    st.rerun()
