"""Process-wide resources shared by every session, and which model each session serves.

Loaded models live in a bounded process-wide cache (``ui.model_cache``: at most
``MAX_MODELS``, least recently used out first); each session's choice of checkpoint is
its own (``st.session_state``), so concurrent sessions may serve different models.
Everything cached that a model computed (sample views, the sample index, the layer
table) is keyed by that model's ``model_key``, never shared between two models.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from audiocnn.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from audiocnn.inference import Predictor
from audiocnn.model import architecture as describe_architecture
from audiocnn.samples import SampleClip, list_samples

from . import model_choice
from .layers import browsable_nodes
from .model_cache import MAX_MODELS, ModelCache, model_key
from .sample_index import SampleIndex, build_sample_index

METRICS_PATH = DEFAULT_CHECKPOINT.parent / "metrics.json"
CHOSEN = "audiocnn_checkpoint"  # session state: the path this session serves
MODEL_NOTICE = "audiocnn_model_notice"  # session state: why the last choice was refused


@st.cache_resource
def models() -> ModelCache:
    """The process's loaded models (bounded LRU, ``MAX_MODELS``)."""
    return ModelCache(MAX_MODELS)


def launch_options() -> model_choice.LaunchOptions:
    """The checkpoint, runs folder and data folder given on the command line or in the environment."""
    return model_choice.launch_options(sys.argv[1:], os.environ)


def served_path() -> Path:
    """The checkpoint this session serves: its own choice, else the launch default."""
    chosen = st.session_state.get(CHOSEN)
    return Path(chosen) if chosen else launch_options().checkpoint


def choose(path: str | os.PathLike) -> str | None:
    """Serve ``path`` in this session from now on; on failure keep the current model and return why."""
    try:
        models().get(path)
    except CheckpointError as error:
        message = f"{error} The model served before stays: {_name(served_path())}."
        st.session_state[MODEL_NOTICE] = message
        return message
    st.session_state[CHOSEN] = str(Path(path).expanduser().resolve())
    st.session_state.pop(MODEL_NOTICE, None)
    return None


def _name(path: Path) -> str:
    return "the shipped model" if path == DEFAULT_CHECKPOINT else model_choice.display_path(path)


def predictor() -> Predictor:
    """This session's model. When it cannot be loaded (a bad launch checkpoint, a file removed or
    damaged since it was chosen) the page says why and the shipped model is served instead; the
    page stops only when even that fails. A refused choice is reported (once, by the first call of
    the run, at the top of the page) here too."""
    path = served_path()
    try:
        model = models().get(path)
        if notice := st.session_state.pop(MODEL_NOTICE, None):
            st.error(notice)
        return model
    except CheckpointError as error:
        if path == DEFAULT_CHECKPOINT:
            st.error(f"The model could not be loaded. {error}")
            st.stop()
        st.session_state[MODEL_NOTICE] = f"{error} Serving the shipped model instead."
        st.session_state[CHOSEN] = str(DEFAULT_CHECKPOINT)
        return predictor()


def load(path: str | os.PathLike) -> Predictor:
    """Any checkpoint through the shared cache (``CheckpointError`` when it cannot be served)."""
    return models().get(path)


@st.cache_resource
def samples() -> list[SampleClip]:
    return list_samples()


def samples_for(label: str) -> list[SampleClip]:
    return [clip for clip in samples() if clip.label == label]


def sample_waveform(path: str, model: Predictor | None = None) -> np.ndarray:
    """A bundled clip at the rate of ``model`` (this session's by default)."""
    model = model or predictor()
    return _sample_waveform(path, model.feature_config.sample_rate, model)


@st.cache_data(max_entries=256, show_spinner=False)
def _sample_waveform(path: str, rate: int, _model: Predictor) -> np.ndarray:
    """Decoded once per rate (trusted file, decoded in-process)."""
    return _model.load(path)


def sample_view(path: str, model: Predictor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel, probabilities) of a bundled clip under ``model`` (this session's by default)."""
    model = model or predictor()
    return _sample_view(path, model_key(model), model)


@st.cache_data(max_entries=256, show_spinner=False)
def _sample_view(path: str, key: str, _model: Predictor) -> tuple[np.ndarray, np.ndarray]:
    waveform = sample_waveform(path, _model)
    return _model.logmel(waveform)[0, 0].numpy(), _model.predict(waveform).probabilities


class _IndexSlot:
    """Holder for one model's sample index: built by the first page that needs it, behind a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index: SampleIndex | None = None


class _IndexSlots:
    """One slot per model key, as many as models are cached (the oldest index is dropped first)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slots: OrderedDict[str, _IndexSlot] = OrderedDict()

    def slot(self, key: str) -> _IndexSlot:
        with self.lock:
            slot = self.slots.setdefault(key, _IndexSlot())
            self.slots.move_to_end(key)
            while len(self.slots) > MAX_MODELS:
                self.slots.popitem(last=False)
            return slot


@st.cache_resource
def _index_slots() -> _IndexSlots:
    return _IndexSlots()


def cached_sample_index() -> SampleIndex | None:
    """This session's model's sample index if it was built, without building it."""
    return _index_slots().slot(model_key(predictor())).index


def sample_index() -> SampleIndex:
    """Per-channel responses of all bundled clips under this session's model, built once per model (with progress)."""
    model = predictor()
    slot = _index_slots().slot(model_key(model))
    with slot.lock:
        if slot.index is None:
            clips = samples()
            bar = st.progress(0.0, text=f"Running the {len(clips)} bundled clips through the model (once)…")
            slot.index = build_sample_index(
                model, clips, browsable_nodes(model.model_config),
                lambda done: bar.progress(done, text=f"Sample clips analysed: {done:.0%}"),
            )  # fmt: skip
            bar.empty()
    return slot.index


def metrics() -> dict[str, Any] | None:
    """The held-out evaluation belonging to this session's checkpoint (``model_choice.find_metrics``), or
    None when no metrics file lies beside it. A file beside it that describes another checkpoint is
    returned too: ``metrics_describe`` tells the page to say so."""
    model = predictor()
    found = model_choice.find_metrics(served_path(), model.checkpoint.metadata, model.class_names, METRICS_PATH)
    return None if found is None else found[0]


def metrics_describe(metrics: dict[str, Any], model: Predictor) -> bool:
    """Whether a metrics file was computed for the loaded checkpoint (``model_choice.describes``)."""
    return model_choice.describes(metrics, model.checkpoint.metadata, model.class_names)


def architecture() -> pd.DataFrame:
    """One row per module of this session's model: the node it produces, its type, output shape and parameters."""
    model = predictor()
    return _architecture(model_key(model), model)


@st.cache_data(show_spinner=False, max_entries=MAX_MODELS)
def _architecture(key: str, _model: Predictor) -> pd.DataFrame:
    config = _model.feature_config
    return pd.DataFrame(describe_architecture(_model.model, (config.n_mels, config.num_frames)))
