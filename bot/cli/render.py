"""What ``mer`` shows in a terminal: consoles, names that fit, moods, result and model tables.

Pure rendering: these functions take results and a console width and return rich
renderables, so tests can check them without running a model (the progress bar and the scan
summary are in :mod:`bot.cli.progress`). The rules:

- One line per input. Names never wrap: they are shortened in the middle (the start and the
  extension usually tell files apart) to whatever width the other columns leave.
- Moods are words with a colour and an emoji; the numbers behind them come with ``--wide``.
- Nothing here decides about colour or control codes: :func:`make_console` builds consoles
  that leave them out when the output is not a terminal or ``NO_COLOR`` is set.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from bot.service import MoodResult

ELLIPSIS = "…"
#: Emoji and colour per quadrant. The emoji all have a wide default presentation (no
#: variation selector), so every terminal gives them the two cells rich reserves.
MOOD_STYLE: Mapping[str, tuple[str, str]] = {
    "Q1": ("😄", "yellow"),
    "Q2": ("😬", "red"),
    "Q3": ("😢", "blue"),
    "Q4": ("😌", "green"),
}
MOOD_WORDS: Mapping[str, str] = {"Q1": "happy", "Q2": "tense", "Q3": "sad", "Q4": "calm"}
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
#: Below this many cells a name says nothing: the table may then exceed a very narrow screen.
MIN_NAME_WIDTH = 10
LEGEND = "val. valence: 0 negative … 1 positive · aro. arousal: 0 calm … 1 intense"
WIDE_LEGEND = "Q1…Q4: P(happy, tense, sad, calm) · conf.: P(mood) · ms: time to classify"


def make_console(file: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """A console that writes colours and control codes only where they belong.

    Rich reads ``NO_COLOR``, ``FORCE_COLOR``, ``TERM`` and ``COLUMNS`` when a console is
    built and asks the output whether it is a terminal, so build one per command (not at
    import) and leave those decisions to it: piped output gets plain text and no progress
    bars, ``NO_COLOR`` drops colours.

    Parameters
    ----------
    file : file-like, optional
        Where to write (default: standard output, or standard error with ``stderr``).
    stderr : bool
        Write to standard error.

    Returns
    -------
    Console
        With markup, emoji codes and highlighting off: file names such as ``[live] a.mp3``
        or ``:smile:.wav`` are printed as they are, and numbers are not recoloured.
    """
    return Console(file=file, stderr=stderr, markup=False, emoji=False, highlight=False)


def printable(text: str) -> str:
    """``text`` safe to print on one line.

    Control characters (a newline in a file name) are written as escapes, and undecodable
    bytes of a file name (kept by Python as surrogates, which no terminal encoding accepts)
    as ``\\xNN``.

    Parameters
    ----------
    text : str
        A name, path or message.

    Returns
    -------
    str
        Text without control characters or surrogates.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
                   for c in text)


def middle_ellipsis(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` terminal cells by cutting out its middle.

    Parameters
    ----------
    text : str
        Printable text (see :func:`printable`); wide characters count as two cells.
    width : int
        The most cells the result may take.

    Returns
    -------
    str
        ``text`` itself when it fits, else its start, ``…`` and its end, with the end kept
        a little longer (it holds the extension and the numbering of similar files). Never
        wider than ``width``; empty when ``width < 1``.
    """
    if cell_len(text) <= width:
        return text
    if width < 1:
        return ""
    room = width - 1
    tail = _take(reversed(text), room - room // 2)
    head = _take(iter(text), room - cell_len(tail))  # a cell the tail could not use
    tail = tail[::-1]
    return head + ELLIPSIS + tail


def _take(chars: Iterator[str], cells: int) -> str:
    """The leading characters of ``chars`` that fit in ``cells`` terminal cells."""
    taken, used = [], 0
    for char in chars:
        used += cell_len(char)
        if used > cells:
            break
        taken.append(char)
    return "".join(taken)


def shorten_path(text: str, width: int) -> str:
    """:func:`middle_ellipsis` for paths: the cut falls in the folders while the name fits.

    ``music/albums/2019/song.mp3`` at 15 cells is ``music/…song.mp3``: the file's own name
    is what tells rows apart. A name too long to keep whole is cut in its middle as usual.

    Parameters
    ----------
    text : str
        Printable text, a path or anything else (without ``/`` it is cut in the middle).
    width : int
        The most cells the result may take.

    Returns
    -------
    str
        At most ``width`` cells.
    """
    folder, sep, name = text.rpartition("/")
    if not sep or cell_len(text) <= width or cell_len(name) > width - 2:
        return middle_ellipsis(text, width)
    head = _take(iter(folder + sep), width - 1 - cell_len(name))
    return head + ELLIPSIS + name


def fit_text(text: str, width: int) -> str:
    """:func:`printable`, then :func:`middle_ellipsis`, then padded to exactly ``width`` cells."""
    short = middle_ellipsis(printable(text), width)
    return short + " " * max(0, width - cell_len(short))


def mood_text(quadrant: str, *, share: float | None = None, emoji: bool = True) -> Text:
    """A quadrant as a user sees it: emoji, mood word in its colour, optional percentage.

    Parameters
    ----------
    quadrant : {"Q1", "Q2", "Q3", "Q4"}
        The quadrant.
    share : float, optional
        Its probability in [0, 1], shown as a percentage after the word.
    emoji : bool
        Put the emoji first (consoles whose encoding cannot hold it pass False).

    Returns
    -------
    Text
        For example ``😌 calm   62%``; the word is padded so that columns line up.
    """
    symbol, colour = MOOD_STYLE[quadrant]
    text = Text(no_wrap=True)
    if emoji:
        text.append(symbol + " ")
    text.append(f"{MOOD_WORDS[quadrant]:<5}", style=f"bold {colour}")
    if share is not None:
        text.append(f" {share:4.0%}")
    return text


def can_show_emoji(console: Console) -> bool:
    """Whether the console's encoding can write the mood emoji."""
    return console.encoding.lower().replace("-", "").startswith("utf")


@dataclass(frozen=True)
class ResultRow:
    """One input of a results table.

    Attributes
    ----------
    name : str
        What to call the input (a path, the text asked for, a demo file's name).
    result : MoodResult
        Its mood.
    source : str
        Where it came from (``local``, ``deezer, cached``, a demo track's folder).
    """

    name: str
    result: MoodResult
    source: str


def _fitted(width: int, build: Callable[[Callable[[str], Text]], Table], *,
            probe: int = 12, min_width: int = MIN_NAME_WIDTH) -> Table:
    """Build a table whose name column takes exactly the width the other columns leave.

    ``build`` makes the table given a function that turns a name into its cell. A first build
    with every name ``probe`` cells wide measures the other columns, borders and padding;
    the second shortens every name to what is left of ``width``.
    """
    measure_console = Console(width=10_000, file=io.StringIO())
    probed = build(lambda _name: Text("x" * probe))
    total = Measurement.get(measure_console, measure_console.options, probed).maximum
    name_width = max(min_width, width - (total - probe))
    return build(lambda name: Text(shorten_path(printable(name), name_width), no_wrap=True,
                                   overflow="ellipsis"))


def _plain_table() -> Table:
    # No vertical rules and one space between columns: the names get every cell left.
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                 header_style="bold")


def _compact_table(name_header: str, source_header: str) -> Table:
    table = _plain_table()
    table.add_column(name_header, no_wrap=True, overflow="ellipsis")
    table.add_column("mood", no_wrap=True)
    table.add_column("runner-up", no_wrap=True)
    table.add_column("val.", justify="right", no_wrap=True)
    table.add_column("aro.", justify="right", no_wrap=True)
    table.add_column(source_header, no_wrap=True)
    return table


def results_table(rows: Sequence[ResultRow], *, width: int, name_header: str = "track",
                  source_header: str = "source", emoji: bool = True) -> Table:
    """The default results table: one line per input at ``width`` columns.

    Columns: the input's name (shortened in the middle), its mood with the probability of
    that mood, the runner-up mood with its probability, valence, arousal and the source.

    Parameters
    ----------
    rows : sequence of ResultRow
        The inputs that were classified, in order.
    width : int
        The console's width in cells.
    name_header, source_header : str
        Headers of the first and last columns.
    emoji : bool
        Show the mood emoji.

    Returns
    -------
    Table
        A borderless table no wider than ``width`` (unless ``width`` is too narrow to leave
        :data:`MIN_NAME_WIDTH` cells for the names).
    """
    def build(name_cell: Callable[[str], Text]) -> Table:
        table = _compact_table(name_header, source_header)
        for row in rows:
            r = row.result
            first, second = sorted(QUADRANTS, key=lambda q: -r.probabilities[q])[:2]
            table.add_row(name_cell(row.name),
                          mood_text(first, share=r.probabilities[first], emoji=emoji),
                          mood_text(second, share=r.probabilities[second], emoji=False),
                          f"{r.valence:.2f}", f"{r.arousal:.2f}",
                          Text(printable(row.source), no_wrap=True))
        return table

    return _fitted(width, build)


def wide_table(rows: Sequence[ResultRow], *, width: int, name_header: str = "track",
               source_header: str = "source") -> Table:
    """Every number of every input (``--wide``): the four probabilities, confidence, time.

    Parameters
    ----------
    rows : sequence of ResultRow
        The inputs that were classified, in order.
    width : int
        The console's width in cells; the names take what the numbers leave (15 cells at
        80 columns).
    name_header, source_header : str
        Headers of the first and last columns.

    Returns
    -------
    Table
        One line per input; the mood without its emoji, the numbers need the room.
    """
    def build(name_cell: Callable[[str], Text]) -> Table:
        table = _plain_table()
        table.add_column(name_header, no_wrap=True, overflow="ellipsis")
        table.add_column("mood", no_wrap=True)
        for column in (*QUADRANTS, "val.", "aro.", "conf.", "ms"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column(source_header, no_wrap=True)
        for row in rows:
            r = row.result
            p = r.probabilities
            table.add_row(name_cell(row.name), mood_text(r.quadrant.value, emoji=False),
                          *(f"{p[q]:.2f}" for q in QUADRANTS),
                          f"{r.valence:.2f}", f"{r.arousal:.2f}", f"{r.confidence:.2f}",
                          f"{r.timings_ms.get('total', 0):.0f}",
                          Text(printable(row.source), no_wrap=True))
        return table

    return _fitted(width, build, min_width=MIN_NAME_WIDTH)


def legend(*, wide: bool = False) -> list[Text]:
    """The lines under a results table that say what its short headers mean."""
    lines = [Text(LEGEND, style="dim")]
    if wide:
        lines.insert(0, Text(WIDE_LEGEND, style="dim"))
    return lines


def print_lines(console: Console, *lines: RenderableType) -> None:
    """Print each line on one line: cut with an ellipsis, never wrapped."""
    for line in lines:
        # A Text's own no_wrap is not enough: the print's options override it.
        console.print(line, no_wrap=True, overflow="ellipsis")


@dataclass(frozen=True)
class ModelRow:
    """One model of ``mer models``.

    Attributes
    ----------
    kind, name : str
        The model's kind (``cldnn``) and ``name-version``.
    fusion_weight : float
        Its weight in the fused mood (0: not fused).
    macro_f1 : float or None
        Cross-validated macro-F1 over the four quadrants, when its card has one.
    size_bytes : int or None
        Size of its weights file, when present.
    """

    kind: str
    name: str
    fusion_weight: float
    macro_f1: float | None
    size_bytes: int | None


def _size(n: int | None) -> str:
    if n is None:
        return "missing"
    if n < 1000:
        return f"{n} B"
    return f"{n / 1000:.1f} kB" if n < 1_000_000 else f"{n / 1_000_000:.1f} MB"


def models_table(rows: Sequence[ModelRow], *, width: int) -> Table:
    """``mer models``: one line per model, fitting ``width`` columns.

    Parameters
    ----------
    rows : sequence of ModelRow
        The newest model of each kind.
    width : int
        The console's width in cells.

    Returns
    -------
    Table
        Kind, name-version (shortened in the middle when needed), fusion weight,
        macro-F1 and size.
    """
    def build(name_cell: Callable[[str], Text]) -> Table:
        table = _plain_table()
        table.add_column("model", no_wrap=True, overflow="ellipsis")
        table.add_column("kind", no_wrap=True)
        table.add_column("fusion", justify="right", no_wrap=True)
        table.add_column("macro-F1", justify="right", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        for row in rows:
            table.add_row(name_cell(row.name), Text(printable(row.kind), no_wrap=True),
                          f"{row.fusion_weight:.2f}" if row.fusion_weight else "-",
                          "-" if row.macro_f1 is None else f"{row.macro_f1:.3f}",
                          _size(row.size_bytes))
        return table

    return _fitted(width, build)
