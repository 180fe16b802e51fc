"""What real recordings do to a clean clip: quieter, noisier, band-limited, reverberant, re-encoded, shifted.

One module for the robustness evaluation (``training.robustness``) and the app's "how robust is this
prediction?" panel, so the table and the curves measure the same thing. Every function takes and
returns mono float32 at the model's rate, keeps the length, and is deterministic for a given ``seed``
(noise and room responses are random draws), so a figure can be reproduced exactly.

Only NumPy and soundfile are used: filtering and convolution are done with FFTs (zero phase, no
filter design library), and lossy re-encoding goes through the same libsndfile that decodes uploads.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf

NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
"""Power-spectrum slope of each noise colour: power ~ 1 / f ** slope."""

BUTTERWORTH_ORDER = 4
"""Slope of the band edges (24 dB per octave): the roll-off of a small microphone and its codec."""

REVERB_DIRECT_TO_REVERB_DB = 0.0
"""Direct-to-reverberant energy ratio of the synthetic room at ``REVERB_REFERENCE_RT60`` seconds.
A longer RT60 keeps the same initial tail level and so adds more reverberant energy, as in a real room."""

REVERB_REFERENCE_RT60 = 0.5

REVERB_PREDELAY_SECONDS = 0.005
"""Gap between the direct sound and the first reflections (a source about 1.7 m away)."""

MP3_COMPRESSION = 0.5
"""libsndfile's MP3 compression level; at 22.05 kHz mono it gives about 35 kbit/s, a voice-message bitrate."""


def apply_gain(waveform: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` decibels. Not clipped: a float recording louder than 0 dBFS is what the
    front end receives from a decoder that does not clip either."""
    return (waveform * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def coloured_noise(length: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise whose power spectrum falls as ``1 / f ** slope`` (``NOISE_COLOURS``)."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"unknown noise colour {colour!r} (known: {', '.join(NOISE_COLOURS)})")
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.arange(spectrum.shape[0], dtype=np.float64)
    frequencies[0] = 1.0  # no infinite DC for pink and brown noise; DC is removed below anyway
    spectrum *= frequencies ** (-NOISE_COLOURS[colour] / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    return (noise / math.sqrt(float(np.mean(noise**2)))).astype(np.float32)


def add_noise(waveform: np.ndarray, snr_db: float, colour: str = "white", seed: int = 0) -> np.ndarray:
    """Add noise ``snr_db`` below the clip's mean power (signal-to-noise ratio over the whole clip).

    A silent clip gets no noise: there is no level to refer the ratio to.
    """
    power = float(np.mean(np.square(waveform, dtype=np.float64)))
    if power == 0.0:
        return waveform.astype(np.float32)
    noise = coloured_noise(waveform.shape[0], colour, np.random.default_rng(seed))
    return (waveform + noise * math.sqrt(power / 10.0 ** (snr_db / 10.0))).astype(np.float32)


def butterworth_gain(frequencies: np.ndarray, low_hz: float, high_hz: float | None) -> np.ndarray:
    """Amplitude gain of a Butterworth band-pass (``BUTTERWORTH_ORDER``) at ``frequencies`` in Hz:
    -3 dB at each edge; ``low_hz`` 0 or ``high_hz`` None leaves that side open.

    The one response both the waveform perturbation and training's mel-domain microphone use.
    """
    gain = np.ones_like(np.asarray(frequencies, dtype=np.float64))
    if high_hz is not None:
        gain /= np.sqrt(1.0 + (frequencies / high_hz) ** (2 * BUTTERWORTH_ORDER))
    if low_hz > 0:  # DC is taken at 1 mHz: fully removed, without dividing by zero
        gain /= np.sqrt(1.0 + (low_hz / np.maximum(frequencies, 1e-3)) ** (2 * BUTTERWORTH_ORDER))
    return gain


def band_limit(waveform: np.ndarray, sample_rate: int, low_hz: float = 0.0, high_hz: float | None = None) -> np.ndarray:
    """Keep ``low_hz``..``high_hz`` with Butterworth-shaped edges (``butterworth_gain``), zero phase.

    Applied as a gain on the FFT, so a phone band (300-3400 Hz) or a laptop microphone's roll-off is
    imitated without a filter-design library.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= low_hz < (high_hz if high_hz is not None else nyquist) <= nyquist:
        raise ValueError(f"band {low_hz}-{high_hz} Hz does not fit 0-{nyquist:g} Hz")
    spectrum = np.fft.rfft(waveform.astype(np.float64))
    frequencies = np.fft.rfftfreq(waveform.shape[0], 1.0 / sample_rate)
    gain = butterworth_gain(frequencies, low_hz, high_hz if high_hz is not None and high_hz < nyquist else None)
    return np.fft.irfft(spectrum * gain, n=waveform.shape[0]).astype(np.float32)


def reverb_tail_energy(rt60: float) -> float:
    """Energy of ``room_response``'s reverberant tail relative to its direct sound (``REVERB_*``):
    the initial tail level is fixed, so the energy grows in proportion to RT60."""
    return 10.0 ** (-REVERB_DIRECT_TO_REVERB_DB / 10.0) * rt60 / REVERB_REFERENCE_RT60


def room_response(sample_rate: int, rt60: float, seed: int = 0) -> np.ndarray:
    """A synthetic room impulse response: the direct sound, then exponentially decaying noise.

    The statistical (Polack) model: Gaussian noise under an envelope that falls 60 dB in ``rt60``
    seconds, after ``REVERB_PREDELAY_SECONDS``, carrying ``reverb_tail_energy(rt60)``.
    """
    if not rt60 > 0:
        raise ValueError(f"rt60 must be positive, not {rt60}")
    predelay = round(REVERB_PREDELAY_SECONDS * sample_rate)
    tail_length = round(rt60 * sample_rate)
    t = np.arange(tail_length) / sample_rate
    decay = 3.0 * math.log(10.0) / rt60  # amplitude envelope exp(-decay t): -60 dB at t = rt60
    tail = np.random.default_rng(seed).standard_normal(tail_length) * np.exp(-decay * t)
    # The expected energy of unit noise under the envelope is sum exp(-2 decay t) ~ sample_rate / (2 decay).
    tail *= math.sqrt(reverb_tail_energy(rt60) * 2.0 * decay / sample_rate)
    response = np.zeros(predelay + tail_length)
    response[0] = 1.0
    response[predelay:] += tail
    return response


def reverberate(waveform: np.ndarray, sample_rate: int, rt60: float, seed: int = 0) -> np.ndarray:
    """Convolve with ``room_response`` and scale back to the input's peak.

    The level is restored so that this condition measures the room alone, not the energy it adds (gain is
    a condition of its own). The reverberant tail past the clip's end is cut, as a recorder would.
    """
    response = room_response(sample_rate, rt60, seed)
    length = waveform.shape[0]
    size = 1 << (length + response.shape[0] - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(waveform, size) * np.fft.rfft(response, size), size)[:length]
    peak_in, peak_out = float(np.max(np.abs(waveform))), float(np.max(np.abs(wet)))
    if peak_out > 0:
        wet *= peak_in / peak_out
    return wet.astype(np.float32)


def reencode_mp3(waveform: np.ndarray, sample_rate: int, compression: float = MP3_COMPRESSION) -> np.ndarray:
    """Round-trip through MP3 (libsndfile's LAME) as a voice message or a streamed clip would be.

    The decoded signal is cut or padded to the input's length (the codec pads its frames).
    """
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(waveform, -1.0, 1.0), sample_rate, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=compression)  # fmt: skip
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = decoded if decoded.ndim == 1 else decoded.mean(axis=1)
    return np.pad(decoded[: waveform.shape[0]], (0, max(0, waveform.shape[0] - decoded.shape[0])))


def time_shift(waveform: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Move the sound ``seconds`` later (earlier when negative) in its window, filling with silence.

    Unlike training's circular roll, what leaves the window is lost: the window simply started elsewhere.
    """
    shift = round(seconds * sample_rate)
    length = waveform.shape[0]
    out = np.zeros(length, dtype=np.float32)
    if abs(shift) >= length:
        return out
    if shift >= 0:
        out[shift:] = waveform[: length - shift]
    else:
        out[:shift] = waveform[-shift:]
    return out


@dataclass(frozen=True)
class Perturbation:
    """One named condition: a family and its strength, applicable to any clip.

    ``family`` is one of ``FAMILIES``; ``strength`` is in that family's unit (dB of gain, dB of SNR,
    the upper band edge in Hz, RT60 in seconds, the MP3 compression level, seconds of shift).
    ``colour`` and ``low_hz`` refine noise and band-limiting.
    """

    name: str
    family: str
    strength: float
    colour: str = "white"
    low_hz: float = 0.0

    def apply(self, waveform: np.ndarray, sample_rate: int, seed: int = 0) -> np.ndarray:
        """This condition applied to one clip; ``seed`` draws the noise or the room."""
        return _APPLY[self.family](waveform, sample_rate, self, seed)

    def __post_init__(self) -> None:
        if self.family not in _APPLY:
            raise ValueError(f"unknown perturbation family {self.family!r} (known: {', '.join(_APPLY)})")


_APPLY = {
    "clean": lambda w, sr, p, seed: w.astype(np.float32),
    "gain": lambda w, sr, p, seed: apply_gain(w, p.strength),
    "noise": lambda w, sr, p, seed: add_noise(w, p.strength, p.colour, seed),
    "band": lambda w, sr, p, seed: band_limit(w, sr, p.low_hz, p.strength),
    "reverb": lambda w, sr, p, seed: reverberate(w, sr, p.strength, seed),
    "mp3": lambda w, sr, p, seed: reencode_mp3(w, sr, p.strength),
    "shift": lambda w, sr, p, seed: time_shift(w, sr, p.strength),
}
"""Each family's function: conditions are data, the dispatch is one table."""

FAMILIES = tuple(_APPLY)

CLEAN = Perturbation("clean", "clean", 0.0)

EVALUATION_CONDITIONS: tuple[Perturbation, ...] = (
    CLEAN,
    *(Perturbation(f"gain {db:+d} dB", "gain", float(db)) for db in (-40, -30, -20, -10, 6)),
    *(Perturbation(f"white noise {snr} dB SNR", "noise", float(snr)) for snr in (30, 20, 10)),
    Perturbation("pink noise 20 dB SNR", "noise", 20.0, colour="pink"),
    Perturbation("phone band 300-3400 Hz", "band", 3400.0, low_hz=300.0),
    Perturbation("laptop mic 150-8000 Hz", "band", 8000.0, low_hz=150.0),
    Perturbation("reverb RT60 0.3 s", "reverb", 0.3),
    Perturbation("reverb RT60 0.8 s", "reverb", 0.8),
    Perturbation("MP3 ~35 kbit/s", "mp3", MP3_COMPRESSION),
    Perturbation("shift +1 s", "shift", 1.0),
    Perturbation("shift -1 s", "shift", -1.0),
)
"""The conditions ``training.robustness`` scores: the issue's gain range, noise, microphones, rooms,
lossy re-encoding and a window that starts a second off."""


def find_condition(name: str) -> Perturbation:
    """The evaluation condition called ``name``; a clear error lists the known names."""
    for condition in EVALUATION_CONDITIONS:
        if condition.name == name:
            return condition
    known = "; ".join(condition.name for condition in EVALUATION_CONDITIONS)
    raise ValueError(f"unknown condition {name!r} (known: {known})")
