"""Hostile checkpoints: loading never runs code from the file, and every bad file is refused clearly.

``test_checkpoint.py`` covers round trips and the ordinary broken files; this file
covers files made to attack or exhaust the loader: pickled callables in every
container torch.save can produce, whole pickled modules, weights of another network,
NaN weights, architectures declared too big to build, and the CLI's handling of them.
"""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY_MODEL

from audiocnn.checkpoint import CheckpointError, checkpoint_payload, load_checkpoint
from audiocnn.cli import main
from audiocnn.features import FeatureConfig
from audiocnn.inference import Predictor
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import AudioCNN


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


class EvalsCode:
    """Unpickling this calls ``eval`` on a string: arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


@pytest.fixture
def good() -> dict:
    torch.manual_seed(0)
    return checkpoint_payload(AudioCNN(TINY_MODEL).eval(), FeatureConfig(), list(CLASS_NAMES), {"seed": 0})


def _save(path: Path, data: object, legacy: bool = False) -> Path:
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


def _refused(path: Path, match: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    return error.value


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
@pytest.mark.parametrize("payload", [WritesMarker, EvalsCode])
def test_pickled_callables_never_run(good: dict, tmp_path: Path, payload: type, legacy: bool) -> None:
    marker = tmp_path / "code-ran"
    good["metadata"]["on_load"] = payload(marker)
    path = _save(tmp_path / "evil.pt", good, legacy)
    _refused(path, "Refused to load .*possibly code")
    with pytest.raises(CheckpointError):
        Predictor.from_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_bare_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"format": "audiocnn-checkpoint", "hook": WritesMarker(marker)}))
    _refused(path, "corrupt or truncated: not a readable torch file")
    assert not marker.exists()


def test_a_hand_edited_data_pkl_never_runs(good: dict, tmp_path: Path) -> None:
    """Replace the pickle inside a real checkpoint's zip with one that calls os.system."""
    marker = tmp_path / "code-ran"
    clean = _save(tmp_path / "clean.pt", good)
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                data = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
            target.writestr(item, data)
    _refused(evil, "Refused to load .*system")
    assert not marker.exists()


def test_a_whole_pickled_model_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "module.pt", AudioCNN(TINY_MODEL))
    _refused(path, "Refused to load .*AudioCNN")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([1, 2, 3], "not an audiocnn checkpoint"),
        (torch.zeros(3), "not an audiocnn checkpoint"),
        ("audiocnn-checkpoint", "not an audiocnn checkpoint"),
        (None, "not an audiocnn checkpoint"),
        ({"format": "audiocnn-checkpoint"}, "format version None"),
    ],
    ids=["list", "tensor", "string", "none", "marker-only"],
)
def test_not_a_checkpoint_dictionary(tmp_path: Path, data: object, match: str) -> None:
    _refused(_save(tmp_path / "odd.pt", data), match)


@pytest.mark.parametrize("size", [0, 100, 10_000])
@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path: Path, size: int, seed: int) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(seed).randbytes(size))
    _refused(path, "corrupt or truncated")


def test_every_single_byte_file_is_damage_not_code(tmp_path: Path) -> None:
    """A one-byte file can be a pickle opcode (b"c" is a nameless GLOBAL); none of them may read as code."""
    path = tmp_path / "one-byte.pt"
    for value in range(256):
        path.write_bytes(bytes([value]))
        _refused(path, "corrupt or truncated")


@pytest.mark.parametrize("keep", [0.99, 0.7, 0.3])
def test_truncated_at_any_point(good: dict, tmp_path: Path, keep: float) -> None:
    data = _save(tmp_path / "good.pt", good).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    _refused(path, "corrupt or truncated")


def _other_network(payload: dict) -> None:
    payload["state_dict"] = {"features.0.weight": torch.zeros(64, 3, 3, 3), "classifier.weight": torch.zeros(50, 64)}


def _fewer_classes_in_weights(payload: dict) -> None:
    torch.manual_seed(1)
    payload["state_dict"] = AudioCNN(TINY_MODEL.__class__(**{**TINY_MODEL.to_dict(), "num_classes": 10})).state_dict()


def _wider_weights(payload: dict) -> None:
    payload["state_dict"] = AudioCNN(TINY_MODEL.__class__(**{**TINY_MODEL.to_dict(), "widths": (16, 16)})).state_dict()


def _nan_weight(payload: dict) -> None:
    name = next(k for k, v in payload["state_dict"].items() if v.dim() == 4)  # the first convolution
    payload["state_dict"][name].view(-1)[0] = float("nan")


def _inf_running_var(payload: dict) -> None:
    name = next(k for k in payload["state_dict"] if k.endswith("running_var"))
    payload["state_dict"][name][0] = float("inf")


def _huge_declared(payload: dict) -> None:
    payload["model_config"]["widths"] = [100_000, 100_000]  # ~90 GB of weights if it were built


def _deep_declared(payload: dict) -> None:
    payload["model_config"]["blocks"] = [10_000, 1]


def _string_weights(payload: dict) -> None:
    payload["state_dict"]["stem.0.weight"] = "weights"


def _unsupported_features(payload: dict) -> None:
    payload["feature_config"].update(n_mels=4, top_db=-1.0)


def _negative_stem(payload: dict) -> None:
    payload["model_config"]["stem_channels"] = -1


def _fractional_stem(payload: dict) -> None:
    payload["model_config"]["stem_channels"] = 2.5


def _float_class_count(payload: dict) -> None:
    payload["model_config"]["num_classes"] = 50.0


def _list_metadata(payload: dict) -> None:
    payload["metadata"] = [1, 2]


def _string_metadata(payload: dict) -> None:
    payload["metadata"] = "seed=0"


def _numbered_weight(payload: dict) -> None:
    payload["state_dict"][0] = payload["state_dict"].pop("stem.0.weight")


def _sparse_weight(payload: dict) -> None:
    payload["state_dict"]["stem.0.weight"] = payload["state_dict"]["stem.0.weight"].to_sparse()


def _meta_weight(payload: dict) -> None:
    payload["state_dict"]["stem.0.weight"] = payload["state_dict"]["stem.0.weight"].to("meta")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_other_network, "weights do not match its declared architecture"),
        (_fewer_classes_in_weights, "weights do not match its declared architecture"),
        (_wider_weights, "weights do not match its declared architecture"),
        (_string_weights, "weights do not match its declared architecture: not a tensor dict"),
        (_nan_weight, r"NaN or infinite weights \(in stem\.0\.weight\)"),
        (_inf_running_var, "NaN or infinite weights"),
        (_huge_declared, "implausibly large network"),
        (_deep_declared, "implausibly large network"),
        (_unsupported_features, "unsupported feature config: n_mels 4; top_db -1.0"),
        (_negative_stem, "incompatible with this code: stem_channels must be at least 1, not -1"),
        (_fractional_stem, "incompatible with this code: stem_channels must be an integer, not 2.5"),
        (_float_class_count, "incompatible with this code: num_classes must be an integer, not 50.0"),
        (_list_metadata, "malformed metadata: a list, not a dict"),
        (_string_metadata, "malformed metadata: a str, not a dict"),
        (_numbered_weight, "weights do not match its declared architecture: not a tensor dict"),
        pytest.param(_sparse_weight, "weights do not match its declared architecture: not a tensor dict",
                     marks=pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")),
        (_meta_weight, "weights do not match its declared architecture: not a tensor dict"),
    ],
    ids=["other-network", "class-count", "wider", "string-weights", "nan", "inf-running-var", "huge", "deep",
         "features", "negative-stem", "fractional-stem", "float-class-count", "list-metadata", "string-metadata",
         "numbered-weight", "sparse-weight", "meta-weight"],
)  # fmt: skip
def test_incompatible_or_poisoned_weights_are_refused(good: dict, tmp_path: Path, change, match: str) -> None:
    change(good)
    _refused(_save(tmp_path / "bad.pt", good), match)


def test_cli_refuses_a_malicious_checkpoint_without_running_it(good: dict, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    good["metadata"]["on_load"] = EvalsCode(marker)
    path = _save(tmp_path / "evil.pt", good)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")  # never read: the checkpoint is refused first
    completed = subprocess.run(
        [sys.executable, "-m", "audiocnn", "predict", str(clip), "--checkpoint", str(path)],
        capture_output=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    stderr = completed.stderr.decode()
    assert completed.returncode == 2
    assert stderr.startswith("error: Refused to load") and "Traceback" not in stderr
    assert not marker.exists()


def test_cli_refuses_a_crafted_config_with_its_reason(good: dict, tmp_path: Path, capsys) -> None:
    """The CLI catches only ``CheckpointError``: a crafted config must not escape as another error."""
    _negative_stem(good)
    path = _save(tmp_path / "crafted.pt", good)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")  # never read: the checkpoint is refused first
    assert main(["predict", str(clip), "--checkpoint", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: Checkpoint {path} is incompatible with this code: stem_channels")
