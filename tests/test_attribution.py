"""Attribution methods, faithfulness and listening: known answers on a hand-computable model, a
location check on a real clip (one bark in silence) and the sanity checks of Adebayo et al. (2018)
on the shipped model, each parametrised over every method."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from audiocnn import attribution, faithfulness, listen
from audiocnn.checkpoint import load_checkpoint
from audiocnn.features import FeatureConfig, LogMel
from audiocnn.inference import Predictor
from audiocnn.samples import SAMPLES_DIR

METHODS = list(attribution.METHODS)
MELS, FRAMES, HOP = 64, 50, 0.05  # 0.5 s occlusion = 10 frames


class Linear:
    """Two logits, each a weighted sum of the cells, exposing every Grad-CAM layer as the input itself.

    Every answer is known: IG and input x gradient are ``w * (x - floor)``, an occlusion patch loses
    the sum of that over the patch, Grad-CAM is ``relu(mean(w) * x)`` over its peak."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.w = torch.from_numpy(rng.normal(0.5, 1.0, (2, MELS, FRAMES))).float()
        self.w[1] *= 0.2  # class 0 minus class 1 keeps a positive mean weight (a non-empty Grad-CAM)

    def __call__(self, features: torch.Tensor, return_activations: bool = False):
        if not return_activations:
            return (features[:, 0, None] * self.w).sum(dim=(-2, -1))
        # A real network's activations depend on its weights, so they need grad even when the input does not.
        acts = {name: features.detach().clone().requires_grad_() for name in attribution.CAM_LAYERS}
        logits = sum((a[:, 0, None] * self.w).sum(dim=(-2, -1)) for a in acts.values()) / len(acts)
        return logits, acts

    def weights(self, target) -> np.ndarray:
        w = self.w.numpy()
        return w[target[0]] - w[target[1]] if isinstance(target, tuple) else w[target]


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    x = np.random.default_rng(1).uniform(-60, -10, (1, 1, MELS, FRAMES)).astype(np.float32)
    return torch.from_numpy(x)


def expected_map(key: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    m = attribution.method(key)
    height = x - x.min()
    if m.layer is not None:
        cam = np.maximum(w.mean() * x, 0)
        return cam / cam.max() if cam.max() > 0 else cam
    if m.patch is None:  # IG and input x gradient coincide on a linear model
        return w * height
    bands = MELS if m.patch[0] is None else m.patch[0]
    frames = FRAMES if m.patch[1] is None else round(m.patch[1] / HOP)
    out = np.zeros_like(x)
    for f in range(0, MELS, bands):
        for t in range(0, FRAMES, frames):
            out[f : f + bands, t : t + frames] = (w * height)[f : f + bands, t : t + frames].sum()
    return out


@pytest.mark.parametrize("target", [0, (0, 1)], ids=["class", "contrast"])
@pytest.mark.parametrize("key", METHODS)
def test_every_method_gives_the_known_answer_of_a_linear_model(key, target, clip, monkeypatch):
    monkeypatch.setattr(attribution, "SMOOTHGRAD_NOISE_DB", 0.0)  # noise-free SmoothGrad is input x gradient
    model = Linear()
    x = clip.numpy()[0, 0].astype(np.float64)
    if attribution.method(key).layer is not None:
        x = x - x.min()  # Grad-CAM of a non-negative activation (as after a ReLU)
    features = torch.from_numpy(x[None, None].astype(np.float32))
    got = attribution.attribute(model, features, target, key, HOP)
    assert got.shape == (MELS, FRAMES) and got.dtype == np.float32
    want = expected_map(key, x, model.weights(target))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_smoothgrad_averages_noisy_copies_reproducibly(clip):
    model = Linear()
    want = model.weights(0) * (clip.numpy()[0, 0] - clip.numpy().min())
    first, again = (attribution.smoothgrad(model, clip, 0, samples=64) for _ in range(2))
    np.testing.assert_array_equal(first, again)  # seeded: a rerun shows the same map
    assert not np.allclose(first, want, atol=1e-3)  # the noise is really there...
    noise = attribution.SMOOTHGRAD_NOISE_DB * np.abs(model.weights(0)) / np.sqrt(64)
    assert (np.abs(first - want) < 5 * noise).mean() > 0.99  # ...and averages out as 1/sqrt(samples)


def test_methods_refuse_what_they_cannot_explain(clip):
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribution.attribute(Linear(), clip, 0, "lime")
    with pytest.raises(ValueError, match="two different classes"):
        attribution.attribute(Linear(), clip, (1, 1), "integrated-gradients")
    with pytest.raises(ValueError, match="out of range"):
        attribution.attribute(Linear(), clip, 2, "occlusion-time", HOP)
    with pytest.raises(ValueError, match="single clip"):
        attribution.attribute(Linear(), clip.repeat(2, 1, 1, 1), 0, "smoothgrad")
    with pytest.raises(ValueError, match="frame hop"):
        attribution.attribute(Linear(), clip, 0, "occlusion-time")


def test_display_map_keeps_the_supporting_cells_as_a_share_of_the_peak():
    relevance = np.array([[-4.0, 0.0], [1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(attribution.display_map(relevance), [[0, 0], [0.5, 1.0]])
    assert not attribution.display_map(-relevance.clip(0)).any()  # nothing speaks for the class: all clear


# Faithfulness: ranking, deletion, areas and one full measurement by hand.


def test_ranking_breaks_ties_by_chance_not_by_position():
    relevance = np.array([[3.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    orders = [faithfulness.ranking(relevance, seed) for seed in range(8)]
    assert all(list(o[:2]) == [4, 0] for o in orders)  # 5 then 3, whatever the seed
    assert len({tuple(o[2:]) for o in orders}) > 1  # the four zeros come in different orders


def test_deleted_copies_remove_the_first_cells_of_the_order():
    logmel = torch.arange(1.0, 13.0).reshape(1, 1, 3, 4)
    order = np.array([5, 6, 0, 1, 2, 3, 4, 7, 8, 9, 10, 11])
    floor = faithfulness.deleted_copies(logmel, order, (0.0, 2 / 12, 0.5))
    assert floor.shape == (3, 1, 3, 4) and torch.equal(floor[0], logmel[0])
    assert (floor[1].flatten() == 1.0).nonzero().flatten().tolist() == [0, 5, 6]  # floor is 1; cells 5, 6 deleted
    assert (floor[2].flatten() == 1.0).sum() == 6
    imputed = faithfulness.deleted_copies(logmel, order, (2 / 12,), "impute")[0, 0]
    kept = logmel[0, 0].clone()
    window = np.ones((3, 4), bool)  # the whole 3 x 4 map is within 2 cells of both deleted cells
    window[1, 1:3] = False
    expected = kept.numpy()[window].mean()
    np.testing.assert_allclose(imputed.flatten()[[5, 6]].numpy(), expected, rtol=1e-6)
    assert torch.equal(imputed.flatten()[[0, 1, 2, 3, 4, 7]], logmel.flatten()[[0, 1, 2, 3, 4, 7]])
    everything = faithfulness.deleted_copies(logmel, order, (1.0,), "impute")
    assert (everything == 1.0).all()  # nothing kept nearby: the floor
    with pytest.raises(ValueError, match="unknown removal"):
        faithfulness.deleted_copies(logmel, order, (0.5,), "zero")


def test_areas_are_mean_relative_scores():
    shares = np.array([0.0, 0.25, 0.5])
    curves = faithfulness.Faithfulness(shares, np.array([0.8, 0.4, 0.0]), np.array([0.8, 0.8, 0.8]),
                                       np.array([0.8, 0.6, 0.4]))  # fmt: skip
    assert curves.area("most_first") == pytest.approx(0.5)
    assert curves.area("least_first") == pytest.approx(1.0)
    assert curves.area("random") == pytest.approx(0.75)
    assert curves.gap == pytest.approx(0.5)
    assert curves.at(0.25) == {"most_first": 0.4, "least_first": 0.8, "random": 0.6}
    with pytest.raises(ValueError, match="not measured"):
        curves.at(0.1)


def test_measure_scores_each_order_as_computed_by_hand(clip):
    model = Linear()
    model.w *= 1e-4  # logits of a few units: probabilities away from 0 and 1
    relevance = model.weights(0) * (clip.numpy()[0, 0] - clip.numpy().min())
    result = faithfulness.measure(model, clip, relevance, 0, shares=(0.0, 0.1), removals=("floor", "impute"))
    x, w = clip.numpy()[0, 0].ravel(), model.w.numpy().reshape(2, -1)
    order = faithfulness.ranking(relevance)
    for name, cells in (("most_first", order), ("least_first", order[::-1])):
        deleted = x.copy()
        deleted[cells[: round(0.1 * x.size)]] = x.min()
        logits = w @ deleted
        want = np.exp(logits[0] - np.logaddexp(logits[0], logits[1]))
        assert getattr(result["floor"], name)[1] == pytest.approx(want, rel=1e-4)
    assert result["floor"].base == pytest.approx(np.exp((w @ x)[0] - np.logaddexp(*(w @ x))), rel=1e-4)
    assert result["floor"].most_first[1] < result["floor"].random[1] < result["floor"].least_first[1]
    assert result["impute"].removal == "impute" and result["impute"].base == result["floor"].base


# Listening: the mel mask carried to STFT bins, on a signal whose answer is known.


@pytest.fixture(scope="module")
def frontend() -> LogMel:
    return LogMel(FeatureConfig()).eval()


def test_band_weights_cover_every_stft_bin_once(frontend):
    weights = listen.band_weights(frontend)
    assert weights.shape == (513, 128)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert weights[0].argmax() == 0 and weights[-1].argmax() == 127  # DC follows the lowest band, Nyquist the top


def test_splitting_by_bands_separates_a_low_and_a_high_tone(frontend):
    config = frontend.config
    t = np.arange(config.clip_samples) / config.sample_rate
    window = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    low = np.zeros((config.n_mels, config.num_frames))
    low[config.mel_frequencies() < 1500] = 1.0  # keep the bands below 1.5 kHz
    kept, removed = listen.split(frontend, window, low)
    np.testing.assert_allclose(kept + removed, window, atol=1e-4)  # the parts add back to the window

    def level(signal: np.ndarray, hz: float) -> float:
        spectrum = np.abs(np.fft.rfft(signal))
        return float(spectrum[round(hz * signal.size / config.sample_rate)])

    assert level(kept, 300) > 100 * level(kept, 6000)
    assert level(removed, 6000) > 100 * level(removed, 300)
    everything, nothing = listen.split(frontend, window, np.ones_like(low))
    np.testing.assert_allclose(everything, window, atol=1e-4)
    assert np.abs(nothing).max() < 1e-6


def test_keep_mask_keeps_the_top_share(frontend):
    relevance = np.arange(20.0).reshape(4, 5)
    mask = listen.keep_mask(relevance, 0.25)
    assert mask.sum() == 5 and mask.ravel()[15:].all()
    for share in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="kept share"):
            listen.keep_mask(relevance, share)


# The shipped model on one bark in five seconds of silence (the clip of the occlusion test).


@pytest.fixture(scope="module")
def shipped(shipped_checkpoint) -> Predictor:
    return Predictor(load_checkpoint(shipped_checkpoint))


@pytest.fixture(scope="module")
def bark(shipped):
    """The window, its log-mel, the dog class and the frames of the bark (2.2 s to 2.55 s)."""
    sound = shipped.load(SAMPLES_DIR / "5-203128-A-0.flac")[3300:11000]
    window = np.zeros(shipped.feature_config.clip_samples, np.float32)
    onset = int(2.2 * shipped.feature_config.sample_rate)
    window[onset : onset + len(sound)] = sound
    return window, shipped.logmel(window), shipped.class_names.index("dog")


def hop(predictor: Predictor) -> float:
    return predictor.feature_config.hop_length / predictor.feature_config.sample_rate


EMPTY_LAYER3 = (
    "measured on the shipped model: Grad-CAM layer3's dog map of the bark clip is all zero (every cell's "
    "gradient-weighted channel sum is negative, so Grad-CAM's ReLU keeps nothing); layer4 and the input "
    "methods find the bark"
)
MEASURED_FAILURES = {
    "test_every_method_finds_the_bark": {
        "gradcam-layer3": EMPTY_LAYER3,
        "occlusion-freq": (
            "measured on the shipped model: the band frequency occlusion ranks highest sits 16 dB above "
            "the floor in the bark's frames, not the 20 dB this test asks (trained with noise and "
            "microphone bands, the model does not rely on the bark's loudest band)"
        ),
    },
    "test_maps_depend_on_the_trained_weights": {"gradcam-layer3": EMPTY_LAYER3},
    "test_deleting_in_the_maps_order_beats_the_reverse": {
        "gradcam-layer3": EMPTY_LAYER3,
        "occlusion-freq": (
            "measured: deleting the bands frequency occlusion ranks highest costs the shipped model less "
            "than deleting those it ranks lowest (trained with frequency masks, it does not rely on any "
            "one band here)"
        ),
    },
}
"""Sanity checks the shipped model fails for one method, each measured and explained; strict, so a model
that passes them again makes the test fail until the entry is removed."""


def methods_for(test: str) -> list:
    """``METHODS`` as parameters, the measured failures of ``test`` marked as strict expected failures."""
    failures = MEASURED_FAILURES.get(test, {})
    return [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=failures[k])) if k in failures else k
            for k in METHODS]  # fmt: skip


@pytest.fixture(scope="module")
def bark_maps(shipped, bark) -> dict[str, np.ndarray]:
    _, features, dog = bark
    return attribution.attribute_many(shipped.forward, features, dog, METHODS, hop(shipped))


@pytest.mark.parametrize("key", methods_for("test_every_method_finds_the_bark"))
def test_every_method_finds_the_bark(key, shipped, bark, bark_maps):
    """The cells a map ranks highest lie where the bark is: in time (its frames), or for frequency
    occlusion, whose maps are constant in time, in a band the bark fills."""
    _, features, _ = bark
    positive = np.clip(bark_maps[key], 0, None)
    assert positive.max() > 0, "nothing speaks for Dog"
    times = shipped.feature_config.frame_times(features.shape[-1])
    if attribution.method(key).patch == attribution.OCCLUSION_PATCHES["occlusion-freq"][1]:
        logmel = features[0, 0].numpy()
        top_band = int(positive.sum(axis=1).argmax())
        bark_frames = (times >= 2.2) & (times <= 2.55)
        assert logmel[top_band, bark_frames].mean() > logmel.min() + 20  # the bark is loud in that band
    else:
        peak = times[int(positive.sum(axis=0).argmax())]
        assert 1.9 <= peak <= 3.2


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank (as Spearman's coefficient needs: maps have many equal cells)."""
    ranks = np.empty(values.size)
    ranks[values.argsort(kind="stable")] = np.arange(values.size)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (NumPy only: no statistics package is a dependency)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(average_ranks(a.ravel()), average_ranks(b.ravel()))[0, 1])


def test_rank_correlation_known_answers():
    assert rank_correlation(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert rank_correlation(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # with ties: ranks [0.5, 0.5, 2, 3] against [0, 1, 2, 3] (scipy.stats.spearmanr gives 0.9487)
    assert rank_correlation(np.array([0.0, 0, 1, 2]), np.array([0.0, 1, 2, 3])) == pytest.approx(0.9486833, abs=1e-6)


@pytest.fixture(scope="module")
def randomised(shipped) -> Predictor:
    """A copy of the shipped model whose head and top two stages are re-initialised (cascading from
    the top, Adebayo et al. 2018)."""
    model = copy.deepcopy(shipped.checkpoint.model)
    torch.manual_seed(1)
    for module in [model.head, *model.stages[-1].modules(), *model.stages[-2].modules()]:
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return Predictor(dataclasses.replace(shipped.checkpoint, model=model.eval()))


@pytest.mark.parametrize("key", methods_for("test_maps_depend_on_the_trained_weights"))
def test_maps_depend_on_the_trained_weights(key, shipped, randomised, bark, bark_maps):
    """Re-initialised top layers must change the map far more than running the method again does."""
    _, features, dog = bark
    again = attribution.attribute(shipped.forward, features, dog, key, hop(shipped))
    cells = np.ones(features.shape[-2:], bool)
    if key == "smoothgrad":
        # A different noise draw is SmoothGrad's own run-to-run spread. In the silence (cells at the
        # floor) its map is that noise times the gradient, new with every draw, so compare the sound.
        again = attribution.smoothgrad(shipped.forward, features, dog, seed=1)
        cells = (features[0, 0] > features.min() + 1).numpy()
    shuffled = attribution.attribute(randomised.forward, features, dog, key, hop(shipped))
    trained = bark_maps[key][cells]
    repeat, changed = rank_correlation(trained, again[cells]), rank_correlation(trained, shuffled[cells])
    assert changed < repeat - 0.3, (repeat, changed)


@pytest.mark.parametrize("key", METHODS)
def test_maps_of_two_classes_differ(key, shipped, bark, bark_maps):
    _, features, dog = bark
    runner_up = int(shipped.predict(bark[0]).order[1])
    assert runner_up != dog
    other = attribution.attribute(shipped.forward, features, runner_up, key, hop(shipped))
    assert rank_correlation(bark_maps[key], other) < 0.9


@pytest.mark.parametrize("key", methods_for("test_deleting_in_the_maps_order_beats_the_reverse"))
def test_deleting_in_the_maps_order_beats_the_reverse(key, shipped, bark, bark_maps):
    _, features, dog = bark
    curves = faithfulness.measure(shipped.forward, features, bark_maps[key], dog, removals=("impute",))["impute"]
    assert curves.area("most_first") < curves.area("least_first") - 0.05


def _selection(best: str, gaps: dict[str, float]) -> dict:
    methods = {key: {"impute": {"gap": {"mean": gap}}} for key, gap in gaps.items()}
    return {"selection": {"best": {"impute": best}, "methods": methods}}


def test_the_default_and_the_grad_cam_layer_offered_follow_the_selection_run():
    all_layers = list(attribution.CAM_LAYERS)
    gaps = {"gradcam-layer2": 0.40, "gradcam-layer4": 0.30, "integrated-gradients": 0.50}
    tables = _selection("integrated-gradients", gaps)
    assert attribution.chosen(tables, all_layers) == "integrated-gradients"
    assert attribution.chosen_cam_layer(tables, all_layers) == "layer2"  # the best Grad-CAM gap, not the deepest
    assert attribution.chosen_cam_layer(_selection("gradcam-layer4", gaps), all_layers) == "layer4"  # the default's
    assert attribution.chosen_cam_layer(None, all_layers) == "layer3"  # no evaluation: DEFAULT_METHOD's layer
    assert attribution.chosen_cam_layer(tables, ["stem", "layer1"]) == "layer1"  # a shallow model: its deepest
