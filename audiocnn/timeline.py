"""Class probabilities over a long recording, window by window, computed in steps.

A timeline of a 10-minute recording is hundreds of forward passes, so it is computed a batch of
windows at a time by a ``TimelineScan``: a caller (the app) can show windows done / total, stop
between batches and resume later from where it stopped, and a caller that only wants the result
(the CLI, ``Predictor.timeline``) runs it to the end. Where windows overlap closely, a batch shares
one pass of the network and only its undecided windows are scored on their own (``TimelineScan``).
Windows are placed by ``window_starts``;
``capped_hop`` widens the hop of very long recordings so that no timeline has more than
``MAX_WINDOWS`` windows, the one rule the app and the CLI share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .audio import window_starts
from .shared_windows import shared_probabilities, stretch_frames

if TYPE_CHECKING:
    from .inference import Prediction, Predictor

MAX_WINDOWS = 150
"""Windows in a timeline at most: beyond 154 s of audio at a 1 s hop the hop grows instead."""

EXACT_MARGIN = {1: 0.2, 2: 0.3}
"""By feature version: a window whose shared estimate puts its top two classes closer than this (in
probability) is rescored on its own (see ``shared_windows``). Chosen on recordings joined from ESC-50
folds 1-4, the smallest of 0.05, 0.1, ..., 0.4 that kept 99 % top-1 agreement with every window
scored on its own both at a 1 s hop (60 s) and at the cap's 4 s hop (10 minutes): for the previous,
version-1 shipped model 0.2 (60 s: 99.3 %, 10 % rescored, 0.15 gave 98.8 %; 10 minutes: 99.2 %, 9 %
rescored); for the version-2 model now shipped 0.3 (all of folds 1-4, 133 x 60 s: 99.2 %, 16 %
rescored, 0.25 gave 98.9 %; 13 x 10 minutes: 99.1 %, 16 % rescored). Its estimate is further off than
version 1's because every input bin hangs from the window's own peak, which the shared pass can only
approximate. Those are the models' training folds, where they are surer than on new audio, hence a
point over the 98 % required (README: fold 5, 99.0 % / 99.6 % at 60 s / 10 minutes for version 1 with
0.2, and for version 2 with 0.3 the figures there)."""

SHARED_COST = 0.45
"""A batch is estimated by a shared pass only where that pass costs at most this fraction of scoring
its windows one by one (frames: stretch / (windows x views x window); 0.13 for 32 windows at a 1 s
hop, 0.42 at the 150-window cap's 4 s hop, 0.5 for a lone window, more where windows do not
overlap). The fragile windows are rescored on top of it (31-34 % of the held-out windows for the
version-1 model, 44 % for the version-2 one, README), so sharing pays while this fraction and the
rescored share stay under 1, in time a little sooner (a long stretch runs about 1.3x slower per
frame than a batch of windows): at the cap's 4 s hop it did for the version-1 model (10 minutes of
fold 5: 0.42 + 0.31 of the work of scoring its 150 windows one by one) and does for the version-2
model on folds 1-4 (1.19x faster), but breaks even on fold 5 (0.42 + 0.44: 0.87x in time, README); a
lone window or windows that do not overlap would cost more than they save."""


@dataclass(frozen=True)
class Timeline:
    """Class probabilities of overlapping windows across a long recording."""

    starts: np.ndarray  # window start times in seconds
    window_seconds: float
    probabilities: np.ndarray  # (windows, classes)
    class_names: tuple[str, ...]

    @property
    def mean(self) -> Prediction:
        from .inference import Prediction  # the module that defines predictions imports this one

        return Prediction(self.probabilities.mean(axis=0), self.class_names)


def capped_hop(num_samples: int, window: int, hop: int, max_windows: int = MAX_WINDOWS) -> int:
    """``hop`` (samples), widened just enough that ``window_starts`` places at most ``max_windows`` windows."""
    if max_windows < 2:
        raise ValueError(f"max_windows must be at least 2, not {max_windows}")
    span = num_samples - window
    return max(hop, -(-span // (max_windows - 1))) if span > 0 else hop


class TimelineScan:
    """A recording's timeline, computed ``batch`` windows per ``step`` (one batched forward per view).

    Each step cuts its windows from the recording as it goes, so memory is that of one batch
    however long the file (all windows of 10 minutes at a 1 s hop at once would be 263 MB). A batch
    of closely overlapping windows is estimated by one shared pass (``shared_windows``) and its
    fragile windows (top two classes closer than ``EXACT_MARGIN``) are scored as ``Predictor.predict``
    scores a clip; other batches, and every batch with ``exact``, are scored window by window. The
    batches are fixed by window index, so a scan stopped and resumed gives the same timeline as one
    run straight through.
    """

    def __init__(
        self,
        predictor: Predictor,
        waveform: np.ndarray,
        hop_seconds: float = 1.0,
        max_windows: int | None = None,
        batch: int = 16,
        exact: bool = False,
    ) -> None:
        """``max_windows``: widen the hop (``capped_hop``) so that the timeline has at most that many windows.

        ``exact``: score every window on its own; otherwise batches of closely overlapping windows are
        estimated by one shared pass and only their fragile windows are scored on their own.
        """
        if not hop_seconds > 0:
            raise ValueError(f"hop_seconds must be positive, not {hop_seconds}")
        config = predictor.feature_config
        self._predictor = predictor
        self._waveform = waveform
        self._length = config.clip_samples
        hop = max(1, round(hop_seconds * config.sample_rate))
        if max_windows is not None:
            hop = capped_hop(waveform.shape[0], self._length, hop, max_windows)
        self._starts = window_starts(waveform.shape[0], self._length, hop)
        self._batch = max(1, batch)
        self._exact = exact
        self._parts: list[np.ndarray] = []
        self._done = 0
        self.rescored = 0
        """Windows of shared batches that were fragile and scored on their own."""
        self.shared = 0
        """Windows in batches estimated by a shared pass."""
        self.frames = 0
        """Log-mel frames pushed through the network so far (every view counted): the scan's work, a
        proxy for its time that does not depend on the machine or its load."""
        self._lock = threading.Lock()

    @property
    def batch(self) -> int:
        """Windows per step."""
        return self._batch

    @property
    def starts(self) -> np.ndarray:
        """Start of every planned window in seconds, scored or not."""
        return np.asarray(self._starts) / self._predictor.feature_config.sample_rate

    @property
    def total(self) -> int:
        return len(self._starts)

    @property
    def done(self) -> int:
        return self._done

    @property
    def finished(self) -> bool:
        return self._done == self.total

    def step(self) -> int:
        """Score the next batch of windows; returns how many are done (a finished scan does nothing)."""
        with self._lock:
            if not self.finished:
                starts = self._starts[self._done : self._done + self._batch]
                self._parts.append(self._score(starts) if self._exact or not self._shares(starts) else
                                   self._estimate(starts))  # fmt: skip
                self._done += len(starts)
            return self._done

    def _score(self, starts: list[int]) -> np.ndarray:
        """Each window on its own, as ``Predictor.predict`` scores a clip."""
        windows = [self._waveform[s : s + self._length] for s in starts]
        features = self._predictor.logmel(windows)
        self.frames += len(starts) * self._predictor.views * features.shape[-1]
        return self._predictor._probabilities(features)

    def _shares(self, starts: list[int]) -> bool:
        """Whether one shared pass over these windows costs at most ``SHARED_COST`` of scoring them one by one."""
        frames = self._predictor.feature_config.num_frames
        shared = stretch_frames(self._predictor, self._waveform.shape[0], starts)
        return shared <= SHARED_COST * len(starts) * self._predictor.views * frames

    def _estimate(self, starts: list[int]) -> np.ndarray:
        """The shared estimate, with the windows it cannot decide (``EXACT_MARGIN``) scored on their own."""
        probabilities = shared_probabilities(self._predictor, self._waveform, starts)
        self.frames += stretch_frames(self._predictor, self._waveform.shape[0], starts)
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        margin = EXACT_MARGIN[self._predictor.feature_config.version]
        fragile = np.flatnonzero(top_two[:, 1] - top_two[:, 0] < margin)
        if fragile.size:
            probabilities[fragile] = self._score([starts[i] for i in fragile])
        self.shared += len(starts)
        self.rescored += fragile.size
        return probabilities

    def run(self, progress: Callable[[int, int], None] | None = None) -> Timeline:
        """Every remaining window; ``progress(done, total)`` after each batch."""
        while not self.finished:
            done = self.step()
            if progress is not None:
                progress(done, self.total)
        return self.result()

    def result(self) -> Timeline:
        """The timeline of the windows scored so far (all of them once ``finished``)."""
        with self._lock:
            if not self._done:
                raise RuntimeError("no window has been scored yet: call step() first")
            probabilities = np.concatenate(self._parts)
            seconds = self._predictor.feature_config.clip_seconds
            return Timeline(self.starts[: self._done], seconds, probabilities, self._predictor.class_names)
