"""Plotly figures of the dashboard (no Streamlit here, so each one can be built and checked in tests).

Colour conventions, kept everywhere so maps can be compared: dB spectrograms on a
sequential scale; signed activations on a diverging scale centred at zero; post-ReLU
maps on a sequential scale from zero. Every map drawn together in one view shares one
colour range (``ValueScale``) instead of being normalised on its own. Only SVG traces
are used (no WebGL), so a page can hold many charts without running out of WebGL
contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from audiocnn.inference import Occlusion
from audiocnn.labels import MAJOR_CATEGORIES, class_info

from .axes import MapAxes


def _explicit_scale(colours: Sequence[str]) -> list[list]:
    """A colour scale as explicit stops, safe from Streamlit's colour placeholders.

    Streamlit's Plotly frontend rewrites the strings ``#000001``..``#000010`` in a
    figure's JSON into theme colours; Magma starts at ``#000004``, which turned the dB
    floor of every spectrogram purple. Such near-blacks become plain black here.
    """
    placeholders = {f"#0000{i:02d}" for i in range(1, 11)}
    last = len(colours) - 1
    return [[i / last, "#000000" if c.lower() in placeholders else c] for i, c in enumerate(colours)]


SPECTROGRAM_SCALE = _explicit_scale(plotly.colors.sequential.Magma)
POSITIVE_SCALE = "Viridis"
SIGNED_SCALE = "RdBu_r"
CAM_SCALE = [
    [0.0, "rgba(255, 40, 0, 0)"],
    [0.25, "rgba(255, 40, 0, 0.15)"],
    [0.6, "rgba(255, 120, 0, 0.55)"],
    [1.0, "rgba(255, 235, 0, 0.9)"],
]
CATEGORY_COLOURS = dict(zip(MAJOR_CATEGORIES, ("#4C78A8", "#54A24B", "#E45756", "#B279A2", "#F58518")))
SERIES_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")
SERIES_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
"""Lines drawn together (the timeline's classes): Okabe-Ito colours, told apart also by marker shape."""
ENVELOPE_BUCKETS = 2000
"""Columns of a waveform envelope: enough for any screen, independent of the clip's length."""


@dataclass(frozen=True)
class ValueScale:
    """One colour range shared by all the maps of a view."""

    colorscale: str | list
    zmin: float
    zmax: float
    title: str

    def coloraxis(self) -> dict:
        return {"colorscale": self.colorscale, "cmin": self.zmin, "cmax": self.zmax, "colorbar": {"title": self.title}}


def activation_scale(values: np.ndarray | Sequence[np.ndarray], nonnegative: bool) -> ValueScale:
    """Sequential 0..max for post-ReLU values, diverging -m..m (centred at 0) for signed ones."""
    arrays = [values] if isinstance(values, np.ndarray) else list(values)
    if nonnegative:
        peak = max(float(np.max(a)) for a in arrays)
        return ValueScale(POSITIVE_SCALE, 0.0, peak if peak > 0 else 1.0, "activation")
    bound = max(float(np.max(np.abs(a))) for a in arrays)
    bound = bound if bound > 0 else 1.0
    return ValueScale(SIGNED_SCALE, -bound, bound, "activation")


def db_scale(logmels: np.ndarray | Sequence[np.ndarray]) -> ValueScale:
    arrays = [logmels] if isinstance(logmels, np.ndarray) else list(logmels)
    return ValueScale(SPECTROGRAM_SCALE, min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays), "dB")


def _map_layout(fig: go.Figure, axes: MapAxes, height: int, title: str | None, row=None, col=None) -> None:
    fig.update_xaxes(title_text="Time (s)", row=row, col=col)
    fig.update_yaxes(
        title_text="Frequency", type="category", tickvals=axes.hz_ticks(), ticktext=axes.hz_ticks(), row=row, col=col
    )
    fig.update_layout(height=height, margin={"l": 70, "r": 10, "t": 40 if title else 10, "b": 45}, title=title)


def _heatmap(z: np.ndarray, axes: MapAxes, unit: str, **kwargs) -> go.Heatmap:
    return go.Heatmap(
        z=np.asarray(z, dtype=np.float32),
        x=axes.seconds,
        y=axes.hz_labels,
        hovertemplate=f"%{{x:.2f}} s, %{{y}}<br>%{{z:.3g}} {unit}<extra></extra>",
        **kwargs,
    )


def map_figure(
    z: np.ndarray, axes: MapAxes, scale: ValueScale, title: str | None = None, height: int = 300
) -> go.Figure:
    """One 2-D map (activation, channel mean) with axes in seconds and Hz."""
    fig = go.Figure(
        _heatmap(z, axes, "", colorscale=scale.colorscale, zmin=scale.zmin, zmax=scale.zmax,
                 colorbar={"title": scale.title})
    )  # fmt: skip
    _map_layout(fig, axes, height, title)
    return fig


def spectrogram_figure(
    logmel: np.ndarray,
    axes: MapAxes,
    cam: np.ndarray | None = None,
    title: str | None = None,
    height: int = 320,
    scale: ValueScale | None = None,
    cam_title: str = "Grad-CAM<br>(share of peak)",
) -> go.Figure:
    """The log-mel the model sees (dB), optionally with an attribution map in [0, 1] laid over it.

    Under an overlay the spectrogram turns grey so the attribution colours stay readable.
    """
    scale = scale or db_scale(logmel)
    base = "Greys_r" if cam is not None else scale.colorscale
    fig = go.Figure(
        _heatmap(logmel, axes, "dB", colorscale=base, zmin=scale.zmin, zmax=scale.zmax,
                 colorbar={"title": "dB", "x": 1.0, "len": 0.9})
    )  # fmt: skip
    if cam is not None:
        fig.add_trace(
            _heatmap(cam, axes, "of peak", colorscale=CAM_SCALE, zmin=0.0, zmax=1.0,
                     colorbar={"title": cam_title, "x": 1.12, "len": 0.9})
        )  # fmt: skip
    _map_layout(fig, axes, height, title)
    return fig


def envelope(waveform: np.ndarray, buckets: int = ENVELOPE_BUCKETS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bucket (start index, min, max): every peak survives, unlike skipping samples."""
    count = min(buckets, waveform.shape[0])
    starts = np.linspace(0, waveform.shape[0], count, endpoint=False).astype(np.int64)
    return starts, np.minimum.reduceat(waveform, starts), np.maximum.reduceat(waveform, starts)


def waveform_figure(
    waveform: np.ndarray, sample_rate: int, window: tuple[float, float] | None = None, height: int = 180
) -> go.Figure:
    """Min/max envelope of a recording of any length; ``window`` (seconds) is highlighted."""
    starts, lows, highs = envelope(waveform)
    times = starts / sample_rate
    fig = go.Figure(
        go.Scatter(
            x=np.concatenate([times, times[::-1]]),
            y=np.concatenate([highs, lows[::-1]]),
            fill="toself",
            mode="lines",
            line={"width": 0.6, "color": "#4C78A8"},
            fillcolor="rgba(76, 120, 168, 0.6)",
            hoverinfo="skip",
            name="amplitude",
        )
    )
    if window is not None:
        fig.add_vrect(x0=window[0], x1=window[1], fillcolor="orange", opacity=0.18, line_width=0)
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 10, "b": 45}, showlegend=False,
        xaxis_title="Time (s)", yaxis_title="Amplitude", yaxis_range=[-1.05, 1.05],
    )  # fmt: skip
    return fig


def class_label(name: str) -> str:
    info = class_info(name)
    return f"{info.emoji} {info.display_name}"


def timeline_figure(
    starts: np.ndarray,
    window_seconds: float,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int],
    selected: int,
    duration: float | None = None,
    height: int = 260,
) -> go.Figure:
    """Probability of a few classes over sliding windows, each at its centre on the recording's time axis
    (0 to ``duration``), with the selected window's span shaded."""
    centres = starts + window_seconds / 2
    fig = go.Figure()
    for rank, index in enumerate(classes):
        colour, symbol = SERIES_COLOURS[rank % len(SERIES_COLOURS)], SERIES_SYMBOLS[rank % len(SERIES_SYMBOLS)]
        fig.add_trace(
            go.Scatter(
                x=centres, y=probabilities[:, index], mode="lines+markers", name=class_label(class_names[index]),
                line={"color": colour}, marker={"symbol": symbol, "size": 7, "color": colour},
                hovertemplate="window at %{x:.1f} s: %{y:.1%}<extra>%{fullData.name}</extra>",
            )
        )  # fmt: skip
    start = float(starts[selected])
    fig.add_vrect(x0=start, x1=start + window_seconds, fillcolor="orange", opacity=0.18, line_width=0)
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 10, "b": 45},
        xaxis={"title": "Time in the recording (s), each window at its centre",
               "range": [0, duration if duration is not None else float(starts[-1]) + window_seconds]},
        yaxis={"title": "Probability", "tickformat": ".0%", "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.3},
    )  # fmt: skip
    return fig


def channel_grid_figure(
    maps: np.ndarray, titles: Sequence[str], axes: MapAxes, scale: ValueScale, columns: int = 4
) -> go.Figure:
    """Several channels of one node on one shared colour axis, so their strengths compare directly."""
    rows = max(1, -(-len(maps) // columns))
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=list(titles), shared_xaxes=True, shared_yaxes=True,
        horizontal_spacing=0.02, vertical_spacing=0.08,
    )  # fmt: skip
    for i, channel in enumerate(maps):
        row, col = i // columns + 1, i % columns + 1
        fig.add_trace(_heatmap(channel, axes, "", coloraxis="coloraxis"), row=row, col=col)
    fig.update_yaxes(type="category", tickvals=axes.hz_ticks(), ticktext=axes.hz_ticks())
    fig.update_xaxes(title_text="Time (s)", row=rows)
    fig.update_layout(coloraxis=scale.coloraxis(), height=170 * rows + 60, margin={"l": 60, "r": 10, "t": 40, "b": 45})
    return fig


def similarity_figure(nodes: Sequence[str], series: dict[str, Sequence[float]], height: int = 380) -> go.Figure:
    """Where two clips' representations diverge: one similarity line per measure over the nodes in forward order."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Scatter(x=list(nodes), y=list(values), mode="lines+markers", name=name))
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 10, "b": 45}, yaxis={"title": "Cosine similarity",
        "range": [-0.05, 1.05]}, xaxis={"tickangle": -60, "automargin": True, "tickfont": {"size": 10}},
        legend={"orientation": "h", "y": 1.12},
    )  # fmt: skip
    return fig


def probability_comparison_figure(
    labels: Sequence[str], series: dict[str, Sequence[float]], height: int = 320
) -> go.Figure:
    """Grouped horizontal bars: the probability each clip gives to each of ``labels``."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Bar(y=[class_label(label) for label in labels], x=list(values), orientation="h", name=name))
    fig.update_layout(
        barmode="group", height=height, margin={"l": 60, "r": 10, "t": 10, "b": 45},
        xaxis={"title": "Probability", "tickformat": ".0%"}, yaxis={"autorange": "reversed"},
        legend={"orientation": "h", "y": 1.1},
    )  # fmt: skip
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def occlusion_figure(occlusion: Occlusion, window_seconds: float, height: int = 260) -> go.Figure:
    """What the explained class loses when each stretch is silenced, on the spectrogram's time axis:
    orange where the stretch supported the class, blue where it spoke against it."""
    drops = occlusion.drops
    fig = go.Figure(
        go.Bar(
            x=(occlusion.starts + occlusion.ends) / 2, y=drops, width=(occlusion.ends - occlusion.starts) * 0.9,
            marker_color=["#F58518" if drop >= 0 else "#4C78A8" for drop in drops],
            customdata=np.stack([occlusion.starts, occlusion.ends, occlusion.probabilities], axis=1),
            hovertemplate=f"%{{customdata[0]:.2f}}–%{{customdata[1]:.2f}} s silenced: {occlusion.base:.1%} → "
            "%{customdata[2]:.1%}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(  # the right margin matches the two colour bars beside the Grad-CAM map above it
        height=height, margin={"l": 70, "r": 200, "t": 10, "b": 45},
        xaxis={"title": "Time (s)", "range": [0, window_seconds]},
        yaxis={"title": "Probability lost", "tickformat": ".0%", "zeroline": True},
    )  # fmt: skip
    fig.update_yaxes(automargin=True)
    return fig


def confusion_figure(
    confusion: np.ndarray,
    class_names: Sequence[str],
    normalise: bool,
    height: int = 800,
    row_totals: np.ndarray | None = None,
) -> go.Figure:
    """Rows = true class, columns = predicted; hover gives the count and the share of the true class.

    ``row_totals`` are the clips of each true class in the whole matrix: a subset of the columns
    misses the clips predicted outside it, so its own row sums would inflate every share.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1) if row_totals is None else np.asarray(row_totals, dtype=np.float64)
    totals = totals[:, None]
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    labels = [class_label(name) for name in class_names]
    fig = go.Figure(
        go.Heatmap(
            z=shares if normalise else counts, x=labels, y=labels, customdata=np.dstack([counts, shares]),
            colorscale="Blues",
            colorbar={"title": {"text": "share of row" if normalise else "clips", "side": "right"}, "len": 0.95,
                      "y": 0.0, "yanchor": "bottom"},
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[0]:.0f} clips (%{customdata[1]:.0%})"
            "<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(  # the top margin keeps Plotly's toolbar off the colour bar
        height=height, margin={"l": 60, "r": 10, "t": 40, "b": 45},
        xaxis={"title": {"text": "Predicted", "standoff": 14}, "tickangle": -60, "tickfont": {"size": 9}},
        yaxis={"title": "True", "autorange": "reversed", "tickfont": {"size": 9}},
    )  # fmt: skip
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def per_class_figure(per_class: dict[str, float], height: int = 900) -> go.Figure:
    """Per-class accuracy, worst at the top, one colour (and legend entry) per major category."""
    ordered = sorted(per_class.items(), key=lambda item: item[1])
    labels = [class_label(name) for name, _ in ordered]
    fig = go.Figure()
    for category in dict.fromkeys(class_info(name).category for name, _ in ordered):
        rows = [(class_label(name), value) for name, value in ordered if class_info(name).category == category]
        fig.add_trace(
            go.Bar(
                x=[value for _, value in rows], y=[label for label, _ in rows], orientation="h", name=category,
                marker_color=CATEGORY_COLOURS.get(category, "#999999"), hovertemplate="%{y}: %{x:.0%}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        height=height, margin={"l": 60, "r": 10, "t": 70, "b": 45},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"},
        xaxis={"title": "Accuracy", "tickformat": ".0%", "range": [0, 1.04], "tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1.0]},
        yaxis={"tickfont": {"size": 10}, "categoryorder": "array", "categoryarray": labels[::-1]},
    )  # fmt: skip
    fig.update_yaxes(automargin=True)
    return fig
