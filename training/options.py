"""The recipe's command-line options, declared once for every entry point.

``python -m training.train``, ``python -m training.crossval run`` and ``modal run training/train.py``
all read ``RECIPE_OPTIONS``: argparse through ``add_recipe_options``, Modal through
``entrypoint_parameters`` (Modal builds its options from a function's signature). Each turns the
values into ``TrainConfig`` fields with ``recipe_settings``, so an option added here reaches all
three, with the same name, default and meaning.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audiocnn.features import FeatureConfig

from .augment import AugmentConfig
from .recipe import MODEL_SIZES, SHIPPED_MODEL_SIZE, TrainConfig, front_end_and_augment, model_config


@dataclass(frozen=True)
class Option:
    name: str  # the Python name; the flag is --name-with-dashes
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


RECIPE_OPTIONS: tuple[Option, ...] = (
    Option("epochs", int, TrainConfig.epochs, "length of the one-cycle schedule"),
    Option("batch_size", int, TrainConfig.batch_size, "clips per step"),
    Option("lr", float, TrainConfig.lr, "peak learning rate of the one-cycle schedule"),
    Option("weight_decay", float, TrainConfig.weight_decay, "AdamW weight decay"),
    Option(
        "model_size",
        str,
        SHIPPED_MODEL_SIZE,
        "named architecture (training.recipe.MODEL_SIZES)",
        tuple(sorted(MODEL_SIZES)),
    ),
    Option("seed", int, TrainConfig.seed, "seeds the weights, the data order and the augmentations"),
    Option(
        "ema_decay",
        float,
        TrainConfig.ema_decay,
        "serve a moving average of the weights, this decay per step (e.g. 0.999; default: off)",
    ),
    Option(
        "freq_shift",
        int,
        AugmentConfig.max_freq_shift,
        "shift each training clip up to this many mel bands up or down (default: off)",
    ),
    Option(
        "hop_length",
        int,
        FeatureConfig.hop_length,
        "log-mel hop in samples (default 512, 23 ms); time masks keep their length in seconds",
    ),
    Option(
        "feature_version",
        int,
        FeatureConfig.version,
        "log-mel feature version: 1 absolute dB, 2 dB referenced to the clip's loudest bin (level-invariant)",
    ),
    Option(
        "noise_prob",
        float,
        AugmentConfig.noise_prob,
        "share of training clips given coloured background noise at 5-30 dB SNR (default: off)",
    ),
    Option(
        "band_prob",
        float,
        AugmentConfig.band_prob,
        "share of training clips heard through a random small-microphone band (default: off)",
    ),
    Option(
        "reverb_prob",
        float,
        AugmentConfig.reverb_prob,
        "share of training clips put in a synthetic room, RT60 0.15-1 s (default: off)",
    ),
    Option(
        "init_from",
        str,
        "",
        "start from this checkpoint's weights (fine-tuning; it must not know a held-out "
        "fold); with several test folds, {fold} in it becomes each run's fold",
    ),
)
"""Every option that changes the recipe. Defaults are the dataclasses' own, read rather than repeated."""


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    for option in RECIPE_OPTIONS:
        metavar = "CHECKPOINT" if option.name == "init_from" else None
        parser.add_argument(option.flag, type=option.type, default=option.default, help=option.help,
                            choices=option.choices, metavar=metavar)  # fmt: skip


def recipe_settings(
    values: Mapping[str, Any] | argparse.Namespace, fold: int | None = None, several_folds: bool = False
) -> dict[str, Any]:
    """``TrainConfig`` fields from the options' values (a mapping or parsed arguments). ``fold``: the run's
    test fold, which ``{fold}`` in ``init_from`` names; ``several_folds``: the run is one of a cross-validation."""
    if isinstance(values, argparse.Namespace):
        values = vars(values)
    return {
        "epochs": values["epochs"], "batch_size": values["batch_size"], "lr": values["lr"],
        "weight_decay": values["weight_decay"], "seed": values["seed"], "ema_decay": values["ema_decay"],
        "model": model_config(values["model_size"]), "init_from": fold_start(values["init_from"], fold, several_folds),
        **front_end_and_augment(values["hop_length"], values["freq_shift"], values["feature_version"],
                                values["noise_prob"], values["band_prob"], values["reverb_prob"]),
    }  # fmt: skip


def fold_start(init_from: str, fold: int | None = None, several_folds: bool = False) -> str | None:
    """The checkpoint a run starts from: ``init_from`` with ``{fold}`` made the run's test fold, or None.

    For one run of a cross-validation ``{fold}`` is required: one start for every fold would have
    trained on the other folds' test clips.
    """
    if not init_from:
        return None
    if several_folds and "{fold}" not in init_from:
        raise ValueError("with several folds, --init-from needs {fold} (e.g. base/fold{fold}/best.pt): one start "
                         "for every fold would have trained on the others' test folds")  # fmt: skip
    return init_from if fold is None else init_from.format(fold=fold)


def entrypoint_parameters() -> list[inspect.Parameter]:
    """The recipe options as keyword parameters, for a function whose signature Modal turns into flags."""
    return [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                              annotation=option.type) for option in RECIPE_OPTIONS]  # fmt: skip


def app_command(checkpoint: str) -> str:
    """The command that opens a checkpoint in the app."""
    return f"streamlit run app.py -- --checkpoint {checkpoint}"
