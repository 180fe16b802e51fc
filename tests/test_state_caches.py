"""The per-session caches of ``ui.state``: least recently used entries go first, and every cache is bounded."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st

from audiocnn.checkpoint import load_checkpoint
from audiocnn.inference import Predictor
from ui import state

RATE = 22050


@pytest.fixture
def session(monkeypatch) -> dict:
    """A plain dict standing in for ``st.session_state`` (the module only reads and writes its keys)."""
    fake: dict = {}
    monkeypatch.setattr(st, "session_state", fake)
    return fake


def clip(name: str, seconds: float) -> state.Clip:
    return state.Clip(name, name, "upload", np.zeros(int(seconds * RATE), np.float32), RATE)


def test_the_least_recently_used_entry_is_evicted(session) -> None:
    for key in ("a", "b", "c"):
        state._remember("cache", key, key.upper(), limit=3)
    assert state._recall("cache", "a") == "A"  # used: now the most recent
    state._remember("cache", "d", "D", limit=3)
    assert list(session["cache"]) == ["c", "a", "d"]  # b, the least recently used, went
    state._remember("cache", "e", "E", limit=3)
    assert list(session["cache"]) == ["a", "d", "e"]
    assert state._recall("cache", "b") is None


def test_clips_are_bounded_by_count_and_by_bytes(session) -> None:
    for i in range(state.MAX_CLIPS + 2):
        state.add_clip(clip(f"short{i}", 5.0))
    assert [c.id for c in state.clips()] == [f"short{i}" for i in range(2, state.MAX_CLIPS + 2)]
    for i in range(8):  # eight 10-minute uploads used to be kept: 423 MB of samples
        state.set_window_index(state.add_clip(clip(f"long{i}", 600.0)), 3)
    kept = state.clips()
    assert sum(c.waveform.nbytes for c in kept) <= state.MAX_CLIP_BYTES
    assert [c.id for c in kept] == ["long6", "long7"] and state.current_clip().id == "long7"
    assert set(session[state.WINDOWS]) == {"long6", "long7"}  # a forgotten clip's chosen window goes with it
    session[state.TIMELINES] = {("model", "long6"): "scan", ("model", "long7"): "scan"}
    state.add_clip(clip("long8", 600.0))
    assert set(session[state.TIMELINES]) == {("model", "long7")}  # and its timeline scans, for every model


def test_the_clip_on_screen_and_the_newest_stay_whatever_their_size(session, monkeypatch) -> None:
    monkeypatch.setattr(state, "MAX_CLIP_BYTES", 1000)
    for name in ("a", "b", "c"):
        state.add_clip(clip(name, 1.0))
    assert [c.id for c in state.clips()] == ["b", "c"] and state.current_clip().id == "c"
    state.remember_clip(clip("d", 1.0))  # Compare's second clip, not shown
    assert [c.id for c in state.clips()] == ["c", "d"] and state.current_clip().id == "c"


def test_seen_inputs_are_bounded(session) -> None:
    assert state.is_new_input("first") and not state.is_new_input("first")
    for i in range(3 * state.MAX_SEEN_INPUTS):
        assert state.is_new_input(f"file{i}")
    assert len(session[state.SEEN_INPUTS]) == state.MAX_SEEN_INPUTS
    assert not state.is_new_input(f"file{3 * state.MAX_SEEN_INPUTS - 1}")  # the recent ones are still known
    assert state.is_new_input("first")  # long gone from every widget


def test_a_full_session_stays_within_its_stated_memory(shipped_checkpoint) -> None:
    """The docstring's bound, measured on the shipped model: full analysis and explanation caches, and
    clips up to their byte budget."""
    model = Predictor(load_checkpoint(shipped_checkpoint))
    window = (0.1 * np.random.default_rng(0).standard_normal(model.feature_config.clip_samples)).astype(np.float32)
    analysis = model.analyze(window)
    explanation_bytes = sum(c.nbytes for c in analysis.cams.values())
    activation_bytes = sum(a.nbytes for a in analysis.activations.values())
    analysis_bytes = activation_bytes + explanation_bytes + analysis.logmel.nbytes + analysis.waveform.nbytes
    total = state.MAX_ANALYSES * analysis_bytes + state.MAX_CLIP_BYTES + state.MAX_EXPLANATIONS * explanation_bytes
    assert total <= state.SESSION_MEMORY_MB * 2**20, total / 2**20
    assert total >= 0.8 * state.SESSION_MEMORY_MB * 2**20, "the stated bound should be close, not vague"
