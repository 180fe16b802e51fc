"""Shared fixtures: tiny checkpoints and audio made by the tests, the shipped model, ESC-50."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import settings

from audiocnn.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
from audiocnn.features import FeatureConfig
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import AudioCNN, ModelConfig

# The property tests draw the same examples on every run: a CI run must not pass or fail by the
# luck of its draws (a test on random bytes once failed CI one run in 256). HYPOTHESIS_PROFILE=explore
# searches anew.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

ROOT = Path(__file__).resolve().parent.parent
ESC50_DIR = Path(os.environ.get("AUDIOCNN_ESC50", ROOT.parent / "shared" / "esc50"))
"""ESC-50 for the tests that need it (``esc50_dir``); AUDIOCNN_ESC50 points elsewhere."""
TINY_MODEL = ModelConfig(stem_channels=8, widths=(8, 16), blocks=(1, 1))
TINY_FEATURES = FeatureConfig(clip_seconds=1.0, n_mels=32)


def tiny_train_config(dataset: Path, out: Path, cache: Path, epochs: int = 2, **changes):
    """The tests' tiny training recipe: ``TINY_MODEL`` on the tiny ESC-50, folds 1-3, validated on 4, 5 held out."""
    from dataclasses import replace

    from training.recipe import TrainConfig

    config = TrainConfig(
        data_dir=str(dataset), out_dir=str(out), train_folds=(1, 2, 3), val_folds=(4,), test_folds=(5,),
        epochs=epochs, batch_size=32, device="cpu", cache_dir=str(cache), model=TINY_MODEL, features=TINY_FEATURES,
    )  # fmt: skip
    return replace(config, **changes)


FOUR_STAGE_MODEL = ModelConfig(stem_channels=8, widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1))


def tone(seconds: float = 1.0, rate: int = 22050, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine tone, frames x channels, float32 in [-0.5, 0.5]."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1)


def audio_bytes(data: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode frames x channels to an in-memory file of the given format/subtype."""
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def make_esc50(root: Path, folds: int = 5, seconds: float = 0.5) -> Path:
    """A tiny ESC-50-layout folder: one clip per class and fold, each class its own tone.

    Like the shared copy, the csv lists ``.wav`` names while fold 5 is FLAC and the
    other folds OGG on disk, so extension resolution is exercised too.
    """
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    rng = np.random.default_rng(0)
    for fold in range(1, folds + 1):
        for target, name in enumerate(CLASS_NAMES):
            stem = f"{fold}-{target:03d}-A-0"
            signal = tone(seconds, 22050, 100.0 + 90.0 * target)[:, 0]
            signal = signal + 0.02 * rng.standard_normal(signal.shape[0])
            suffix = ".flac" if fold == 5 else ".ogg"
            sf.write(root / "audio" / f"{stem}{suffix}", signal.astype(np.float32), 22050)
            rows.append(f"{stem}.wav,{fold},{target},{name},False,{target:03d},A")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_esc50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared, read-only tiny ESC-50 folder (250 half-second clips); copy it before changing it."""
    return make_esc50(tmp_path_factory.mktemp("esc50"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, very small model in a real checkpoint file (fast to run)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, AudioCNN(TINY_MODEL).eval(), FeatureConfig(), list(CLASS_NAMES), {"note": "test"})
    return path


@pytest.fixture(scope="session")
def four_stage_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random model with all four stages, so every Grad-CAM layer of the real model exists."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "four_stage.pt"
    save_checkpoint(path, AudioCNN(FOUR_STAGE_MODEL).eval(), FeatureConfig(), list(CLASS_NAMES))
    return path


@pytest.fixture(scope="session")
def shipped_checkpoint() -> Path:
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"the shipped checkpoint {DEFAULT_CHECKPOINT} is missing")
    return DEFAULT_CHECKPOINT


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test that needs ESC-50 must not skip while ESC-50 is there: that skip would hide a broken copy
    or a broken test, and CI would pass without the one test that reproduces the shipped accuracy."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and "esc50_dir" in getattr(item, "fixturenames", ()) and ESC50_DIR.exists():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} needs ESC-50 and {ESC50_DIR} exists, but the test skipped: {reason}"


@pytest.fixture(scope="session")
def esc50_dir() -> Path:
    if not (ESC50_DIR / "meta" / "esc50.csv").is_file():
        pytest.skip(f"ESC-50 is not available at {ESC50_DIR}")
    return ESC50_DIR


@pytest.fixture(scope="session")
def trained_run(tiny_esc50: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test suite's tiny training run (2 epochs of ``TINY_MODEL`` on the tiny ESC-50, folds 1-3,
    validated on 4, fold 5 held out) in a runs folder of its own: returns ``<runs>/tiny/best.pt``.
    Its feature cache lies in the same runs folder, as ``--cache-dir runs/cache`` would put it."""
    from training.loop import train

    runs = tmp_path_factory.mktemp("runs")
    config = tiny_train_config(tiny_esc50, runs / "tiny", runs / "cache")
    return train(config)
