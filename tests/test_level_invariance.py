"""Feature version 2 makes the prediction independent of the input's gain; version 1 stays as it was."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import ROOT

from audiocnn.checkpoint import LoadedCheckpoint, load_checkpoint
from audiocnn.features import LEVEL_INVARIANT_VERSION, FeatureConfig, LogMel
from audiocnn.inference import Predictor
from audiocnn.perturb import apply_gain

GAINS_DB = (-40.0, -30.0, -20.0, -10.0, 0.0, 6.0)
BARK = ROOT / "assets" / "samples" / "5-203128-A-0.flac"


@pytest.fixture(scope="module")
def bark() -> np.ndarray:
    """The bundled bark at a -7 dBFS peak, so +6 dB still fits: above 0 dBFS the serving path clips
    (``audio.sanitize``), as a recorder driven too hot would, and that is distortion, not gain."""
    clip = Predictor.from_checkpoint(ROOT / "assets" / "model.pt").load(BARK)[: FeatureConfig().clip_samples]
    return (clip * (10 ** (-7 / 20) / np.abs(clip).max())).astype(np.float32)


def test_version_2_is_version_1_referenced_to_the_loudest_bin(bark):
    v1 = LogMel(FeatureConfig())(torch.from_numpy(bark))
    v2 = LogMel(FeatureConfig(version=LEVEL_INVARIANT_VERSION))(torch.from_numpy(bark))
    torch.testing.assert_close(v2, v1 - v1.amax(), atol=1e-4, rtol=0)
    assert v2.amax() == 0.0 and v2.amin() >= -FeatureConfig().top_db


@pytest.mark.parametrize("gain_db", GAINS_DB)
def test_version_2_features_do_not_move_with_gain(bark, gain_db):
    front = LogMel(FeatureConfig(version=LEVEL_INVARIANT_VERSION))
    reference = front(torch.from_numpy(bark))
    louder = front(torch.from_numpy(apply_gain(bark, gain_db)))
    torch.testing.assert_close(louder, reference, atol=2e-3, rtol=0)  # float32 log10 of rescaled power


def test_version_1_features_do_move_with_gain(bark):
    """The failure version 2 fixes: with absolute dB a 20 dB quieter clip is a 20 dB lower input."""
    front = LogMel(FeatureConfig())
    shift = front(torch.from_numpy(bark)) - front(torch.from_numpy(apply_gain(bark, -20.0)))
    assert shift.amax().item() == pytest.approx(20.0, abs=1e-3)


def test_a_version_2_model_predicts_the_same_at_every_gain(bark):
    """The shipped weights served with the version-2 front end (a stand-in for a version-2 model):
    the probabilities of a clip at -40..+6 dB agree within bf16 noise."""
    shipped = load_checkpoint(ROOT / "assets" / "model.pt")
    v2 = LoadedCheckpoint(shipped.model, replace(shipped.feature_config, version=LEVEL_INVARIANT_VERSION),
                          shipped.class_names, shipped.metadata, None)  # fmt: skip
    model = Predictor(v2)
    probabilities = np.stack([p.probabilities for p in model.predict_batch([apply_gain(bark, g) for g in GAINS_DB])])
    assert np.abs(probabilities - probabilities[GAINS_DB.index(0.0)]).max() < 5e-3
    assert len(set(probabilities.argmax(axis=1))) == 1


def test_checkpoints_keep_the_version_they_were_trained_with():
    """The shipped model's second stage moved it to version 2 and it is served with that; a config saved
    before versions existed (the first models) reads as version 1."""
    assert load_checkpoint(ROOT / "assets" / "model.pt").feature_config.version == 2
    legacy = {k: v for k, v in FeatureConfig().to_dict().items() if k != "version"}
    assert FeatureConfig.from_dict(legacy).version == 1
    assert FeatureConfig.from_dict({**legacy, "version": 2}).version == 2
