"""Train audiocnn locally (``python -m training.train``) or on Modal (``modal run training/train.py``).

Both paths call ``training.loop.train``. This module is the local command line and needs no Modal:
only when Modal imports it by path (``modal run training/train.py``) does it load the Modal app,
``training.modal_app``, which provides the GPU, the dataset baked into the image, and a Volume for
checkpoints and TensorBoard logs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # `modal run training/train.py` imports this file by path: serve it the Modal app
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from training.modal_app import app, modal_main, train_remote  # noqa: F401

from audiocnn.checkpoint import CheckpointError
from training.data import DatasetError
from training.loop import ResumeError, train
from training.options import add_recipe_options, app_command, recipe_settings
from training.recipe import TrainConfig


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    parser.add_argument("--data-dir", required=True, help="ESC-50 folder (meta/esc50.csv + audio/)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, TensorBoard logs")
    parser.add_argument("--train-folds", type=int, nargs="+", default=list(TrainConfig.train_folds))
    parser.add_argument("--val-folds", type=int, nargs="*", default=list(TrainConfig.val_folds))
    parser.add_argument("--test-folds", type=int, nargs="*", default=list(TrainConfig.test_folds))
    add_recipe_options(parser)
    parser.add_argument("--device", default=TrainConfig.device, help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--cache-dir", default=None, help="log-mel cache folder (default: <out>/cache)")
    parser.add_argument("--no-cache", action="store_true", help="keep the log-mels in memory only (no cache file)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = parser.parse_args(argv)
    cache_dir = None if args.no_cache else (args.cache_dir or str(Path(args.out) / "cache"))
    try:  # the settings check themselves (folds, schedule, hop, shifts, averaging); report it as a usage error
        config = TrainConfig(
            data_dir=args.data_dir, out_dir=args.out, train_folds=tuple(args.train_folds),
            val_folds=tuple(args.val_folds), test_folds=tuple(args.test_folds), device=args.device,
            cache_dir=cache_dir, threads=args.threads, **recipe_settings(args),
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
    print(f"open it in the app: {app_command(str(best))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
