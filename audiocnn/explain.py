"""Why a class was predicted: Grad-CAM over any captured layer, for any class, and occlusion patches.

Gradients are taken with ``torch.autograd.grad`` on the activations that ``forward``
returned for this call only, so no hooks or shared state are involved and many
explanations can run at once on one model. Occlusion asks the model itself instead of its
gradients: silence one stretch of time and see how much the class loses.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.nn import functional as F

from .model import AudioCNN

CAM_LAYERS: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")

OCCLUSION_SECONDS = 0.5
"""Length of each silenced stretch. Training masks up to 32 frames (0.74 s) of time with the
clip's floor (SpecAugment), so a half-second gap of that same floor is an input the model knows:
what it loses measures reliance on that stretch, not surprise at an unnatural edit."""


def check_class_index(class_index: int, num_classes: int) -> None:
    """Refuse a class index out of range: a negative one would count from the end and silently
    explain another class."""
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index {class_index} is out of range for {num_classes} classes")


def grad_cam(
    model: AudioCNN,
    logmel: torch.Tensor,
    class_index: int,
    layers: tuple[str, ...] | list[str] | None = None,
) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """Grad-CAM maps for one clip ``(1, 1, mels, frames)`` and one class.

    Returns ``({layer: map (mels, frames)}, logits)``. Each map is the ReLU of the
    gradient-weighted channel sum, upsampled to the spectrogram and scaled to [0, 1]
    (all zeros when nothing in that layer supports the class). ``layers`` defaults to
    those of ``CAM_LAYERS`` the model has (a shallower model has fewer stages).
    """
    if logmel.dim() != 4 or logmel.shape[0] != 1:
        raise ValueError("grad_cam expects a single clip shaped (1, 1, mels, frames)")
    with torch.enable_grad():
        logits, activations = model(logmel, return_activations=True)
        maps = cams_from_forward(logits, activations, class_index, (logmel.shape[-2], logmel.shape[-1]), layers)
    return maps, logits.detach()


def cams_from_forward(
    logits: torch.Tensor,
    activations: dict[str, torch.Tensor],
    class_index: int,
    size: tuple[int, int],
    layers: tuple[str, ...] | list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Grad-CAM maps from a forward pass already taken with activations (one backward pass).

    Lets a caller that needed the forward anyway (a full analysis) reuse it; ``layers``
    defaults to those of ``CAM_LAYERS`` the model has.
    """
    check_class_index(class_index, logits.shape[-1])
    return cams_from_score(logits[0, class_index], activations, size, layers)


def cams_from_score(
    score: torch.Tensor,
    activations: dict[str, torch.Tensor],
    size: tuple[int, int],
    layers: tuple[str, ...] | list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Grad-CAM maps of any scalar the forward produced (a class's logit, or the difference of two
    logits for a contrastive map), one backward pass for all ``layers``."""
    if layers is None:
        layers = [name for name in CAM_LAYERS if name in activations]
    targets = [activations[name] for name in layers]
    grads = torch.autograd.grad(score, targets)
    return {name: cam_from_gradients(a, g, size) for name, a, g in zip(layers, targets, grads)}


def cam_from_gradients(activation: torch.Tensor, gradient: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """One Grad-CAM map from a layer's activation and the class score's gradient on it.

    Summed in fp32 whatever the network ran in: a bf16 sum over 512 channels would round away
    the weaker regions of the map.
    """
    weights = gradient.detach().float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation.detach().float()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return cam.numpy().astype(np.float32)


def occluded_copies(logmel: torch.Tensor, slice_frames: int) -> tuple[torch.Tensor, np.ndarray]:
    """Copies of one log-mel ``(1, 1, mels, frames)``, each with one stretch of ``slice_frames``
    frames set to the clip's floor (the last stretch may be shorter).

    Returns ``(copies (slices, 1, mels, frames), bounds)``, where stretch ``i`` covers frames
    ``bounds[i]`` to ``bounds[i + 1]``. Time occlusion is the full-height case of ``occluded_patches``.
    """
    _check_single(logmel, "occluded_copies")
    if slice_frames < 1:
        raise ValueError(f"slice_frames must be at least 1, not {slice_frames}")
    copies, boxes = occluded_patches(logmel, logmel.shape[-2], slice_frames)
    return copies, np.append(boxes[:, 2], logmel.shape[-1])


def occluded_patches(logmel: torch.Tensor, bands: int, frames: int) -> tuple[torch.Tensor, np.ndarray]:
    """Copies of one log-mel ``(1, 1, mels, frames)``, each with one patch of ``bands`` mel bands x
    ``frames`` frames set to the clip's floor; the patches tile the spectrogram without overlap (those
    at the top and right edges may be smaller), frequency-major.

    Returns ``(copies (patches, 1, mels, frames), boxes)``; patch ``i`` covers bands
    ``boxes[i, 0]:boxes[i, 1]`` and frames ``boxes[i, 2]:boxes[i, 3]``. Full-height patches are time
    occlusion, full-width ones frequency occlusion.
    """
    _check_single(logmel, "occluded_patches")
    if bands < 1 or frames < 1:
        raise ValueError(f"a patch must be at least 1 band x 1 frame, not {bands} x {frames}")
    mels, length = logmel.shape[-2], logmel.shape[-1]
    band_edges = np.append(np.arange(0, mels, bands), mels)
    frame_edges = np.append(np.arange(0, length, frames), length)
    boxes = np.array([(f0, f1, t0, t1) for f0, f1 in itertools.pairwise(band_edges)
                      for t0, t1 in itertools.pairwise(frame_edges)], dtype=np.int64)  # fmt: skip
    copies = logmel.repeat(len(boxes), 1, 1, 1)
    floor = logmel.amin()
    for i, (f0, f1, t0, t1) in enumerate(boxes):
        copies[i, :, f0:f1, t0:t1] = floor
    return copies, boxes


def _check_single(logmel: torch.Tensor, name: str) -> None:
    if logmel.dim() != 4 or logmel.shape[0] != 1:
        raise ValueError(f"{name} expects a single clip shaped (1, 1, mels, frames)")
