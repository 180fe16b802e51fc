"""Log-mel features: shape, finiteness, per-clip dB floor, and training == serving."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from conftest import tone

from audiocnn.features import MAX_N_FFT, FeatureConfig, FeatureConfigError, LogMel
from audiocnn.inference import Predictor
from training.data import Clip, compute_logmels, read_metadata

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def frontend() -> LogMel:
    return LogMel(CONFIG).eval()


def clip_of(signal: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(signal, dtype=np.float32)[: CONFIG.clip_samples])


def test_default_geometry():
    assert CONFIG.clip_samples == 110250
    assert CONFIG.num_frames == 216
    times = CONFIG.frame_times()
    assert times.shape == (216,) and times[0] == 0 and times[1] == pytest.approx(512 / 22050)
    mels = CONFIG.mel_frequencies()
    assert mels.shape == (128,) and (np.diff(mels) > 0).all() and mels[0] > 0 and mels[-1] < CONFIG.f_max


def test_shape_and_finite_values(frontend):
    features = frontend(clip_of(tone(5.0, 22050, 440.0)[:, 0]))
    assert features.shape == (1, 1, 128, 216)
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    batch = frontend(torch.stack([clip_of(tone(5.0, 22050, f)[:, 0]) for f in (200.0, 2000.0)]))
    assert batch.shape == (2, 1, 128, 216)


def test_silence_is_finite(frontend):
    features = frontend(torch.zeros(1, CONFIG.clip_samples))
    assert torch.isfinite(features).all()
    assert features.max() == features.min()  # a flat floor, not -inf


def test_db_floor_is_top_db_below_each_clips_peak(frontend):
    signal = np.zeros(CONFIG.clip_samples, dtype=np.float32)
    signal[:22050] = tone(1.0, 22050, 1000.0)[:, 0]  # loud second, then silence
    features = frontend(torch.from_numpy(signal))[0, 0]
    assert features.max() - features.min() == pytest.approx(CONFIG.top_db, abs=1e-3)


def test_loud_tone_peaks_in_its_mel_band(frontend):
    features = frontend(clip_of(tone(5.0, 22050, 1000.0)[:, 0]))[0, 0]
    band = int(features.mean(dim=1).argmax())
    assert CONFIG.mel_frequencies()[band] == pytest.approx(1000.0, rel=0.1)


def test_per_clip_features_do_not_depend_on_the_batch(frontend):
    loud = clip_of(tone(5.0, 22050, 440.0)[:, 0])
    quiet = clip_of(1e-4 * np.random.default_rng(0).standard_normal(CONFIG.clip_samples))
    together = frontend(torch.stack([loud, quiet]))
    torch.testing.assert_close(together[0], frontend(loud)[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(together[1], frontend(quiet)[0], rtol=0, atol=1e-4)
    swapped = frontend(torch.stack([quiet, loud]))
    torch.testing.assert_close(swapped[0], together[1], rtol=0, atol=1e-4)


def test_training_features_equal_serving_features(tiny_checkpoint, tiny_esc50, tmp_path):
    """training.data.compute_logmels and Predictor.logmel(Predictor.load(...)) agree exactly."""
    long_stereo = tmp_path / "long.wav"
    frames = tone(7.0, 44100, 330.0, channels=2)
    frames[:, 1] = np.random.default_rng(1).uniform(-0.3, 0.3, frames.shape[0])
    sf.write(long_stereo, frames, 44100, subtype="PCM_24")  # resampled, downmixed and centre-cropped
    clips = [c for c in read_metadata(tiny_esc50) if c.target in (0, 49)]  # short FLAC and OGG, padded
    clips.append(Clip(long_stereo, 1, 0, "dog"))
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    training = compute_logmels(clips, predictor.feature_config, batch_size=4)
    serving = predictor.logmel([predictor.load(c.path) for c in clips])
    assert training.shape == (len(clips), 1, 128, 216)
    assert torch.equal(training, serving)


def test_feature_config_round_trip_and_validation():
    assert FeatureConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(FeatureConfigError, match="unsupported feature config keys"):
        FeatureConfig.from_dict({**CONFIG.to_dict(), "window": "hamming"})
    for bad in ({"version": 99}, {"f_max": 20000.0}, {"n_mels": 2}, {"hop_length": 4096}, {"top_db": 0}):
        with pytest.raises(FeatureConfigError):
            FeatureConfig(**bad)


def test_n_fft_must_fit_the_clip_and_stay_bounded():
    """Every accepted config computes; the centred STFT needs n_fft // 2 below the clip length."""
    short = {"sample_rate": 4000, "clip_seconds": 0.1, "f_max": 2000.0, "n_mels": 16, "hop_length": 100}  # 400 samples
    with pytest.raises(FeatureConfigError, match="n_fft 1024 for a 400-sample clip"):
        FeatureConfig(**short)
    with pytest.raises(FeatureConfigError, match="n_fft 800 for a 400-sample clip"):
        FeatureConfig(**short, n_fft=800)
    longest = FeatureConfig(**short, n_fft=798)  # n_fft // 2 = 399: the largest that fits
    assert LogMel(longest)(torch.zeros(1, longest.clip_samples)).shape == (1, 1, 16, 5)
    with pytest.raises(FeatureConfigError, match=f"n_fft {2**19} \\(at most {MAX_N_FFT}\\)"):
        FeatureConfig(n_fft=2**19, clip_seconds=60.0)
    assert FeatureConfig(n_fft=MAX_N_FFT, clip_seconds=1.0).n_fft == MAX_N_FFT


# Every documented limit, accepted at its edge and refused just past it (each comparison's direction).
ACCEPTED_EDGES = [
    {"sample_rate": 4000, "f_max": 2000.0}, {"sample_rate": 192000}, {"clip_seconds": 0.1}, {"clip_seconds": 60.0},
    {"n_fft": 16, "hop_length": 16}, {"hop_length": 1}, {"hop_length": 1024}, {"n_mels": 8}, {"n_mels": 512},
    {"f_min": 11024.0}, {"top_db": 0.5},
]  # fmt: skip
REFUSED_EDGES = [
    ({"sample_rate": 3999, "f_max": 1999.0}, "sample_rate 3999 Hz"), ({"sample_rate": 192001}, "sample_rate 192001 Hz"),
    ({"clip_seconds": 0.09}, "clip_seconds 0.09"), ({"clip_seconds": 60.5}, "clip_seconds 60.5"),
    ({"n_fft": 15, "hop_length": 15}, "n_fft 15 / hop_length 15"), ({"hop_length": 0}, "n_fft 1024 / hop_length 0"),
    ({"hop_length": 1025}, "n_fft 1024 / hop_length 1025"), ({"n_mels": 7}, "n_mels 7"),
    ({"n_mels": 513}, "n_mels 513"),
    ({"f_min": 11025.0}, "f_min 11025.0 / f_max 11025.0 for 22050 Hz"), ({"top_db": 0.0}, "top_db 0.0"),
]  # fmt: skip


@pytest.mark.parametrize("changes", ACCEPTED_EDGES)
def test_limits_are_accepted_at_their_edge(changes):
    assert FeatureConfig(**changes).to_dict().items() >= changes.items()


@pytest.mark.parametrize(("changes", "problem"), REFUSED_EDGES)
def test_limits_are_refused_just_past_their_edge(changes, problem):
    with pytest.raises(FeatureConfigError, match=f"^unsupported feature config: {re.escape(problem)}$"):
        FeatureConfig(**changes)


def test_every_problem_is_named_in_one_message():
    with pytest.raises(FeatureConfigError) as refused:
        FeatureConfig(version=99, top_db=0.0)
    assert str(refused.value) == "unsupported feature config: feature version 99 (supported: 1, 2); top_db 0.0"


def test_a_config_saved_before_versions_is_version_1():
    legacy = {k: v for k, v in FeatureConfig(version=2).to_dict().items() if k != "version"}
    assert FeatureConfig.from_dict(legacy).version == 1


def test_log_mel_equals_its_definition_at_other_settings():
    """A front end far from torchaudio's defaults equals the log-mel built by hand from its parts: the
    Hann-windowed centred STFT's power, the HTK triangular filterbank, 10 log10, floored ``top_db`` below
    the peak. Every setting must reach the transform (a dropped one falls back to torchaudio's default)."""
    config = FeatureConfig(sample_rate=8000, clip_seconds=0.5, n_fft=256, hop_length=64, n_mels=16, f_min=100.0,
                           f_max=3000.0, top_db=60.0)  # fmt: skip
    t = np.arange(config.clip_samples) / config.sample_rate
    signal = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    wave = torch.from_numpy(signal.astype(np.float32))
    stft = torch.stft(wave, 256, hop_length=64, window=torch.hann_window(256), center=True, pad_mode="reflect",
                      return_complex=True)  # fmt: skip
    bank = torchaudio.functional.melscale_fbanks(129, 100.0, 3000.0, 16, 8000, norm=None, mel_scale="htk")
    db = 10 * torch.log10((bank.T @ stft.abs() ** 2).clamp_min(1e-10))
    for gain, got in zip((1.0, 0.01), LogMel(config)(torch.stack([wave, 0.01 * wave])), strict=True):  # per clip
        quieter = db + 20 * np.log10(gain)
        torch.testing.assert_close(got[0], torch.maximum(quieter, quieter.amax() - 60.0), atol=1e-3, rtol=0)
    level_free = LogMel(replace(config, version=2))(wave)[0, 0]
    torch.testing.assert_close(level_free, torch.clamp_min(db - db.amax(), -60.0), atol=1e-3, rtol=0)
