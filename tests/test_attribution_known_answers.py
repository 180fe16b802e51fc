"""Attribution maps with known answers: a hand-computed case, and where the real model looks on a real clip.

Shape and range checks pass for a map that is weighted wrongly or reversed in time; these do not.
Each attribution method gets both kinds of test: add it to ``METHODS`` (one clip in, ``{layer: map}``
out) and to ``HAND_COMPUTED`` where it has a closed form.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from audiocnn.checkpoint import load_checkpoint
from audiocnn.explain import cam_from_gradients, cams_from_forward
from audiocnn.inference import Predictor
from audiocnn.samples import SAMPLES_DIR

# Two channels over 2 mel bands x 3 frames. Channel 0 rises in time, channel 1 sits at the start.
ACTIVATION = torch.tensor([[[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]],
                            [[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]]])  # fmt: skip
# Channel weights are the gradients' means: 1 and -2/3. Their maxima (2, 1) or mean magnitudes (1, 1)
# would give other maps.
GRADIENT = torch.tensor([[[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]],
                          [[-3.0, 1.0, 0.0], [0.0, 0.0, -2.0]]]])  # fmt: skip
# relu(1 * A0 - 2/3 * A1) = [0, 1, 2] in both bands (the first frame's -4/3 is cut), scaled to a peak of 1.
EXPECTED_MAP = np.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]], dtype=np.float32)


def test_grad_cam_of_a_hand_computed_case() -> None:
    cam = cam_from_gradients(ACTIVATION, GRADIENT, (2, 3))
    assert cam.dtype == np.float32
    np.testing.assert_allclose(cam, EXPECTED_MAP, atol=1e-6)


def test_grad_cam_is_scaled_to_its_own_peak_however_small() -> None:
    """A weak layer (its peak far below 1) gives the same map: the scaling divides by any positive peak."""
    np.testing.assert_allclose(cam_from_gradients(ACTIVATION * 1e-3, GRADIENT, (2, 3)), EXPECTED_MAP, atol=1e-6)


def test_grad_cam_upsamples_with_half_pixel_centres() -> None:
    """3 frames to 6: output frame i samples input position (i + 0.5) / 2 - 0.5, clamped to the edges."""
    cam = cam_from_gradients(ACTIVATION, GRADIENT, (2, 6))
    np.testing.assert_allclose(cam, np.tile([0.0, 0.125, 0.375, 0.625, 0.875, 1.0], (2, 1)), atol=1e-6)


def test_grad_cam_of_a_layer_that_only_speaks_against_the_class_is_zero() -> None:
    cam = cam_from_gradients(ACTIVATION, -GRADIENT.abs(), (2, 3))
    assert cam.dtype == np.float32 and not cam.any()


def test_grad_cam_sums_bf16_activations_in_fp32() -> None:
    """Half of a weak channel survives a bf16 sum beside a strong one only if the sum is taken in fp32."""
    activation = torch.tensor([[[[256.0, 256.0]], [[0.0, 1.0]]]], dtype=torch.bfloat16)
    gradient = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]]], dtype=torch.bfloat16)
    np.testing.assert_allclose(cam_from_gradients(activation, gradient, (1, 2)), [[256 / 257, 1.0]], atol=1e-6)


def test_cams_from_forward_takes_the_gradient_of_the_chosen_class() -> None:
    """Score 1's gradient on the activation is ``GRADIENT`` itself, so its map is the hand-computed one;
    score 0's gradient is its negation: relu(-A0 + 2/3 A1) = [4/3, 0, 0], the first frame alone."""
    activation = ACTIVATION.clone().requires_grad_(True)
    logits = torch.stack([(-GRADIENT * activation).sum(), (GRADIENT * activation).sum()])[None]
    maps = cams_from_forward(logits, {"stem": activation}, 1, (2, 3))
    assert set(maps) == {"stem"}
    np.testing.assert_allclose(maps["stem"], EXPECTED_MAP, atol=1e-6)
    activation = ACTIVATION.clone().requires_grad_(True)
    logits = torch.stack([(-GRADIENT * activation).sum(), (GRADIENT * activation).sum()])[None]
    other = cams_from_forward(logits, {"stem": activation}, 0, (2, 3))["stem"]
    np.testing.assert_allclose(other, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-6)


# --- the real model on a real clip -------------------------------------------------------------------------

Method = Callable[[Predictor, np.ndarray, int], dict[str, np.ndarray]]
METHODS: dict[str, Method] = {
    "grad_cam": lambda model, clip, target: model.explain(clip, target),
    "grad_cam_of_analyze": lambda model, clip, target: model.analyze(clip, cam_class=target).cams,
}
"""Every attribution method over the app's window: (model, 5 s clip, class) -> {layer: map (mels, frames)}."""

LOCATING_LAYERS = ("stem", "layer3", "layer4")
"""Layers whose dog map peaks on the bark on the shipped model. layer1 and layer2 put their peak in the
silence (their channels respond to the clip's floor), which is why the app defaults to layer3."""

BARK_SECONDS = (3300, 11000)  # samples of 5-203128-A-0 holding one bark (0.35 s)


@pytest.fixture(scope="module")
def shipped(shipped_checkpoint) -> Predictor:
    return Predictor(load_checkpoint(shipped_checkpoint))


def bark_in_silence(model: Predictor, onset_seconds: float) -> tuple[np.ndarray, float, float]:
    """One bark at ``onset_seconds`` in 5 s of digital silence; returns (clip, bark start, bark end)."""
    bark = model.load(SAMPLES_DIR / "5-203128-A-0.flac")[slice(*BARK_SECONDS)]
    rate = model.feature_config.sample_rate
    clip = np.zeros(model.feature_config.clip_samples, np.float32)
    onset = int(onset_seconds * rate)
    clip[onset : onset + len(bark)] = bark
    return clip, onset / rate, (onset + len(bark)) / rate


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("onset", [1.0, 3.6], ids=["early", "late"])
def test_the_dog_map_peaks_on_the_bark(shipped, method, onset) -> None:
    """Off-centre barks, early and late: a map reversed in time peaks in the silence on the other side."""
    clip, start, end = bark_in_silence(shipped, onset)
    dog = shipped.class_names.index("dog")
    maps = METHODS[method](shipped, clip, dog)
    seconds_per_frame = shipped.feature_config.hop_length / shipped.feature_config.sample_rate
    tolerance = 0.1  # about four frames: the maps are upsampled from a coarser grid
    for layer in LOCATING_LAYERS:
        cam = maps[layer]
        _, frame = np.unravel_index(np.argmax(cam), cam.shape)
        assert start - tolerance <= frame * seconds_per_frame <= end + tolerance, (layer, frame * seconds_per_frame)
        times = np.arange(cam.shape[1]) * seconds_per_frame
        on_bark = (times >= start) & (times <= end)
        assert cam[:, on_bark].mean() > 2 * cam[:, ~on_bark].mean(), layer
