"""The Modal app: ``modal run training/train.py [--epochs N] [--cv] ...`` (``training/train.py`` loads it).

It runs the shared ``training.loop.train`` on a GPU, with the dataset baked into the image and a
Volume for checkpoints and TensorBoard logs. The recipe options are ``training.options``'s, the same
as the local command line's; this module only adds where the runs live.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

import modal

from training.data import FOLDS
from training.loop import train
from training.options import app_command, entrypoint_parameters, recipe_settings
from training.recipe import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REMOTE_DATA = "/data/esc50"
VOLUME_PATH = "/runs"
VOLUME_NAME = "audiocnn-runs"

app = modal.App("audiocnn-training")
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("wget", "unzip")
    .run_commands(
        "wget -q https://github.com/karoldvl/ESC-50/archive/master.zip -O /tmp/esc50.zip",
        f"mkdir -p {REMOTE_DATA} && unzip -q /tmp/esc50.zip -d /tmp/esc50"
        f" && mv /tmp/esc50/ESC-50-master/meta /tmp/esc50/ESC-50-master/audio {REMOTE_DATA}/"
        " && rm -rf /tmp/esc50 /tmp/esc50.zip",
    )
    .uv_pip_install(requirements=[str(PROJECT_ROOT / "requirements.txt")])
    .add_local_python_source("audiocnn", "training")
)


@app.function(image=image, gpu="L4", volumes={VOLUME_PATH: volume}, timeout=4 * 3600)
def train_remote(config: TrainConfig, resume: bool = False) -> str:
    """Run the shared training function on Modal's GPU and persist its outputs."""
    config = replace(config, data_dir=REMOTE_DATA, cache_dir=f"{VOLUME_PATH}/cache")
    best = train(config, resume=resume, on_epoch_end=lambda record: volume.commit())  # last.pt survives a timeout
    volume.commit()
    return str(best)


RUN_OPTIONS = {"test_fold": (int, TrainConfig.test_folds[0]), "val_fold": (int, 0), "run_name": (str, "default"),
               "cv": (bool, False), "resume": (bool, False)}  # fmt: skip
"""The entrypoint's options beyond the recipe's: which fold, which run folder, all folds, resume."""


def fetch_commands(remote_path: str) -> list[str]:
    """How to open a checkpoint the run left on the volume: download it, then start the app on it."""
    local = f"runs/{remote_path.strip('/')}"
    return [f"modal volume get {VOLUME_NAME} {remote_path} {local}", app_command(local)]


def modal_main(**options: Any) -> None:
    """`modal run training/train.py [--epochs N] [--cv] ...`; --cv trains all 5 folds in parallel.

    ``--init-from`` names a checkpoint on the volume, relative to it (a leading ``/``, as in the
    paths this command prints, is the volume's root); ``{fold}`` in it becomes each run's test
    fold, so ``--cv --init-from base/fold{fold}/best.pt`` fine-tunes every fold from its own
    first-stage model (a start that saw the fold it tests on is refused remotely).
    """
    options = {**{name: default for name, (_, default) in RUN_OPTIONS.items()},
               **{p.name: p.default for p in entrypoint_parameters()}, **options}  # fmt: skip
    cv, val_fold = options["cv"], options["val_fold"]
    test_folds = list(FOLDS) if cv else [options["test_fold"]]
    if val_fold in test_folds:
        raise ValueError(f"--val-fold {val_fold} is also a test fold" + (" (with --cv leave it at 0)" if cv else ""))
    configs = []
    for fold in test_folds:
        settings = recipe_settings(options, fold, several_folds=cv)
        if settings["init_from"]:
            settings["init_from"] = f"{VOLUME_PATH}/{settings['init_from'].lstrip('/')}"
        configs.append(TrainConfig(
            data_dir=REMOTE_DATA, out_dir=f"{VOLUME_PATH}/{options['run_name']}/fold{fold}",
            train_folds=tuple(f for f in FOLDS if f not in (fold, val_fold)),
            val_folds=(val_fold,) if val_fold else (), test_folds=(fold,), **settings,
        ))  # fmt: skip
    for path in train_remote.map(configs, kwargs={"resume": options["resume"]}):
        remote = path.removeprefix(VOLUME_PATH)
        print(f"checkpoint saved on volume {VOLUME_NAME}: {remote}")
        print("open it in the app:\n" + "\n".join(f"  {command}" for command in fetch_commands(remote)))


def _entrypoint_signature() -> inspect.Signature:
    """Modal builds the command line from the entrypoint's signature: the recipe's options, then the run's."""
    run = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
           for name, (kind, default) in RUN_OPTIONS.items()]  # fmt: skip
    return inspect.Signature([*entrypoint_parameters(), *run])


modal_main.__signature__ = _entrypoint_signature()
modal_main.__annotations__ = {p.name: p.annotation for p in modal_main.__signature__.parameters.values()}
modal_main = app.local_entrypoint()(modal_main)
