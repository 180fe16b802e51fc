"""Two checkpoints over the bundled samples, as the Compare page shows them, plus what each costs.

    python scripts/compare_models.py assets/model.pt runs/first-stage/best.pt

Prints the top-1 agreement, each model's accuracy on the samples, the stage-by-stage linear
CKA matrix (rows: the first checkpoint's stages), the resident memory one loaded model adds,
the peak memory of a survey and its time as a ratio to one plain prediction pass over the
same clips (ratios survive a busy machine; absolute seconds do not).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audiocnn.inference import Predictor  # noqa: E402
from audiocnn.representations import compare, survey  # noqa: E402
from audiocnn.samples import list_samples  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    clips = list_samples()
    models, surveys = [], []
    for path in (args.a, args.b):
        gc.collect()
        before = rss_mb()
        model = Predictor.from_checkpoint(path)
        gc.collect()
        loaded = rss_mb()
        waveforms = [model.load(clip.path) for clip in clips]
        started = time.perf_counter()
        model.predict_batch(waveforms)
        plain = time.perf_counter() - started
        started = time.perf_counter()
        surveys.append(survey(model, waveforms))
        took = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{path}: +{loaded - before:.0f} MB resident once loaded; survey of {len(clips)} clips "
            f"{took:.1f} s = {took / plain:.2f} x one prediction pass ({plain:.1f} s); peak RSS so far {peak:.0f} MB"
        )
        models.append(model)
    result = compare(*surveys, [clip.label for clip in clips])
    print(
        f"top-1 agreement {result.agreement:.1%}; accuracy on the samples: A {result.accuracy_a:.1%}, "
        f"B {result.accuracy_b:.1%}; {len(result.disagreements)} clips disagree"
    )
    width = max(map(len, result.stages_a))
    print("CKA".ljust(width) + "".join(f"{stage:>8}" for stage in result.stages_b))
    for stage, row in zip(result.stages_a, result.cka):
        print(stage.ljust(width) + "".join(f"{value:8.3f}" for value in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
