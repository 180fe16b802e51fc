"""Rules of the code base checked in fresh interpreters: the layering of the packages, the decoding
worker's imports, and that tests needing ESC-50 cannot skip while it is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, audio_bytes, tone

from audiocnn.untrusted import worker_command

FORBIDDEN_IN_LIBRARY = {"streamlit", "modal", "training", "ui", "benchmarks"}


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          **kwargs)  # fmt: skip


def test_the_library_imports_no_app_training_or_cloud_code() -> None:
    """Every module of ``audiocnn`` imported together pulls in none of Streamlit, Modal, ``training``, ``ui``."""
    code = (
        "import importlib, pkgutil, sys, audiocnn\n"
        "names = [m.name for m in pkgutil.iter_modules(audiocnn.__path__) if m.name != '__main__']\n"
        "for name in names: importlib.import_module('audiocnn.' + name)\n"
        "print(len(names)); print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.splitlines()
    assert int(count) >= 10  # every module was imported, not none
    assert "torch" in loaded.split()  # the probe sees real imports
    assert FORBIDDEN_IN_LIBRARY.isdisjoint(loaded.split()), FORBIDDEN_IN_LIBRARY & set(loaded.split())


def test_the_decoding_worker_never_imports_torch() -> None:
    """The real worker command, decoding a real file, with Python reporting every import it makes."""
    python, *module = worker_command()
    data = audio_bytes(tone(1.0, 22050), 22050)
    result = subprocess.run([python, "-X", "importtime", *module, "22050", "600", str(10 * 2**20)], input=data,
                            capture_output=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.decode().splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert {"numpy", "soundfile", "audiocnn"} <= imported  # the probe sees the worker's imports
    assert imported.isdisjoint({"torch", "torchaudio", "streamlit"}), imported & {"torch", "torchaudio", "streamlit"}


def test_a_dataset_test_that_skips_while_the_dataset_is_there_fails(tmp_path: Path) -> None:
    """With ESC-50 present but unreadable the accuracy test fails instead of skipping; absent, it skips."""
    test = "tests/test_shipped_model.py::test_stored_accuracy_matches_a_fresh_evaluation"
    outcomes = {}
    for name, path in {"broken": tmp_path, "absent": tmp_path / "nowhere"}.items():
        env = {**os.environ, "AUDIOCNN_ESC50": str(path)}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        outcomes[name] = (result.returncode, result.stdout)
    code, output = outcomes["broken"]
    assert code == 1 and "1 error" in output  # the skip happens while setting the test up
    assert f"needs ESC-50 and {tmp_path} exists, but the test skipped: Skipped: ESC-50 is not available" in output
    code, output = outcomes["absent"]
    assert code == 0 and "1 skipped" in output
