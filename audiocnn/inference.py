"""From audio to ranked ESC-50 probabilities, activations and explanations.

``Predictor`` wraps one loaded checkpoint. It holds no per-request state, so a
single instance (loaded once per process) serves any number of concurrent callers.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .audio import check_not_silent, fit_to_length, load_audio, sanitize
from .checkpoint import LoadedCheckpoint, load_checkpoint
from .explain import OCCLUSION_SECONDS, cams_from_forward, check_class_index, grad_cam, occluded_copies
from .features import FeatureConfig, LogMel
from .model import AudioCNN, ModelConfig
from .precision import bf16_pays_off
from .timeline import MAX_WINDOWS, Timeline, TimelineScan

WINDOW_BATCH = 16
"""Windows per forward pass in timeline inference: bounds memory for long recordings."""

TIMELINE_BATCH = 2 * WINDOW_BATCH
"""Windows per step of a timeline scan: a shared pass over 32 windows costs less per window than over 16."""

TEST_TIME_VIEWS = 2
"""Views of each window whose probabilities are averaged: the log-mel and copies rolled in time
by equal fractions of the window. Training rolls clips the same way, so every view is one the
model knows; averaging evens out where the stride grid happens to cut the sound."""


def bf16_weights_copy(model: AudioCNN) -> AudioCNN:
    """A copy of ``model`` with its convolution and linear weights (and biases) stored in bf16.

    Under bf16 autocast it computes exactly what ``model`` does (autocast rounds those weights to bf16
    anyway, and leaves batch-norm's parameters in fp32, as here), without casting them on every call.
    """
    copy = deepcopy(model)
    for module in copy.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            for name, parameter in list(module.named_parameters(recurse=False)):
                setattr(module, name, nn.Parameter(parameter.detach().to(torch.bfloat16), parameter.requires_grad))
    return copy


@dataclass(frozen=True)
class Prediction:
    """Probabilities over all classes, with the ranking the UI and CLI show."""

    probabilities: np.ndarray  # (num_classes,)
    class_names: tuple[str, ...]

    @property
    def order(self) -> np.ndarray:
        return np.argsort(-self.probabilities, kind="stable")

    @property
    def top_index(self) -> int:
        return int(self.order[0])

    @property
    def top_label(self) -> str:
        return self.class_names[self.top_index]

    def ranked(self, top_k: int | None = None) -> list[tuple[str, float]]:
        """(label, probability) of the ``top_k`` most likely classes, or of all of them when ``None``.

        ``top_k`` below 1 is refused: a negative one would slice from the end and silently drop classes.
        """
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or None for every class), not {top_k}")
        order = self.order if top_k is None else self.order[:top_k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]


@dataclass
class Analysis:
    """Everything the dashboard shows for one model window of audio."""

    waveform: np.ndarray  # (clip_samples,) the window the model saw
    logmel: np.ndarray  # (mels, frames) in dB
    prediction: Prediction
    activations: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (C, H, W) or (C,)
    cams: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (mels, frames) in [0, 1]
    cam_class: int = -1


@dataclass(frozen=True)
class Occlusion:
    """A class's probability with each stretch of the window silenced in turn."""

    starts: np.ndarray  # (slices,) seconds into the window
    ends: np.ndarray  # (slices,)
    probabilities: np.ndarray  # (slices,) the class's probability with that stretch silenced
    base: float  # the class's probability with nothing silenced

    @property
    def drops(self) -> np.ndarray:
        """What the class loses without each stretch (negative: the stretch spoke against it)."""
        return self.base - self.probabilities


class Predictor:
    """Inference, activations and Grad-CAM for one checkpoint."""

    def __init__(self, checkpoint: LoadedCheckpoint, views: int = TEST_TIME_VIEWS, bf16: bool | None = None) -> None:
        """``bf16``: run the network in bf16 autocast; ``None`` decides by the CPU (``bf16_pays_off``)."""
        if views < 1:
            raise ValueError(f"views must be at least 1, not {views}")
        self.checkpoint = checkpoint
        self.views = views
        # Channels-last lets oneDNN run every conv without layout reorders: about 25-35 % faster on CPU
        # (forward and Grad-CAM backward) with the same fp32 results up to summation order.
        self.model = checkpoint.model.eval().to(memory_format=torch.channels_last)
        # Native bf16 halves every forward pass. On the shipped model it changed the top-1 class of
        # none of the 2000 ESC-50 clips and no probability by more than 0.72 points
        # (benchmarks/precision_agreement.py, model card).
        self.bf16 = bf16_pays_off(torch.device("cpu")) if bf16 is None else bf16
        self.compute_model = bf16_weights_copy(self.model) if self.bf16 else self.model
        """The network as this predictor's passes run it: ``model`` itself, or in bf16 a copy whose
        convolution and linear weights are stored in bf16. Autocast casts every weight on every call (its
        cast cache lasts one ``autocast`` block): 1.06-1.22x of a batch-1 forward's time here (README). The
        stored copy is the same rounding, so its results are bit-identical. ``model`` stays the
        checkpoint's fp32 network for everything that reads its weights."""
        self.class_names = tuple(checkpoint.class_names)
        self.frontend = LogMel(checkpoint.feature_config).eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike | None = None, views: int = TEST_TIME_VIEWS, bf16: bool | None = None
    ) -> Predictor:
        return cls(load_checkpoint(path), views, bf16)

    @property
    def feature_config(self) -> FeatureConfig:
        return self.checkpoint.feature_config

    @property
    def model_config(self) -> ModelConfig:
        return self.checkpoint.model_config

    @property
    def path(self) -> Path | None:
        return self.checkpoint.path

    def load(self, source: bytes | str | os.PathLike) -> np.ndarray:
        """Decode a file or bytes to mono float32 at the model's rate (full length)."""
        return load_audio(source, self.feature_config.sample_rate)

    def logmel(self, waveforms: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """One clip ``(samples,)`` or several (array or list) at the model rate -> ``(B, 1, mels, frames)``.

        Each clip is centre-cropped or zero-padded to the model's window first, and NaN/Inf
        samples of arrays that did not come through ``load`` are zeroed so none reaches the model.
        """
        single = isinstance(waveforms, np.ndarray) and waveforms.ndim == 1
        batch = [waveforms] if single else list(waveforms)
        length = self.feature_config.clip_samples
        fitted = sanitize(np.stack([fit_to_length(w, length) for w in batch]).astype(np.float32))
        with torch.no_grad():
            return self.frontend(torch.from_numpy(fitted))

    def forward(
        self, features: torch.Tensor, return_activations: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The network on log-mels ``(B, 1, mels, frames)``, in the precision this predictor runs.

        Logits come back in fp32. Activations stay in the compute dtype (bf16 under autocast) so
        that Grad-CAM can differentiate through them; ``.float()`` them before NumPy.
        """
        with self._autocast():
            if return_activations:
                logits, activations = self.compute_model(features, return_activations=True)
                return logits.float(), activations
            return self.compute_model(features).float()

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def _probabilities(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> np.ndarray:
        """Class probabilities ``(B, classes)``, averaged over ``self.views`` time-rolled views.

        ``logits`` of the unrolled view are reused when the caller already ran it.
        """
        with torch.inference_mode():
            probabilities = torch.softmax(logits if logits is not None else self.forward(features), dim=1)
            if self.views > 1:
                shifts = [k * features.shape[-1] // self.views for k in range(1, self.views)]
                rolled = torch.cat([torch.roll(features, shift, dims=-1) for shift in shifts])
                others = torch.softmax(self.forward(rolled), dim=1).view(self.views - 1, *probabilities.shape)
                probabilities = (probabilities + others.sum(dim=0)) / self.views
            return probabilities.numpy().astype(np.float64)

    def predict(self, waveform: np.ndarray) -> Prediction:
        """Ranked probabilities for one clip (centre window when longer than the model's)."""
        return Prediction(self._probabilities(self.logmel(waveform))[0], self.class_names)

    def predict_batch(self, waveforms: list[np.ndarray] | np.ndarray) -> list[Prediction]:
        """One prediction per clip, computed in batches of ``WINDOW_BATCH``."""
        results = []
        for start in range(0, len(waveforms), WINDOW_BATCH):
            probabilities = self._probabilities(self.logmel(waveforms[start : start + WINDOW_BATCH]))
            results.extend(Prediction(p, self.class_names) for p in probabilities)
        return results

    def predict_file(self, source: bytes | str | os.PathLike) -> Prediction:
        """Decode and classify; recordings longer than one window get the mean over the timeline.

        The timeline is the app's (a 1 s hop, at most ``MAX_WINDOWS`` windows), so the CLI and the
        app give a recording the same overall answer. Digital silence is refused (``AudioError``)
        as it is in the app.
        """
        waveform = self.load(source)
        check_not_silent(waveform)
        return self.predict_recording(waveform)

    def predict_recording(self, waveform: np.ndarray) -> Prediction:
        """A whole recording's answer: ``predict`` up to one window, the capped timeline's mean beyond."""
        if waveform.shape[0] <= self.feature_config.clip_samples:
            return self.predict(waveform)
        return self.timeline_scan(waveform, max_windows=MAX_WINDOWS).run().mean

    def timeline(self, waveform: np.ndarray, hop_seconds: float = 1.0, exact: bool = False) -> Timeline:
        """Probabilities of overlapping model windows (hop at most ``hop_seconds``) over a recording.

        ``exact``: every window scored on its own; by default closely overlapping windows share one
        pass of the network and only the windows that pass cannot decide are scored on their own
        (``TimelineScan``, ``shared_windows``).
        """
        return self.timeline_scan(waveform, hop_seconds, exact=exact).run()

    def timeline_scan(
        self, waveform: np.ndarray, hop_seconds: float = 1.0, max_windows: int | None = None, exact: bool = False
    ) -> TimelineScan:
        """The timeline as a scan computed a batch at a time (progress, stop and resume: ``TimelineScan``)."""
        return TimelineScan(self, waveform, hop_seconds, max_windows, TIMELINE_BATCH, exact)

    def analyze(
        self,
        waveform: np.ndarray,
        cam_class: int | None = None,
        with_activations: bool = True,
    ) -> Analysis:
        """Prediction, every activation and Grad-CAM (all stage outputs) for one window.

        ``cam_class`` defaults to the predicted class. The probabilities are those of
        ``predict`` (all views); activations and maps come from the unrolled view, whose one
        forward and backward pass serve them all, which keeps a full analysis within budget.
        """
        window = self._window(waveform)
        features = self.logmel(window)
        with torch.enable_grad():
            logits, activations = self.forward(features, return_activations=True)
            probabilities = self._probabilities(features, logits.detach())[0]
            target = int(np.argmax(probabilities)) if cam_class is None else int(cam_class)
            cams = cams_from_forward(logits, activations, target, (features.shape[-2], features.shape[-1]))
        prediction = Prediction(probabilities, self.class_names)
        captured = {}
        if with_activations:
            captured = {name: value.detach()[0].float().numpy() for name, value in activations.items()}
        return Analysis(window, features[0, 0].numpy(), prediction, captured, cams, target)

    def explain(self, waveform: np.ndarray, class_index: int) -> dict[str, np.ndarray]:
        """Grad-CAM maps of every stage for any class, on the clip's model window."""
        features = self.logmel(self._window(waveform))  # in fp32: autocast would round the mel matmul
        with self._autocast():
            maps, _ = grad_cam(self.compute_model, features, class_index)
        return maps

    def occlusion(self, waveform: np.ndarray, class_index: int, slice_seconds: float = OCCLUSION_SECONDS) -> Occlusion:
        """How much ``class_index`` loses when each ``slice_seconds`` of the window is silenced.

        Every copy is scored as ``predict`` scores (all views); a 5 s window at 0.5 s costs 11
        windows (10 copies and the untouched one) x views forward passes. ``base``, the untouched
        window, is scored in the first batch with the copies: bf16 results depend on the batch's
        size, so a base scored alone would differ from an identical copy by that noise (about 1e-4),
        and silencing a stretch that is already silent would seem to move the class. ``base`` is
        ``predict``'s probability up to it.
        """
        check_class_index(class_index, len(self.class_names))
        config = self.feature_config
        features = self.logmel(self._window(waveform))
        slice_frames = max(1, round(slice_seconds * config.sample_rate / config.hop_length))
        copies, bounds = occluded_copies(features, slice_frames)
        batch = torch.cat([features, copies])
        probabilities = np.concatenate([
            self._probabilities(batch[i : i + WINDOW_BATCH])[:, class_index]
            for i in range(0, len(batch), WINDOW_BATCH)
        ])  # fmt: skip
        seconds = np.minimum(bounds * config.hop_length / config.sample_rate, config.clip_seconds)
        return Occlusion(seconds[:-1], seconds[1:], probabilities[1:], float(probabilities[0]))

    def _window(self, waveform: np.ndarray) -> np.ndarray:
        """The model window of a clip: the same centre crop / zero pad ``logmel`` applies."""
        return fit_to_length(np.asarray(waveform, dtype=np.float32), self.feature_config.clip_samples)
