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
from dataclasses import dataclass, replace
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
from audiocnn.model import AudioCNN
from audiocnn.precision import bf16_pays_off

from .augment import AugmentConfig, augment_batch
from .data import DatasetError, cached_logmels, class_names_from_metadata, read_metadata, select_folds
from .recipe import RECIPE_KEYS, TrainConfig, comparable_recipe, lineage_of, training_record


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


RESUME_STATE = ("metadata", "state_dict", "optimizer", "scheduler", "generator", "torch_rng", "history", "epoch",
                "best_score", "elapsed")  # fmt: skip
"""What ``last.pt`` holds beyond a served checkpoint, so that ``--resume`` continues the very same run."""


class ResumeError(ValueError):
    """``--resume`` of a run folder whose saved settings differ from the ones given."""


def _check_same_recipe(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with other settings: the restored LR schedule and data order would not fit them."""
    saved = comparable_recipe(saved)
    changed = [key for key in RECIPE_KEYS if saved.get(key) != current[key]]
    if changed:
        detail = ", ".join(f"{key} {saved.get(key)!r} -> {current[key]!r}" for key in changed)
        raise ResumeError(f"cannot resume {path} with different settings ({detail}); use its settings or a new --out")


def _start_from(model: AudioCNN, config: TrainConfig) -> dict[str, Any]:
    """Load ``config.init_from``'s weights into ``model``; returns the training record's entries on where they
    came from: ``initialised_from`` and ``lineage`` (see ``training.recipe.training_record``).

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
    origin = {"path": path, "train_folds": list(trained_on), "recipe": start.metadata.get("recipe"),
              "epochs_trained": start.metadata.get("epochs_trained"),
              "feature_version": start.feature_config.version}  # fmt: skip
    return {"initialised_from": origin, "lineage": lineage_of(path, start.metadata)}


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's global generators (the model's initial weights come from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Data:
    """The cached log-mels of a run's training and (optional) validation folds."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None


def load_data(config: TrainConfig, device: torch.device) -> Data:
    x_train, y_train = _load_split(config, config.train_folds)
    x_val, y_val = _load_split(config, config.val_folds) if config.val_folds else (None, None)
    if device.type == "cuda":  # the cached log-mels fit a GPU (2000 clips: 221 MB): no copy per step
        x_train, y_train = x_train.to(device), y_train.to(device)
        torch.backends.cudnn.benchmark = True  # every batch has the same shape
    return Data(x_train, y_train, x_val, y_val)


@dataclass
class Optimisation:
    """What changes the weights: AdamW, its one-cycle schedule, and the optional moving average."""

    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.OneCycleLR
    averaged: AveragedModel | None

    def served(self, model: AudioCNN) -> AudioCNN:
        """The weights validation scores and ``best.pt`` holds: the average when there is one."""
        return self.averaged.module if self.averaged is not None else model


def build_optimisation(model: AudioCNN, config: TrainConfig, steps_per_epoch: int) -> Optimisation:
    optimizer = build_optimizer(model, config)
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if config.ema_decay else None
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15
    )
    return Optimisation(optimizer, scheduler, averaged)


def train_step(
    model: AudioCNN,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    augment: AugmentConfig,
    label_smoothing: float,
    generator: torch.Generator,
    autocast: bool,
    channels_last: bool = True,
    features: FeatureConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch of log-mels ``x`` with class indices ``y``: augment, forward (bf16 under
    ``autocast``), label-smoothed cross-entropy on the mixed targets, backward, update.

    The training loop and ``benchmarks/training_speed.py`` both run this, so the benchmark measures the code
    that trains. Returns ``(loss, correct)`` as device tensors (reading them would stall a GPU every step);
    the learning-rate schedule and weight averaging are the caller's. ``features``, the front end the
    log-mels came from, is needed only by the real-recording augmentations.
    """
    device = next(model.parameters()).device
    xb, targets = augment_batch(x, y, model.config.num_classes, augment, generator, features)
    xb = xb.to(device)
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    targets = targets.to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(xb).float()
    smoothed = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
    loss = torch.sum(-smoothed * F.log_softmax(logits, dim=1), dim=1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.argmax(1) == targets.argmax(1)).sum()


def run_epoch(model: AudioCNN, optimisation: Optimisation, data: Data, config: TrainConfig, epoch: int,
              generator: torch.Generator, autocast: bool) -> dict[str, Any]:  # fmt: skip
    """One pass over the training folds in a fresh random order, then validation; returns the epoch's record."""
    device = next(model.parameters()).device
    model.train()
    steps = max(1, len(data.x_train) // config.batch_size)
    order = torch.randperm(len(data.x_train), generator=generator)
    # Running sums stay on the device: reading them every step would stall a GPU on each batch.
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    total_correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    epoch_start = time.time()
    for step in tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False):
        index = order[step * config.batch_size : (step + 1) * config.batch_size].to(data.x_train.device)
        loss, correct = train_step(model, optimisation.optimizer, data.x_train[index], data.y_train[index],
                                   config.augment, config.label_smoothing, generator, autocast,
                                   features=config.features)  # fmt: skip
        optimisation.scheduler.step()
        if optimisation.averaged is not None:
            optimisation.averaged.update_parameters(model)
        total_loss += loss.double() * len(index)
        total_correct += correct
        seen += len(index)
    record = {
        "epoch": epoch + 1,
        "train_loss": total_loss.item() / seen,
        "train_accuracy": total_correct.item() / seen,
        "lr": optimisation.scheduler.get_last_lr()[0],
        "samples_per_second": seen / (time.time() - epoch_start),
        "device": device_label(device),
    }
    if data.x_val is not None:
        served = optimisation.served(model)
        record["val_loss"], record["val_accuracy"] = evaluate_logmels(served, data.x_val, data.y_val, device, autocast)
        if optimisation.averaged is not None:  # the same run's raw weights: a paired measure of what averaging buys
            record["raw_val_accuracy"] = evaluate_logmels(model, data.x_val, data.y_val, device, autocast)[1]
    return record


@dataclass
class Progress:
    """Where a run stands: what ``last.pt`` saves beside the weights, optimiser and generators."""

    history: list[dict[str, Any]]
    epoch: int = 0
    best_score: float = -1.0
    started: float = 0.0


def restore(last_path: Path, config: TrainConfig, model: AudioCNN, optimisation: Optimisation,
            generator: torch.Generator, progress: Progress) -> None:  # fmt: skip
    """Continue the run saved in ``last_path``: weights, average, optimiser, schedule, generators and progress."""
    state = read_payload(last_path)  # a damaged file is a CheckpointError naming it, not a torch traceback
    missing = [key for key in RESUME_STATE if key not in state]
    if missing or not isinstance(state.get("metadata"), dict):
        raise CheckpointError(f"{last_path} holds no training state to resume from (no {', '.join(missing)}): "
                              "a served checkpoint copied there? Start a new --out instead.")  # fmt: skip
    _check_same_recipe(last_path, state["metadata"].get("recipe", {}), config.describe())
    model.load_state_dict(state["state_dict"])
    if optimisation.averaged is not None:
        optimisation.averaged.load_state_dict(state["averaged_model"])
    optimisation.optimizer.load_state_dict(state["optimizer"])
    for group in optimisation.optimizer.param_groups:  # the kernel is build_optimizer's choice, not the saved run's
        group["fused"] = optimisation.optimizer.defaults["fused"]
    optimisation.scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    progress.history, progress.epoch, progress.best_score = state["history"], state["epoch"], state["best_score"]
    progress.started -= state["elapsed"]
    print(f"resumed from {last_path} at epoch {progress.epoch}")


def log_epoch(writer: SummaryWriter, record: dict[str, Any], epochs: int) -> None:
    """TensorBoard scalars (``train_loss`` as ``train/loss``...) and one console line."""
    scalars = {key: value for key, value in record.items() if key not in ("epoch", "device")}
    for key, value in scalars.items():
        writer.add_scalar(key.replace("_", "/", 1) if "_" in key else key, value, record["epoch"])
    writer.flush()
    summary = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
    print(f"epoch {record['epoch']}/{epochs} {summary}", flush=True)


def save_epoch(out: Path, model: AudioCNN, optimisation: Optimisation, config: TrainConfig,
               class_names: list[str], metadata: dict[str, Any], generator: torch.Generator, progress: Progress,
               best: bool) -> None:  # fmt: skip
    """``best.pt`` when this epoch is the best so far (the served weights), and ``last.pt`` always (all state)."""
    if best:
        save_checkpoint(out / "best.pt", optimisation.served(model), config.features, class_names,
                        {**metadata, "selected_epoch": progress.epoch})  # fmt: skip
    state = checkpoint_payload(model, config.features, class_names, metadata)
    state.update(
        optimizer=optimisation.optimizer.state_dict(), scheduler=optimisation.scheduler.state_dict(),
        generator=generator.get_state(), torch_rng=torch.get_rng_state(), history=progress.history,
        epoch=progress.epoch, best_score=progress.best_score, elapsed=time.time() - progress.started,
    )  # fmt: skip
    if optimisation.averaged is not None:
        state["averaged_model"] = optimisation.averaged.state_dict()
    save_atomically(state, out / "last.pt")


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
    seed_everything(config.seed)
    device = resolve_device(config.device)
    autocast = bf16_pays_off(device)

    class_names = class_names_from_metadata(read_metadata(config.data_dir))
    if len(class_names) != config.model.num_classes:
        raise DatasetError(f"dataset has {len(class_names)} classes, model config {config.model.num_classes}")
    model = AudioCNN(config.model).to(device).to(memory_format=torch.channels_last)
    # Before the features are computed (a refused start costs nothing) and before averaging copies the model.
    origin = _start_from(model, config) if config.init_from else {}
    data = load_data(config, device)
    optimisation = build_optimisation(model, config, max(1, len(data.x_train) // config.batch_size))
    generator = torch.Generator().manual_seed(config.seed)
    progress = Progress(history=[], started=time.time())
    if resume and (out / "last.pt").is_file():
        restore(out / "last.pt", config, model, optimisation, generator, progress)

    writer = SummaryWriter(str(out / "tensorboard"))
    base = {
        "recipe": config.describe(),
        "train_folds": list(config.train_folds),
        "val_folds": list(config.val_folds),
        "test_folds": list(config.test_folds),
        "seed": config.seed,
        "code_version": code_version(),
        "device": device_label(device),
        "bf16_autocast": autocast,
        "selection": "best validation accuracy" if config.val_folds else "final epoch of a fixed schedule",
        **origin,
    }
    for epoch in range(progress.epoch, config.epochs):
        record = run_epoch(model, optimisation, data, config, epoch, generator, autocast)
        progress.history.append(record)
        progress.epoch = epoch + 1
        log_epoch(writer, record, config.epochs)
        score = record.get("val_accuracy", float(epoch + 1))  # no validation: the latest epoch wins
        best = score > progress.best_score
        if best:
            progress.best_score = score
        metadata = training_record(base, progress.history, epochs_trained=epoch + 1, epochs=config.epochs,
                                   training_seconds=time.time() - progress.started,
                                   devices=device_spans(progress.history))  # fmt: skip
        save_epoch(out, model, optimisation, config, class_names, metadata, generator, progress, best)
        if on_epoch_end is not None:
            on_epoch_end(record)
    writer.close()
    (out / "history.json").write_text(json.dumps(progress.history, indent=1))
    return out / "best.pt"
