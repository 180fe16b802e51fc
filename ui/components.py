"""Pieces of Streamlit UI that several pages show the same way."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import soundfile as sf
import streamlit as st

from audiocnn.inference import Prediction
from audiocnn.labels import class_info
from audiocnn.samples import SampleClip

from . import resources, state
from .plots import class_label

SOURCE_ICONS = {"sample": "📦", "upload": "📄", "recording": "🎙️"}
ANALYZE_PAGE = "pages/analyze.py"
COMPARE_PAGE = "pages/compare.py"


def clip_title(clip: state.Clip) -> str:
    return f"{SOURCE_ICONS.get(clip.source, '🔊')} {clip.name}"


def clip_choice(clip: state.Clip) -> str:
    """A session clip as Compare lists it. Uploads and recordings carry a short content id: two files
    called ``a.wav`` (or two microphone recordings) are different clips and must stay two choices."""
    origin = clip.source if clip.source == "sample" else f"{clip.source} · {clip.id[:6]}"
    return f"{clip_title(clip)} ({origin})"


def clip_caption(clip: state.Clip) -> str:
    parts = [clip.source, f"{clip.duration:.1f} s"]
    if clip.note:
        parts.append(clip.note)
    if clip.label:
        parts.append(f"true class: {class_label(clip.label)}")
    return " · ".join(parts)


def cv_summary(cv: dict | None) -> str | None:
    """The recipe's cross-validation in one line: the mean says how the recipe generalises, the
    per-fold figures how much that depends on which clips are held out (fold 5 alone can mislead)."""
    if not cv or cv.get("mean") is None:
        return None
    folds = cv.get("folds") or {}
    scope = "5-fold cross-validation" if cv.get("complete") else f"Cross-validation so far ({len(folds)} of 5 folds)"
    spread = f" ± {cv['std']:.1%}" if cv.get("std") is not None and len(folds) > 1 else ""
    per_fold = ", ".join(f"fold {fold} {accuracy:.1%}" for fold, accuracy in folds.items())
    return f"{scope} of this recipe, each fold held out by its own model: mean {cv['mean']:.1%}{spread} ({per_fold})."


def require_clip() -> state.Clip:
    """The current clip, or a pointer to the Analyze page (and the page stops)."""
    clip = state.current_clip()
    if clip is None:
        st.info("No clip yet. Upload, record or pick a bundled sample on the Analyze page first.")
        st.page_link(ANALYZE_PAGE, label="Go to Analyze", icon="🎧")
        st.stop()
    return clip


def verdict(prediction: Prediction, true_label: str | None) -> str:
    """ "✅ right" / "❌ wrong" for a clip with a known class, "" otherwise."""
    if true_label is None:
        return ""
    return "✅ right" if prediction.top_label == true_label else "❌ wrong"


def top_predictions(prediction: Prediction, k: int = 5) -> None:
    """Class, emoji, major category and a confidence bar for the ``k`` most likely classes."""
    for rank, (name, probability) in enumerate(prediction.ranked(k), 1):
        info = class_info(name)
        st.markdown(f"**{rank}. {info.emoji} {info.display_name}** · {info.category}")
        st.progress(min(1.0, max(0.0, probability)), text=f"{probability:.1%}")


def ranking_frame(prediction: Prediction) -> pd.DataFrame:
    rows = []
    for rank, (name, probability) in enumerate(prediction.ranked(), 1):
        info = class_info(name)
        rows.append({
            "rank": rank, "class": f"{info.emoji} {info.display_name}", "category": info.category,
            "probability": probability,
        })  # fmt: skip
    return pd.DataFrame(rows)


def full_ranking(prediction: Prediction) -> None:
    with st.expander(f"All {len(prediction.class_names)} classes, ranked"):
        st.dataframe(
            ranking_frame(prediction),
            hide_index=True,
            width="stretch",
            column_config={
                "probability": st.column_config.ProgressColumn("probability", format="percent", min_value=0,
                                                               max_value=1),
            },
        )  # fmt: skip


def top_class(prediction: Prediction) -> str:
    """The predicted class and its probability, as every page names it in passing: "🐕 Dog (86%)"."""
    return f"{class_label(prediction.top_label)} ({prediction.probabilities[prediction.top_index]:.0%})"


def sidebar_summary() -> None:
    """The clip every page is about, and its prediction once analysed."""
    clip = state.current_clip()
    if clip is None:
        return
    with st.sidebar:
        st.markdown(f"**Current clip**  \n{clip_title(clip)}")
        st.caption(clip_caption(clip))
        result = state.latest_analysis(clip, resources.predictor())
        if result is not None:
            st.caption(f"Prediction: {top_class(result.prediction)}")


def player(waveform: np.ndarray, sample_rate: int) -> None:
    """An audio player at the clip's own level. ``st.audio`` scales a NumPy array to its peak: a
    quiet recording would play loud, and an all-zero window (a division by zero) as noise."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(waveform, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    st.audio(buffer.getvalue(), format="audio/wav")


def sample_player(sample: SampleClip) -> None:
    """A bundled clip played from its own file (lossless, already at the model's rate)."""
    st.audio(sample.path.read_bytes(), format=f"audio/{sample.path.suffix.lstrip('.').lower()}")


def chart(figure) -> None:
    """A Plotly figure at full width in its own colours (Streamlit's theme would replace the colour scales)."""
    st.plotly_chart(figure, width="stretch", theme=None)
