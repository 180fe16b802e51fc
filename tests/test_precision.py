"""bf16 is used only where the CPU computes it natively, and it does not change what the shipped model says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiocnn.inference import Predictor
from audiocnn.precision import bf16_pays_off, cpu_flags
from audiocnn.samples import list_samples

MKLDNN_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_cpu_flags_reads_the_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert cpu_flags(tmp_path / "noflags") == frozenset()


def test_bf16_only_where_the_cpu_has_native_bf16() -> None:
    cpu = torch.device("cpu")
    assert bf16_pays_off(cpu, flags=frozenset({"avx512f", "avx512bw"})) is False  # emulated bf16: no gain
    assert bf16_pays_off(cpu, flags=frozenset()) is False
    assert bf16_pays_off(cpu, flags=frozenset({"avx512f", "avx512_bf16"})) is MKLDNN_BF16
    assert bf16_pays_off(cpu, flags=frozenset({"amx_bf16"})) is MKLDNN_BF16
    assert bf16_pays_off(torch.device("meta")) is False


def test_predictor_precision_follows_the_cpu_unless_told(shipped_checkpoint: Path) -> None:
    assert Predictor.from_checkpoint(shipped_checkpoint).bf16 is bf16_pays_off(torch.device("cpu"))
    assert Predictor.from_checkpoint(shipped_checkpoint, bf16=False).bf16 is False


@pytest.mark.skipif(not MKLDNN_BF16, reason="this CPU has no oneDNN bf16 kernels")
def test_bf16_gives_the_shipped_models_fp32_answers(shipped_checkpoint: Path) -> None:
    fp32 = Predictor.from_checkpoint(shipped_checkpoint, bf16=False)
    bf16 = Predictor(fp32.checkpoint, bf16=True)
    samples = list_samples()[::4]
    waveforms = [fp32.load(s.path) for s in samples]
    exact = np.stack([p.probabilities for p in fp32.predict_batch(waveforms)])
    rounded = np.stack([p.probabilities for p in bf16.predict_batch(waveforms)])
    assert (exact.argmax(axis=1) == rounded.argmax(axis=1)).all()
    assert np.abs(exact - rounded).max() < 0.02
    analysis = bf16.analyze(waveforms[0])
    assert all(value.dtype == np.float32 and np.isfinite(value).all() for value in analysis.activations.values())
    reference = fp32.analyze(waveforms[0])
    for layer, cam in analysis.cams.items():
        assert cam.dtype == np.float32 and cam.max() == pytest.approx(1.0)
        assert np.abs(cam - reference.cams[layer]).mean() < 0.02, layer


def test_precision_agreement_counts_the_clips_whose_top_class_moves(tiny_checkpoint, tiny_esc50):
    """The model card's bf16 figures: a top-1 change is counted exactly when the two precisions' top classes differ."""
    from benchmarks.precision_agreement import agreement
    from training.data import read_metadata, select_folds

    result = agreement(tiny_checkpoint, tiny_esc50, [5], limit=20)
    clips = select_folds(read_metadata(tiny_esc50), [5])[:20]
    waves = [Predictor.from_checkpoint(tiny_checkpoint).load(c.path) for c in clips]
    predictors = [Predictor.from_checkpoint(tiny_checkpoint, bf16=b) for b in (True, False)]
    low, high = (np.stack([p.probabilities for p in predictor.predict_batch(waves)]) for predictor in predictors)
    assert result["clips"] == 20
    assert result["top1_changed"] == int((low.argmax(1) != high.argmax(1)).sum())
    assert result["largest_probability_difference"] == pytest.approx(np.abs(low - high).max(), abs=1e-4)
    assert result["largest_probability_difference"] > 0  # bf16 does move a random model's probabilities


@pytest.mark.skipif(not MKLDNN_BF16, reason="this CPU has no oneDNN bf16 kernels")
def test_the_stored_bf16_weights_compute_exactly_what_autocast_computes(tiny_checkpoint: Path) -> None:
    """The copy that spares autocast its per-call weight casts is the same rounding: equal bits, not close ones."""
    predictor = Predictor.from_checkpoint(tiny_checkpoint, bf16=True)
    model, copy = predictor.model, predictor.compute_model
    convs = [m for m in copy.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    norms = [m for m in copy.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)  # autocast keeps batch-norm in fp32 too
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the checkpoint's network is untouched
    features = predictor.logmel(np.random.default_rng(0).standard_normal(22050 * 5).astype(np.float32))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, expected_activations = model(features, return_activations=True)
    logits, activations = predictor.forward(features, return_activations=True)
    assert torch.equal(logits, expected.float())
    assert all(torch.equal(activations[name], value) for name, value in expected_activations.items())
    assert Predictor(predictor.checkpoint, bf16=False).compute_model is predictor.checkpoint.model
