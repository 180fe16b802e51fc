"""The current clip and everything computed for it, kept in plain ``st.session_state`` keys.

Widget state is dropped when a page is left; these keys are not, so the clip chosen on
Analyze is the one Layers and Compare show. Each (clip, window) is analysed once (the
forward passes of its test-time views and one backward pass give the prediction, every
activation and Grad-CAM for every stage); reruns and other pages reuse that result.
Caches are small LRUs because one analysis of the shipped model holds about 61 MB of
activations and one 10-minute upload 53 MB of samples. A browser session stays below
``SESSION_MEMORY_MB``: ``MAX_ANALYSES`` analyses (about 245 MB), clips up to ``MAX_CLIP_BYTES``
(128 MB), ``MAX_EXPLANATIONS`` Grad-CAM sets (about 13 MB); timelines, occlusions and the
bookkeeping below (chosen windows, seen file ids) are a few MB at most, and each is bounded.
Every cached result is keyed by the model that computed it (``model_key``): a session that
switches checkpoints, or compares two, never sees one model's result as the other's.
"""

from __future__ import annotations

import hashlib
import io
import wave
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from audiocnn.audio import AudioError, check_not_silent, fit_to_length
from audiocnn.inference import Analysis, Occlusion, Predictor
from audiocnn.samples import SampleClip
from audiocnn.timeline import MAX_WINDOWS, Timeline, TimelineScan
from audiocnn.untrusted import load_untrusted

from .model_cache import model_key

CLIPS = "audiocnn_clips"
CURRENT = "audiocnn_current_clip"
WINDOWS = "audiocnn_windows"
TIMELINES = "audiocnn_timelines"
STOPPED = "audiocnn_stopped_scans"
ANALYSES = "audiocnn_analyses"
EXPLANATIONS = "audiocnn_explanations"
OCCLUSIONS = "audiocnn_occlusions"
INPUT_ERROR = "audiocnn_input_error"
SEEN_INPUTS = "audiocnn_seen_inputs"

MAX_CLIPS = 8
MAX_CLIP_BYTES = 128 * 2**20
"""Samples of the remembered clips together: two 10-minute uploads and change (the newest clip always stays)."""
MAX_ANALYSES = 4  # Compare's two clips, the clip on screen and one more window
MAX_EXPLANATIONS = 24
MAX_SEEN_INPUTS = 64
"""Widget file ids remembered as already ingested: far more than the widgets hold at once."""
SESSION_MEMORY_MB = 400
"""What one browser session's caches hold at most (the module docstring sums it; a test measures it)."""
MAX_TIMELINE_WINDOWS = MAX_WINDOWS
"""Windows in a timeline at most (the library's cap, which the CLI uses too): the hop grows beyond
1 s for recordings over 154 s."""


@dataclass(frozen=True)
class Clip:
    """One recording the user brought (or picked), full length, at the model's rate."""

    id: str
    name: str
    source: str  # "sample", "upload" or "recording"
    waveform: np.ndarray
    sample_rate: int
    label: str | None = None  # the true class of a bundled sample
    note: str = ""

    @property
    def duration(self) -> float:
        return self.waveform.shape[0] / self.sample_rate


def _store(key: str) -> OrderedDict:
    if key not in st.session_state:
        st.session_state[key] = OrderedDict()
    return st.session_state[key]


def _remember(key: str, item_key: Any, value: Any, limit: int) -> None:
    """Keep ``value`` as the most recently used entry; forget the least recently used beyond ``limit``."""
    store = _store(key)
    store[item_key] = value
    store.move_to_end(item_key)
    while len(store) > limit:
        store.popitem(last=False)


def _recall(key: str, item_key: Any) -> Any:
    store = _store(key)
    if item_key in store:
        store.move_to_end(item_key)
        return store[item_key]
    return None


def clips() -> list[Clip]:
    """Clips of this session, oldest first."""
    return list(_store(CLIPS).values())


def remember_clip(clip: Clip) -> Clip:
    """Keep a clip among the session's without showing it: Compare offers it next to the current clip.

    The oldest clips are forgotten beyond ``MAX_CLIPS`` or ``MAX_CLIP_BYTES`` of samples, never the clip
    on screen or this one, and with them go their chosen windows and timelines."""
    store = _store(CLIPS)
    current = st.session_state.get(CURRENT)
    if current in store:  # the clip on screen is never the one forgotten
        store.move_to_end(current)
    _remember(CLIPS, clip.id, clip, MAX_CLIPS)
    kept = {clip.id, current}
    while sum(c.waveform.nbytes for c in store.values()) > MAX_CLIP_BYTES and len(store) > len(kept & set(store)):
        del store[next(clip_id for clip_id in store if clip_id not in kept)]
    for key in (WINDOWS, TIMELINES):  # keyed by clip id, or by (model, clip id)
        per_clip = _store(key)
        for item in [item for item in per_clip if (item[-1] if isinstance(item, tuple) else item) not in store]:
            del per_clip[item]
    return clip


def add_clip(clip: Clip) -> Clip:
    """Remember a clip (``remember_clip``) and make it the one on screen."""
    remember_clip(clip)
    st.session_state[CURRENT] = clip.id
    return clip


def current_clip() -> Clip | None:
    return _store(CLIPS).get(st.session_state.get(CURRENT))


def input_error() -> str | None:
    return st.session_state.get(INPUT_ERROR)


def clear_input_error() -> None:
    """Forget a refused input once its widget no longer holds it (removed, or the page was left)."""
    st.session_state.pop(INPUT_ERROR, None)


def _wav_rate(data: bytes) -> int | None:
    """Sample rate in a WAV header (pure-Python parser: safe on untrusted bytes), None if not a PCM WAV."""
    try:
        with wave.open(io.BytesIO(data)) as reader:
            return reader.getframerate()
    except (wave.Error, EOFError, ValueError):
        return None


def clip_from_bytes(data: bytes, name: str, source: str, model: Predictor) -> Clip:
    """Decode untrusted bytes in a worker process; raises ``AudioError`` with a readable message."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    known = _store(CLIPS).get(digest)
    if known is not None:
        return known
    waveform = load_untrusted(data, model.feature_config.sample_rate)
    check_not_silent(waveform)
    rate = _wav_rate(data) if source == "recording" else None
    note = f"recorded at {rate} Hz" if rate else ""
    return Clip(digest, name, source, waveform, model.feature_config.sample_rate, note=note)


def ingest(data: bytes, name: str, source: str, model: Predictor) -> Clip | None:
    """Make uploaded/recorded bytes the current clip, or remember why they were refused."""
    try:
        clip = clip_from_bytes(data, name, source, model)
    except AudioError as error:
        st.session_state[INPUT_ERROR] = f"{name}: {error}"
        return None
    clear_input_error()
    return add_clip(clip)


def is_new_input(file_id: str) -> bool:
    """True the first time a widget's file id is seen: later reruns must not re-ingest (or re-select) it."""
    if _recall(SEEN_INPUTS, file_id) is not None:
        return False
    _remember(SEEN_INPUTS, file_id, True, MAX_SEEN_INPUTS)
    return True


def sample_clip(sample: SampleClip, waveform: np.ndarray, sample_rate: int) -> Clip:
    return Clip(f"sample:{sample.name}", sample.name, "sample", waveform, sample_rate, label=sample.label)


def use_clip(clip: Clip) -> None:
    clear_input_error()
    add_clip(clip)


def timeline_scan(clip: Clip, model: Predictor) -> TimelineScan | None:
    """The clip's timeline scan, kept per clip so that work done survives reruns and leaving the page
    (None for a clip no longer than the model's window)."""
    if clip.duration <= model.feature_config.clip_seconds:
        return None
    key = (model_key(model), clip.id)  # each model scans for itself
    scan = _recall(TIMELINES, key)
    if scan is None:
        scan = model.timeline_scan(clip.waveform, 1.0, max_windows=MAX_TIMELINE_WINDOWS)
        _remember(TIMELINES, key, scan, MAX_CLIPS)
    return scan


def scan_stopped(clip: Clip) -> bool:
    """Whether the user stopped this clip's scan (it stays stopped until resumed)."""
    return clip.id in st.session_state.get(STOPPED, set())


def stop_scan(clip: Clip) -> None:
    st.session_state.setdefault(STOPPED, set()).add(clip.id)


def resume_scan(clip: Clip) -> None:
    st.session_state.setdefault(STOPPED, set()).discard(clip.id)


def timeline(clip: Clip, model: Predictor) -> Timeline | None:
    """Sliding-window probabilities of a clip longer than the model's window (None otherwise).

    An unfinished scan is completed here (pages without a progress bar need every window), unless
    the user stopped it: then the windows scored so far are the timeline, and None if there are none.
    """
    scan = timeline_scan(clip, model)
    if scan is None:
        return None
    if not scan.finished and not scan_stopped(clip):
        scan.run()
    return scan.result() if scan.done else None


def default_window(result: Timeline) -> int:
    """The window in which the recording's overall top class is most confident."""
    return int(np.argmax(result.probabilities[:, result.mean.top_index]))


def window_index(clip: Clip, model: Predictor) -> int:
    """The window the pages explain: the user's choice, the one truth every page (and the picker) reads."""
    result = timeline(clip, model)
    if result is None:
        return 0
    windows = _store(WINDOWS)  # a forgotten clip's choice goes with it (remember_clip)
    if clip.id not in windows:
        windows[clip.id] = default_window(result)
    return min(windows[clip.id], len(result.starts) - 1)


def set_window_index(clip: Clip, index: int) -> None:
    _store(WINDOWS)[clip.id] = int(index)


def window_span(clip: Clip, model: Predictor, index: int) -> tuple[float, float]:
    """Start and end (seconds) of a window within the clip (planned windows count: a stopped scan's too)."""
    scan = timeline_scan(clip, model)
    seconds = model.feature_config.clip_seconds
    if scan is None:
        return 0.0, min(seconds, clip.duration)
    start = float(scan.starts[index])
    return start, start + seconds


def window_waveform(clip: Clip, model: Predictor, index: int) -> np.ndarray:
    """The samples the model sees for a window (the whole clip, padded, when it is short)."""
    start, _ = window_span(clip, model, index)
    first, length = round(start * clip.sample_rate), model.feature_config.clip_samples
    return fit_to_length(clip.waveform[first : first + length], length)


def analysis(clip: Clip, model: Predictor, index: int | None = None) -> Analysis:
    """Prediction, activations and Grad-CAM of one window, computed once per session."""
    index = window_index(clip, model) if index is None else index
    key = (model_key(model), clip.id, index)
    cached = _recall(ANALYSES, key)
    if cached is None:
        cached = model.analyze(window_waveform(clip, model, index))
        _remember(ANALYSES, key, cached, MAX_ANALYSES)
    return cached


def explanation(clip: Clip, model: Predictor, index: int, class_index: int) -> dict[str, np.ndarray]:
    """Grad-CAM maps (every stage) of a window for any class; the predicted class comes free with the analysis."""
    result = analysis(clip, model, index)
    if class_index == result.cam_class:
        return result.cams
    key = (model_key(model), clip.id, index, class_index)
    cached = _recall(EXPLANATIONS, key)
    if cached is None:
        cached = model.explain(result.waveform, class_index)
        _remember(EXPLANATIONS, key, cached, MAX_EXPLANATIONS)
    return cached


def occlusion(clip: Clip, model: Predictor, index: int, class_index: int) -> Occlusion:
    """The window's time occlusion for a class (22 forward passes), computed once per session."""
    key = (model_key(model), clip.id, index, class_index)
    cached = _recall(OCCLUSIONS, key)
    if cached is None:
        cached = model.occlusion(analysis(clip, model, index).waveform, class_index)
        _remember(OCCLUSIONS, key, cached, MAX_EXPLANATIONS)
    return cached


def cached(store: str, model: Predictor, item_key: Any, limit: int, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per session, model and ``item_key``, in the LRU ``store`` of at most ``limit`` items
    (keyed by ``model_key`` like everything here, so two models never share a result)."""
    key = (model_key(model), item_key)
    value = _recall(store, key)
    if value is None:
        value = compute()
        _remember(store, key, value, limit)
    return value


def latest_analysis(clip: Clip, model: Predictor) -> Analysis | None:
    """The most recently used analysis of a clip by ``model``, without computing one."""
    wanted = (model_key(model), clip.id)
    found = [result for (model_id, clip_id, _), result in _store(ANALYSES).items() if (model_id, clip_id) == wanted]
    return found[-1] if found else None
