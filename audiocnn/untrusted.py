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
"""

from __future__ import annotations

import io
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
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
    if code == 0:
        try:
            waveform = np.load(io.BytesIO(completed.stdout), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise AudioError("The audio decoder returned an unreadable result; the file may be corrupt.") from error
        if waveform.dtype != np.float32 or waveform.ndim != 1:
            raise AudioError("The audio decoder returned an unexpected result; the file is probably corrupt.")
        return sanitize(waveform)
    if code == EXIT_AUDIO_ERROR:
        message = completed.stdout.decode("utf-8", errors="replace").strip()
        raise AudioError(message or "Could not decode this file as audio.")
    if code < 0:
        raise AudioError(f"The decoder crashed on this file ({_signal_name(-code)}); it is probably corrupt.")
    if _out_of_memory(completed.stderr):
        raise AudioError("Decoding this file needed too much memory; it is probably corrupt.")
    _log.warning("audio worker exited with %s: %s", code, completed.stderr.decode("utf-8", "replace")[-2000:])
    raise AudioError(f"The audio decoder failed on this file (exit status {code}); it is probably corrupt.")


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


def worker_main(argv: list[str]) -> int:
    """Decode stdin with ``load_audio`` and write the result (see the module docstring)."""
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
