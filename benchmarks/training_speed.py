"""Training throughput: the project's data path against the naive one, same model, same steps.

Project path (as ``training.loop`` trains): log-mels computed once through the serving
code (``training.data``), tensor augmentation per batch (``training.augment``), bf16
autocast where the CPU supports it, channels-last. Naive path (as the public tutorial
trains): a ``Dataset`` that decodes, resamples and computes the log-mel of every item in
every epoch, an fp32 model in the default memory format. Both run the same augmentation,
loss and optimiser, so the ratio isolates the data path and the numeric format; each step's
time is split into fetching the batch and the rest, so the report shows which of the two the
speed-up comes from.
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
from torch.utils.data import DataLoader, Dataset

from audiocnn.audio import fit_to_length
from audiocnn.features import FeatureConfig, LogMel
from audiocnn.model import AudioCNN, ModelConfig
from audiocnn.precision import bf16_pays_off
from audiocnn.samples import SampleClip
from training.data import Clip, compute_logmels, read_metadata, select_folds
from training.loop import build_optimizer, train_step
from training.recipe import TrainConfig

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


class Trainer:
    """One data path training its own fresh copy of the model, a step at a time."""

    def __init__(self, model_config: ModelConfig, batches: Batches, autocast: bool, channels_last: bool,
                 seed: int) -> None:  # fmt: skip
        self.recipe = TrainConfig(data_dir="", out_dir="")
        self.batches, self.autocast, self.channels_last = batches, autocast, channels_last
        torch.manual_seed(seed)
        model = AudioCNN(model_config).train()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.optimizer = build_optimizer(self.model, self.recipe)
        self.generator = torch.Generator().manual_seed(seed)
        self.step_seconds: list[float] = []
        self.fetch_seconds: list[float] = []

    def step(self, timed: bool) -> None:
        """Fetch a batch, then ``training.loop.train_step`` itself (augment, forward, backward, update;
        the LR schedule aside), so the figures measure the code that trains."""
        start = time.perf_counter()
        x, y = next(self.batches)
        fetched = time.perf_counter()
        loss, _ = train_step(self.model, self.optimizer, x, y, self.recipe.augment, self.recipe.label_smoothing,
                             self.generator, self.autocast, self.channels_last)  # fmt: skip
        loss.item()
        if timed:
            self.step_seconds.append(time.perf_counter() - start)
            self.fetch_seconds.append(fetched - start)

    def summary(self, batch_size: int) -> dict[str, Any]:
        """Step medians, split into fetching the batch (the data path) and the rest (augmentation,
        forward, backward, update: the numeric format), so the speed-up can be traced to its source."""
        median = float(np.median(self.step_seconds))
        fetch = float(np.median(self.fetch_seconds))
        compute = float(np.median(np.subtract(self.step_seconds, self.fetch_seconds)))
        return {"samples_per_second": batch_size / median, "median_step_ms": median * 1000,
                "median_fetch_ms": fetch * 1000, "median_compute_ms": compute * 1000,
                "bf16_autocast": self.autocast, "channels_last": self.channels_last}  # fmt: skip


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
    project = Trainer(model_config, cached_batches(features, targets, plan.train_batch, seed),
                      autocast=bf16_pays_off(torch.device("cpu")), channels_last=True, seed=seed)  # fmt: skip
    naive = Trainer(model_config, naive_batches(clips, config, plan.train_batch, seed),
                    autocast=False, channels_last=False, seed=seed)  # fmt: skip
    for step in range(plan.train_warmup + plan.train_steps):
        for trainer in (project, naive):  # alternating, so a change in machine load hits both paths alike
            trainer.step(timed=step >= plan.train_warmup)
    project_summary, naive_summary = project.summary(plan.train_batch), naive.summary(plan.train_batch)
    return {
        "clips": len(clips),
        "batch_size": plan.train_batch,
        "steps": plan.train_steps,
        "project": {**project_summary, "cache_build_seconds": cache_seconds},
        "naive": naive_summary,
        "speedup": project_summary["samples_per_second"] / naive_summary["samples_per_second"],
        "compute_speedup": naive_summary["median_compute_ms"] / project_summary["median_compute_ms"],
    }
