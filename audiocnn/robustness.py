"""How robust is one prediction: the class's probability as its window gets quieter, noisier, narrower, wetter.

For the app's panel. Every point is a ``perturb`` condition (the same functions the robustness
evaluation scores), and all of them are classified in one batched call, so a panel costs one
``predict_batch`` of ``len(point_conditions())`` windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .explain import check_class_index
from .inference import Predictor
from .perturb import CLEAN, Perturbation


@dataclass(frozen=True)
class CurveFamily:
    """One kind of damage at increasing strengths; ``CLEAN`` is always the first point."""

    title: str
    axis: str  # what the x axis counts
    points: tuple[tuple[str, Perturbation], ...]  # (tick label, condition), clean first


PANEL_FAMILIES: tuple[CurveFamily, ...] = (
    CurveFamily("Quieter", "gain", (
        ("0 dB", CLEAN),
        *((f"{db} dB", Perturbation(f"gain {db} dB", "gain", float(db))) for db in (-10, -20, -30, -40)),
    )),
    CurveFamily("Noisier", "white-noise SNR", (
        ("clean", CLEAN),
        *((f"{snr} dB", Perturbation(f"white noise {snr} dB", "noise", float(snr))) for snr in (30, 20, 10, 0)),
    )),
    CurveFamily("Band-limited", "upper band edge", (
        ("full", CLEAN),
        *((f"{hz / 1000:g} kHz", Perturbation(f"band to {hz} Hz", "band", float(hz)))
          for hz in (8000, 5000, 3400, 2000)),
    )),
    CurveFamily("Reverberant", "room RT60", (
        ("dry", CLEAN),
        *((f"{rt:g} s", Perturbation(f"reverb {rt} s", "reverb", rt)) for rt in (0.3, 0.6, 1.0, 1.5)),
    )),
)  # fmt: skip
"""The panel's four curves. Strengths run from harmless to harsh: 0 dB SNR or a 2 kHz band are worse than
most phone recordings, so a curve that stays flat to the end means the prediction does not hinge on them."""


@dataclass(frozen=True)
class RobustnessCurve:
    family: CurveFamily
    class_probability: np.ndarray  # (points,) the explained class's probability at each strength
    top_index: np.ndarray  # (points,) the top class at each strength
    top_probability: np.ndarray  # (points,)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.family.points]

    @property
    def keeps_top_class(self) -> np.ndarray:
        """At each strength, whether the top class is still the clean window's top class."""
        return self.top_index == self.top_index[0]


def robustness_curves(
    predictor: Predictor,
    window: np.ndarray,
    class_index: int,
    families: tuple[CurveFamily, ...] = PANEL_FAMILIES,
    seed: int = 0,
) -> list[RobustnessCurve]:
    """The curves of ``families`` for one model window and one class, in one batched call.

    The clean window is classified once and shared by every curve's first point.
    """
    check_class_index(class_index, len(predictor.class_names))
    rate = predictor.feature_config.sample_rate
    waveforms = [CLEAN.apply(window, rate)]
    slots = []  # per family: the batch index of each point
    for family in families:
        indices = []
        for _, condition in family.points:
            if condition.family == "clean":
                indices.append(0)
            else:
                indices.append(len(waveforms))
                waveforms.append(condition.apply(window, rate, seed))
        slots.append(indices)
    probabilities = np.stack([p.probabilities for p in predictor.predict_batch(waveforms)])
    curves = []
    for family, indices in zip(families, slots):
        rows = probabilities[indices]
        top = rows.argmax(axis=1)
        curves.append(RobustnessCurve(family, rows[:, class_index], top, rows[np.arange(len(rows)), top]))
    return curves
