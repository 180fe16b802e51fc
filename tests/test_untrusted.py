"""The decoding worker: same result as in-process decoding, and a crash, hang or blow-up costs one file only."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from conftest import ROOT, audio_bytes, tone

from audiocnn import untrusted
from audiocnn.audio import AudioError, load_audio
from audiocnn.untrusted import load_untrusted

RATE = 22050
CRASH = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def clip() -> bytes:
    rng = np.random.default_rng(1)
    return audio_bytes((rng.standard_normal((48000 * 2, 2)) * 0.2).clip(-1, 1).astype(np.float32), 48000, "FLAC")


def test_same_result_as_in_process(clip: bytes) -> None:
    expected = load_audio(clip, RATE)
    result = load_untrusted(clip, RATE)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected)


def test_decoder_errors_come_back_as_their_message() -> None:
    with pytest.raises(AudioError, match="text file"):
        load_untrusted(b"just some notes, not a recording\n" * 10, RATE)
    with pytest.raises(AudioError, match="only 50 ms"):
        load_untrusted(audio_bytes(tone(0.05), RATE), RATE)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (CRASH, r"crashed on this file \(signal 11, SIGSEGV\)"),
        ("import os; os.abort()", r"crashed on this file \(signal 6, SIGABRT\)"),
        ("import sys; sys.exit(7)", r"failed on this file \(exit status 7\)"),
        ("raise MemoryError", "too much memory"),
        # the worker's own address-space limit turns a runaway allocation into a refusal
        ("from audiocnn.untrusted import _limit_resources; _limit_resources(); bytearray(3 * 1024**3)", "memory"),
        ("import sys; sys.stdout.write('not an array'); sys.exit(0)", "unreadable result"),
    ],
)
def test_a_dying_worker_is_an_audio_error_and_the_next_call_works(
    monkeypatch: pytest.MonkeyPatch, clip: bytes, code: str, expected: str
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(untrusted, "worker_command", lambda: _python(code))
        with pytest.raises(AudioError, match=expected):
            load_untrusted(clip, RATE)
    np.testing.assert_array_equal(load_untrusted(clip, RATE), load_audio(clip, RATE))


def test_a_hanging_worker_is_stopped(monkeypatch: pytest.MonkeyPatch, clip: bytes) -> None:
    monkeypatch.setattr(untrusted, "worker_command", lambda: _python("import time; time.sleep(60)"))
    with pytest.raises(AudioError, match="longer than 1 s and was stopped"):
        load_untrusted(clip, RATE, timeout=1.0)


def test_empty_and_oversized_input_never_start_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_worker() -> list[str]:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(untrusted, "worker_command", no_worker)
    with pytest.raises(AudioError, match="empty"):
        load_untrusted(b"", RATE)
    with pytest.raises(AudioError, match="the limit is"):
        load_untrusted(b"x" * 2000, RATE, max_bytes=1000)


def test_missing_interpreter_is_an_audio_error(monkeypatch: pytest.MonkeyPatch, clip: bytes) -> None:
    monkeypatch.setattr(untrusted, "worker_command", lambda: ["/nonexistent/python"])
    with pytest.raises(AudioError, match="could not be started"):
        load_untrusted(clip, RATE)


def test_busy_server_refuses_instead_of_queueing_forever(monkeypatch: pytest.MonkeyPatch, clip: bytes) -> None:
    monkeypatch.setattr(untrusted, "_slots", threading.BoundedSemaphore(1))
    untrusted._slots.acquire()
    with pytest.raises(AudioError, match="busy"):
        load_untrusted(clip, RATE, timeout=0.2)


def test_parallel_workers_each_return_their_own_clip() -> None:
    clips = [audio_bytes(tone(1.0 + 0.25 * i, 44100, 200.0 * (i + 1)), 44100) for i in range(6)]
    results: list[np.ndarray | None] = [None] * len(clips)

    def work(i: int) -> None:
        results[i] = load_untrusted(clips[i], RATE)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for data, result in zip(clips, results):
        np.testing.assert_array_equal(result, load_audio(data, RATE))


def test_the_app_keeps_serving_after_the_decoder_dies(monkeypatch: pytest.MonkeyPatch, shipped_checkpoint) -> None:
    """A file that kills the decoder gives that session a message; the same and other sessions go on."""
    from streamlit.testing.v1 import AppTest

    def upload(at: AppTest, name: str, data: bytes) -> AppTest:
        at.file_uploader(key="upload").set_value((name, data, "audio/wav"))
        return at.run()

    def top_class_lines(at: AppTest) -> list[str]:
        return [m.value for m in at.markdown if m.value.startswith("**1. ")]

    good = audio_bytes(tone(3.0, 44100, 660.0, 2), 44100)
    first = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    with monkeypatch.context() as patch:
        patch.setattr(untrusted, "worker_command", lambda: _python(CRASH))
        upload(first, "killer.wav", audio_bytes(tone(1.0), RATE))
    assert not first.exception
    assert [e.value for e in first.error] == [
        "killer.wav: The decoder crashed on this file (signal 11, SIGSEGV); it is probably corrupt."
    ]
    upload(first, "good.wav", good)
    assert not first.exception and not first.error and len(top_class_lines(first)) == 1
    second = upload(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run(), "good.wav", good)
    assert not second.exception and top_class_lines(second) == top_class_lines(first)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (CRASH, r"crashed on this file \(signal 11, SIGSEGV\)"),
        ("import os; os.abort()", r"crashed on this file \(signal 6, SIGABRT\)"),
        ("import sys; sys.exit(7)", r"failed on this file \(exit status 7\)"),
        ("raise MemoryError", "too much memory"),
        ("import sys; sys.stdin.buffer.read(10); sys.exit(0)", "stopped answering"),
    ],
)
def test_a_stream_worker_that_dies_costs_one_file(
    monkeypatch: pytest.MonkeyPatch, clip: bytes, code: str, expected: str
) -> None:
    with untrusted.DecodeWorker(RATE) as worker:
        np.testing.assert_array_equal(worker.decode(clip), load_audio(clip, RATE))
        worker.close()  # the next file starts the substituted worker
        with monkeypatch.context() as patch:
            patch.setattr(untrusted, "worker_command", lambda: _python(code))
            with pytest.raises(AudioError, match=expected):
                worker.decode(clip)
        np.testing.assert_array_equal(worker.decode(clip), load_audio(clip, RATE))  # a fresh worker


def test_a_stream_worker_decodes_many_files_in_one_process(clip: bytes) -> None:
    other = audio_bytes(tone(1.0, 44100), 44100)
    with untrusted.DecodeWorker(RATE) as worker:
        first = worker.decode(clip)
        pid = worker._process.pid
        with pytest.raises(AudioError, match="text file"):
            worker.decode(b"just some notes, not a recording\n" * 10)
        np.testing.assert_array_equal(worker.decode(other), load_audio(other, RATE))
        assert worker._process.pid == pid  # a refused file does not cost the worker
        np.testing.assert_array_equal(first, load_audio(clip, RATE))
        with pytest.raises(AudioError, match="empty"):
            worker.decode(b"")


def test_a_hanging_stream_worker_is_stopped(monkeypatch: pytest.MonkeyPatch, clip: bytes) -> None:
    monkeypatch.setattr(untrusted, "worker_command", lambda: _python("import time; time.sleep(60)"))
    with untrusted.DecodeWorker(RATE, timeout=1.0) as worker, pytest.raises(AudioError, match="longer than 1 s"):
        worker.decode(clip)
