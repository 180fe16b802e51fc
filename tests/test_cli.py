"""``python -m audiocnn predict``: text output, the JSON contract and exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, tone

from audiocnn.cli import main, predict_files
from audiocnn.labels import CLASS_NAMES


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a tiny model needs no thread pool
    return subprocess.run([sys.executable, "-m", "audiocnn", "predict", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    paths = {"short": folder / "short.wav", "long": folder / "long.flac", "text": folder / "notes.wav"}
    sf.write(paths["short"], tone(2.0, 16000, 440.0), 16000)
    sf.write(paths["long"], tone(8.0, 44100, 880.0, channels=2), 44100)
    paths["text"].write_text("not audio at all\n" * 20)
    paths["missing"] = folder / "missing.ogg"
    return paths


def test_text_output(tiny_checkpoint, clips):
    done = run_cli(str(clips["short"]), "--checkpoint", str(tiny_checkpoint), "--top-k", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(clips["short"])
    assert [line.split(".")[0].strip() for line in lines[1:]] == ["1", "2", "3"]
    assert all("%" in line for line in lines[1:])


def test_json_contract_with_a_bad_file(tiny_checkpoint, clips):
    files = [clips["short"], clips["text"], clips["long"], clips["missing"]]
    done = run_cli(*map(str, files), "--checkpoint", str(tiny_checkpoint), "--json", "--top-k", "50")
    assert done.returncode == 1  # some file failed
    results = json.loads(done.stdout)
    assert isinstance(results, list) and [r["file"] for r in results] == list(map(str, files))
    for result in (results[0], results[2]):
        assert set(result) == {"file", "predictions"}
        predictions = result["predictions"]
        assert len(predictions) == 50 and {p["label"] for p in predictions} == set(CLASS_NAMES)
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-6)
    assert set(results[1]) == {"file", "error"} and "text file" in results[1]["error"]
    assert set(results[3]) == {"file", "error"} and "No such audio file" in results[3]["error"]


def test_missing_checkpoint_exits_2(clips, tmp_path):
    done = run_cli(str(clips["short"]), "--checkpoint", str(tmp_path / "absent.pt"))
    assert done.returncode == 2
    assert "Checkpoint not found" in done.stderr and "absent.pt" in done.stderr
    assert done.stdout == ""


def test_all_good_files_exit_0_and_top_k(capsys, tiny_checkpoint, clips):
    assert main(["predict", str(clips["short"]), str(clips["long"]), "--checkpoint", str(tiny_checkpoint),
                 "--json"]) == 0  # fmt: skip
    results = json.loads(capsys.readouterr().out)
    assert [len(r["predictions"]) for r in results] == [5, 5]  # the default top-k
    for top_k, expected in (("1", 1), ("0", 50), ("500", 50)):
        assert main(["predict", str(clips["short"]), "--checkpoint", str(tiny_checkpoint), "--json",
                     "--top-k", top_k]) == 0  # fmt: skip
        assert len(json.loads(capsys.readouterr().out)[0]["predictions"]) == expected


def test_text_output_reports_errors_inline(capsys, tiny_checkpoint, clips):
    assert main(["predict", str(clips["text"]), str(clips["short"]), "--checkpoint", str(tiny_checkpoint)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(clips["text"]) and out[1].startswith("  error: ")
    assert out[2] == str(clips["short"]) and out[3].lstrip().startswith("1.")


def test_corrupt_checkpoint_exits_2(capsys, clips, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 100)
    assert main(["predict", str(clips["short"]), "--checkpoint", str(broken)]) == 2
    assert "broken.pt" in capsys.readouterr().err


# A decoding worker whose decoder crashes (SIGSEGV) on any file that starts with b"CRASH".
CRASHING_WORKER = (
    "import os, signal, sys; import audiocnn.untrusted as u; real = u.load_audio; "
    "u.load_audio = lambda data, *a, **k: os.kill(os.getpid(), signal.SIGSEGV) if data.startswith(b'CRASH') "
    "else real(data, *a, **k); sys.exit(u.worker_main(sys.argv[1:]))"
)


def test_a_file_that_crashes_the_decoder_costs_only_that_file(monkeypatch, tiny_checkpoint, clips, tmp_path):
    from audiocnn import untrusted
    from audiocnn.inference import Predictor

    bomb = tmp_path / "bomb.wav"
    bomb.write_bytes(b"CRASH" + bytes(2000))
    monkeypatch.setattr(untrusted, "worker_command", lambda: [sys.executable, "-c", CRASHING_WORKER])
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    files = [clips["short"], bomb, clips["long"], bomb, clips["text"], clips["short"]]
    results = predict_files(predictor, files, top_k=3)
    assert [r["file"] for r in results] == [str(f) for f in files]  # one entry per file, in order
    assert "crashed on this file (signal 11, SIGSEGV)" in results[1]["error"]
    assert "crashed" in results[3]["error"] and "text file" in results[4]["error"]
    for good in (0, 2, 5):
        expected = predictor.predict_file(files[good]).ranked(3)
        got = [(p["label"], p["probability"]) for p in results[good]["predictions"]]
        assert [label for label, _ in got] == [label for label, _ in expected]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], atol=1e-3)  # bf16 batch noise


def test_many_short_clips_are_batched_and_keep_their_order(tiny_checkpoint, tmp_path):
    from audiocnn.inference import WINDOW_BATCH, Predictor

    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    files = []
    for i in range(WINDOW_BATCH + 3):  # crosses a batch boundary
        files.append(tmp_path / f"clip{i}.wav")
        sf.write(files[-1], tone(1.0 + i / 10, 22050, 200.0 + 90 * i), 22050)
    results = predict_files(predictor, files, top_k=50)
    for path, result in zip(files, results):
        assert result["file"] == str(path)
        got = {p["label"]: p["probability"] for p in result["predictions"]}
        expected = dict(predictor.predict_file(path).ranked())
        np.testing.assert_allclose([got[k] for k in CLASS_NAMES], [expected[k] for k in CLASS_NAMES], atol=1e-3)
