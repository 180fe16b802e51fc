"""What a training run is: the recipe (what decides the weights) and where the run lives, declared once.

Each ``TrainConfig`` field says in its metadata whether it belongs to the recipe, and what runs saved
before it existed did. ``RECIPE_KEYS``, ``RECIPE_OPTIONS_ADDED_LATER`` and cross-validation's shared
settings are derived from that, so a new recipe field cannot slip past the resume and cross-validation
checks by being left out of a hand-kept list. No torch import: the command lines read this module
before any work starts.

The training record a checkpoint carries (its ``metadata``) is documented in ``training_record``.
"""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any

from audiocnn.features import FeatureConfig
from audiocnn.model import ModelConfig

from .augment import AugmentConfig, scaled_to_hop

MODEL_SIZES = {
    "small": ModelConfig(stem_channels=32, widths=(32, 64, 128, 256)),
    "resnet18": ModelConfig(),
    "fullres": replace(ModelConfig(), stem_pool=False),
    "resnet34": ModelConfig(blocks=(3, 4, 6, 3)),
}
"""Named architectures for the command lines. ``fullres`` is ``resnet18`` without the stem
max-pool: every stage at twice the time and frequency resolution, for about twice the inference
time; 1.9 points better on the validation split, it is the shipped model's."""

SHIPPED_MODEL_SIZE = "fullres"
"""The architecture every training command uses unless told otherwise, so that a plain run
retrains the shipped model."""

RECIPE: dict[str, Any] = {"recipe": True}
"""``field`` metadata of a recipe entry."""
FOLDS: dict[str, Any] = {"recipe": True, "folds": True}
"""``field`` metadata of the recipe entries that split the dataset."""


def model_config(size: str) -> ModelConfig:
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(MODEL_SIZES)}")
    return MODEL_SIZES[size]


def front_end_and_augment(
    hop_length: int = FeatureConfig.hop_length,
    freq_shift: int = AugmentConfig.max_freq_shift,
    feature_version: int = FeatureConfig.version,
    noise_prob: float = AugmentConfig.noise_prob,
    band_prob: float = AugmentConfig.band_prob,
    reverb_prob: float = AugmentConfig.reverb_prob,
) -> dict[str, Any]:
    """``TrainConfig`` fields for the command lines' front-end and augmentation options: the log-mel
    settings (hop, feature version), and augmentations whose time masks keep their length in seconds."""
    augment = AugmentConfig(max_freq_shift=freq_shift, noise_prob=noise_prob, band_prob=band_prob,
                            reverb_prob=reverb_prob)  # widths tuned at the default hop  # fmt: skip
    return {"features": FeatureConfig(hop_length=hop_length, version=feature_version),
            "augment": scaled_to_hop(augment, hop_length, FeatureConfig.hop_length)}  # fmt: skip


@dataclass
class TrainConfig:
    """One training run. Recipe fields (metadata ``RECIPE``/``FOLDS``) decide the weights; the others say
    where the run reads and writes and what it runs on, and may change when a run is resumed elsewhere.
    A recipe field's metadata may add ``before``, the value that reproduces what runs saved before the
    field existed did, and ``saved_as``, the name under which the recipe records a path field as a boolean."""

    data_dir: str
    out_dir: str
    train_folds: tuple[int, ...] = field(default=(1, 2, 3, 4), metadata=FOLDS)
    val_folds: tuple[int, ...] = field(default=(), metadata=FOLDS)
    test_folds: tuple[int, ...] = field(default=(5,), metadata=FOLDS)
    epochs: int = field(default=300, metadata=RECIPE)
    batch_size: int = field(default=32, metadata=RECIPE)
    lr: float = field(default=2e-3, metadata=RECIPE)
    weight_decay: float = field(default=0.05, metadata=RECIPE)
    label_smoothing: float = field(default=0.1, metadata=RECIPE)
    seed: int = field(default=0, metadata=RECIPE)
    device: str = "auto"
    cache_dir: str | None = None
    model: ModelConfig = field(default_factory=lambda: MODEL_SIZES[SHIPPED_MODEL_SIZE], metadata=RECIPE)
    features: FeatureConfig = field(default_factory=FeatureConfig, metadata=RECIPE)
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata=RECIPE)
    threads: int | None = None
    ema_decay: float = field(default=0.0, metadata={**RECIPE, "before": 0.0})
    """Serve an exponential moving average of the weights (and batch-norm statistics), updated
    after every step, instead of the last step's weights; 0 turns it off. The averaged model is
    what validation scores and ``best.pt`` holds; ``last.pt`` keeps both."""
    init_from: str | None = field(
        default=None, metadata={**RECIPE, "before": False, "saved_as": "starts_from_checkpoint"}
    )
    """Start from this checkpoint's weights instead of random ones (fine-tuning). It must have this
    run's architecture and features, and must not have trained on a fold this run holds out. The
    recipe records only whether a run starts from a checkpoint: the path may differ per fold or machine."""

    def __post_init__(self) -> None:
        # Checked on construction, so every entry point (CLI, cross-validation, Modal) refuses them before any work.
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if not self.lr > 0:  # written so that NaN is refused too
            raise ValueError(f"lr must be above 0, not {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be at least 0 (0 turns it off), not {self.weight_decay}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be at least 0 and below 1 (0 turns averaging off), not {self.ema_decay}")
        overlap = set(self.train_folds) & (set(self.val_folds) | set(self.test_folds))
        if overlap:
            raise ValueError(f"folds {sorted(overlap)} are used for training and for validation/testing")
        if set(self.val_folds) & set(self.test_folds):
            raise ValueError("validation folds must not be test folds: model selection would see the test data")

    def describe(self) -> dict[str, Any]:
        """Plain-data form for checkpoint metadata and logs: every field, plus the recipe's form of path fields."""
        data = asdict(self)
        data["model"] = self.model.to_dict()
        data["features"] = self.features.to_dict()
        for spec in _recipe_fields():
            value = getattr(self, spec.name)
            if spec.metadata.get("folds"):
                data[spec.name] = list(value)
            if spec.metadata.get("saved_as"):
                data[spec.metadata.get("saved_as")] = value is not None
        return data


def _recipe_fields() -> list[Field]:
    return [spec for spec in fields(TrainConfig) if spec.metadata.get("recipe")]


def _key(spec: Field) -> str:
    return spec.metadata.get("saved_as") or spec.name


RECIPE_KEYS: tuple[str, ...] = tuple(_key(spec) for spec in _recipe_fields())
"""The recipe's entries in ``TrainConfig.describe()``: what a resumed run must share with the run it
continues (paths and device may change)."""

FOLD_KEYS: tuple[str, ...] = tuple(_key(spec) for spec in _recipe_fields() if spec.metadata.get("folds"))
"""The recipe entries that say which folds train, validate and test: all a cross-validation's folds differ in."""

RECIPE_OPTIONS_ADDED_LATER: dict[str, Any] = {
    _key(spec): spec.metadata["before"] for spec in _recipe_fields() if "before" in spec.metadata
}
"""Recipe entries newer than the first release, with the value that reproduces what runs saved before them did."""


def comparable_recipe(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved recipe with the options it predates filled in (model settings read through
    ``ModelConfig``, augmentations through ``AugmentConfig``), so a run saved before an option
    existed compares equal to one that states that option's default."""
    saved = {**RECIPE_OPTIONS_ADDED_LATER, **saved}
    if isinstance(saved.get("model"), dict):
        saved["model"] = ModelConfig.from_dict(saved["model"]).to_dict()
    if isinstance(saved.get("augment"), dict):
        saved["augment"] = {**asdict(AugmentConfig()), **saved["augment"]}
    return saved


def training_record(base: dict[str, Any], history: list[dict[str, Any]], **progress: Any) -> dict[str, Any]:
    """A checkpoint's ``metadata``: the run's fixed facts (``base``), its per-epoch ``history`` and ``progress``.

    Entries ``training.loop`` writes: ``recipe`` (``TrainConfig.describe()``), ``train_folds``, ``val_folds``,
    ``test_folds``, ``seed``, ``code_version``, ``device``, ``bf16_autocast``, ``selection``; per epoch
    ``epochs_trained``, ``epochs``, ``training_seconds``, ``history`` (one dict per epoch: ``epoch``,
    ``train_loss``, ``train_accuracy``, ``lr``, ``samples_per_second``, ``device``, with validation
    ``val_loss``/``val_accuracy``), ``devices``; in ``best.pt`` also ``selected_epoch``.

    A fine-tuned run (``init_from``) adds ``initialised_from`` ({path, train_folds, recipe, epochs_trained})
    and ``lineage``: the stages that trained the weights it started from, oldest first, each
    ``{"source": <checkpoint path>, "recipe": <its recipe>, "history": <its per-epoch dicts, as it
    stored them>, "epochs": <epochs it trained>}``. The parent's own lineage comes first, so a model
    fine-tuned twice lists both earlier stages; the run's own stage is its ``history``.
    """
    return {**base, **progress, "history": history}


def lineage_of(source: str, parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``lineage`` of a run started from the checkpoint at ``source`` whose metadata is ``parent``."""
    stage = {"source": source, "recipe": parent.get("recipe"), "history": list(parent.get("history") or []),
             "epochs": parent.get("epochs_trained", len(parent.get("history") or []))}  # fmt: skip
    return [*(parent.get("lineage") or []), stage]
