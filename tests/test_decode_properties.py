"""Property tests on the decoding path: whatever the bytes, only ``AudioError`` escapes.

Hypothesis feeds arbitrary bytes and valid files with corrupted headers, cut tails
and overwritten bytes. A successful decode must be a finite mono float32 signal in
[-1, 1]; every failure must be an ``AudioError`` (a message for people), never
another exception type, a NaN or a hang.
"""

from __future__ import annotations

import numpy as np
from conftest import audio_bytes, tone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiocnn.audio import AudioError, load_audio
from audiocnn.untrusted import load_untrusted

RATE = 22050
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS = {
    "wav16": audio_bytes(tone(0.3, 16000, 440.0, 2), 16000, "WAV", "PCM_16"),
    "wav_float": audio_bytes(tone(0.3, 44100, 440.0), 44100, "WAV", "FLOAT"),
    "wav_u8": audio_bytes(tone(0.3, 8000, 440.0), 8000, "WAV", "PCM_U8"),
    "flac": audio_bytes(tone(0.3, 22050, 440.0), 22050, "FLAC", "PCM_16"),
    "flac24": audio_bytes(tone(0.3, 48000, 440.0, 2), 48000, "FLAC", "PCM_24"),
    "ogg": audio_bytes(tone(0.3, 22050, 440.0), 22050, "OGG", "VORBIS"),
}


def _outcome(data: bytes) -> np.ndarray | None:
    """The decoded signal, or None when refused with an AudioError; any other exception fails the test."""
    try:
        signal = load_audio(data, RATE)
    except AudioError as error:
        assert str(error).strip(), "an AudioError needs a message"
        return None
    assert signal.dtype == np.float32 and signal.ndim == 1 and signal.size > 0
    assert np.isfinite(signal).all() and np.abs(signal).max() <= 1.0
    return signal


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with some bytes overwritten (mostly in the header) and perhaps its tail cut off."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        header = draw(st.booleans())
        position = draw(st.integers(0, min(len(data), 96) - 1 if header else len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@PROPERTY
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _outcome(data)


@PROPERTY
@given(st.sampled_from([b"RIFF", b"fLaC", b"OggS", b"ID3\x03", b"\xff\xfb", b"FORM"]), st.binary(max_size=2048))
def test_arbitrary_bytes_after_a_real_magic_number(magic: bytes, rest: bytes) -> None:
    _outcome(magic + rest)


@PROPERTY
@given(mutated())
def test_corrupted_real_files(data: bytes) -> None:
    _outcome(data)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_worker_agrees_on_corrupted_files(data: bytes) -> None:
    """The isolated worker gives exactly the in-process result, or the same refusal."""
    try:
        expected = load_audio(data, RATE)
    except AudioError as error:
        try:
            load_untrusted(data, RATE)
        except AudioError as worker_error:
            assert str(worker_error) == str(error)
            return
        raise AssertionError("the worker decoded what the library refused") from None
    np.testing.assert_array_equal(load_untrusted(data, RATE), expected)
