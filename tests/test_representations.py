"""Two models over the same clips: known agreement figures, and CKA of stages that share their weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import FOUR_STAGE_MODEL, TINY_MODEL

from audiocnn.checkpoint import LoadedCheckpoint
from audiocnn.cka import gram
from audiocnn.features import FeatureConfig
from audiocnn.inference import Predictor
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import AudioCNN
from audiocnn.representations import Survey, compare, stage_nodes, survey

FEATURES = FeatureConfig(clip_seconds=1.0, n_mels=32)


def predictor_of(model: AudioCNN) -> Predictor:
    return Predictor(LoadedCheckpoint(model.eval(), FEATURES, list(CLASS_NAMES)))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(FEATURES.clip_samples) / FEATURES.sample_rate
    tones = [0.3 * np.sin(2 * np.pi * f * t) for f in (200, 450, 900, 1800, 3500, 6000)]
    return [(x + 0.05 * rng.standard_normal(t.size)).astype(np.float32) for x in tones] + [
        (0.2 * rng.standard_normal(t.size)).astype(np.float32) for _ in range(6)
    ]


@pytest.fixture(scope="module")
def model() -> AudioCNN:
    torch.manual_seed(0)
    return AudioCNN(TINY_MODEL)


def test_a_model_against_itself_is_identical_everywhere(model, clips):
    a = survey(predictor_of(model), clips)
    result = compare(a, a, ["dog"] * len(clips))
    assert result.stages_a == ("stem", "layer1", "layer2", "pool")
    np.testing.assert_allclose(np.diag(result.cka), 1.0, atol=1e-9)
    assert result.agreement == 1.0 and result.disagreements == [] and result.per_class == {"dog": 1.0}


def test_changing_only_the_last_stage_leaves_the_earlier_ones_identical(model, clips):
    """Perturb layer2's weights: stem and layer1 are the same functions (CKA 1), layer2 is not."""
    changed = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in changed.stages[1].parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    result = compare(survey(predictor_of(model), clips), survey(predictor_of(changed), clips), ["dog"] * len(clips))
    stage = {name: i for i, name in enumerate(result.stages_a)}
    assert result.cka[stage["stem"], stage["stem"]] == pytest.approx(1.0, abs=1e-9)
    assert result.cka[stage["layer1"], stage["layer1"]] == pytest.approx(1.0, abs=1e-9)
    assert result.cka[stage["layer2"], stage["layer2"]] < 0.99
    assert result.cka[stage["layer2"], stage["layer1"]] < 0.99  # rows: A's stages, columns: B's


def test_rows_are_the_first_models_stages(model, clips):
    torch.manual_seed(2)
    deeper = AudioCNN(FOUR_STAGE_MODEL)
    result = compare(survey(predictor_of(model), clips), survey(predictor_of(deeper), clips), ["dog"] * len(clips))
    assert result.stages_b == ("stem", "layer1", "layer2", "layer3", "layer4", "pool")
    assert result.cka.shape == (4, 6)
    assert np.all((result.cka >= 0) & (result.cka <= 1))


def one_hot_survey(tops: list[str]) -> Survey:
    names = ("dog", "rain")
    probabilities = np.array([[0.9, 0.1] if top == "dog" else [0.2, 0.8] for top in tops])
    features = np.random.default_rng(len(tops)).standard_normal((len(tops), 3))
    return Survey(("stem",), {"stem": gram(features)}, probabilities, names)


def test_agreement_overall_per_class_and_against_the_truth():
    labels = ["dog", "dog", "rain", "rain"]
    result = compare(one_hot_survey(["dog", "dog", "rain", "dog"]), one_hot_survey(["dog", "rain", "rain", "dog"]),
                     labels)  # fmt: skip
    assert result.agreement == 0.75
    assert result.per_class == {"dog": 0.5, "rain": 1.0}
    assert (result.accuracy_a, result.accuracy_b) == (0.75, 0.5)
    assert result.disagreements == [(1, "dog", "rain")]


def test_surveys_of_other_clips_are_refused():
    with pytest.raises(ValueError, match="same 3 clips"):
        compare(one_hot_survey(["dog"] * 4), one_hot_survey(["dog"] * 4), ["dog"] * 3)
    with pytest.raises(ValueError, match="at least two clips"):
        survey(None, [np.zeros(10, np.float32)])


def test_stage_nodes_in_forward_order():
    assert stage_nodes(["layer2", "pool", "stem", "layer1.block0.out", "layer1", "logits"]) == [
        "stem", "layer1", "layer2", "pool",
    ]  # fmt: skip
