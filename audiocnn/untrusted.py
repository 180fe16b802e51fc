"""Decoding untrusted uploads in a short-lived worker process.

Decoding runs through native libraries (libsndfile with its FLAC, Vorbis, Opus and
mpg123 back ends, and soxr). A malformed file can make them crash (SIGSEGV, abort),
spin forever or allocate without bound, none of which Python can catch in-process.
``load_untrusted`` therefore runs ``audiocnn.audio.load_audio`` in a fresh
``python -m audiocnn.untrusted`` process per file: the bytes go in on stdin, the
waveform comes back on stdout as ``.npy``. A crash, a timeout or a memory blow-up
kills only that worker and becomes an ``AudioError`` with a human message; the
server keeps serving. The worker imports only numpy, soundfile and soxr (never
torch), so it starts in about 0.2-0.4 s.

Protocol (private to this module): argv = sample rate, max duration, max bytes;
exit 0 -> stdout is the float32 waveform as ``.npy``; exit ``EXIT_AUDIO_ERROR`` ->
stdout is the ``AudioError`` message (UTF-8); anything else is a failure.

``DecodeWorker`` keeps one worker for many files (the batch CLI, where a process start per 5 s
clip would cost more than classifying it): argv = ``--stream`` and the same three; each request
on stdin is a little-endian u64 length and that many bytes; each answer on stdout is a status byte
(0 or ``EXIT_AUDIO_ERROR``), a u64 length and the ``.npy`` or the message. A worker that dies or
hangs costs the file it was decoding an ``AudioError``; the next file gets a fresh worker.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .audio import MAX_DURATION_SECONDS, MAX_FILE_BYTES, AudioError, load_audio, read_source, sanitize

DEFAULT_TIMEOUT = 20.0
"""Seconds a worker may take; a 10-minute 96 kHz file decodes in a few seconds."""

MAX_CONCURRENT_DECODES = 4
"""Workers running at once per server process. More uploads wait up to their timeout for a slot, and
the worker then gets a timeout of its own: time spent queueing must not make a sound file look like
one that hangs the decoder ("probably corrupt")."""

WORKER_MEMORY_BYTES = 2 * 1024**3
"""Address-space limit of a worker: generous for a 50 MB file, fatal for a runaway allocation."""

EXIT_AUDIO_ERROR = 3

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
_log = logging.getLogger(__name__)


def worker_command() -> list[str]:
    """The command that starts one decoding worker (a function so tests can substitute a crashing one)."""
    return [sys.executable, "-m", "audiocnn.untrusted"]


def _worker_env() -> dict[str, str]:
    """The worker's environment: audiocnn importable from anywhere, single-threaded numeric libraries."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def load_untrusted(
    data: bytes,
    sample_rate: int,
    timeout: float = DEFAULT_TIMEOUT,
    max_duration: float = MAX_DURATION_SECONDS,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Like ``load_audio(data, sample_rate)``, but a decoder crash or hang raises ``AudioError``.

    Empty and oversized input is refused here, before any worker starts.
    """
    data = read_source(data, max_bytes)
    if not _slots.acquire(timeout=timeout):
        raise AudioError("The server is busy decoding other files; please try again in a moment.")
    try:
        completed = subprocess.run(
            [*worker_command(), str(int(sample_rate)), repr(float(max_duration)), str(int(max_bytes))],
            input=data,
            capture_output=True,
            timeout=timeout,
            env=_worker_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as error:  # run() has already killed the worker
        raise AudioError(
            f"Decoding took longer than {timeout:.0f} s and was stopped; the file is probably corrupt."
        ) from error
    except OSError as error:
        raise AudioError(f"The audio decoder could not be started ({error.strerror or error}).") from error
    finally:
        _slots.release()
    return _result(completed)


def _result(completed: subprocess.CompletedProcess) -> np.ndarray:
    """The worker's waveform, or the ``AudioError`` that explains why there is none."""
    code = completed.returncode
    if code in (0, EXIT_AUDIO_ERROR):
        return _answer(code, completed.stdout)
    raise _failure(code, completed.stderr)


def _answer(status: int, payload: bytes) -> np.ndarray:
    """The waveform of a worker's answer, or the ``AudioError`` it reported."""
    if status == EXIT_AUDIO_ERROR:
        message = payload.decode("utf-8", errors="replace").strip()
        raise AudioError(message or "Could not decode this file as audio.")
    try:
        waveform = np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise AudioError("The audio decoder returned an unreadable result; the file may be corrupt.") from error
    if waveform.dtype != np.float32 or waveform.ndim != 1:
        raise AudioError("The audio decoder returned an unexpected result; the file is probably corrupt.")
    return sanitize(waveform)


def _failure(code: int, stderr: bytes) -> AudioError:
    """Why a worker that exited with ``code`` (negative: killed by a signal) gave no answer."""
    if code < 0:
        return AudioError(f"The decoder crashed on this file ({_signal_name(-code)}); it is probably corrupt.")
    if _out_of_memory(stderr):
        return AudioError("Decoding this file needed too much memory; it is probably corrupt.")
    _log.warning("audio worker exited with %s: %s", code, stderr.decode("utf-8", "replace")[-2000:])
    return AudioError(f"The audio decoder failed on this file (exit status {code}); it is probably corrupt.")


class _Gone(Exception):
    """The stream worker closed its output (it died) before answering."""


class DecodeWorker:
    """One long-lived decoding worker for many files, restarted after any file that kills it.

    ``decode`` is ``load_untrusted`` without a process start per file: a crash, a hang (``timeout``
    per file) or a memory blow-up costs that file an ``AudioError``, and the next call starts a new
    worker. Not thread-safe: one caller at a time (the batch CLI's decoding thread).
    """

    def __init__(
        self,
        sample_rate: int,
        timeout: float = DEFAULT_TIMEOUT,
        max_duration: float = MAX_DURATION_SECONDS,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self._args = [str(int(sample_rate)), repr(float(max_duration)), str(int(max_bytes))]
        self.timeout, self.max_bytes = timeout, max_bytes
        self._process: subprocess.Popen | None = None
        self._stderr = None

    def decode(self, source: bytes | str | os.PathLike) -> np.ndarray:
        """Mono float32 at the sample rate, or ``AudioError`` (bad file, or the worker died on it)."""
        data = read_source(source, self.max_bytes)
        process = self._start()
        deadline = time.monotonic() + self.timeout
        try:
            _write(process.stdin, struct.pack("<Q", len(data)) + data, deadline)
            status = _read(process.stdout, 1, deadline)[0]
            payload = _read(process.stdout, struct.unpack("<Q", _read(process.stdout, 8, deadline))[0], deadline)
        except TimeoutError as error:
            self.close()
            raise AudioError(
                f"Decoding took longer than {self.timeout:.0f} s and was stopped; the file is probably corrupt."
            ) from error
        except (_Gone, BrokenPipeError, OSError) as error:
            raise self._died() from error
        return _answer(status, payload)

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self.close()
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker; close() closes it)
            try:
                self._process = subprocess.Popen(
                    [*worker_command(), "--stream", *self._args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=self._stderr, env=_worker_env(),
                )  # fmt: skip
            except OSError as error:
                raise AudioError(f"The audio decoder could not be started ({error.strerror or error}).") from error
        return self._process

    def _died(self) -> AudioError:
        """The error for the file a dead worker was decoding; the worker is cleaned up."""
        process, stderr = self._process, self._stderr
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        stderr.seek(0)
        log = stderr.read()
        self.close()
        if code is None or code == 0:
            return AudioError("The audio decoder stopped answering on this file; it is probably corrupt.")
        return _failure(code, log)

    def close(self) -> None:
        """Stop the worker (if any); the next ``decode`` starts another."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> DecodeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write(stream: io.BufferedWriter, data: bytes, deadline: float) -> None:
    """All of ``data`` to a worker's stdin before ``deadline`` (``TimeoutError``): a worker that stops
    reading must not block the caller on a full pipe."""
    fd = stream.fileno()
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
            raise TimeoutError
        try:
            view = view[os.write(fd, view[: 1 << 20]) :]
        except BlockingIOError:
            continue


def _read(stream: io.BufferedReader, size: int, deadline: float) -> bytes:
    """Exactly ``size`` bytes from a worker's stdout before ``deadline`` (``TimeoutError``), or ``_Gone``."""
    chunks, left = [], size
    fd = stream.fileno()
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise _Gone
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _signal_name(number: int) -> str:
    try:
        return f"signal {number}, {signal.Signals(number).name}"
    except ValueError:
        return f"signal {number}"


def _out_of_memory(stderr: bytes) -> bool:
    return b"MemoryError" in stderr or b"std::bad_alloc" in stderr


def _limit_resources() -> None:
    """Inside the worker: bounded memory, no core dump when a native decoder crashes."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > WORKER_MEMORY_BYTES:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, hard))


def stream_main(argv: list[str]) -> int:
    """Decode framed requests from stdin until it closes (``DecodeWorker``'s side of the protocol)."""
    _limit_resources()
    sample_rate, max_duration, max_bytes = int(argv[0]), float(argv[1]), int(argv[2])
    source, out = sys.stdin.buffer, sys.stdout.buffer
    while len(head := source.read(8)) == 8:
        data = source.read(struct.unpack("<Q", head)[0])
        try:
            waveform = load_audio(data, sample_rate, max_duration=max_duration, max_bytes=max_bytes)
        except AudioError as error:
            status, payload = EXIT_AUDIO_ERROR, str(error).encode("utf-8")
        else:
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(waveform, dtype=np.float32), allow_pickle=False)
            status, payload = 0, buffer.getvalue()
        out.write(bytes([status]) + struct.pack("<Q", len(payload)) + payload)
        out.flush()
    return 0


def worker_main(argv: list[str]) -> int:
    """Decode stdin with ``load_audio`` and write the result (see the module docstring)."""
    if argv and argv[0] == "--stream":
        return stream_main(argv[1:])
    _limit_resources()
    sample_rate, max_duration, max_bytes = int(argv[0]), float(argv[1]), int(argv[2])
    data = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    try:
        waveform = load_audio(data, sample_rate, max_duration=max_duration, max_bytes=max_bytes)
    except AudioError as error:
        out.write(str(error).encode("utf-8"))
        out.flush()
        return EXIT_AUDIO_ERROR
    np.save(out, np.ascontiguousarray(waveform, dtype=np.float32), allow_pickle=False)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
