"""Inference timings on the bundled samples: prediction, full analysis, timeline, batch CLI.

Inputs are made the way users supply them: 44.1 kHz 16-bit WAV bytes, so every timing
includes decoding and resampling to the model rate, not only the network. The app decodes
an upload once, in an isolated worker process (``audiocnn.untrusted``); that one-off cost
is reported on its own, since every later analysis of the clip reuses the waveform.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch

from audiocnn.cli import predict_files
from audiocnn.inference import Predictor
from audiocnn.samples import SampleClip
from audiocnn.untrusted import load_untrusted

from .plan import Plan
from .timing import median_ms

UPLOAD_RATE = 44100


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
    """Every inference figure, as medians over ``plan``'s repeated runs."""
    rate = predictor.feature_config.sample_rate
    clip = wav_bytes(recording(predictor, clips, predictor.feature_config.clip_seconds), rate)
    long = wav_bytes(recording(predictor, clips, plan.timeline_seconds), rate)
    waveform = predictor.load(clip)
    features = predictor.logmel(waveform)
    paths = [c.path for c in clips[: plan.batch_clips]]

    def per_clip(fn: Any) -> dict[str, float]:
        return median_ms(fn, plan.repeats, plan.warmup)

    def slow(fn: Any) -> dict[str, float]:
        return median_ms(fn, plan.slow_repeats, 1)

    def forward() -> None:
        with torch.inference_mode():
            predictor.forward(features)

    batch = slow(lambda: predict_files(predictor, paths, top_k=5))
    return {
        "predict_5s_ms": per_clip(lambda: predictor.predict(predictor.load(clip))),
        "analyze_5s_ms": per_clip(lambda: predictor.analyze(predictor.load(clip))),
        "stages_5s_ms": {
            "decode_resample": per_clip(lambda: predictor.load(clip))["median"],
            "logmel": per_clip(lambda: predictor.logmel(waveform))["median"],
            "forward": per_clip(forward)["median"],
        },
        "occlusion_ms": slow(lambda: predictor.occlusion(waveform, predictor.predict(waveform).top_index)),
        "upload_decode_worker_ms": slow(lambda: load_untrusted(clip, rate)),
        "timeline_ms": slow(lambda: predictor.timeline(predictor.load(long))),
        "timeline_seconds": plan.timeline_seconds,
        "timeline_windows": len(predictor.timeline(predictor.load(long)).starts),
        "batch_cli_clips": len(paths),
        "batch_cli_clips_per_second": len(paths) / (batch["median"] / 1000),
        "precision": "bf16" if predictor.bf16 else "fp32",
    }
