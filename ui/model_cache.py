"""A small, process-wide LRU of loaded models, and the key that ties cached work to one checkpoint.

Sessions may serve different checkpoints at once; each loaded ``Predictor`` is shared by
every session serving it (it holds no per-request state). ``MAX_MODELS`` bounds memory:
the shipped model adds about 68 MB of resident memory once loaded (45 MB of fp32 weights;
measured by ``scripts/compare_models.py``), so three stay near 200 MB. The least recently
*requested* model is dropped first; a session still holding it finishes its run, and its
next run loads it again.

Cached per-model work (sample index, representation survey, per-session analyses) is
keyed by ``model_key``: a hash of the checkpoint's bytes, so a file retrained in place
gets a new key and two copies of one file share their work.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from audiocnn.checkpoint import CheckpointError
from audiocnn.inference import Predictor

MAX_MODELS = 3
"""The served model, a second one on the Compare page and one more session's choice."""

_KEYS: weakref.WeakKeyDictionary[Predictor, str] = weakref.WeakKeyDictionary()


def fingerprint(path: str | os.PathLike) -> str:
    """A short hash of a file's bytes (read in 1 MB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def model_key(predictor: Predictor) -> str:
    """The identity of a loaded model's checkpoint, for keying everything computed with it.

    A model loaded outside the cache (tests, the CLI) is fingerprinted from its file, or, with
    no file, by its object identity (kept alive by the registry, so the id cannot be reused).
    """
    key = _KEYS.get(predictor)
    if key is None:
        path = predictor.path
        key = fingerprint(path) if path is not None and Path(path).is_file() else f"object-{id(predictor)}"
        _KEYS[predictor] = key
    return key


class ModelCache:
    """Loaded predictors by checkpoint file (path, size and modification time), least recently used out first."""

    def __init__(self, capacity: int = MAX_MODELS, loader: Callable[[Path], Predictor] = Predictor.from_checkpoint):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._loader = loader
        self._models: OrderedDict[tuple[str, int, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()  # loads are serialised: two sessions never load one file twice

    def get(self, path: str | os.PathLike) -> Predictor:
        """The model of ``path``, loaded through the safe loader on first use; ``CheckpointError`` if it cannot be."""
        path = Path(path).expanduser().resolve()
        try:
            stat = path.stat()
        except OSError as error:
            raise CheckpointError(f"Checkpoint not found: {path}") from error
        if not path.is_file():
            raise CheckpointError(f"Checkpoint not found: {path} is not a file")
        identity = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if identity in self._models:
                self._models.move_to_end(identity)
                return self._models[identity]
            predictor = self._loader(path)
            _KEYS[predictor] = fingerprint(path)
            for stale in [known for known in self._models if known[0] == identity[0]]:  # the file was replaced
                del self._models[stale]
            self._models[identity] = predictor
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return predictor

    def loaded(self) -> list[Path]:
        """The checkpoints held now, least recently used first."""
        with self._lock:
            return [Path(identity[0]) for identity in self._models]
