"""The Analyze page's timeline: a scan with progress and a Stop button, the window picker, the chart.

A 10-minute recording is 150 windows, several seconds of work, and ``.streamlit/config.toml``
hides Streamlit's own Running/Stop indicator, so the scan shows windows done / total and can be
stopped. The scan lives in the session (``state.timeline_scan``): a Stop click or leaving the page
interrupts the script between two batches, and the next visit resumes where it stopped.
"""

from __future__ import annotations

import streamlit as st

from audiocnn.features import FeatureConfig
from audiocnn.inference import Predictor
from audiocnn.timeline import Timeline

from . import components, plots, state

MIN_CHART_WINDOWS = 3
"""Fewer windows than this get a picker but no chart: two dots say nothing a label does not."""


def scan(clip: state.Clip, model: Predictor) -> Timeline | None:
    """The clip's timeline, scanning what is left with a progress bar (None: no timeline, or none yet)."""
    progress = state.timeline_scan(clip, model)
    if progress is None:
        return None
    if not progress.finished:
        if state.scan_stopped(clip):
            st.info(f"Scan stopped after {progress.done} of {progress.total} windows.")
            if st.button("Resume the scan", key=f"resume_{clip.id}"):
                state.resume_scan(clip)
                st.rerun()
        else:
            slot = st.empty()
            with slot.container():
                if st.button("⏹ Stop the scan", key=f"stop_{clip.id}"):
                    state.stop_scan(clip)
                    st.rerun()
                bar = st.progress(progress.done / progress.total, text=_progress_text(progress.done, progress.total))
                while not progress.finished:  # a click or leaving the page stops the run between batches
                    done = progress.step()
                    bar.progress(done / progress.total, text=_progress_text(done, progress.total))
            slot.empty()
    return state.timeline(clip, model)


def _progress_text(done: int, total: int) -> str:
    return f"Scanning the recording: {done} / {total} windows"


def choose_window(clip: state.Clip, model: Predictor) -> int:
    """For a long clip: the timeline and a window picker; returns the window the rest of the page shows."""
    timeline = scan(clip, model)
    if timeline is None:
        return 0
    count = len(timeline.starts)
    if count == 1:
        start = float(timeline.starts[0])
        st.caption(
            f"The recording is {clip.duration:.2f} s, less than half a second over the model's "
            f"{timeline.window_seconds:g} s window: the page explains its centre {timeline.window_seconds:g} s "
            f"({start:.2f}–{start + timeline.window_seconds:.2f} s)."
        )
        return 0
    index = state.window_index(clip, model)
    key = f"window_{clip.id}"
    st.session_state[key] = index  # the widget shows the stored choice; the choice lives in state only
    spans = [f"{start:.1f}–{start + timeline.window_seconds:.1f} s" for start in timeline.starts]
    chart = st.container()
    st.select_slider(
        "Window the rest of the page explains", options=list(range(count)), format_func=spans.__getitem__, key=key,
        on_change=lambda: state.set_window_index(clip, st.session_state[key]),
    )  # fmt: skip
    mean = timeline.mean
    scanned = "" if count == state.timeline_scan(clip, model).total else " scanned so far"
    st.caption(
        f"{count} overlapping {timeline.window_seconds:g}-second windows{scanned}. Over the whole recording the "
        f"most likely class is {plots.class_label(mean.top_label)} ({mean.probabilities[mean.top_index]:.0%} on "
        "average)."
    )
    if count >= MIN_CHART_WINDOWS:
        top = [int(i) for i in mean.order[:5]]
        with chart:
            components.chart(plots.timeline_figure(timeline.starts, timeline.window_seconds, timeline.probabilities,
                                                   timeline.class_names, top, index, clip.duration))  # fmt: skip
    return index


def span_label(start: float, end: float) -> str:
    """``start–end s`` with one decimal, or two where one would misstate the span by more than 5 ms (a
    window starting at 0.15 s is not "0.1–5.2 s"; one at 179.698 s is "179.7")."""
    digits = 1 if all(abs(t * 10 - round(t * 10)) < 0.05 for t in (start, end)) else 2
    return f"{start:.{digits}f}–{end:.{digits}f} s"


def padding_note(clip: state.Clip, config: FeatureConfig) -> str | None:
    """For a clip shorter than the window: how much of what the model hears is padding."""
    if clip.duration >= config.clip_seconds:
        return None
    padding = config.clip_seconds - clip.duration
    return (
        f"The clip is {clip.duration:.2f} s; the model always hears {config.clip_seconds:g} s, so the last "
        f"{padding:.2f} s ({padding / config.clip_seconds:.0%} of its window) is silence added as padding."
    )
