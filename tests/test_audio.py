"""Decoding every supported format, rate and channel layout to the model's mono signal."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from conftest import audio_bytes, tone
from hypothesis import given, settings
from hypothesis import strategies as st

from audiocnn.audio import AudioError, fit_to_length, load_audio, window_starts
from audiocnn.timeline import MAX_WINDOWS, capped_hop

MODEL_RATE = 22050

ENCODINGS = [
    ("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("OGG", "OPUS"),
    ("MP3", "MPEG_LAYER_III"),
]  # fmt: skip
# Precision each encoding keeps of a 440 Hz tone (lossless ones up to their bit depth).
TOLERANCE = {"PCM_U8": 0.01, "PCM_16": 1e-4, "PCM_24": 1e-6, "PCM_32": 1e-6, "FLOAT": 1e-6, "DOUBLE": 1e-6}


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def test_encoders_available():
    """The formats the app advertises can be written (so the tests below really cover them)."""
    assert {"WAV", "FLAC", "OGG", "MP3"} <= set(sf.available_formats())


@pytest.mark.parametrize(("fmt", "subtype"), ENCODINGS, ids=[f"{f}-{s}" for f, s in ENCODINGS])
def test_every_encoding_decodes_to_mono_float32_at_model_rate(fmt, subtype):
    rate = 48000  # a rate every encoder here accepts
    stereo = tone(1.0, rate, 440.0, channels=2)
    data = audio_bytes(stereo, rate, fmt, subtype)
    signal = load_audio(data, MODEL_RATE)
    assert signal.dtype == np.float32 and signal.ndim == 1
    assert signal.shape[0] == MODEL_RATE
    assert np.isfinite(signal).all() and np.abs(signal).max() <= 1.0
    assert dominant_frequency(signal, MODEL_RATE) == pytest.approx(440.0, abs=2.0)
    lossy = fmt in ("OGG", "MP3")
    assert np.abs(signal).max() == pytest.approx(0.5, abs=0.1 if lossy else 0.01)  # identical channels: same level


@pytest.mark.parametrize("subtype", sorted(TOLERANCE))
def test_lossless_wav_keeps_samples(subtype):
    """At the model's own rate nothing is resampled: samples survive up to the bit depth."""
    original = tone(0.5, MODEL_RATE, 440.0)
    signal = load_audio(audio_bytes(original, MODEL_RATE, "WAV", subtype), MODEL_RATE)
    np.testing.assert_allclose(signal, original[:, 0], atol=TOLERANCE[subtype])


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 96000])
@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")])
def test_sample_rates_resample_to_model_rate_keeping_pitch(rate, fmt, subtype):
    freq = 1000.0 if rate >= 16000 else 700.0  # below Nyquist of every rate (Vorbis low-passes 8 kHz audio)
    signal = load_audio(audio_bytes(tone(2.0, rate, freq), rate, fmt, subtype), MODEL_RATE)
    assert signal.dtype == np.float32
    assert signal.shape[0] == 2 * MODEL_RATE
    assert dominant_frequency(signal, MODEL_RATE) == pytest.approx(freq, abs=1.0)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_mp3_rates(rate):
    signal = load_audio(audio_bytes(tone(1.0, rate, 500.0), rate, "MP3", "MPEG_LAYER_III"), MODEL_RATE)
    assert signal.shape[0] == MODEL_RATE
    assert dominant_frequency(signal, MODEL_RATE) == pytest.approx(500.0, abs=2.0)


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_channel_layouts_are_averaged_to_mono(channels, fmt, subtype):
    frames = tone(1.0, 44100, 440.0, channels)
    frames[:, 0] = 0.0  # the first channel silent: the mean is (channels - 1) / channels of the tone
    data = audio_bytes(frames, 44100, fmt, subtype)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # the file as written, channels kept
    assert decoded.shape[1] == channels
    signal = load_audio(data, MODEL_RATE)
    assert signal.shape == (MODEL_RATE,)
    peak = np.abs(signal[1000:-1000]).max()
    assert peak == pytest.approx(np.abs(decoded.mean(axis=1)[2000:-2000]).max(), abs=0.02)
    if fmt != "OGG":  # lossless: exactly the channel mean (Vorbis low-passes a 5.1 file's LFE channel)
        assert peak == pytest.approx(0.5 * (channels - 1) / channels, abs=0.01)


def test_opposite_channels_cancel():
    frames = tone(1.0, MODEL_RATE, 440.0, channels=2)
    frames[:, 1] *= -1
    assert np.abs(load_audio(audio_bytes(frames, MODEL_RATE, "WAV", "FLOAT"), MODEL_RATE)).max() < 1e-6


def test_paths_and_bytes_decode_alike(tmp_path):
    data = audio_bytes(tone(1.0, 16000, 300.0, 2), 16000, "FLAC")
    path = tmp_path / "clip.flac"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_audio(path, MODEL_RATE), load_audio(data, MODEL_RATE))
    np.testing.assert_array_equal(load_audio(str(path), MODEL_RATE), load_audio(data, MODEL_RATE))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is not audio\n" * 10, "text file"),
        (bytes(range(256)) * 8, "supported: WAV, FLAC, OGG, MP3"),
    ],
    ids=["empty", "text", "garbage"],
)
def test_undecodable_input_is_an_audio_error(data, message):
    with pytest.raises(AudioError, match=message):
        load_audio(data, MODEL_RATE)


def test_too_short_and_missing(tmp_path):
    with pytest.raises(AudioError, match="ms long"):
        load_audio(audio_bytes(tone(0.05, MODEL_RATE), MODEL_RATE), MODEL_RATE)
    with pytest.raises(AudioError, match="No such audio file"):
        load_audio(tmp_path / "missing.wav", MODEL_RATE)


def test_fit_to_length_centre_crops_and_pads_at_the_end():
    signal = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_to_length(signal, 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(fit_to_length(signal, 13), [*range(10), 0, 0, 0])
    np.testing.assert_array_equal(fit_to_length(signal, 10), signal)


def test_window_starts_of_a_12_second_signal():
    assert window_starts(12 * 100, 500, 100) == [0, 100, 200, 300, 400, 500, 600, 700]
    assert window_starts(12 * 100, 500, 300) == [0, 233, 466, 700]  # evenly spread, the last one flush


def test_short_signal_gives_one_window():
    assert window_starts(30, 100, 50) == [0]
    assert window_starts(100, 100, 50) == [0]


def test_a_signal_barely_longer_than_the_window_gets_one_centred_window():
    assert window_starts(124, 100, 50) == [12]  # 24 samples over: a second window would repeat the first
    assert window_starts(125, 100, 50) == [0, 25]  # half a hop over: two windows


def test_ten_minutes_at_the_capped_hop_has_no_near_duplicate_windows():
    rate, window = 22050, 5 * 22050
    samples = 600 * rate
    hop = capped_hop(samples, window, rate)
    starts = window_starts(samples, window, hop)
    assert len(starts) == MAX_WINDOWS  # was 151, the last two 2 samples apart
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1 and gaps.min() > 3.99 * rate
    assert capped_hop(samples, window, 10 * rate) == 10 * rate  # a hop already wide enough is kept


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 1000), st.floats(0.01, 1.0), st.integers(2, 200))
def test_window_starts_cover_every_sample(num_samples, window, hop_fraction, max_windows):
    hop = capped_hop(num_samples, window, max(1, int(window * hop_fraction)), max_windows)
    starts = window_starts(num_samples, window, hop)
    assert starts == sorted(set(starts)) and len(starts) <= max_windows
    if num_samples - window < hop / 2:  # too little left over for a second window: one, centred
        assert starts == [max(0, (num_samples - window) // 2)]
        return
    covered = np.zeros(num_samples, dtype=bool)
    for start in starts:
        assert start >= 0 and start + window <= num_samples
        covered[start : start + window] = True
    assert covered.all() or hop > window  # a cap too small for the recording leaves gaps between windows
    assert starts[0] == 0 and starts[-1] == num_samples - window
    gaps = np.diff(starts)
    assert gaps.max() <= hop and gaps.min() >= hop / 2 - 1  # no two windows nearly the same
