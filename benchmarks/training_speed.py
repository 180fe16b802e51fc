"""Training throughput: the project's data path against the naive one, same model, same steps.

Project path (as ``training.loop`` trains): log-mels computed once through the serving
code (``training.data``), tensor augmentation per batch (``training.augment``), bf16
autocast where the CPU supports it, channels-last. Naive path (as the public tutorial
trains): a ``Dataset`` that decodes, resamples and computes the log-mel of every item in
every epoch, an fp32 model in the default memory format. Both run the same augmentation,
loss and optimiser, so the ratio isolates the data path and the numeric format.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from audiocnn.audio import fit_to_length
from audiocnn.features import FeatureConfig, LogMel
from audiocnn.model import AudioCNN, ModelConfig
from audiocnn.samples import SampleClip
from training.augment import augment_batch
from training.data import Clip, compute_logmels, read_metadata, select_folds
from training.loop import TrainConfig, bf16_supported

from .plan import Plan

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class NaiveDataset(Dataset):
    """Every item, every epoch: decode (soundfile), mono, resample, fit, log-mel in fp32."""

    def __init__(self, clips: list[Clip], config: FeatureConfig) -> None:
        self.clips = clips
        self.config = config
        self.frontend = LogMel(config)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[index]
        samples, rate = sf.read(clip.path, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
        if rate != self.config.sample_rate:
            mono = soxr.resample(mono, rate, self.config.sample_rate)
        waveform = torch.from_numpy(np.ascontiguousarray(fit_to_length(mono, self.config.clip_samples)))
        with torch.no_grad():
            return self.frontend(waveform)[0], clip.target


def naive_batches(clips: list[Clip], config: FeatureConfig, batch_size: int, seed: int) -> Batches:
    """Endless shuffled epochs through a ``DataLoader`` in the main process, as the tutorial does."""
    loader = DataLoader(NaiveDataset(clips, config), batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    while True:
        yield from loader


def cached_batches(features: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int) -> Batches:
    """Endless shuffled epochs indexed straight out of the in-memory log-mel cache."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield features[index], targets[index]


def run_steps(
    model_config: ModelConfig, batches: Batches, plan: Plan, autocast: bool, channels_last: bool, seed: int
) -> dict[str, Any]:
    """Train a fresh model for ``plan``'s steps; samples/s from the median step (batch fetch included)."""
    recipe = TrainConfig(data_dir="", out_dir="")
    torch.manual_seed(seed)
    model = AudioCNN(model_config).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    step_seconds = []
    for step in range(plan.train_warmup + plan.train_steps):
        start = time.perf_counter()
        x, y = next(batches)
        x, targets = augment_batch(x, y, model_config.num_classes, recipe.augment, generator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x).float()
        smoothed = targets * (1 - recipe.label_smoothing) + recipe.label_smoothing / targets.shape[1]
        loss = torch.sum(-smoothed * F.log_softmax(logits, dim=1), dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        if step >= plan.train_warmup:
            step_seconds.append(time.perf_counter() - start)
    median = float(np.median(step_seconds))
    return {"samples_per_second": plan.train_batch / median, "median_step_ms": median * 1000,
            "bf16_autocast": autocast, "channels_last": channels_last}  # fmt: skip


def training_clips(samples: list[SampleClip], data_dir: str | Path | None, count: int) -> list[Clip]:
    """The first ``count`` bundled samples, or (with ``data_dir``) clips of the ESC-50 training folds."""
    if data_dir is None:
        return [Clip(c.path, c.fold, c.target, c.label) for c in samples[:count]]
    return select_folds(read_metadata(data_dir), TrainConfig(data_dir="", out_dir="").train_folds)[:count]


def measure(
    model_config: ModelConfig, config: FeatureConfig, clips: list[Clip], plan: Plan, seed: int = 0
) -> dict[str, Any]:
    """Both data paths on the same clips and model; ``speedup`` is project / naive samples per second."""
    start = time.perf_counter()
    features = compute_logmels(clips, config)
    cache_seconds = time.perf_counter() - start
    targets = torch.tensor([c.target for c in clips])
    project = run_steps(model_config, cached_batches(features, targets, plan.train_batch, seed), plan,
                        autocast=bf16_supported(torch.device("cpu")), channels_last=True, seed=seed)  # fmt: skip
    naive = run_steps(model_config, naive_batches(clips, config, plan.train_batch, seed), plan,
                      autocast=False, channels_last=False, seed=seed)  # fmt: skip
    return {
        "clips": len(clips),
        "batch_size": plan.train_batch,
        "steps": plan.train_steps,
        "project": {**project, "cache_build_seconds": cache_seconds},
        "naive": naive,
        "speedup": project["samples_per_second"] / naive["samples_per_second"],
    }
