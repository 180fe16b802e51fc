"""A corpus of hostile and odd inputs, made here: each is analysed correctly or refused with a specific message.

The same corpus goes through the library (``load_audio``), the decoding worker
(``load_untrusted``, which must agree with it exactly), the ``Predictor`` (finite
probabilities, activations and Grad-CAM) and the CLI (one error per bad file,
exit status 1, the good files still classified).
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, audio_bytes, tone

from audiocnn.audio import MAX_DURATION_SECONDS, MAX_FILE_BYTES, AudioError, load_audio
from audiocnn.inference import Predictor
from audiocnn.untrusted import load_untrusted

RATE = 22050
REFERENCE = tone(2.0, RATE, 1000.0)[:, 0]  # what every well-formed 2 s, 1 kHz variant must decode to


@dataclass(frozen=True)
class Case:
    """One corpus entry: the bytes, the name a user would give it, and what must happen."""

    filename: str
    make: Callable[[], bytes]
    error: str | None = None  # regex the refusal must match; None: the file must be analysed
    check: Callable[[np.ndarray], None] | None = None  # extra checks on the decoded waveform
    classify_error: str | None = None  # decodes fine, but the CLI and the app refuse to classify it


def _wav(data: np.ndarray, rate: int = RATE, subtype: str | None = None) -> bytes:
    return audio_bytes(data, rate, "WAV", subtype)


def _tone_at(rate: int, channels: int = 1, subtype: str | None = None, fmt: str = "WAV") -> bytes:
    return audio_bytes(tone(2.0, rate, 1000.0, channels), rate, fmt, subtype)


def _patched(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset : offset + 4] = struct.pack("<I", value)
    return bytes(out)


def _data_chunk(wav: bytes) -> int:
    return wav.index(b"data")


def _long_flac(seconds: float) -> bytes:
    """A long, quiet FLAC written block by block (the header states its length)."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(3)
    block = (rng.standard_normal(RATE) * 0.01).astype(np.float32)
    with sf.SoundFile(buffer, "w", RATE, 1, format="FLAC") as f:
        for _ in range(int(seconds)):
            f.write(block)
    return buffer.getvalue()


def _with_nan_inf() -> bytes:
    x = tone(2.0, RATE, 1000.0)
    x[1000:1100] = np.nan
    x[5000] = np.inf
    x[6000] = -np.inf
    return _wav(x, subtype="FLOAT")


def _clipped() -> bytes:
    square = np.sign(np.sin(2 * np.pi * 200 * np.arange(2 * RATE) / RATE))[:, None] * 4.0  # 12 dB over full scale
    return _wav(square.astype(np.float32), subtype="FLOAT")


def _dc_offset() -> bytes:
    return _wav((0.6 + 0.3 * tone(2.0, RATE, 300.0)).astype(np.float32), subtype="PCM_16")


def _dominant_frequency(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.argmax(spectrum) * RATE / signal.shape[0])


def _is_reference(tolerance: float) -> Callable[[np.ndarray], None]:
    def check(w: np.ndarray) -> None:
        assert w.shape == REFERENCE.shape
        assert abs(_dominant_frequency(w) - 1000.0) < 2.0
        assert np.max(np.abs(w[200:-200] - REFERENCE[200:-200])) < tolerance

    return check


def _length(seconds: float) -> Callable[[np.ndarray], None]:
    def check(w: np.ndarray) -> None:
        assert w.shape[0] == round(seconds * RATE)

    return check


def _silent(w: np.ndarray) -> None:
    assert not w.any()


def _nan_zeroed(w: np.ndarray) -> None:
    assert not w[1000:1100].any() and w[5000] == 0 and w[6000] == 0
    np.testing.assert_allclose(w[:1000], REFERENCE[:1000], atol=1e-6)


def _full_scale(w: np.ndarray) -> None:
    assert np.abs(w).max() == 1.0


def _dc(w: np.ndarray) -> None:
    assert abs(float(w.mean()) - 0.6) < 0.01


WAV = _wav(tone(2.0, RATE, 1000.0))
FLAC = audio_bytes(tone(2.0, RATE, 1000.0), RATE, "FLAC")
HALF = (len(WAV) - 44) // 2

CORPUS: dict[str, Case] = {
    "empty": Case("empty.wav", lambda: b"", error="empty"),
    "random bytes": Case("noise.wav", lambda: np.random.default_rng(0).bytes(65536), error="not an audio format"),
    "text as mp3": Case("notes.mp3", lambda: b"Shopping list:\n- milk\n- eggs\n" * 40, error="text file, not audio"),
    "wav cut in header": Case("cut-header.wav", lambda: WAV[:30], error="damaged or cut off"),
    "wav cut in data": Case("cut-data.wav", lambda: WAV[: 44 + HALF], check=_length(HALF / 2 / RATE)),
    "flac cut in half": Case("cut.flac", lambda: FLAC[: len(FLAC) // 2], error="damaged or cut off"),
    "wav header claims 2 GB": Case(
        "liar.wav", lambda: _patched(WAV, _data_chunk(WAV) + 4, 0x7FFFFFF0), check=_is_reference(1e-4)
    ),
    "RIFF header only": Case("header-only.wav", lambda: b"RIFF\x00\x00\x00\x00WAVE", error="damaged or cut off"),
    "zero-length audio": Case("zero.wav", lambda: _wav(np.zeros((0, 1), np.float32)), error="no audio samples"),
    "0.05 s clip": Case("blip.wav", lambda: _wav(tone(0.05)), error="only 50 ms long; at least 100 ms"),
    "10-minute clip": Case("ten-minutes.flac", lambda: _long_flac(MAX_DURATION_SECONDS), check=_length(600)),
    "10 min 10 s clip": Case(
        "too-long.flac", lambda: _long_flac(MAX_DURATION_SECONDS + 10), error="610 s long; the limit is 600 s"
    ),
    "over the upload limit": Case(
        "huge.wav", lambda: b"\0" * (MAX_FILE_BYTES + 2**20), error="The file is 51.0 MB; the limit is 50 MB"
    ),
    "8 kHz": Case("8k.wav", lambda: _tone_at(8000), check=_is_reference(2e-3)),
    "11.025 kHz": Case("11k.wav", lambda: _tone_at(11025), check=_is_reference(2e-3)),
    "48 kHz": Case("48k.wav", lambda: _tone_at(48000), check=_is_reference(2e-3)),
    "96 kHz": Case("96k.flac", lambda: _tone_at(96000, fmt="FLAC"), check=_is_reference(2e-3)),
    "sample rate 500 Hz": Case(
        "slow.wav",
        lambda: _patched(_patched(WAV, 24, 500), 28, 1000),
        error="sample rate is 500 Hz; supported rates are 1000 Hz to 384000 Hz",
    ),
    "sample rate 4 GHz": Case("fast.wav", lambda: _patched(WAV, 24, 4_000_000_000), error="damaged or cut off"),
    "stereo": Case("stereo.wav", lambda: _tone_at(44100, 2), check=_is_reference(2e-3)),
    "6 channels": Case("surround.wav", lambda: _tone_at(48000, 6), check=_is_reference(2e-3)),
    "8-bit unsigned": Case("u8.wav", lambda: _tone_at(RATE, subtype="PCM_U8"), check=_is_reference(1e-2)),
    "24-bit": Case("24bit.wav", lambda: _tone_at(RATE, subtype="PCM_24"), check=_is_reference(1e-5)),
    "32-bit float": Case("float.wav", lambda: _tone_at(RATE, subtype="FLOAT"), check=_is_reference(1e-6)),
    "float with NaN and Inf": Case("nan-inf.wav", _with_nan_inf, check=_nan_zeroed),
    "digital silence": Case(
        "silence.wav", lambda: _wav(np.zeros((2 * RATE, 1), np.float32)), check=_silent, classify_error="silent"
    ),
    "clipping beyond full scale": Case("clipped.wav", _clipped, check=_full_scale),
    "DC offset": Case("dc.wav", _dc_offset, check=_dc),
    "non-ASCII name": Case("my clip – café 鳥 🐦.wav", lambda: WAV, check=_is_reference(1e-4)),
    "ogg vorbis": Case("vorbis.ogg", lambda: _tone_at(RATE, fmt="OGG"), check=_length(2.0)),
    "mp3": Case("clip.mp3", lambda: _tone_at(44100, fmt="MP3"), check=_length(2.0)),
}


@cache
def corpus_bytes(name: str) -> bytes:
    return CORPUS[name].make()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, case in CORPUS.items():
        (folder / case.filename).write_bytes(corpus_bytes(name))
    return folder


@pytest.fixture(scope="module")
def predictor(four_stage_checkpoint: Path) -> Predictor:
    """One small model with every Grad-CAM layer for the whole module."""
    return Predictor.from_checkpoint(four_stage_checkpoint)


def _load(name: str, loader: Callable[..., np.ndarray], source: bytes | Path) -> np.ndarray:
    case = CORPUS[name]
    if case.error is not None:
        with pytest.raises(AudioError, match=case.error):
            loader(source, RATE)
        return np.zeros(0, np.float32)
    waveform = loader(source, RATE)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert np.isfinite(waveform).all() and np.abs(waveform).max() <= 1.0
    if case.check is not None:
        case.check(waveform)
    return waveform


@pytest.mark.parametrize("name", list(CORPUS))
def test_library_analyses_or_refuses_specifically(name: str, corpus_dir: Path) -> None:
    from_bytes = _load(name, load_audio, corpus_bytes(name))
    from_path = _load(name, load_audio, corpus_dir / CORPUS[name].filename)
    np.testing.assert_array_equal(from_bytes, from_path)


@pytest.mark.parametrize("name", list(CORPUS))
def test_worker_agrees_with_the_library(name: str) -> None:
    waveform = _load(name, load_untrusted, corpus_bytes(name))
    if CORPUS[name].error is None:
        np.testing.assert_array_equal(waveform, load_audio(corpus_bytes(name), RATE))


@pytest.mark.parametrize(
    "name", ["digital silence", "float with NaN and Inf", "clipping beyond full scale", "DC offset", "8-bit unsigned"]
)
def test_predictor_output_is_finite_for_extreme_signals(name: str, predictor: Predictor) -> None:
    analysis = predictor.analyze(load_audio(corpus_bytes(name), RATE))
    probabilities = analysis.prediction.probabilities
    assert np.isfinite(probabilities).all() and abs(probabilities.sum() - 1.0) < 1e-6
    assert np.isfinite(analysis.logmel).all()
    assert all(np.isfinite(a).all() for a in analysis.activations.values())
    assert all(np.isfinite(c).all() and c.min() >= 0 and c.max() <= 1 for c in analysis.cams.values())


def test_ten_minutes_is_a_timeline(predictor: Predictor) -> None:
    timeline = predictor.timeline(load_audio(corpus_bytes("10-minute clip"), RATE), hop_seconds=10.0)
    assert len(timeline.starts) == 61 and timeline.starts[-1] == 595.0
    assert np.isfinite(timeline.probabilities).all()


def test_duration_limit_holds_without_a_length_in_the_header() -> None:
    """A stream whose header understates its length is still stopped at the limit while decoding."""
    with pytest.raises(AudioError, match="longer than 2 s, the limit"):
        load_audio(_wav(tone(2.5)), RATE, max_duration=2.0)  # within the header tolerance, over the limit


def test_folders_and_missing_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a folder, not an audio file"):
        load_audio(tmp_path, RATE)
    with pytest.raises(AudioError, match="No such audio file"):
        load_audio(tmp_path / "missing.wav", RATE)


def test_ten_minutes_at_96khz_six_channels_decodes_in_bounded_memory(tmp_path: Path) -> None:
    """Peak memory of the worker follows the 22.05 kHz mono output, not the 1.4 GB the raw samples would need."""
    path = tmp_path / "big.flac"
    silence = np.zeros((96000, 6), np.float32)
    with sf.SoundFile(path, "w", 96000, 6, format="FLAC") as f:
        for _ in range(int(MAX_DURATION_SECONDS)):
            f.write(silence)
    # A small parent process measures the worker: a child forked from pytest would inherit pytest's peak.
    measure = (
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    worker = [sys.executable, "-m", "audiocnn.untrusted", str(RATE), "600.0", str(MAX_FILE_BYTES)]
    with path.open("rb") as stdin:
        out = subprocess.run([sys.executable, "-c", measure, *worker], stdin=stdin, capture_output=True, cwd=ROOT)
    code, peak_kb = map(int, out.stdout.split())
    assert code == 0, out.stderr.decode()
    assert peak_kb / 1024 < 250, f"worker peaked at {peak_kb / 1024:.0f} MB"
    print(f"worker peak for 10 min at 96 kHz x 6: {peak_kb / 1024:.0f} MB")


def test_cli_reports_each_bad_file_and_classifies_the_rest(corpus_dir: Path, tiny_checkpoint: Path) -> None:
    # The 10-minute clip is left out here only for speed (600 windows); the library tests cover it.
    cases = [case for name, case in CORPUS.items() if name != "10-minute clip"]
    files = [corpus_dir / case.filename for case in cases]
    files += [corpus_dir, corpus_dir / "does-not-exist.wav"]
    completed = subprocess.run(
        [sys.executable, "-m", "audiocnn", "predict", *map(str, files), "--json", "--checkpoint", str(tiny_checkpoint)],
        capture_output=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr.decode()
    assert b"Traceback" not in completed.stderr
    results = json.loads(completed.stdout)
    assert [r["file"] for r in results] == [str(f) for f in files]
    for case, result in zip(cases, results):
        expected_error = case.error or case.classify_error
        if expected_error is None:
            assert "error" not in result, (case.filename, result)
            probabilities = [p["probability"] for p in result["predictions"]]
            assert len(probabilities) == 5 and all(np.isfinite(probabilities))
        else:
            assert "predictions" not in result
            assert re.search(expected_error, result["error"]), (case.filename, result["error"])
    assert "is a folder" in results[-2]["error"] and "No such audio file" in results[-1]["error"]
