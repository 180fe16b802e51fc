"""The sidebar's model picker: the shipped model, the launch checkpoint and every run found, each
labelled by its training record; or any checkpoint file by path.

A choice is loaded (through the shared cache and the safe loader) in the widget's callback,
before the page runs: a file that cannot be served leaves the session on the model it had,
and the page says why.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from audiocnn.checkpoint import DEFAULT_CHECKPOINT

from . import model_choice, resources
from .model_choice import Summary

PICKER = "model_picker"
PATH_INPUT = "model_picker_path"


@st.cache_data(max_entries=256, show_spinner=False)
def _summary(path: str, size: int, mtime_ns: int) -> Summary:
    return model_choice.summarize(path)


def summary(path: str | Path) -> Summary:
    """A checkpoint's record, read once per version of the file (its metrics file may be added later:
    the shipped model's record is cheap to re-read, so metrics changes show after a rerun)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return model_choice.summarize(path)
    return _summary(str(path), stat.st_size, stat.st_mtime_ns + _metrics_mtime(path))


def _metrics_mtime(path: Path) -> int:
    """Metrics files beside a checkpoint change its label: their modification times join the cache key."""
    total = 0
    for candidate in model_choice.metrics_candidates(path, resources.METRICS_PATH):
        try:
            total += candidate.stat().st_mtime_ns
        except OSError:
            continue
    return total


def options() -> list[str]:
    """The shipped model, the launch checkpoint, this session's model, then the runs (newest first).

    Runs that cannot be served are not offered (they can still be opened by path, to see why).
    """
    launch = resources.launch_options()
    listed = [str(DEFAULT_CHECKPOINT), str(launch.checkpoint), str(resources.served_path())]
    for path in model_choice.find_checkpoints(launch.runs_dir):
        if not summary(path).error:
            listed.append(str(path.resolve()))
    return list(dict.fromkeys(listed))


def _picked() -> None:
    resources.choose(st.session_state[PICKER])


def _typed() -> None:
    text = st.session_state.get(PATH_INPUT, "").strip()
    if not text:
        return
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if resources.choose(path) is None:
        st.session_state[PATH_INPUT] = ""


def sidebar() -> None:
    """The picker. It runs before the page: the page's first ``resources.predictor()`` call, here,
    settles this session's model (a bad launch checkpoint falls back to the shipped one) and puts a
    refusal's message at the top of the page."""
    resources.predictor()
    served = str(resources.served_path())
    choices = options()
    st.session_state[PICKER] = served
    with st.sidebar:
        st.selectbox(
            "Model",
            choices,
            format_func=lambda path: summary(path).label(),
            key=PICKER,
            on_change=_picked,
            help="The shipped model, the checkpoint the app was started with, and the runs found under "
            f"{model_choice.display_path(resources.launch_options().runs_dir)} (set with --runs-dir or "
            f"${model_choice.RUNS_ENV}).",
        )
        st.caption(summary(served).label())  # the whole record: the box above cuts a long label short
        st.text_input("Or open a checkpoint file", key=PATH_INPUT, placeholder="runs/x/best.pt", on_change=_typed)
