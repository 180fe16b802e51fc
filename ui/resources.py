"""Process-wide resources, loaded once and shared by every session (``st.cache_resource``/``st.cache_data``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from audiocnn.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from audiocnn.inference import Predictor
from audiocnn.model import architecture as describe_architecture
from audiocnn.samples import SampleClip, list_samples

from .layers import browsable_nodes
from .sample_index import SampleIndex, build_sample_index

METRICS_PATH = DEFAULT_CHECKPOINT.parent / "metrics.json"


@st.cache_resource(show_spinner="Loading the model…")
def _load_predictor() -> Predictor:
    return Predictor.from_checkpoint()


def predictor() -> Predictor:
    """The shipped model; stops the page with a readable message when it cannot be loaded."""
    try:
        return _load_predictor()
    except CheckpointError as error:
        st.error(f"The model could not be loaded. {error}")
        st.stop()


@st.cache_resource
def samples() -> list[SampleClip]:
    return list_samples()


def samples_for(label: str) -> list[SampleClip]:
    return [clip for clip in samples() if clip.label == label]


@st.cache_data(max_entries=256, show_spinner=False)
def sample_waveform(path: str) -> np.ndarray:
    """A bundled clip at the model's rate (trusted file, decoded in-process)."""
    return _load_predictor().load(path)


@st.cache_data(max_entries=256, show_spinner=False)
def sample_view(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel, probabilities) of a bundled clip, for side-by-side views."""
    model = _load_predictor()
    waveform = sample_waveform(path)
    return model.logmel(waveform)[0, 0].numpy(), model.predict(waveform).probabilities


class _IndexSlot:
    """Holder for the sample index: built by the first page that needs it, behind a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index: SampleIndex | None = None


@st.cache_resource
def _index_slot() -> _IndexSlot:
    return _IndexSlot()


def cached_sample_index() -> SampleIndex | None:
    return _index_slot().index


def sample_index() -> SampleIndex:
    """Per-channel responses of all bundled clips, built once per process with a progress bar."""
    slot = _index_slot()
    with slot.lock:
        if slot.index is None:
            clips = samples()
            bar = st.progress(0.0, text=f"Running the {len(clips)} bundled clips through the model (once)…")
            model = _load_predictor()
            slot.index = build_sample_index(
                model, clips, browsable_nodes(model.model_config),
                lambda done: bar.progress(done, text=f"Sample clips analysed: {done:.0%}"),
            )  # fmt: skip
            bar.empty()
    return slot.index


@st.cache_data(show_spinner=False)
def _read_metrics(path: str, mtime: float) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def metrics() -> dict[str, Any] | None:
    """The shipped held-out evaluation (``assets/metrics.json``), or None when it is absent."""
    if not METRICS_PATH.is_file():
        return None
    return _read_metrics(str(METRICS_PATH), METRICS_PATH.stat().st_mtime)


def metrics_describe(metrics: dict[str, Any], model: Predictor) -> bool:
    """Whether a metrics file was computed for the loaded checkpoint: the training facts it copied
    from its checkpoint (seed, folds, training time, code version...) and the class names must be
    this checkpoint's. A retrained ``assets/model.pt`` next to old metrics fails this."""
    metadata = model.checkpoint.metadata
    training = metrics.get("training") or {}
    same_run = all(metadata.get(key) == value for key, value in training.items())
    return same_run and list(metrics.get("class_names", [])) == list(model.class_names)


@st.cache_resource(show_spinner=False)
def architecture() -> pd.DataFrame:
    """The shipped model's architecture table (``audiocnn.model.architecture``), computed once."""
    model = _load_predictor()
    config = model.feature_config
    return pd.DataFrame(describe_architecture(model.model, (config.n_mels, config.num_frames)))
