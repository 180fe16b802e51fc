"""Many sessions at once on one cached model: each gets exactly the result it would get alone.

Activations come back from ``forward`` per call and Grad-CAM uses ``autograd.grad``
on them (no hooks, no state on the model), so parallel analyses cannot mix. These
tests run 8-12 analyses in threads started together by a barrier and compare every
prediction, activation and Grad-CAM map with the sequential result for the same clip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch

from audiocnn.inference import Analysis, Predictor

RATE = 22050
THREADS = 8
T = TypeVar("T")


@pytest.fixture(scope="module")
def predictor(four_stage_checkpoint: Path) -> Predictor:
    """One model for the whole module, as the app caches one per process."""
    return Predictor.from_checkpoint(four_stage_checkpoint)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Twelve clearly different clips: tones, chirps, noise bursts, clicks, of different lengths."""
    rng = np.random.default_rng(0)
    result = []
    for i in range(12):
        t = np.arange(int((2.0 + 0.5 * i) * RATE)) / RATE
        kind = i % 4
        if kind == 0:
            x = 0.4 * np.sin(2 * np.pi * (150 + 300 * i) * t)
        elif kind == 1:
            x = 0.4 * np.sin(2 * np.pi * (100 + 400 * i * t) * t)
        elif kind == 2:
            x = 0.3 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * (i / 3) * t) > 0)
        else:
            x = np.zeros(t.size)
            x[:: RATE // (i + 2)] = 0.9
        result.append(x.astype(np.float32))
    return result


def _together(jobs: list[Callable[[], T]]) -> list[T]:
    """Run the jobs in threads released at the same instant; results in job order."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], T]) -> T:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(run, jobs))


def _assert_same_analysis(got: Analysis, expected: Analysis) -> None:
    assert got.cam_class == expected.cam_class
    np.testing.assert_array_equal(got.waveform, expected.waveform)
    np.testing.assert_allclose(got.logmel, expected.logmel, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.prediction.probabilities, expected.prediction.probabilities, rtol=1e-5, atol=1e-7)
    assert got.activations.keys() == expected.activations.keys()
    for name, value in expected.activations.items():
        np.testing.assert_allclose(got.activations[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    assert got.cams.keys() == expected.cams.keys()
    for name, value in expected.cams.items():
        np.testing.assert_allclose(got.cams[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_parallel_analyses_equal_sequential(predictor: Predictor, clips: list[np.ndarray]) -> None:
    # Every other request explains a fixed class instead of its own top class.
    cam_classes = [None if i % 2 == 0 else (7 * i) % 50 for i in range(len(clips))]
    expected = [predictor.analyze(c, cam_class=k) for c, k in zip(clips, cam_classes)]
    assert len({e.prediction.probabilities.tobytes() for e in expected}) == len(clips), "clips must differ"
    got = _together([lambda c=c, k=k: predictor.analyze(c, cam_class=k) for c, k in zip(clips, cam_classes)])
    for g, e in zip(got, expected):
        _assert_same_analysis(g, e)


def test_parallel_explanations_equal_sequential(predictor: Predictor, clips: list[np.ndarray]) -> None:
    classes = [(11 * i + 3) % 50 for i in range(THREADS)]
    expected = [predictor.explain(clips[i], classes[i]) for i in range(THREADS)]
    got = _together([lambda i=i: predictor.explain(clips[i], classes[i]) for i in range(THREADS)])
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        for name in e:
            np.testing.assert_allclose(g[name], e[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_mixed_workload_in_parallel(predictor: Predictor, clips: list[np.ndarray]) -> None:
    """Analyses, explanations, batch predictions and timelines interleaved on the same model."""
    long_clip = np.concatenate(clips[:4])
    jobs: list[Callable[[], object]] = [
        lambda: predictor.analyze(clips[0]),
        lambda: predictor.explain(clips[1], 5),
        lambda: predictor.predict_batch(clips[2:6]),
        lambda: predictor.timeline(long_clip),
        lambda: predictor.analyze(clips[6], cam_class=40, with_activations=False),
        lambda: predictor.predict(clips[7]),
        lambda: predictor.explain(clips[8], 49),
        lambda: predictor.analyze(clips[9]),
    ]
    expected = [job() for job in jobs]
    got = _together(jobs)
    _assert_same_analysis(got[0], expected[0])
    for name in expected[1]:
        np.testing.assert_allclose(got[1][name], expected[1][name], rtol=1e-4, atol=1e-5)
    for g, e in zip(got[2], expected[2]):
        np.testing.assert_allclose(g.probabilities, e.probabilities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[3].probabilities, expected[3].probabilities, rtol=1e-5, atol=1e-7)
    _assert_same_analysis(got[4], expected[4])
    np.testing.assert_allclose(got[5].probabilities, expected[5].probabilities, rtol=1e-5, atol=1e-7)
    for name in expected[6]:
        np.testing.assert_allclose(got[6][name], expected[6][name], rtol=1e-4, atol=1e-5)
    _assert_same_analysis(got[7], expected[7])


def test_parallel_analyses_leave_the_model_untouched(predictor: Predictor, clips: list[np.ndarray]) -> None:
    """No hooks, no gradients and no mode change are left behind on the shared model."""
    before = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    _together([lambda c=c: predictor.analyze(c) for c in clips[:THREADS]])
    assert not predictor.model.training
    assert all(p.grad is None for p in predictor.model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in predictor.model.modules())
    after = predictor.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_shipped_model_in_parallel(shipped_checkpoint: Path) -> None:
    """The real network (bigger layers, real BatchNorm statistics) under 8 simultaneous analyses."""
    predictor = Predictor.from_checkpoint(shipped_checkpoint)
    rng = np.random.default_rng(5)
    clips = [(0.2 * rng.standard_normal(5 * RATE) * np.hanning(5 * RATE) ** i).astype(np.float32) for i in range(8)]
    expected = [predictor.analyze(c, with_activations=False) for c in clips]
    got = _together([lambda c=c: predictor.analyze(c, with_activations=False) for c in clips])
    for g, e in zip(got, expected):
        _assert_same_analysis(g, e)
