"""Perturbations with known answers: levels, SNRs, band edges, RT60s, shifts, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from audiocnn import perturb
from audiocnn.perturb import EVALUATION_CONDITIONS, Perturbation

RATE = 22050


def sine(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    """A tone with a whole number of cycles in the clip, so it sits exactly on one FFT bin."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def level_db(signal: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(signal, dtype=np.float64)))


def test_gain_scales_amplitude_exactly():
    clip = sine(440.0)
    np.testing.assert_allclose(perturb.apply_gain(clip, -20.0), clip / 10, rtol=1e-6)
    np.testing.assert_allclose(perturb.apply_gain(clip, 6.0), clip * 10**0.3, rtol=1e-6)


@pytest.mark.parametrize("snr", [30.0, 10.0, 0.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_noise_is_added_at_the_requested_snr(snr, colour):
    clip = sine(440.0)
    noisy = perturb.add_noise(clip, snr, colour, seed=3)
    assert level_db(clip) - level_db(noisy - clip) == pytest.approx(snr, abs=1e-3)


def _spectral_slope(noise: np.ndarray) -> float:
    """Slope of log power against log frequency over 100 Hz-8 kHz (0 white, -1 pink, -2 brown)."""
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.shape[0], 1 / RATE)
    band = (freqs > 100) & (freqs < 8000)
    return float(np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0])


@pytest.mark.parametrize(("colour", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colours_have_their_spectral_slope(colour, slope):
    noise = perturb.coloured_noise(4 * RATE, colour, np.random.default_rng(0))
    assert np.mean(noise**2) == pytest.approx(1.0, rel=1e-5)
    assert _spectral_slope(noise) == pytest.approx(slope, abs=0.1)


def test_noise_is_seeded_and_skips_silence():
    clip = sine(440.0)
    np.testing.assert_array_equal(perturb.add_noise(clip, 20, seed=1), perturb.add_noise(clip, 20, seed=1))
    assert not np.array_equal(perturb.add_noise(clip, 20, seed=1), perturb.add_noise(clip, 20, seed=2))
    silence = np.zeros(RATE, np.float32)
    np.testing.assert_array_equal(perturb.add_noise(silence, 10), silence)
    with pytest.raises(ValueError, match="unknown noise colour 'blue'"):
        perturb.add_noise(clip, 10, "blue")


@pytest.mark.parametrize(
    ("freq", "expected_db"),
    [
        (1000.0, 0.0),  # in the phone band
        (3400.0, -3.01),  # at the upper edge: a Butterworth edge is -3 dB
        (300.0, -3.01),  # at the lower edge
        (8000.0, -29.7),  # (8000 / 3400) ** 8 = 934: -29.7 dB
        (100.0, -38.2),  # (300 / 100) ** 8 = 6561: -38.2 dB
    ],
)
def test_phone_band_attenuates_as_a_fourth_order_butterworth(freq, expected_db):
    clip = sine(freq)
    out = perturb.band_limit(clip, RATE, 300.0, 3400.0)
    assert level_db(out) - level_db(clip) == pytest.approx(expected_db, abs=0.05)


def test_band_limit_refuses_impossible_bands():
    with pytest.raises(ValueError, match="does not fit"):
        perturb.band_limit(sine(440.0), RATE, 4000.0, 3000.0)
    with pytest.raises(ValueError, match="does not fit"):
        perturb.band_limit(sine(440.0), RATE, 0.0, 20000.0)


def _rt60_from_schroeder(response: np.ndarray, predelay: int) -> float:
    """RT60 estimated as a room acoustician would: the T20 slope of the backward-integrated energy."""
    tail = response[predelay:] ** 2
    decay = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum())
    t = np.arange(tail.shape[0]) / RATE
    fit = (decay < -5) & (decay > -25)
    slope = np.polyfit(t[fit], decay[fit], 1)[0]  # dB per second
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.8, 1.5])
def test_room_response_decays_60_db_in_rt60(rt60):
    response = perturb.room_response(RATE, rt60, seed=0)
    predelay = round(perturb.REVERB_PREDELAY_SECONDS * RATE)
    assert response[0] == 1.0 and not np.any(response[1:predelay])
    assert _rt60_from_schroeder(response, predelay) == pytest.approx(rt60, rel=0.1)


def test_room_response_direct_to_reverberant_ratio_at_the_reference_rt60():
    response = perturb.room_response(RATE, perturb.REVERB_REFERENCE_RT60, seed=0)
    tail_energy = np.sum(response[1:] ** 2)
    assert 10 * np.log10(1.0 / tail_energy) == pytest.approx(perturb.REVERB_DIRECT_TO_REVERB_DB, abs=0.5)


def test_reverberating_a_click_gives_the_room_at_the_clip_peak():
    click = np.zeros(RATE, np.float32)
    click[100] = 0.5
    wet = perturb.reverberate(click, RATE, 0.3, seed=4)
    response = perturb.room_response(RATE, 0.3, seed=4)
    expected = np.zeros(RATE)
    expected[100 : 100 + response.shape[0]] = response[: RATE - 100]
    expected *= 0.5 / np.max(np.abs(expected))
    np.testing.assert_allclose(wet, expected, atol=1e-6)
    assert np.max(np.abs(wet)) == pytest.approx(0.5)


@pytest.mark.parametrize("seconds", [1.0, -1.0, 0.0])
def test_time_shift_moves_the_sound_and_pads_with_silence(seconds):
    clip = np.arange(1, 3 * RATE + 1, dtype=np.float32)
    out = perturb.time_shift(clip, RATE, seconds)
    shift = round(seconds * RATE)
    assert out.shape == clip.shape
    if shift > 0:
        assert not np.any(out[:shift]) and np.array_equal(out[shift:], clip[:-shift])
    elif shift < 0:
        assert not np.any(out[shift:]) and np.array_equal(out[:shift], clip[-shift:])
    else:
        assert np.array_equal(out, clip)
    assert not np.any(perturb.time_shift(clip, RATE, 5.0))


def test_mp3_round_trip_is_lossy_but_close_and_keeps_the_length():
    clip = sine(440.0, seconds=2.0) + 0.05 * np.random.default_rng(0).standard_normal(2 * RATE).astype(np.float32)
    out = perturb.reencode_mp3(clip, RATE)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert not np.allclose(out, clip, atol=1e-3)
    best = max(np.corrcoef(np.roll(out, -lag), clip)[0, 1] for lag in range(0, 3000, 1))
    assert best > 0.95


def test_every_condition_keeps_length_and_dtype_and_stays_finite():
    clip = sine(440.0, seconds=5.0)
    for condition in EVALUATION_CONDITIONS:
        out = condition.apply(clip, RATE, seed=0)
        assert out.shape == clip.shape and out.dtype == np.float32, condition.name
        assert np.all(np.isfinite(out)), condition.name
    assert len({c.name for c in EVALUATION_CONDITIONS}) == len(EVALUATION_CONDITIONS)


def test_conditions_are_found_by_name_and_unknown_ones_refused():
    assert perturb.find_condition("gain -20 dB").strength == -20.0
    with pytest.raises(ValueError, match=r"unknown condition 'louder'.*gain -40 dB"):
        perturb.find_condition("louder")
    with pytest.raises(ValueError, match="unknown perturbation family 'echo'"):
        Perturbation("x", "echo", 1.0)
