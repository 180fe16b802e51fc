"""Self-describing, safe checkpoints: weights plus every setting needed to serve them.

A checkpoint is one ``torch.save`` file holding only tensors and plain data (str,
int, float, list, dict), so it loads with ``weights_only=True``: a file carrying a
pickled callable is refused instead of executed.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .features import FeatureConfig, FeatureConfigError
from .model import AudioCNN, ModelConfig, ModelConfigError

FORMAT = "audiocnn-checkpoint"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "model.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unsafe, corrupt or incompatible."""


@dataclass
class LoadedCheckpoint:
    """A ready-to-run model (eval mode) with the settings it was trained with."""

    model: AudioCNN
    feature_config: FeatureConfig
    class_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config


def checkpoint_payload(
    model: AudioCNN,
    feature_config: FeatureConfig,
    class_names: list[str] | tuple[str, ...],
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dictionary written to disk; training adds its own resume state beside it."""
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"{len(class_names)} class names for {model.config.num_classes} outputs")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "model_config": model.config.to_dict(),
        "feature_config": feature_config.to_dict(),
        "class_names": list(class_names),
        "metadata": dict(metadata or {}),
    }


def save_atomically(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file of its own in the same folder, then rename: readers (and a run
    resumed after a crash) see the whole old file or the whole new one, never a torn one, even when
    several runs write into one folder (a shared feature cache)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f"{path.name}-", suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        torch.save(payload, tmp_path)
        os.replace(tmp_path, path)
    finally:  # after a failed or interrupted save: no stray temp file
        tmp_path.unlink(missing_ok=True)
    return path


def save_checkpoint(
    path: str | os.PathLike,
    model: AudioCNN,
    feature_config: FeatureConfig,
    class_names: list[str] | tuple[str, ...],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """A served checkpoint, written atomically."""
    return save_atomically(checkpoint_payload(model, feature_config, class_names, metadata), path)


def read_payload(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """Load the raw dictionary safely, turning every failure into a ``CheckpointError``.

    ``mmap`` maps the tensors instead of reading them: reading a checkpoint's record (its
    metadata) then costs no memory for its weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", str(error))
        if found is None:  # damage, not a payload: bytes the safe unpickler cannot parse, or a nameless GLOBAL
            # opcode (a lone b"c" reads as "GLOBAL ." and must not be reported as code)
            raise CheckpointError(f"Checkpoint {path} is corrupt or truncated: not a readable torch file") from error
        raise CheckpointError(
            f"Refused to load {path}: it contains Python objects other than tensors and plain "
            f"data (it references {found.group(1)}, possibly code), which audiocnn never unpickles."
        ) from error
    except Exception as error:  # arbitrary bytes make torch.load raise almost anything (IndexError, KeyError, ...)
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated: {_first_line(error)}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an audiocnn checkpoint (no '{FORMAT}' marker).")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}; "
            f"this code reads version {FORMAT_VERSION}."
        )
    return payload


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def load_checkpoint(path: str | os.PathLike | None = None) -> LoadedCheckpoint:
    """Load a checkpoint (the shipped default when ``path`` is None) into an eval-mode model."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    payload = read_payload(path)
    try:
        model_config = ModelConfig.from_dict(payload["model_config"])
        feature_config = FeatureConfig.from_dict(payload["feature_config"])
        class_names = [str(name) for name in payload["class_names"]]
        state_dict = payload["state_dict"]
        metadata = payload.get("metadata") or {}
    except (ModelConfigError, FeatureConfigError) as error:
        raise CheckpointError(f"Checkpoint {path} is incompatible with this code: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"Checkpoint {path} is missing or has a malformed entry: {error!r}") from error
    if len(class_names) != model_config.num_classes:
        raise CheckpointError(
            f"Checkpoint {path} lists {len(class_names)} class names for a model with "
            f"{model_config.num_classes} outputs."
        )
    if not isinstance(metadata, dict):
        raise CheckpointError(f"Checkpoint {path} has malformed metadata: a {type(metadata).__name__}, not a dict.")
    _check_weights(path, model_config, state_dict)
    model = AudioCNN(model_config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"Checkpoint {path} weights do not match its declared architecture: {_first_line(error)}"
        ) from error
    model.eval()
    return LoadedCheckpoint(model, feature_config, class_names, metadata, path)


MAX_BLOCKS = 64
MAX_WIDTH = 8192
"""Bounds on a declared architecture: far above any real one, far below a memory-exhausting one."""


def _check_weights(path: Path, config: ModelConfig, state_dict: Any) -> None:
    """Refuse weights that do not fit the declared architecture, or are NaN/Inf, before allocating the model.

    The expected names and shapes come from the architecture built on PyTorch's meta
    device (no memory), so a file declaring an enormous network costs nothing to refuse.
    """
    if sum(config.blocks) > MAX_BLOCKS or max(config.widths) > MAX_WIDTH or config.stem_channels > MAX_WIDTH:
        raise CheckpointError(
            f"Checkpoint {path} declares an implausibly large network (blocks {list(config.blocks)}, "
            f"widths {list(config.widths)}); refused before building it."
        )
    if not isinstance(state_dict, dict) or not all(_is_dense_weight(k, v) for k, v in state_dict.items()):
        raise CheckpointError(f"Checkpoint {path} weights do not match its declared architecture: not a tensor dict")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in AudioCNN(config).state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state_dict.items()}
    if found != expected:
        differences = sorted(set(found) ^ set(expected)) or [n for n in expected if found[n] != expected[n]]
        raise CheckpointError(
            f"Checkpoint {path} weights do not match its declared architecture: "
            f"{len(differences)} tensors differ in name or shape (first: {differences[0]})"
        )
    broken = [name for name, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise CheckpointError(f"Checkpoint {path} has NaN or infinite weights (in {broken[0]}); it is corrupt.")


def _is_dense_weight(name: Any, value: Any) -> bool:
    """A named, ordinary CPU tensor: sparse or meta tensors load without error but break every check after."""
    return (
        isinstance(name, str)
        and isinstance(value, torch.Tensor)
        and value.layout == torch.strided
        and value.device.type == "cpu"
    )
