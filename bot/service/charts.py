"""Charts of the library: moods on the valence/arousal plane (matplotlib, no display needed).

Rendering takes a few hundred milliseconds: front-ends on an event loop call :func:`plot_library`
in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bot.service.errors import ServiceError
from bot.service.recommendations import Pick
from bot.storage.store import StoredMood
from mer_models.moods import Quadrant

#: One colour per quadrant (colour-blind safe: Okabe-Ito).
COLOURS = {"Q1": "#E69F00", "Q2": "#D55E00", "Q3": "#0072B2", "Q4": "#009E73"}


def plot_library(library: Sequence[StoredMood], path: Path, *,
                 journey: Sequence[Pick] = (), title: str | None = None) -> Path:
    """Draw the stored tracks on the valence/arousal plane, a journey as a path, into a PNG.

    Raises
    ------
    ServiceError
        Nothing to draw, or the file cannot be written.
    """
    if not library:
        raise ServiceError("the library is empty: classify or scan some tracks first")
    import matplotlib

    matplotlib.use("Agg")  # no display: a file, from any thread
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 6.4), dpi=120)
    try:
        axes.axhline(0.5, color="0.8", lw=1)
        axes.axvline(0.5, color="0.8", lw=1)
        for q, colour in COLOURS.items():
            members = [m for m in library if m.quadrant == q]
            if members:
                axes.scatter([m.valence for m in members], [m.arousal for m in members], s=18,
                             color=colour, alpha=0.8,
                             label=f"{Quadrant(q).mood} ({len(members)})")
        if journey:
            xs = [p.track.valence for p in journey]
            ys = [p.track.arousal for p in journey]
            axes.plot(xs, ys, "-o", color="black", lw=1.5, ms=5, label="journey")
            for i, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
                axes.annotate(str(i), (x, y), textcoords="offset points", xytext=(5, 5))
        axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="valence", ylabel="arousal",
                 title=title or f"{len(library)} tracks by mood")
        axes.legend(loc="upper left", fontsize="small")
        figure.tight_layout()
        try:
            figure.savefig(path)
        except OSError as exc:
            raise ServiceError(f"{path}: cannot write the chart: {exc.strerror}") from exc
    finally:
        plt.close(figure)
    return path
