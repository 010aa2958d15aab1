"""Charts of moods: the library or one track on the valence/arousal plane, and a mood mix
(matplotlib, no display needed).

Rendering takes a few hundred milliseconds: front-ends on an event loop call these functions in
a worker thread. Figures are built without pyplot (whose global state is not thread-safe), and
each is written as a PNG to a path or to a binary file (a ``BytesIO`` to attach to a message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from bot.service.errors import ServiceError
from bot.service.recommendations import Pick
from bot.storage.store import StoredMood
from mer_models.moods import QUADRANTS, Quadrant

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from mer_models.result import MoodResult

#: One colour per quadrant (colour-blind safe: Okabe-Ito).
COLOURS = {"Q1": "#E69F00", "Q2": "#D55E00", "Q3": "#0072B2", "Q4": "#009E73"}
_Out = TypeVar("_Out", Path, IO[bytes])


def plot_library(library: Sequence[StoredMood], path: _Out, *,
                 journey: Sequence[Pick] = (), title: str | None = None) -> _Out:
    """Draw the stored tracks on the valence/arousal plane, a journey as a path, into a PNG.

    Raises
    ------
    ServiceError
        Nothing to draw, or the file cannot be written.
    """
    if not library:
        raise ServiceError("the library is empty: classify or scan some tracks first")
    figure = _figure(6.4, 6.4)
    axes = figure.subplots()
    _plane(axes)
    for q, colour in COLOURS.items():
        members = [m for m in library if m.quadrant == q]
        if members:
            axes.scatter([m.valence for m in members], [m.arousal for m in members], s=18,
                         color=colour, alpha=0.8, label=f"{Quadrant(q).mood} ({len(members)})")
    if journey:
        xs = [p.track.valence for p in journey]
        ys = [p.track.arousal for p in journey]
        axes.plot(xs, ys, "-o", color="black", lw=1.5, ms=5, label="journey")
        for i, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
            axes.annotate(str(i), (x, y), textcoords="offset points", xytext=(5, 5))
    axes.set_title(title or f"{len(library)} tracks by mood")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    _save(figure, path)
    return path


def plot_track(result: MoodResult, path: _Out, *, title: str,
               library: Sequence[StoredMood] = ()) -> _Out:
    """Draw one track: its place on the valence/arousal plane, and its windows over time.

    The left panel shows the track (a star in its mood's colour), each analysis window as a
    numbered point joined in time order, and the stored library in grey behind them. The right
    panel stacks the four mood probabilities of each window along the clip (seconds).

    Parameters
    ----------
    result : MoodResult
        The track's mood and its per-window timeline.
    path : Path or binary file
        Where the PNG goes.
    title : str
        The chart's title (the track's name).
    library : sequence of StoredMood
        Other tracks, drawn faintly for context.

    Raises
    ------
    ServiceError
        The file cannot be written.
    """
    figure = _figure(10.0, 4.8)
    plane, timeline = figure.subplots(1, 2, width_ratios=(1, 1.2))
    _plane(plane)
    if library:
        plane.scatter([m.valence for m in library], [m.arousal for m in library], s=10,
                      color="0.82", label=f"library ({len(library)})")
    windows = result.windows
    if windows:
        xs = [w.probabilities["Q1"] + w.probabilities["Q4"] for w in windows]
        ys = [w.probabilities["Q1"] + w.probabilities["Q2"] for w in windows]
        plane.plot(xs, ys, "-", color="0.4", lw=1)
        plane.scatter(xs, ys, s=28, zorder=3,
                      color=[COLOURS[w.quadrant.value] for w in windows])
        for i, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
            plane.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4),
                           fontsize="small")
    quadrant = result.quadrant.value
    plane.scatter([result.valence], [result.arousal], s=260, marker="*", zorder=4,
                  color=COLOURS[quadrant], edgecolors="black",
                  label=f"{result.mood} ({result.confidence:.0%})")
    plane.set_title("valence / arousal")
    plane.legend(loc="upper left", fontsize="small")

    for q in QUADRANTS:
        bottoms = [sum(w.probabilities[p.value] for p in QUADRANTS[:QUADRANTS.index(q)])
                   for w in windows]
        timeline.bar([w.start for w in windows], [w.probabilities[q.value] for w in windows],
                     width=[max(w.end - w.start, 0.1) for w in windows], bottom=bottoms,
                     align="edge", color=COLOURS[q.value], edgecolor="white", label=q.mood)
    # Headroom above the bars for the legend, so that it hides none of them.
    timeline.set(ylim=(0, 1.15), yticks=[0, 0.25, 0.5, 0.75, 1], xlabel="seconds",
                 ylabel="probability", title=f"{len(windows)} windows")
    timeline.legend(loc="upper center", fontsize="small", ncols=4, frameon=False)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    return path


def plot_mix(counts: Mapping[str, int], path: _Out, *, title: str) -> _Out:
    """Draw a mood mix as horizontal bars, one per mood, labelled with count and share.

    Parameters
    ----------
    counts : mapping
        ``{"Q1": n1, ..., "Q4": n4}`` (a missing quadrant counts 0).
    path : Path or binary file
        Where the PNG goes.
    title : str
        The chart's title.

    Raises
    ------
    ServiceError
        Nothing to draw, or the file cannot be written.
    """
    values = [int(counts.get(q.value, 0)) for q in QUADRANTS]
    total = sum(values)
    if total <= 0:
        raise ServiceError("no tracks to count: classify, scan or play some first")
    figure = _figure(6.4, 3.6)
    axes = figure.subplots()
    names = [q.mood for q in QUADRANTS]
    bars = axes.barh(names, values, color=[COLOURS[q.value] for q in QUADRANTS])
    axes.bar_label(bars, labels=[f"{v} ({v / total:.0%})" for v in values], padding=3)
    axes.invert_yaxis()  # happy on top, as in the legend of every other chart
    axes.set_xlim(0, max(values) * 1.25)
    axes.set(xlabel="tracks", title=title)
    figure.tight_layout()
    _save(figure, path)
    return path


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120)


def _plane(axes: Axes) -> None:
    axes.axhline(0.5, color="0.8", lw=1)
    axes.axvline(0.5, color="0.8", lw=1)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="valence", ylabel="arousal")


def _save(figure: Figure, path: Path | IO[bytes]) -> None:
    try:
        figure.savefig(path, format=None if isinstance(path, Path) else "png")
    except OSError as exc:
        name = path if isinstance(path, Path) else "chart"
        raise ServiceError(f"{name}: cannot write the chart: {exc.strerror}") from exc
