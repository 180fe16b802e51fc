"""Which checkpoint a session serves: the launch default (flag, environment), the runs found on
disk, and what each one's training record says about it.

Nothing here loads a model: records are read through the safe loader with the weights
memory-mapped (``read_payload(..., mmap=True)``), so labelling a runs folder costs a few
milliseconds per file and no weight memory.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiocnn.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, read_payload
from audiocnn.heldout import DEFAULT_ESC50_DIR, ESC50_ENV
from audiocnn.model import ModelConfig, ModelConfigError

ROOT = DEFAULT_CHECKPOINT.parent.parent
CHECKPOINT_ENV = "AUDIOCNN_CHECKPOINT"
RUNS_ENV = "AUDIOCNN_RUNS_DIR"
DATA_ENV = ESC50_ENV
"""One setting for the local ESC-50 copy: the same variable makes every confusion cell and map point play."""
DEFAULT_RUNS_DIR = ROOT / "runs"
MAX_LISTED = 40
"""Checkpoints offered from the runs folder at most, newest first."""
SHIPPED_METRICS = DEFAULT_CHECKPOINT.parent / "metrics.json"


@dataclass(frozen=True)
class LaunchOptions:
    """What ``streamlit run app.py -- [--checkpoint P] [--runs-dir D] [--data-dir E]`` or the environment chose."""

    checkpoint: Path
    origin: str  # where ``checkpoint`` came from, for messages
    runs_dir: Path
    data_dir: Path | None


def launch_options(argv: Sequence[str], environ: Mapping[str, str]) -> LaunchOptions:
    """Flags win over environment variables, which win over the shipped model and ``runs/``.

    Unknown arguments are ignored (the app may run under another program's command line), and
    flags must be spelt out: ``--check`` is not taken for ``--checkpoint``.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--checkpoint")
    parser.add_argument("--runs-dir")
    parser.add_argument("--data-dir")
    args, _ = parser.parse_known_args(list(argv))
    if args.checkpoint:
        checkpoint, origin = Path(args.checkpoint), "--checkpoint"
    elif environ.get(CHECKPOINT_ENV):
        checkpoint, origin = Path(environ[CHECKPOINT_ENV]), f"${CHECKPOINT_ENV}"
    else:
        checkpoint, origin = DEFAULT_CHECKPOINT, "the shipped model"
    runs = args.runs_dir or environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR
    default_data = DEFAULT_ESC50_DIR if (DEFAULT_ESC50_DIR / "audio").is_dir() else None  # training.data download
    data = args.data_dir or environ.get(DATA_ENV) or default_data
    return LaunchOptions(_absolute(checkpoint), origin, _absolute(Path(runs)), _absolute(Path(data)) if data else None)


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


def display_path(path: str | os.PathLike) -> str:
    """A path as a person reads it: relative to the project when it lies inside."""
    path = Path(path)
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def find_checkpoints(runs_dir: Path) -> list[Path]:
    """``*.pt`` files under ``runs_dir`` (feature caches excluded by name), newest first, at most ``MAX_LISTED``."""
    if not runs_dir.is_dir():
        return []
    found = []
    for path in runs_dir.rglob("*.pt"):
        try:
            if path.is_file() and not path.name.startswith("logmels-"):
                found.append((path.stat().st_mtime, path))
        except OSError:  # removed while listing
            continue
    return [path for _, path in sorted(found, key=lambda item: (-item[0], str(item[1])))[:MAX_LISTED]]


@dataclass(frozen=True)
class Summary:
    """A checkpoint as its training record describes it (``error`` says why it cannot be described)."""

    path: Path
    architecture: str = ""
    train_folds: tuple[int, ...] = ()
    epochs: str = ""
    held_out: str = ""
    error: str = ""

    def label(self) -> str:
        name = "shipped model" if self.path == DEFAULT_CHECKPOINT else display_path(self.path)
        if self.error:
            return f"{name} · cannot be served"
        parts = [name, self.architecture]
        if self.train_folds:
            parts.append(f"folds {_folds(self.train_folds)}")
        parts += [self.epochs, self.held_out or "held-out accuracy unknown"]
        return " · ".join(part for part in parts if part)


def _folds(folds: Sequence[int]) -> str:
    folds = sorted(folds)
    if len(folds) > 2 and folds == list(range(folds[0], folds[-1] + 1)):
        return f"{folds[0]}-{folds[-1]}"
    return ",".join(map(str, folds))


def describe_architecture(config: ModelConfig) -> str:
    widths = config.widths
    stem = "" if config.stem_pool else ", full-res stem"
    return f"{len(widths)}-stage CNN {widths[0]}–{widths[-1]} ch{stem}"


def summarize(path: str | os.PathLike) -> Summary:
    """Architecture, training folds, epochs and held-out accuracy (when a metrics file belongs to it)."""
    path = _absolute(Path(path))
    try:
        payload = read_payload(path, mmap=True)
        config = ModelConfig.from_dict(payload["model_config"])
        metadata = payload.get("metadata") or {}
        names = [str(name) for name in payload["class_names"]]
    except CheckpointError as error:
        return Summary(path, error=str(error))
    except (ModelConfigError, KeyError, TypeError, ValueError) as error:
        return Summary(path, error=f"Checkpoint {path} is incompatible with this code: {error}")
    epochs = metadata.get("epochs_trained")
    start = metadata.get("initialised_from") if isinstance(metadata.get("initialised_from"), dict) else None
    planned = metadata.get("epochs")
    epochs_text = ""
    if isinstance(epochs, int):
        epochs_text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        if isinstance(planned, int) and planned > epochs:  # the best of a longer run, selected on validation
            epochs_text = f"epoch {epochs} of {planned}"
    if epochs_text and start and start.get("epochs_trained") is not None:
        epochs_text += f" (fine-tuned from {start['epochs_trained']})"
    found = find_metrics(path, metadata, names)
    held_out = ""
    if found is not None and found[1]:
        document = found[0]
        held_out = f"fold {_folds(document.get('folds', []))}: {document['accuracy']:.1%}"
    folds = tuple(int(f) for f in metadata.get("train_folds") or [])
    return Summary(path, describe_architecture(config), folds, epochs_text, held_out)


def metrics_path(checkpoint: Path) -> Path:
    """Where the app stores the held-out evaluation it computes for a checkpoint: beside it."""
    return checkpoint.with_name(f"{checkpoint.stem}.metrics.json")


def metrics_candidates(checkpoint: Path, shipped_metrics: Path = SHIPPED_METRICS) -> list[Path]:
    """Metrics files that may belong to a checkpoint, in order: its own, then its folder's
    (``assets/metrics.json`` for the shipped model)."""
    shared = shipped_metrics if checkpoint == DEFAULT_CHECKPOINT else checkpoint.parent / "metrics.json"
    return [metrics_path(checkpoint), shared]


def describes(document: Mapping[str, Any], metadata: Mapping[str, Any], class_names: Sequence[str]) -> bool:
    """Whether a metrics document was computed for the checkpoint with this record: the training facts it
    copied from its checkpoint (seed, folds, training time, code version...) and the class names must be
    this checkpoint's. A retrained ``assets/model.pt`` next to old metrics fails this."""
    training = document.get("training") or {}
    same_run = isinstance(training, Mapping) and all(metadata.get(key) == value for key, value in training.items())
    return same_run and list(document.get("class_names", [])) == list(class_names)


def find_metrics(
    checkpoint: Path,
    metadata: Mapping[str, Any],
    class_names: Sequence[str],
    shipped_metrics: Path = SHIPPED_METRICS,
) -> tuple[dict[str, Any], bool, Path] | None:
    """(document, whether it describes this checkpoint, its path): the first candidate that does, else the
    first that exists; None when there is none. A file that is not valid metrics JSON is passed over."""
    existing = []
    for candidate in metrics_candidates(checkpoint, shipped_metrics):
        document = read_metrics(candidate)
        if document is None:
            continue
        if describes(document, metadata, class_names):
            return document, True, candidate
        existing.append((document, False, candidate))
    return existing[0] if existing else None


def read_metrics(path: Path) -> dict[str, Any] | None:
    """A metrics document, or None when the file is absent or not one."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("accuracy"), int | float):
        return None
    return document
