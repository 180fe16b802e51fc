"""The training function that local runs and the Modal job share.

It trains on cached log-mels (``training.data``) with AdamW + OneCycleLR, label
smoothing and the tensor augmentations of ``training.augment``; keeps activations
channels-last on every device and uses bf16 autocast where the hardware runs it
natively (``bf16_pays_off``); writes TensorBoard scalars, a resumable ``last.pt``
every epoch and the served checkpoint ``best.pt``.

Model selection never sees the test fold: with validation folds the best epoch by
validation accuracy is kept, without them the final epoch of the fixed schedule is.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import audiocnn
from audiocnn.checkpoint import (
    CheckpointError,
    checkpoint_payload,
    load_checkpoint,
    read_payload,
    save_atomically,
    save_checkpoint,
)
from audiocnn.features import FeatureConfig
from audiocnn.model import AudioCNN, ModelConfig
from audiocnn.precision import bf16_pays_off

from .augment import AugmentConfig, augment_batch, scaled_to_hop
from .data import DatasetError, cached_logmels, class_names_from_metadata, read_metadata, select_folds

MODEL_SIZES = {
    "small": ModelConfig(stem_channels=32, widths=(32, 64, 128, 256)),
    "resnet18": ModelConfig(),
    "fullres": replace(ModelConfig(), stem_pool=False),
    "resnet34": ModelConfig(blocks=(3, 4, 6, 3)),
}
"""Named architectures for the command lines. ``fullres`` is ``resnet18`` without the stem
max-pool: every stage at twice the time and frequency resolution, for about twice the inference
time; 1.9 points better on the validation split, it is the shipped model's."""

SHIPPED_MODEL_SIZE = "fullres"
"""The architecture every training command uses unless told otherwise, so that a plain run
retrains the shipped model."""


def front_end_and_augment(
    hop_length: int = FeatureConfig.hop_length, freq_shift: int = AugmentConfig.max_freq_shift
) -> dict[str, Any]:
    """``TrainConfig`` fields for the command lines' ``--hop-length`` and ``--freq-shift``: the
    log-mel settings, and augmentations whose time masks keep their length in seconds."""
    augment = AugmentConfig(max_freq_shift=freq_shift)  # widths tuned at the default hop
    return {"features": FeatureConfig(hop_length=hop_length),
            "augment": scaled_to_hop(augment, hop_length, FeatureConfig.hop_length)}  # fmt: skip


def model_config(size: str) -> ModelConfig:
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(MODEL_SIZES)}")
    return MODEL_SIZES[size]


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    train_folds: tuple[int, ...] = (1, 2, 3, 4)
    val_folds: tuple[int, ...] = ()
    test_folds: tuple[int, ...] = (5,)
    epochs: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    model: ModelConfig = field(default_factory=lambda: MODEL_SIZES[SHIPPED_MODEL_SIZE])
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    threads: int | None = None
    ema_decay: float = 0.0
    """Serve an exponential moving average of the weights (and batch-norm statistics), updated
    after every step, instead of the last step's weights; 0 turns it off. The averaged model is
    what validation scores and ``best.pt`` holds; ``last.pt`` keeps both."""
    init_from: str | None = None
    """Start from this checkpoint's weights instead of random ones (fine-tuning). It must have this
    run's architecture and features, and must not have trained on a fold this run holds out."""

    def __post_init__(self) -> None:
        # Checked on construction, so every entry point (CLI, cross-validation, Modal) refuses them before any work.
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if not self.lr > 0:  # written so that NaN is refused too
            raise ValueError(f"lr must be above 0, not {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be at least 0 (0 turns it off), not {self.weight_decay}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be at least 0 and below 1 (0 turns averaging off), not {self.ema_decay}")
        overlap = set(self.train_folds) & (set(self.val_folds) | set(self.test_folds))
        if overlap:
            raise ValueError(f"folds {sorted(overlap)} are used for training and for validation/testing")
        if set(self.val_folds) & set(self.test_folds):
            raise ValueError("validation folds must not be test folds: model selection would see the test data")

    def describe(self) -> dict[str, Any]:
        """Plain-data form for checkpoint metadata and logs."""
        data = asdict(self)
        data["model"] = self.model.to_dict()
        data["features"] = self.features.to_dict()
        data["train_folds"], data["val_folds"], data["test_folds"] = (
            list(self.train_folds), list(self.val_folds), list(self.test_folds)
        )  # fmt: skip
        data["starts_from_checkpoint"] = self.init_from is not None  # the path may differ per fold or machine
        return data


def build_optimizer(model: AudioCNN, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the fused kernel: one pass over all weights per step instead of a Python loop
    over each tensor, about 3-4x faster and over 10 % of a CPU training step for the default model."""
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """What a run trains on, for its record: the GPU's name, or the CPU's architecture."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({platform.processor() or platform.machine()})"


def device_spans(history: list[dict[str, Any]]) -> str:
    """Which device trained which epochs, e.g. ``cpu (x86_64): epochs 1-6, 95-300; cuda (NVIDIA H100): epochs 7-94``.

    A run resumed with ``--resume`` can move between machines, so one device per run would
    misstate where it trained. Epochs saved before devices were recorded are left out.
    """
    spans: dict[str, list[list[int]]] = {}
    for record in history:
        if "device" not in record:
            continue
        runs = spans.setdefault(record["device"], [])
        if runs and runs[-1][1] == record["epoch"] - 1:
            runs[-1][1] = record["epoch"]
        else:
            runs.append([record["epoch"], record["epoch"]])
    return "; ".join(
        f"{device}: epochs " + ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)
        for device, runs in spans.items()
    )


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"audiocnn {audiocnn.__version__}" + (f" ({sha})" if sha else "")


@torch.no_grad()
def evaluate_logmels(model: AudioCNN, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                     autocast: bool, batch_size: int = 64) -> tuple[float, float]:  # fmt: skip
    """(mean cross-entropy, accuracy) of a model on cached log-mels."""
    model.eval()
    losses, correct = [], 0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        yb = y[start : start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(xb).float()
        losses.append(F.cross_entropy(logits, yb, reduction="sum").item())
        correct += (logits.argmax(1) == yb).sum().item()
    return sum(losses) / len(x), correct / len(x)


def _load_split(config: TrainConfig, folds: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    clips = select_folds(read_metadata(config.data_dir), folds)
    features = cached_logmels(clips, config.features, config.cache_dir)
    return features, torch.tensor([c.target for c in clips])


RESUME_FIXED = ("train_folds", "val_folds", "test_folds", "epochs", "batch_size", "lr", "weight_decay",
                "label_smoothing", "seed", "model", "features", "augment", "ema_decay",
                "starts_from_checkpoint")  # fmt: skip
"""Recipe fields a resumed run must share with the run it continues (paths and device may change)."""


RECIPE_OPTIONS_ADDED_LATER = {"ema_decay": 0.0, "starts_from_checkpoint": False}
"""Recipe options newer than the first release, with the value that reproduces what runs saved before them did."""


def comparable_recipe(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved recipe with the options it predates filled in (model settings read through
    ``ModelConfig``, augmentations through ``AugmentConfig``), so a run saved before an option
    existed compares equal to one that states that option's default."""
    saved = {**RECIPE_OPTIONS_ADDED_LATER, **saved}
    if isinstance(saved.get("model"), dict):
        saved["model"] = ModelConfig.from_dict(saved["model"]).to_dict()
    if isinstance(saved.get("augment"), dict):
        saved["augment"] = {**asdict(AugmentConfig()), **saved["augment"]}
    return saved


RESUME_STATE = ("metadata", "state_dict", "optimizer", "scheduler", "generator", "torch_rng", "history", "epoch",
                "best_score", "elapsed")  # fmt: skip
"""What ``last.pt`` holds beyond a served checkpoint, so that ``--resume`` continues the very same run."""


class ResumeError(ValueError):
    """``--resume`` of a run folder whose saved settings differ from the ones given."""


def _check_same_recipe(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with other settings: the restored LR schedule and data order would not fit them."""
    saved = comparable_recipe(saved)
    changed = [key for key in RESUME_FIXED if saved.get(key) != current[key]]
    if changed:
        detail = ", ".join(f"{key} {saved.get(key)!r} -> {current[key]!r}" for key in changed)
        raise ResumeError(f"cannot resume {path} with different settings ({detail}); use its settings or a new --out")


def _start_from(model: AudioCNN, config: TrainConfig) -> dict[str, Any]:
    """Load ``config.init_from``'s weights into ``model``; returns where they came from, for the record.

    Refuses a start that would leak: one whose training folds (unknown ones included) meet the
    folds this run validates or tests on.
    """
    path = str(config.init_from)
    start = load_checkpoint(path)
    # A start may move to another feature version (the same spectrogram, another dB reference): the
    # fine-tuning is what teaches it the new one. Any other setting would change what each weight sees.
    same_spectrogram = replace(start.feature_config, version=config.features.version) == config.features
    if start.model_config != config.model or not same_spectrogram:
        raise CheckpointError(f"{path} has another architecture or other features than this run; cannot start from it")
    trained_on = start.metadata.get("train_folds")
    if not trained_on:
        raise CheckpointError(f"{path} does not say which folds it was trained on, so it could have seen held-out data")
    seen = set(trained_on) & (set(config.val_folds) | set(config.test_folds))
    if seen:
        raise CheckpointError(f"{path} was trained on fold(s) {sorted(seen)}, which this run holds out")
    model.load_state_dict(start.model.state_dict())
    return {"path": path, "train_folds": list(trained_on), "recipe": start.metadata.get("recipe"),
            "epochs_trained": start.metadata.get("epochs_trained"),
            "feature_version": start.feature_config.version}  # fmt: skip


def train(
    config: TrainConfig, resume: bool = False, on_epoch_end: Callable[[dict[str, float]], None] | None = None
) -> Path:
    """Train, writing checkpoints into ``config.out_dir``; returns the served checkpoint's path.

    ``on_epoch_end`` receives each epoch's record once its checkpoints are on disk, so a
    caller can report progress or stop the run (by raising) at a point ``resume`` picks up from.
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    autocast = bf16_pays_off(device)

    class_names = class_names_from_metadata(read_metadata(config.data_dir))
    if len(class_names) != config.model.num_classes:
        raise DatasetError(f"dataset has {len(class_names)} classes, model config {config.model.num_classes}")
    model = AudioCNN(config.model).to(device).to(memory_format=torch.channels_last)
    # Before the features are computed (a refused start costs nothing) and before averaging copies the model.
    initialised_from = _start_from(model, config) if config.init_from else None
    x_train, y_train = _load_split(config, config.train_folds)
    x_val, y_val = _load_split(config, config.val_folds) if config.val_folds else (None, None)
    if device.type == "cuda":  # the cached log-mels fit a GPU (2000 clips: 221 MB): no copy per step
        x_train, y_train = x_train.to(device), y_train.to(device)
        torch.backends.cudnn.benchmark = True  # every batch has the same shape

    optimizer = build_optimizer(model, config)
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if config.ema_decay else None
    )  # fmt: skip
    served = averaged.module if averaged is not None else model
    steps_per_epoch = max(1, len(x_train) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    start_epoch, best_score, started = 0, -1.0, time.time()
    last_path = out / "last.pt"
    if resume and last_path.is_file():
        state = read_payload(last_path)  # a damaged file is a CheckpointError naming it, not a torch traceback
        missing = [key for key in RESUME_STATE if key not in state]
        if missing or not isinstance(state.get("metadata"), dict):
            raise CheckpointError(f"{last_path} holds no training state to resume from (no {', '.join(missing)}): "
                                  "a served checkpoint copied there? Start a new --out instead.")  # fmt: skip
        _check_same_recipe(last_path, state["metadata"].get("recipe", {}), config.describe())
        model.load_state_dict(state["state_dict"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged_model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # the kernel is build_optimizer's choice, not the saved run's
            group["fused"] = optimizer.defaults["fused"]
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch, best_score = state["history"], state["epoch"], state["best_score"]
        started -= state["elapsed"]
        print(f"resumed from {last_path} at epoch {start_epoch}")

    writer = SummaryWriter(str(out / "tensorboard"))
    metadata_base = {
        "recipe": config.describe(),
        "train_folds": list(config.train_folds),
        "val_folds": list(config.val_folds),
        "test_folds": list(config.test_folds),
        "seed": config.seed,
        "code_version": code_version(),
        "device": device_label(device),
        "bf16_autocast": autocast,
        "selection": "best validation accuracy" if config.val_folds else "final epoch of a fixed schedule",
    }
    if initialised_from is not None:
        metadata_base["initialised_from"] = initialised_from
    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        # Running sums stay on the device: reading them every step would stall a GPU on each batch.
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        total_correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        epoch_start = time.time()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for step in bar:
            index = order[step * config.batch_size : (step + 1) * config.batch_size].to(x_train.device)
            xb, targets = augment_batch(x_train[index], y_train[index], config.model.num_classes,
                                        config.augment, generator, config.features)  # fmt: skip
            xb = xb.to(device).contiguous(memory_format=torch.channels_last)
            targets = targets.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(xb).float()
            smoothed = targets * (1 - config.label_smoothing) + config.label_smoothing / targets.shape[1]
            loss = torch.sum(-smoothed * F.log_softmax(logits, dim=1), dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total_loss += loss.detach().double() * len(index)
            total_correct += (logits.argmax(1) == targets.argmax(1)).sum()
            seen += len(index)
        record = {
            "epoch": epoch + 1,
            "train_loss": total_loss.item() / seen,
            "train_accuracy": total_correct.item() / seen,
            "lr": scheduler.get_last_lr()[0],
            "samples_per_second": seen / (time.time() - epoch_start),
            "device": metadata_base["device"],
        }
        if x_val is not None:
            record["val_loss"], record["val_accuracy"] = evaluate_logmels(served, x_val, y_val, device, autocast)
            if averaged is not None:  # the same run's raw weights: a paired measure of what averaging buys
                record["raw_val_accuracy"] = evaluate_logmels(model, x_val, y_val, device, autocast)[1]
        history.append(record)
        scalars = {key: value for key, value in record.items() if key not in ("epoch", "device")}
        for key, value in scalars.items():
            writer.add_scalar(key.replace("_", "/", 1) if "_" in key else key, value, epoch + 1)
        writer.flush()
        score = record.get("val_accuracy", float(epoch + 1))  # no validation: the latest epoch wins
        summary = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        print(f"epoch {epoch + 1}/{config.epochs} {summary}", flush=True)
        metadata = {**metadata_base, "epochs_trained": epoch + 1, "epochs": config.epochs,
                    "training_seconds": time.time() - started, "history": history,
                    "devices": device_spans(history)}  # fmt: skip
        if score > best_score:
            best_score = score
            save_checkpoint(out / "best.pt", served, config.features, class_names,
                            {**metadata, "selected_epoch": epoch + 1})  # fmt: skip
        state = checkpoint_payload(model, config.features, class_names, metadata)
        state.update(
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), generator=generator.get_state(),
            torch_rng=torch.get_rng_state(), history=history, epoch=epoch + 1, best_score=best_score,
            elapsed=time.time() - started,
        )  # fmt: skip
        if averaged is not None:
            state["averaged_model"] = averaged.state_dict()
        save_atomically(state, last_path)
        if on_epoch_end is not None:
            on_epoch_end(record)
    writer.close()
    (out / "history.json").write_text(json.dumps(history, indent=1))
    return out / "best.pt"
