"""``python -m audiocnn predict FILE...``: ranked ESC-50 predictions from the command line.

Each file is handled on its own: a bad file is reported (as text or a JSON
``error`` entry) and the others are still classified; the exit status is 0 only
when every file succeeded.

Files are decoded in an isolated worker process (``untrusted.DecodeWorker``), so a file that
crashes a native decoder costs that file an error, not the run. A thread feeds the worker ahead
of the network, so decoding the next files overlaps classifying the current ones, and clips no
longer than the model's window are classified ``WINDOW_BATCH`` at a time.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .audio import AudioError, check_not_silent
from .checkpoint import CheckpointError
from .inference import WINDOW_BATCH, Prediction, Predictor
from .labels import class_info
from .untrusted import DecodeWorker

AHEAD_SAMPLES = 64 * 2**20
"""Decoded samples (float32: 256 MB) the decoding thread may hold ahead of the network; one file is
always allowed, so a 10-minute recording (13 M samples at 22.05 kHz) never stalls the run."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m audiocnn", description="ESC-50 sound classifier")
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="classify audio files")
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE")
    predict.add_argument("--top-k", type=int, default=5,
                         help="classes to list per file (default 5; 0 or less lists every class)")  # fmt: skip
    predict.add_argument("--json", action="store_true", help="print machine-readable JSON")
    predict.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    return parser


def predict_files(predictor: Predictor, files: list[Path], top_k: int) -> list[dict]:
    """One result object per file, in the order given: ``predictions`` or ``error``."""
    results: list[dict] = [{} for _ in files]
    batch: list[tuple[int, np.ndarray]] = []

    def answer(index: int, prediction: Prediction) -> None:
        ranked = prediction.ranked(top_k)
        results[index] = {"file": str(files[index]),
                          "predictions": [{"label": label, "probability": p} for label, p in ranked]}  # fmt: skip

    def classify_batch() -> None:
        for (index, _), prediction in zip(batch, predictor.predict_batch([w for _, w in batch])):
            answer(index, prediction)
        batch.clear()

    for index, outcome in _decoded(files, predictor.feature_config.sample_rate):
        try:
            if isinstance(outcome, AudioError):
                raise outcome
            check_not_silent(outcome)
        except AudioError as error:
            results[index] = {"file": str(files[index]), "error": str(error)}
            continue
        if outcome.shape[0] > predictor.feature_config.clip_samples:
            answer(index, predictor.predict_recording(outcome))
            continue
        batch.append((index, outcome))
        if len(batch) == WINDOW_BATCH:
            classify_batch()
    classify_batch()
    return results


def _decoded(files: list[Path], sample_rate: int) -> Iterator[tuple[int, np.ndarray | AudioError]]:
    """``(index, waveform or the AudioError that refused it)`` per file, in order, decoded by a thread
    that runs ahead of the caller by up to ``AHEAD_SAMPLES`` samples."""
    ready: queue.Queue = queue.Queue()
    room = threading.Condition()
    held = [0]  # samples decoded and not yet taken
    stop = threading.Event()

    def decode_all() -> None:
        try:
            decode_in_worker()
        except BaseException as error:  # handed to the caller, which re-raises it
            ready.put((None, error))

    def decode_in_worker() -> None:
        with DecodeWorker(sample_rate) as worker:
            for index, path in enumerate(files):
                with room:
                    room.wait_for(lambda: held[0] < AHEAD_SAMPLES or stop.is_set())
                if stop.is_set():
                    return
                try:
                    outcome: np.ndarray | AudioError = worker.decode(path)
                except AudioError as error:
                    outcome = error
                with room:
                    held[0] += outcome.shape[0] if isinstance(outcome, np.ndarray) else 0
                ready.put((index, outcome))

    thread = threading.Thread(target=decode_all, name="audiocnn-decode", daemon=True)
    thread.start()
    try:
        for _ in files:
            index, outcome = ready.get()
            if index is None:
                raise outcome
            with room:
                held[0] -= outcome.shape[0] if isinstance(outcome, np.ndarray) else 0
                room.notify()
            yield index, outcome
    finally:
        stop.set()
        with room:
            room.notify()
        thread.join()


def format_text(results: list[dict]) -> str:
    lines = []
    for result in results:
        lines.append(result["file"])
        if "error" in result:
            lines.append(f"  error: {result['error']}")
            continue
        for rank, item in enumerate(result["predictions"], 1):
            info = class_info(item["label"])
            lines.append(f"  {rank:2d}. {info.display_name:<22} {item['probability'] * 100:6.2f}%  {info.emoji}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predictor = Predictor.from_checkpoint(args.checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    top_k = len(predictor.class_names) if args.top_k <= 0 else min(args.top_k, len(predictor.class_names))
    results = predict_files(predictor, args.files, top_k)
    print(json.dumps(results, indent=2, ensure_ascii=False) if args.json else format_text(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
