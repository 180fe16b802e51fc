"""Attribution methods as data behind one signature: ``attribute(forward, logmel, target, key)``.

Every method explains one *target*: a class index (its logit) or a pair ``(a, b)`` (the logit of
``a`` minus that of ``b``: what raises A's score relative to B's, a contrastive map). Every map is
``(mels, frames)`` float32 in the method's own signed units: positive cells speak for the target.

- Grad-CAM per stage (``explain.cams_from_score``): one forward and one backward pass.
- Integrated Gradients and SmoothGrad come from Captum, whose input methods take a forward
  function and install no hooks, so one shared model still serves concurrent sessions.
  Both work in *height above the clip's floor* (``z = logmel - floor``): the floor is the value
  that deletion (``faithfulness``), occlusion and training's SpecAugment masks put in, so IG's
  baseline ``z = 0`` is the fully deleted clip and SmoothGrad's input x gradient is the first-order
  effect of deleting a cell.
- Occlusion (time, frequency, time-frequency patches) is written here on ``explain.occluded_patches``
  (the same copies the app's time-occlusion bars use) rather than Captum's ``Occlusion``: one
  implementation of the copies for both, and every patch scored in the one batch with the untouched
  clip (bf16 results depend on the batch size; a patch that changes nothing must cost exactly 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel

from .explain import CAM_LAYERS, cams_from_score, check_class_index, occluded_patches

Target = int | tuple[int, int]
"""A class index, or ``(a, b)``: the difference of the two logits (why A and not B)."""

Forward = Callable[..., Any]
"""``forward(features, return_activations=False)``, as ``Predictor.forward``: logits ``(B, classes)`` in fp32."""

BATCH = 16
"""Copies per forward pass (occlusion, IG steps, SmoothGrad samples): bounds memory."""

IG_STEPS = 16
"""Integration steps (Gauss-Legendre). 16 already puts the completeness error of the shipped model
within a few per cent of the logit change (test_attribution); each step is a forward + backward pass."""

SMOOTHGRAD_SAMPLES = 8
SMOOTHGRAD_NOISE_DB = 8.0
"""Noise added to every cell, in dB: 10 % of the 80 dB range a log-mel spans (Smilkov et al. use 10-20 %)."""


@dataclass(frozen=True)
class Method:
    """One way to explain a target; ``key`` is what the app, the evaluation and the metrics use."""

    key: str
    family: str
    label: str
    cost: str  # what one map costs, in passes
    about: str  # one line for the reader: what a bright cell means
    layer: str | None = None
    patch: tuple[int | None, float | None] | None = None  # occlusion: (mel bands | all, seconds | all)


OCCLUSION_PATCHES = {
    "occlusion-time": ("time", (None, 0.5)),
    "occlusion-freq": ("frequency", (16, None)),
    "occlusion-patch": ("time-frequency", (32, 0.5)),
}

METHODS: dict[str, Method] = {
    **{
        f"gradcam-{layer}": Method(
            f"gradcam-{layer}", "Grad-CAM", f"Grad-CAM {layer}", "1 forward + 1 backward pass",
            f"where the {layer} features that raise the score sit (ReLU of the gradient-weighted channels)",
            layer=layer,
        )
        for layer in CAM_LAYERS
    },
    "integrated-gradients": Method(
        "integrated-gradients", "Integrated Gradients", "Integrated Gradients",
        f"{IG_STEPS} forward + backward passes",
        "how much each cell's height above the floor adds to the score, integrated from the silent clip",
    ),
    "smoothgrad": Method(
        "smoothgrad", "SmoothGrad", "SmoothGrad (input × gradient)",
        f"{SMOOTHGRAD_SAMPLES} forward + backward passes",
        f"each cell's height above the floor times the score's gradient, averaged over {SMOOTHGRAD_SAMPLES} "
        f"noisy copies ({SMOOTHGRAD_NOISE_DB:g} dB)",
    ),
    **{
        key: Method(
            key, "Occlusion", f"Occlusion ({name})", "one forward pass per patch, in batches",
            f"what the score loses when the {name} patch around the cell is set to the floor",
            patch=patch,
        )
        for key, (name, patch) in OCCLUSION_PATCHES.items()
    },
}  # fmt: skip

DEFAULT_METHOD = "gradcam-layer3"
"""The fallback when no evaluation ships: the default is the one ``training.explain_eval`` chose (``chosen``)."""

SELECTION_REMOVAL = "impute"
"""The deletion (``faithfulness.REMOVALS``) a default method is chosen by, and the one the app's
plain-words faithfulness line quotes, so that the line a user reads measures what the choice did
(``training.explain_eval.choose_default`` says why not the floor)."""


def objective(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The score a map explains, one per row of ``logits``: a logit, or the difference of two."""
    classes = logits.shape[-1]
    if isinstance(target, tuple):
        a, b = target
        check_class_index(a, classes)
        check_class_index(b, classes)
        if a == b:
            raise ValueError(f"a contrastive map needs two different classes, not {a} twice")
        return logits[:, a] - logits[:, b]
    check_class_index(target, classes)
    return logits[:, target]


def target_probability(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """What faithfulness and listening report: the class's probability, or for a pair A's share of
    the two (``p_a / (p_a + p_b)``, the sigmoid of the logit difference the map explains)."""
    if isinstance(target, tuple):
        return torch.sigmoid(objective(logits, target))
    return torch.softmax(logits, dim=-1)[:, target]


def available(layers: Iterable[str]) -> list[Method]:
    """The methods a model offers: Grad-CAM only for the stages it has, every input-level method."""
    have = set(layers)
    return [m for m in METHODS.values() if m.layer is None or m.layer in have]


def chosen(explanations: dict[str, Any] | None, layers: Iterable[str]) -> str:
    """The default method: the one the folds 1-4 selection run named best (imputed deletion; see
    ``training.explain_eval.choose_default``), if this model offers it; else ``DEFAULT_METHOD``, else
    the deepest Grad-CAM layer the model has."""
    offered = [m.key for m in available(layers)]
    best = (((explanations or {}).get("selection") or {}).get("best") or {}).get(SELECTION_REMOVAL)
    if best in offered:
        return best
    if DEFAULT_METHOD in offered:
        return DEFAULT_METHOD
    return [key for key in offered if METHODS[key].layer is not None][-1]


def chosen_cam_layer(explanations: dict[str, Any] | None, layers: Iterable[str]) -> str:
    """The Grad-CAM layer offered first when the user picks Grad-CAM: the default's own layer when the
    default is a Grad-CAM map, else the layer with the best imputed-deletion gap on the folds 1-4
    selection run, else ``DEFAULT_METHOD``'s layer, else the deepest the model has."""
    have = [layer for layer in CAM_LAYERS if layer in set(layers)]
    default = METHODS[chosen(explanations, have)]
    if default.layer is not None:
        return default.layer
    table = (((explanations or {}).get("selection") or {}).get("methods")) or {}
    scored = [(table[f"gradcam-{layer}"][SELECTION_REMOVAL]["gap"]["mean"], layer) for layer in have
              if f"gradcam-{layer}" in table]  # fmt: skip
    if scored:
        return max(scored)[1]
    fallback = METHODS[DEFAULT_METHOD].layer
    return fallback if fallback in have else have[-1]


def method(key: str) -> Method:
    if key not in METHODS:
        raise ValueError(f"unknown attribution method {key!r}; expected one of {sorted(METHODS)}")
    return METHODS[key]


def attribute(
    forward: Forward, logmel: torch.Tensor, target: Target, key: str, hop_seconds: float | None = None
) -> np.ndarray:
    """The map ``(mels, frames)`` of one method for one clip ``(1, 1, mels, frames)``.

    ``hop_seconds`` (the frame hop) turns occlusion patch lengths in seconds into frames.
    """
    return attribute_many(forward, logmel, target, [key], hop_seconds)[key]


def attribute_many(
    forward: Forward,
    logmel: torch.Tensor,
    target: Target,
    keys: Iterable[str],
    hop_seconds: float | None = None,
) -> dict[str, np.ndarray]:
    """Several maps of one clip and target; all Grad-CAM layers share one forward and backward pass."""
    if logmel.dim() != 4 or logmel.shape[0] != 1:
        raise ValueError("attribution expects a single clip shaped (1, 1, mels, frames)")
    chosen = [method(key) for key in keys]
    maps: dict[str, np.ndarray] = {}
    layers = [m.layer for m in chosen if m.layer is not None]
    if layers:
        maps.update({f"gradcam-{name}": cam for name, cam in grad_cams(forward, logmel, target, layers).items()})
    for m in chosen:
        if m.key == "integrated-gradients":
            maps[m.key] = integrated_gradients(forward, logmel, target)
        elif m.key == "smoothgrad":
            maps[m.key] = smoothgrad(forward, logmel, target)
        elif m.patch is not None:
            maps[m.key] = occlusion(forward, logmel, target, *_patch_cells(m.patch, logmel, hop_seconds))
    return {m.key: maps[m.key] for m in chosen}


def grad_cams(forward: Forward, logmel: torch.Tensor, target: Target, layers: list[str]) -> dict[str, np.ndarray]:
    """Grad-CAM of ``layers`` for any target (one forward + backward pass), scaled to [0, 1]."""
    with torch.enable_grad():
        logits, activations = forward(logmel, return_activations=True)
        missing = [name for name in layers if name not in activations]
        if missing:
            raise ValueError(f"this model has no layer {missing[0]!r} for Grad-CAM")
        score = objective(logits, target)[0]
        return cams_from_score(score, activations, (logmel.shape[-2], logmel.shape[-1]), layers)


def _above_floor(forward: Forward, logmel: torch.Tensor, target: Target) -> tuple[Callable, torch.Tensor]:
    """The score as a function of the height above the clip's floor, and that height."""
    floor = logmel.amin().detach()

    def score(z: torch.Tensor) -> torch.Tensor:
        return objective(forward(z + floor), target)

    return score, (logmel - floor).detach()


def integrated_gradients(forward: Forward, logmel: torch.Tensor, target: Target, steps: int = IG_STEPS) -> np.ndarray:
    """Captum's Integrated Gradients from the silent clip (all cells at the floor) to this one.

    The cells sum to the score's change from that silence to the clip (completeness), up to the
    integration error of ``steps`` steps.
    """
    score, z = _above_floor(forward, logmel, target)
    with torch.enable_grad():
        result = IntegratedGradients(score).attribute(
            z, baselines=torch.zeros_like(z), n_steps=steps, internal_batch_size=BATCH
        )
    return result[0, 0].detach().float().numpy()


def smoothgrad(
    forward: Forward,
    logmel: torch.Tensor,
    target: Target,
    samples: int | None = None,
    noise_db: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Captum's NoiseTunnel (SmoothGrad) over input x gradient, in height above the floor
    (``samples`` and ``noise_db`` default to ``SMOOTHGRAD_SAMPLES`` / ``SMOOTHGRAD_NOISE_DB``).

    Seeded: the same clip gives the same map on every rerun (the noise is drawn from torch's global
    generator, so it is forked and reseeded here rather than left to whatever ran before).
    """
    samples = SMOOTHGRAD_SAMPLES if samples is None else samples
    noise_db = SMOOTHGRAD_NOISE_DB if noise_db is None else noise_db
    score, z = _above_floor(forward, logmel, target)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        result = NoiseTunnel(InputXGradient(score)).attribute(
            z, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=BATCH, stdevs=noise_db
        )
    return result[0, 0].detach().float().numpy()


def occlusion(forward: Forward, logmel: torch.Tensor, target: Target, bands: int, frames: int) -> np.ndarray:
    """Each cell gets what the score loses when its patch (``bands`` x ``frames``) is set to the floor.

    The untouched clip is scored in the first batch with the copies, so a patch that changes
    nothing (already at the floor) costs exactly 0.
    """
    copies, boxes = occluded_patches(logmel, bands, frames)
    batch = torch.cat([logmel, copies])
    with torch.inference_mode():
        scores = torch.cat([objective(forward(batch[i : i + BATCH]), target) for i in range(0, len(batch), BATCH)])
    drops = (scores[0] - scores[1:]).float().numpy()
    relevance = np.zeros(logmel.shape[-2:], np.float32)
    for drop, (f0, f1, t0, t1) in zip(drops, boxes):
        relevance[f0:f1, t0:t1] = drop
    return relevance


def _patch_cells(
    patch: tuple[int | None, float | None], logmel: torch.Tensor, hop_seconds: float | None
) -> tuple[int, int]:
    bands, seconds = patch
    mels, frames = logmel.shape[-2], logmel.shape[-1]
    if seconds is not None and hop_seconds is None:
        raise ValueError("occlusion in time needs the frame hop (hop_seconds)")
    width = frames if seconds is None else max(1, round(seconds / hop_seconds))
    return (mels if bands is None else min(bands, mels)), width


def display_map(relevance: np.ndarray) -> np.ndarray:
    """What an overlay shows: the cells that speak for the target, as a share of the strongest (in [0, 1]).

    Signed methods' negative cells (evidence against) show as 0, like Grad-CAM's ReLU; an all-zero
    map stays all zero.
    """
    positive = np.clip(np.nan_to_num(relevance, nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    peak = positive.max(initial=0.0)
    return (positive / peak if peak > 0 else positive).astype(np.float32)
