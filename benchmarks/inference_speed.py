"""Inference timings on the bundled samples: prediction, full analysis, timelines, batch CLI.

Inputs are made the way users supply them: 44.1 kHz 16-bit WAV bytes, so every timing
includes decoding and resampling to the model rate, not only the network. The app decodes
an upload once, in an isolated worker process (``audiocnn.untrusted``); that one-off cost
is reported on its own, since every later analysis of the clip reuses the waveform.
Every network figure also comes with the FLOPs it needed (``machine_rate.counted_flops``),
so that ``bench`` can state it as a share of the machine's own matmul rate, and with the rate of the
network's own layers run bare at its batch size, timed alternately with it
(``machine_rate.LayerReference``), the reference of the targets.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch

from audiocnn.cli import predict_files
from audiocnn.inference import TIMELINE_BATCH, WINDOW_BATCH, Predictor
from audiocnn.samples import SampleClip
from audiocnn.timeline import MAX_WINDOWS
from audiocnn.untrusted import load_untrusted

from .machine_rate import LayerReference, counted_flops
from .plan import Plan
from .timing import median_ms, paired_ms

UPLOAD_RATE = 44100

REFERENCE_BATCHES = {
    "forward": 1,
    "predict_5s": 1,  # two views, one after the other
    "analyze_5s": 1,
    "occlusion": WINDOW_BATCH,  # the batch cap: a 5 s clip runs 11 rows (itself and 10 silenced copies)
    "timeline_exact": TIMELINE_BATCH,  # a timeline scan's step
    "timeline": TIMELINE_BATCH,
}
"""The batch size each figure's network runs at: its layer reference runs at the same one."""


def wav_bytes(waveform: np.ndarray, model_rate: int, rate: int = UPLOAD_RATE) -> bytes:
    """A clip at the model rate re-encoded as a typical upload (16-bit WAV at ``rate``)."""
    buffer = io.BytesIO()
    sf.write(buffer, soxr.resample(waveform, model_rate, rate), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def recording(predictor: Predictor, clips: list[SampleClip], seconds: float) -> np.ndarray:
    """Consecutive bundled clips joined into one recording of exactly ``seconds``."""
    rate = predictor.feature_config.sample_rate
    parts, total, index = [], 0, 0
    while total < seconds * rate:
        parts.append(predictor.load(clips[index % len(clips)].path))
        total += parts[-1].shape[0]
        index += 1
    return np.concatenate(parts)[: round(seconds * rate)]


def measure(predictor: Predictor, clips: list[SampleClip], plan: Plan) -> dict[str, Any]:
    """Every inference figure, as medians over ``plan``'s repeated runs, with the FLOPs behind them."""
    rate = predictor.feature_config.sample_rate
    clip = wav_bytes(recording(predictor, clips, predictor.feature_config.clip_seconds), rate)
    long = wav_bytes(recording(predictor, clips, plan.timeline_seconds), rate)
    very_long = recording(predictor, clips, plan.long_seconds)
    waveform = predictor.load(clip)
    features = predictor.logmel(waveform)
    paths = [c.path for c in clips[: plan.batch_clips]]

    def per_clip(fn: Any) -> dict[str, float]:
        return median_ms(fn, plan.repeats, plan.warmup)

    def slow(fn: Any) -> dict[str, float]:
        return median_ms(fn, plan.slow_repeats, 1)

    config = predictor.feature_config
    dtype = torch.bfloat16 if predictor.bf16 else torch.float32
    references = {batch: LayerReference(predictor.model, (1, config.n_mels, config.num_frames), batch, dtype)
                  for batch in sorted(set(REFERENCE_BATCHES.values()))}  # fmt: skip
    layer_rates: dict[str, float] = {}

    def paired(name: str, fn: Any, repeats: int, warmup: int) -> dict[str, float]:
        """``fn`` timed alternately with its layer reference, whose rate goes to ``layer_rates[name]``."""
        reference = references[REFERENCE_BATCHES[name]]
        timed = paired_ms(fn, reference.seconds, repeats, warmup)
        layer_rates[name] = reference.gflops(timed.pop("reference_seconds"))
        return timed

    def forward() -> None:
        with torch.inference_mode():
            predictor.forward(features)

    top = predictor.predict(waveform).top_index
    long_waveform = predictor.load(long)
    fast = predictor.timeline_scan(long_waveform)
    fast.run()
    capped = []  # the scans the long timing runs: the last one's counts are reported

    def long_timeline() -> None:
        capped.append(predictor.timeline_scan(very_long, max_windows=MAX_WINDOWS))
        capped[-1].run()

    def old_path_seconds() -> float:
        """The 10 minutes as before the cap and the shared pass: every window at a 1 s hop on its own."""
        start = time.perf_counter()
        predictor.timeline(very_long, exact=True)
        return time.perf_counter() - start

    # the old path runs before each timed capped scan, so the speed-up compares two runs a few seconds
    # apart: timed minutes apart, the host's drift alone moved it from 2.95x to 4.08x
    capped_ms = paired_ms(long_timeline, old_path_seconds, plan.long_repeats, 0)
    long_before = {"median": 1000 * capped_ms.pop("reference_seconds"), "runs": plan.long_repeats}
    window_frames = predictor.views * predictor.feature_config.num_frames  # one window scored on its own
    forward_flops = counted_flops(forward)
    batch = slow(lambda: predict_files(predictor, paths, top_k=5))
    return {
        "predict_5s_ms": paired(
            "predict_5s", lambda: predictor.predict(predictor.load(clip)), plan.repeats, plan.warmup
        ),
        "analyze_5s_ms": paired(
            "analyze_5s", lambda: predictor.analyze(predictor.load(clip)), plan.repeats, plan.warmup
        ),
        "stages_5s_ms": {
            "decode_resample": per_clip(lambda: predictor.load(clip))["median"],
            "logmel": per_clip(lambda: predictor.logmel(waveform))["median"],
            "forward": paired("forward", forward, plan.repeats, plan.warmup)["median"],
        },
        "occlusion_ms": paired("occlusion", lambda: predictor.occlusion(waveform, top), plan.slow_repeats, 1),
        "upload_decode_worker_ms": slow(lambda: load_untrusted(clip, rate)),
        "timeline_ms": paired("timeline", lambda: predictor.timeline(predictor.load(long)), plan.slow_repeats, 1),
        "timeline_exact_ms": paired(
            "timeline_exact", lambda: predictor.timeline(predictor.load(long), exact=True), plan.slow_repeats, 1
        ),
        "timeline_seconds": plan.timeline_seconds,
        "timeline_windows": fast.total,
        "timeline_rescored": fast.rescored,
        # log-mel frames through the network, every window on its own / this scan: machine-independent
        "timeline_work_ratio": fast.total * window_frames / fast.frames,
        "long_seconds": plan.long_seconds,
        "long_ms": capped_ms,
        "long_windows": capped[-1].total,
        "long_rescored": capped[-1].rescored,
        "long_shared": capped[-1].shared,
        "long_before_ms": long_before,
        "long_before_windows": predictor.timeline_scan(very_long).total,
        "long_work_ratio": predictor.timeline_scan(very_long).total * window_frames / capped[-1].frames,
        "long_capped_work_ratio": capped[-1].total * window_frames / capped[-1].frames,
        "batch_cli_clips": len(paths),
        "batch_cli_clips_per_second": len(paths) / (batch["median"] / 1000),
        "layer_rate_gflops": layer_rates,
        "precision": "bf16" if predictor.bf16 else "fp32",
        "views": predictor.views,
        "flops": {
            "forward": forward_flops,
            "predict_5s": counted_flops(lambda: predictor.predict(waveform)),
            "analyze_5s": counted_flops(lambda: predictor.analyze(waveform)),
            "occlusion": counted_flops(lambda: predictor.occlusion(waveform, top)),
            "timeline_exact": fast.total * predictor.views * forward_flops,
        },
    }
