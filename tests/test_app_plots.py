"""App-side helpers that need no Streamlit: axes through strides, colour scales, envelopes, the sample index."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from audiocnn.checkpoint import load_checkpoint
from audiocnn.features import FeatureConfig
from audiocnn.inference import Predictor
from audiocnn.model import AudioCNN, ModelConfig
from audiocnn.samples import list_samples
from ui.axes import cell_milliseconds, input_axes, map_axes, node_strides
from ui.layers import browsable_nodes, channel_ranking, is_nonnegative, node_stats, short_name
from ui.plots import (
    SIGNED_SCALE,
    activation_scale,
    channel_grid_figure,
    confusion_figure,
    envelope,
    spectrogram_figure,
    waveform_figure,
)
from ui.sample_index import build_sample_index


@pytest.mark.parametrize("stem_pool", [True, False], ids=["stem-pool", "no-stem-pool"])
def test_strides_match_the_real_activation_shapes(stem_pool):
    model = AudioCNN(ModelConfig(stem_pool=stem_pool)).eval()
    config = FeatureConfig()
    with torch.no_grad():
        _, activations = model(torch.zeros(1, 1, config.n_mels, config.num_frames), return_activations=True)
    for node, (sf, st) in node_strides(model).items():
        height, width = activations[node].shape[2:]
        assert height == -(-config.n_mels // sf), node
        assert width == -(-config.num_frames // st), node
    assert node_strides(model)["layer4"] == ((32, 32) if stem_pool else (16, 16))


def test_map_axes_trace_cells_back_to_seconds_and_hz():
    config = FeatureConfig()
    axes = map_axes(config, (8, 14), (16, 16))
    assert axes.seconds[1] == pytest.approx(16 * config.hop_length / config.sample_rate)
    assert cell_milliseconds(config, (16, 16)) == pytest.approx(axes.seconds[1] * 1000)
    assert axes.hz[1] == pytest.approx(config.mel_frequencies()[16])
    assert len(set(axes.hz_labels)) == 8
    assert axes.hz_ticks() == axes.hz_labels  # coarse maps label every row
    full = input_axes(config)
    assert len(set(full.hz_labels)) == config.n_mels
    assert 4 <= len(full.hz_ticks()) <= 10


def test_node_names_and_kinds():
    nodes = browsable_nodes(ModelConfig())
    assert nodes[:4] == ["stem.conv", "stem.bn", "stem.relu", "stem"]
    assert "layer4.block1.out" in nodes
    assert is_nonnegative("stem") and is_nonnegative("layer2.block0.relu1") and is_nonnegative("layer1.block1.out")
    assert not is_nonnegative("layer2.block0.bn2") and not is_nonnegative("layer3.block0.shortcut")
    assert short_name("stem") == "pool" and short_name("layer1.block0.conv2") == "conv2"
    assert short_name("stem", stem_pool=False) == "stem out"


def test_stats_and_ranking():
    values = np.stack([np.full((2, 3), -1.0), np.zeros((2, 3)), np.full((2, 3), 2.0)])
    stats = node_stats(values)
    assert stats.share_zero == pytest.approx(1 / 3)
    assert stats.share_negative == pytest.approx(1 / 3)
    assert stats.maximum == 2.0
    assert list(channel_ranking(values)) == [2, 1, 0]


def test_colour_scales_are_shared_and_centred():
    signed = activation_scale([np.array([-3.0, 1.0]), np.array([2.0])], nonnegative=False)
    assert (signed.zmin, signed.zmax, signed.colorscale) == (-3.0, 3.0, SIGNED_SCALE)
    positive = activation_scale(np.array([0.0, 5.0]), nonnegative=True)
    assert (positive.zmin, positive.zmax) == (0.0, 5.0)
    assert activation_scale(np.zeros(3), nonnegative=True).zmax > 0


def test_colour_scales_avoid_streamlit_placeholders():
    """Streamlit's frontend rewrites #000001..#000010 in figure JSON (Magma starts at #000004)."""
    config = FeatureConfig()
    figure = spectrogram_figure(np.zeros((config.n_mels, config.num_frames)), input_axes(config))
    traces = json.dumps(figure.to_plotly_json()["data"], default=str)
    assert not re.search(r"#0000(0[1-9]|10)\b", traces, flags=re.IGNORECASE)


def test_envelope_keeps_every_peak():
    signal = np.zeros(1_000_003, dtype=np.float32)
    signal[123_457] = 0.9
    signal[777_777] = -0.8
    starts, lows, highs = envelope(signal, buckets=500)
    assert len(starts) == 500
    assert highs.max() == pytest.approx(0.9) and lows.min() == pytest.approx(-0.8)
    figure = waveform_figure(signal, 22050, (1.0, 6.0))
    assert len(figure.data[0].x) == 2 * 2000  # default envelope: 2000 columns, up and back


def test_figures_build():
    config = FeatureConfig()
    axes = input_axes(config)
    logmel = np.random.default_rng(0).normal(-40, 10, (config.n_mels, config.num_frames)).astype(np.float32)
    figure = spectrogram_figure(logmel, axes, cam=np.zeros_like(logmel))
    assert len(figure.data) == 2 and figure.data[0].colorbar.title.text == "dB"
    grid = channel_grid_figure(np.ones((5, 4, 7)), [f"ch {i}" for i in range(5)], map_axes(config, (4, 7), (32, 32)),
                               activation_scale(np.ones(1), True))  # fmt: skip
    assert len(grid.data) == 5 and all(trace.coloraxis == "coloraxis" for trace in grid.data)


def test_confusion_shares_are_shares_of_the_whole_true_class():
    confusion = np.array([[6, 2], [1, 3]])  # unequal rows: shares and counts differ
    figure = confusion_figure(confusion, ["dog", "cat"], normalise=True)
    np.testing.assert_allclose(figure.data[0].z, [[0.75, 0.25], [0.25, 0.75]])
    assert figure.data[0].colorbar.title.text == "share of row"
    counts = confusion_figure(confusion, ["dog", "cat"], normalise=False)
    np.testing.assert_array_equal(counts.data[0].z, confusion)
    # A subset of the classes (a category) keeps the shares of the full rows: 6 of 8 dogs, not 6 of 6.
    subset = confusion_figure(confusion[:1, :1], ["dog"], normalise=True, row_totals=confusion.sum(axis=1)[:1])
    np.testing.assert_allclose(subset.data[0].z, [[0.75]])
    np.testing.assert_allclose(subset.data[0].customdata[0, 0], [6, 0.75])


def test_sample_index_ranks_clips_per_channel(tiny_checkpoint):
    predictor = Predictor(load_checkpoint(tiny_checkpoint))
    clips = list_samples()[:4]
    done = []
    index = build_sample_index(predictor, clips, browsable_nodes(TINY_MODEL), done.append)
    assert done[-1] == 1.0
    means = index.channel_means["layer1.block0.out"]
    assert means.shape == (4, 8)
    top = index.top_clips("layer1.block0.out", 3, k=2)
    assert top[0][0] == clips[int(np.argmax(means[:, 3]))]
    assert top[0][1] >= top[1][1]
