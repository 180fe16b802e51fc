"""``python -m audiocnn predict FILE...``: ranked ESC-50 predictions from the command line.

Each file is handled on its own: a bad file is reported (as text or a JSON
``error`` entry) and the others are still classified; the exit status is 0 only
when every file succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .audio import AudioError
from .checkpoint import CheckpointError
from .inference import Predictor
from .labels import class_info


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
    """One result object per file: ``predictions`` or ``error``."""
    results = []
    for path in files:
        try:
            ranked = predictor.predict_file(path).ranked(top_k)
            results.append({"file": str(path),
                            "predictions": [{"label": label, "probability": p} for label, p in ranked]})  # fmt: skip
        except AudioError as error:
            results.append({"file": str(path), "error": str(error)})
    return results


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
