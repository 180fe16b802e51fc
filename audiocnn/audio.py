"""Decoding any audio people have into the mono float32 signal the model expects.

Decoding uses soundfile (libsndfile reads WAV, FLAC, OGG and MP3 itself); torchaudio
is not used for I/O because it needs FFmpeg since 2.9.
Everything that can go wrong raises ``AudioError`` with a message meant for a person.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest file accepted (50 MB), checked before decoding."""

MAX_DURATION_SECONDS = 600.0
"""Longest recording analysed (10 minutes); longer ones are refused, not truncated."""

MIN_DURATION_SECONDS = 0.1
"""Shorter clips carry too little sound to classify and are refused."""

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
"""Sample rates outside this range are refused: below it nothing audible survives, above it no real recorder."""

BLOCK_VALUES = 1 << 20
"""Samples (frames x channels) decoded per block, so memory stays bounded whatever the file's layout."""


class AudioError(ValueError):
    """Input that cannot be analysed; the message is shown to the user as is."""


def read_source(source: bytes | str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Bytes of a path or bytes object, refusing empty and oversized input early."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if path.is_dir():
            raise AudioError(f"{path} is a folder, not an audio file.")
        if not path.is_file():
            raise AudioError(f"No such audio file: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise AudioError(_too_large(size, max_bytes))
        try:
            data = path.read_bytes()
        except OSError as error:
            raise AudioError(f"Could not read {path}: {error.strerror or error}") from error
    if not data:
        raise AudioError("The file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise AudioError(_too_large(len(data), max_bytes))
    return data


def _too_large(size: int, max_bytes: int) -> str:
    return f"The file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB."


def _check_header(f: sf.SoundFile, max_duration: float) -> None:
    """Refuse what the header already tells is unusable, before any sample is decoded."""
    if f.samplerate <= 0 or f.channels <= 0:
        raise AudioError("The audio header is invalid (no sample rate or channels).")
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"The file's sample rate is {f.samplerate} Hz; supported rates are "
            f"{MIN_SAMPLE_RATE} Hz to {MAX_SAMPLE_RATE} Hz."
        )
    if f.frames > 0 and f.frames / f.samplerate > max_duration + 1:
        raise AudioError(_too_long(f.frames / f.samplerate, max_duration))


def _undecodable(data: bytes, error: Exception) -> AudioError:
    """A specific message for bytes libsndfile refused."""
    if _looks_like_text(data):
        return AudioError("This is a text file, not audio.")
    detail = _short(error).rstrip(".")
    lowered = detail.lower()
    if "not a regular file" in lowered:  # libsndfile's words for an MP3 with no readable frame
        detail = "no readable audio frames"
    if isinstance(error, MemoryError):
        return AudioError("Decoding this file needed too much memory; it is probably damaged.")
    if "format not recognised" in lowered:
        return AudioError("This is not an audio format we can read (supported: WAV, FLAC, OGG, MP3).")
    if any(sign in lowered for sign in _DAMAGED_SIGNS):
        return AudioError(f"The file is damaged or cut off, so it cannot be decoded (decoder: {detail}).")
    return AudioError(f"Could not decode this file as audio (supported: WAV, FLAC, OGG, MP3). Decoder said: {detail}")


_DAMAGED_SIGNS = ("lost sync", "psf_fseek", "malformed", "no 'data' chunk", "error in flac", "unexpected end",
                  "not a regular file", "sf_info struct incomplete")  # fmt: skip
"""libsndfile's wording when a file of a known format is truncated or corrupt."""


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)


def _short(error: Exception) -> str:
    """The decoder's reason without libsndfile's "Error opening <_io.BytesIO object at 0x...>: " prefix."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return re.sub(r"^Error opening <[^>]*>: ", "", text)[:200]


def _too_long(seconds: float, limit: float) -> str:
    return f"The recording is {seconds:.0f} s long; the limit is {limit:.0f} s."


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels (frames x channels -> frames)."""
    return samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]


SILENCE_PEAK = 1e-4
"""Peak amplitude (-80 dBFS) under which a recording counts as silent: nothing to classify."""


def is_silent(signal: np.ndarray) -> bool:
    """Whether no sample reaches ``SILENCE_PEAK``: nothing a classifier could meaningfully label."""
    return (float(np.max(np.abs(signal))) if signal.size else 0.0) < SILENCE_PEAK


def check_not_silent(signal: np.ndarray) -> None:
    """Refuse digital silence, which every classifier would label with meaningless confidence."""
    if is_silent(signal):
        raise AudioError("The recording is silent (no sound above -80 dBFS), so there is nothing to classify.")


def sanitize(signal: np.ndarray) -> np.ndarray:
    """Replace NaN/Inf by 0 and clip to [-1, 1] so no non-finite value reaches the model."""
    return np.clip(np.nan_to_num(signal, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)


def load_audio(
    source: bytes | str | os.PathLike,
    sample_rate: int,
    max_duration: float = MAX_DURATION_SECONDS,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Any supported file or bytes -> mono float32 at ``sample_rate``, full length.

    Decodes, downmixes and resamples block by block, so memory is bounded by the
    output (10 minutes at 22.05 kHz: 53 MB) rather than by the file's rate and channels.
    """
    data = read_source(source, max_bytes)
    try:
        signal, frames, rate = _stream_mono(data, sample_rate, max_duration)
    except AudioError:
        raise
    except Exception as error:  # libsndfile reports every malformed file as RuntimeError
        raise _undecodable(data, error) from error
    if frames == 0:
        raise AudioError("The file contains no audio samples.")
    if frames / rate < MIN_DURATION_SECONDS:
        raise AudioError(
            f"The recording is only {frames / rate * 1000:.0f} ms long; "
            f"at least {MIN_DURATION_SECONDS * 1000:.0f} ms is needed."
        )
    return signal


def _stream_mono(data: bytes, sample_rate: int, max_duration: float) -> tuple[np.ndarray, int, int]:
    """(mono float32 at ``sample_rate``, frames decoded, native rate); stops as soon as the limit is passed."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        _check_header(f, max_duration)
        rate, limit = int(f.samplerate), int(max_duration * f.samplerate)
        stream = None
        if rate != sample_rate:
            stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
        parts, frames = [], 0
        for block in f.blocks(blocksize=max(1024, BLOCK_VALUES // f.channels), dtype="float32", always_2d=True):
            frames += block.shape[0]
            if frames > limit:
                raise AudioError(f"The recording is longer than {max_duration:.0f} s, the limit.")
            mono = sanitize(to_mono(block))
            parts.append(mono if stream is None else stream.resample_chunk(mono))
        if stream is not None:
            parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    signal = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    parts.clear()
    np.nan_to_num(signal, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # sanitize() in place: no extra copies
    return np.clip(signal, -1.0, 1.0, out=signal), frames, rate


def fit_to_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or zero-pad (at the end) to exactly ``length`` samples."""
    if signal.shape[0] >= length:
        start = (signal.shape[0] - length) // 2
        return signal[start : start + length]
    return np.pad(signal, (0, length - signal.shape[0]))


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of overlapping windows over a signal: evenly spread, at most ``hop`` apart.

    The first window starts at 0 and the last ends flush with the signal, so every sample is in
    a window; spreading them evenly (rather than on a ``hop`` grid with the last one pulled back)
    keeps any two at least half a hop apart, where a grid can leave the last two a few samples
    apart. A signal less than half a hop longer than the window gets one centred window (the crop
    ``fit_to_length`` takes): a second one would nearly repeat it, and at most a quarter of a hop is
    left out at each end.
    """
    if hop < 1:
        raise ValueError(f"hop must be at least one sample, not {hop}")
    span = num_samples - window
    if span <= 0:
        return [0]
    if 2 * span < hop:
        return [span // 2]
    gaps = -(-span // hop)  # ceil: no two neighbours more than a hop apart
    return [(i * span) // gaps for i in range(gaps + 1)]
