"""Train audiocnn locally (``python -m training.train``) or on Modal (``modal run training/train.py``).

Both paths call ``training.loop.train``; Modal only provides the GPU, the dataset
baked into the image, and a Volume for checkpoints and TensorBoard logs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # `modal run training/train.py` imports this file by path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import modal

from audiocnn.checkpoint import CheckpointError
from audiocnn.features import FeatureConfig
from training.augment import AugmentConfig
from training.data import FOLDS, DatasetError
from training.loop import (
    MODEL_SIZES,
    SHIPPED_MODEL_SIZE,
    ResumeError,
    TrainConfig,
    front_end_and_augment,
    model_config,
    train,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REMOTE_DATA = "/data/esc50"
VOLUME_PATH = "/runs"

app = modal.App("audiocnn-training")
volume = modal.Volume.from_name("audiocnn-runs", create_if_missing=True)
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


@app.local_entrypoint()
def modal_main(
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    lr: float = TrainConfig.lr,
    test_fold: int = TrainConfig.test_folds[0],
    val_fold: int = 0,
    model_size: str = SHIPPED_MODEL_SIZE,
    seed: int = TrainConfig.seed,
    ema_decay: float = TrainConfig.ema_decay,
    freq_shift: int = AugmentConfig.max_freq_shift,
    hop_length: int = FeatureConfig.hop_length,
    init_from: str = "",
    run_name: str = "default",
    cv: bool = False,
    resume: bool = False,
) -> None:
    """`modal run training/train.py [--epochs N] [--cv] ...`; --cv trains all 5 folds in parallel.

    ``--init-from`` names a checkpoint on the volume, relative to it (a leading ``/``, as in the
    paths this command prints, is the volume's root); ``{fold}`` in it becomes each run's test
    fold, so ``--cv --init-from base/fold{fold}/best.pt`` fine-tunes every fold from its own
    first-stage model (a start that saw the fold it tests on is refused remotely).
    """
    test_folds = list(FOLDS) if cv else [test_fold]
    if val_fold in test_folds:
        raise ValueError(f"--val-fold {val_fold} is also a test fold" + (" (with --cv leave it at 0)" if cv else ""))
    if cv and init_from and "{fold}" not in init_from:
        raise ValueError("with --cv, --init-from needs {fold} (e.g. base/fold{fold}/best.pt): one start for every "
                         "fold would have trained on the others' test folds")  # fmt: skip
    configs = []
    for fold in test_folds:
        train_folds = tuple(f for f in FOLDS if f not in (fold, val_fold))
        configs.append(TrainConfig(
            data_dir=REMOTE_DATA, out_dir=f"{VOLUME_PATH}/{run_name}/fold{fold}", train_folds=train_folds,
            val_folds=(val_fold,) if val_fold else (), test_folds=(fold,), epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, model=model_config(model_size), ema_decay=ema_decay,
            init_from=f"{VOLUME_PATH}/{init_from.format(fold=fold).lstrip('/')}" if init_from else None,
            **front_end_and_augment(hop_length, freq_shift),
        ))  # fmt: skip
    for path in train_remote.map(configs, kwargs={"resume": resume}):
        print(f"checkpoint saved on volume audiocnn-runs: {path.removeprefix(VOLUME_PATH)}")


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    parser.add_argument("--data-dir", required=True, help="ESC-50 folder (meta/esc50.csv + audio/)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, TensorBoard logs")
    parser.add_argument("--train-folds", type=int, nargs="+", default=list(TrainConfig.train_folds))
    parser.add_argument("--val-folds", type=int, nargs="*", default=list(TrainConfig.val_folds))
    parser.add_argument("--test-folds", type=int, nargs="*", default=list(TrainConfig.test_folds))
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    parser.add_argument("--model-size", default=SHIPPED_MODEL_SIZE, choices=sorted(MODEL_SIZES),
                        help="named architecture (training.loop.MODEL_SIZES)")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--ema-decay", type=float, default=TrainConfig.ema_decay,
                        help="serve a moving average of the weights, this decay per step (e.g. 0.999; default: off)")
    parser.add_argument("--freq-shift", type=int, default=AugmentConfig.max_freq_shift,
                        help="shift each training clip up to this many mel bands up or down (default: off)")
    parser.add_argument("--hop-length", type=int, default=FeatureConfig.hop_length,
                        help="log-mel hop in samples (default 512, 23 ms); time masks keep their length in seconds")
    parser.add_argument("--device", default=TrainConfig.device, help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--cache-dir", default=None, help="log-mel cache folder (default: <out>/cache)")
    parser.add_argument("--no-cache", action="store_true", help="keep the log-mels in memory only (no cache file)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="start from this checkpoint's weights (fine-tuning; it must not know a held-out fold)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = parser.parse_args(argv)
    cache_dir = None if args.no_cache else (args.cache_dir or str(Path(args.out) / "cache"))
    try:  # the settings check themselves (folds, schedule, hop, shifts, averaging); report it as a usage error
        config = TrainConfig(
            data_dir=args.data_dir, out_dir=args.out, train_folds=tuple(args.train_folds),
            val_folds=tuple(args.val_folds), test_folds=tuple(args.test_folds), epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
            device=args.device, cache_dir=cache_dir, model=model_config(args.model_size), threads=args.threads,
            ema_decay=args.ema_decay, init_from=args.init_from,
            **front_end_and_augment(args.hop_length, args.freq_shift),
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    return config, args.resume


def main(argv: list[str] | None = None) -> int:
    config, resume = parse_args(argv)
    try:
        best = train(config, resume=resume)
    except (CheckpointError, DatasetError, ResumeError) as error:  # the message says which file or setting
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"served checkpoint: {best}")
    print(f"evaluate it with: python -m training.evaluate --checkpoint {best} --data-dir {config.data_dir} "
          f"--folds {' '.join(map(str, config.test_folds))}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
