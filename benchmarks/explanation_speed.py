"""The full analysis as the Analyze page shows it with the default explanation: prediction, every
activation and Grad-CAM (``Predictor.analyze``), the default method's map when it is not one of those,
its faithfulness line (both removals) and the two listening parts, on one 5 s bundled clip."""

from __future__ import annotations

import json
from typing import Any

from audiocnn import attribution, faithfulness, listen
from audiocnn.checkpoint import DEFAULT_CHECKPOINT
from audiocnn.inference import Predictor
from audiocnn.model import activation_tree
from audiocnn.samples import SampleClip

from .plan import Plan
from .timing import median_ms

METRICS = DEFAULT_CHECKPOINT.parent / "metrics.json"


def default_method(predictor: Predictor) -> str:
    """The app's default (``attribution.chosen`` from the shipped metrics)."""
    explanations = json.loads(METRICS.read_text()).get("explanations") if METRICS.is_file() else None
    return attribution.chosen(explanations, activation_tree(predictor.model_config))


def measure(predictor: Predictor, clips: list[SampleClip], plan: Plan) -> dict[str, Any]:
    """Medians of the explained analysis and of its parts, and its cost relative to the bare analysis."""
    key = default_method(predictor)
    waveform = predictor._window(predictor.load(clips[0].path))
    hop = predictor.feature_config.hop_length / predictor.feature_config.sample_rate
    removals = tuple(faithfulness.REMOVALS)

    def explained() -> None:
        result = predictor.analyze(waveform)
        layer = attribution.method(key).layer
        features = predictor.logmel(result.waveform)
        relevance = result.cams[layer] if layer else attribution.attribute(
            predictor.forward, features, result.cam_class, key, hop)  # fmt: skip
        faithfulness.measure(predictor.forward, features, relevance, result.cam_class, removals=removals)
        listen.listen(predictor, result.waveform, relevance, result.cam_class)

    features = predictor.logmel(waveform)
    target = predictor.predict(waveform).top_index
    relevance = attribution.attribute(predictor.forward, features, target, key, hop)

    def faith() -> None:
        faithfulness.measure(predictor.forward, features, relevance, target, removals=removals)

    bare = median_ms(lambda: predictor.analyze(waveform), plan.repeats, plan.warmup)
    full = median_ms(explained, plan.slow_repeats, 1)
    return {
        "method": key,
        "analyze_ms": bare,
        "analyze_explained_ms": full,
        "faithfulness_ms": median_ms(faith, plan.slow_repeats, 1),
        "listen_ms": median_ms(lambda: listen.listen(predictor, waveform, relevance, target), plan.slow_repeats, 1),
        "ratio_to_analysis": full["median"] / bare["median"],
    }
