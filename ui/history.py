"""The model's own history: every training stage of a checkpoint, oldest first, as one set of curves.

A fine-tuned checkpoint's ``history`` holds only its own epochs. Newer checkpoints carry the
stages before them in their training metadata (``lineage``: ``{"source", "recipe", "history",
"epochs"}`` per stage, oldest first); for the shipped model, which predates that, the first
stage's record is shipped in ``assets/lineage.json`` and used only for a checkpoint that says it
was initialised from exactly that stage (same recipe, same number of epochs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from . import components

LINEAGE_PATH = Path(__file__).resolve().parent.parent / "assets" / "lineage.json"

SERIES_COLOURS = {
    "train_loss": "#4C78A8", "val_loss": "#F58518", "train_accuracy": "#54A24B", "val_accuracy": "#E45756",
    "lr": "#B279A2",
}  # fmt: skip
"""One colour per series, so a legend entry names exactly one line."""
STAGE_SHADES = ("rgba(0, 0, 0, 0)", "rgba(76, 120, 168, 0.08)")


@dataclass(frozen=True)
class Stage:
    """One training run of the model's history."""

    name: str
    epochs: int
    history: tuple[dict, ...]
    recipe: dict | None = None


def read_shipped_lineage(path: Path = LINEAGE_PATH) -> list[dict]:
    """The shipped earlier stages, or [] when the file is absent or unreadable (the page then shows less)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    lineage = document.get("lineage") if isinstance(document, dict) else None
    return lineage if isinstance(lineage, list) else []


def _stage(entry: Any, fallback: str) -> Stage | None:
    """A lineage entry as a stage; a malformed one (not a dict, no history list) is skipped."""
    if not isinstance(entry, dict) or not isinstance(entry.get("history"), list):
        return None
    history = tuple(row for row in entry["history"] if isinstance(row, dict))
    epochs = entry.get("epochs") if isinstance(entry.get("epochs"), int) else len(history)
    recipe = entry.get("recipe") if isinstance(entry.get("recipe"), dict) else None
    return Stage(str(entry.get("source") or fallback), epochs, history, recipe)


def _matches(parent: dict | None, entry: Any) -> bool:
    """Whether a shipped entry is the stage a checkpoint says it was initialised from."""
    return (
        isinstance(parent, dict) and isinstance(entry, dict) and parent.get("recipe") is not None
        and parent.get("recipe") == entry.get("recipe") and parent.get("epochs_trained") == entry.get("epochs")
    )  # fmt: skip


def stages(metadata: dict, shipped: Sequence[dict] = ()) -> list[Stage]:
    """Every stage of a checkpoint's training, oldest first; the checkpoint's own run is the last.

    Its own ``lineage`` wins; else the shipped stages when the last of them is the checkpoint's
    declared parent; else only its own run.
    """
    earlier = metadata.get("lineage")
    if not isinstance(earlier, list) or not earlier:
        parent = metadata.get("initialised_from")
        earlier = list(shipped) if shipped and _matches(parent, shipped[-1]) else []
    found = [stage for i, entry in enumerate(earlier) if (stage := _stage(entry, f"stage {i + 1}")) is not None]
    own = [row for row in metadata.get("history") or [] if isinstance(row, dict)]
    if own:
        epochs = metadata.get("epochs_trained") if isinstance(metadata.get("epochs_trained"), int) else len(own)
        name = "this checkpoint" + (" (fine-tuning)" if found or metadata.get("initialised_from") else "")
        found.append(Stage(name, epochs, tuple(own), metadata.get("recipe")))
    return found


def stage_label(index: int, stage: Stage) -> str:
    lr = (stage.recipe or {}).get("lr")
    return f"stage {index + 1}: {stage.epochs} epochs" + (f" at lr {lr:g}" if isinstance(lr, int | float) else "")


def curves_figure(all_stages: Sequence[Stage], height: int = 340) -> go.Figure:
    """Loss, accuracy and learning rate of every stage on one running epoch axis; stages are shaded
    alternately and named, and the learning rate is on a log axis (a cosine schedule ends near 0)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Loss", "Accuracy", "Learning rate (log)"))
    panels = ((1, ("train_loss", "val_loss")), (2, ("train_accuracy", "val_accuracy")), (3, ("lr",)))
    offset, bounds = 0, []
    points: dict[str, list[tuple[int, float]]] = {key: [] for key in SERIES_COLOURS}
    for stage in all_stages:
        for row in stage.history:
            epoch = row.get("epoch")
            for key in points:
                value = row.get(key)
                if isinstance(epoch, int | float) and isinstance(value, int | float) and value == value:
                    points[key].append((offset + int(epoch), float(value)))
        bounds.append((offset, offset + stage.epochs))
        offset += stage.epochs
    for col, keys in panels:
        for key in keys:
            if not points[key]:
                continue
            x, y = zip(*points[key])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=key, line={"color": SERIES_COLOURS[key]}), row=1,
                          col=col)  # fmt: skip
    if len(all_stages) > 1:
        for index, (start, end) in enumerate(bounds):
            for col in (1, 2, 3):
                fig.add_vrect(x0=start + 0.5, x1=end + 0.5, fillcolor=STAGE_SHADES[index % 2], line_width=0,
                              row=1, col=col)  # fmt: skip
            if index:
                fig.add_vline(x=start + 0.5, line={"color": "#888888", "dash": "dot", "width": 1})
    fig.update_xaxes(title_text="Epoch (all stages)" if len(all_stages) > 1 else "Epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_yaxes(type="log", exponentformat="e", showexponent="all", row=1, col=3)
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 80, "b": 45},
        legend={"orientation": "h", "y": 1.22, "yanchor": "bottom"},
    )  # fmt: skip
    return fig


def show(metadata: dict) -> None:
    """The Model page's training curves: every stage, or one chosen stage (a 5-epoch fine-tune is a
    sliver next to 300 epochs), with what each stage was."""
    found = stages(metadata, read_shipped_lineage())
    start = metadata.get("initialised_from")
    if isinstance(start, dict):
        before = (
            f"Fine-tuned from a model trained {start.get('epochs_trained', '?')} epochs on folds "
            f"{start.get('train_folds', '?')}"
        )
        st.caption(before + ("; the curves show every stage, oldest first." if len(found) > 1
                             else "; its own curves are lost, so the curves below are the fine-tuning's."))  # fmt: skip
    if not found:
        st.info("This checkpoint carries no training history.")
        return
    if len(found) > 1:
        st.caption(" · ".join(f"{stage_label(i, stage)} ({stage.name})" for i, stage in enumerate(found)))
        names = ["All stages", *(stage_label(i, stage) for i, stage in enumerate(found))]
        choice = st.radio("Show", names, horizontal=True, key="history_stage")
        if choice != names[0]:
            found = [found[names.index(choice) - 1]]
    components.chart(curves_figure(found))
