"""What `mer` draws, rendered without running a model: widths, one line per input, no codes."""

from __future__ import annotations

import io
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from bot.cli.progress import (
    LABEL_WIDTH,
    interrupted_message,
    progress_bar,
    progress_label,
    scan_summary,
)
from bot.cli.render import (
    MOOD_WORDS,
    ModelRow,
    ResultRow,
    legend,
    make_console,
    middle_ellipsis,
    models_table,
    print_lines,
    printable,
    results_table,
    shorten_path,
    wide_table,
)
from bot.service.library import ScanReport
from mer_models.moods import MOOD_NAMES
from mer_models.result import MoodResult

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: SGR colour parameters: 30-37, 90-97 (foreground), 40-47, 100-107 (background), 38;/48;.
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])[;m]")
LONG_NAME = ("Some Artist feat. Another Artist and a Third One - A Song With a Rather "
             "Long Title (Extended Club Remix by Somebody Else) [2024 Remaster] - 150_1.flac")
assert len(LONG_NAME) == 150


def result(name: str, p: tuple[float, float, float, float]) -> MoodResult:
    """A result with the given probabilities of Q1..Q4."""
    return MoodResult(input=name, probabilities=dict(zip(("Q1", "Q2", "Q3", "Q4"), p,
                                                         strict=True)),
                      windows=[], models={"cldnn": "t"}, timings_ms={"total": 123.0})


ROWS = [
    ResultRow("happy.wav", result("happy.wav", (0.7, 0.1, 0.1, 0.1)), "local"),
    ResultRow(LONG_NAME, result(LONG_NAME, (0.05, 0.6, 0.3, 0.05)), "deezer, cached"),
    ResultRow("music/calm one.ogg", result("music/calm one.ogg", (0.1, 0.0, 0.3, 0.6)),
              "local"),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No colour or terminal settings inherited from whoever runs the tests."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS",
                 "LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    return monkeypatch


def render(renderable: object, width: int = 80) -> list[str]:
    """Lines of plain text as an 80-column terminal would show them."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return text.rstrip("\n").split("\n")


@pytest.mark.parametrize(("text", "width", "expected"), [
    ("short.mp3", 20, "short.mp3"),
    ("abcdefghij", 10, "abcdefghij"),
    ("abcdefghijk", 10, "abcd…ghijk"),
    ("abcdefghijklmnopqrstuvwxyz", 9, "abcd…wxyz"),
    ("abcdefghijklmnopqrstuvwxyz", 10, "abcd…vwxyz"),
    ("abc", 1, "…"),
    ("abc", 0, ""),
])
def test_middle_ellipsis_keeps_both_ends(text: str, width: int, expected: str) -> None:
    assert middle_ellipsis(text, width) == expected


def test_middle_ellipsis_counts_cells_not_characters() -> None:
    wide = "音楽" * 20 + ".mp3"  # each CJK character takes two cells
    for width in range(1, 30):
        short = middle_ellipsis(wide, width)
        assert cell_len(short) <= width
        assert cell_len(short) >= width - 1  # at most the half of a wide character is lost
    assert middle_ellipsis(wide, 12).endswith(".mp3")


@pytest.mark.parametrize(("text", "width", "expected"), [
    ("music/albums/2019/song.mp3", 16, "music/a…song.mp3"),
    ("music/albums/2019/song.mp3", 26, "music/albums/2019/song.mp3"),
    ("demo/tender/tender_electronic_s411.opus", 33, "demo/…tender_electronic_s411.opus"),
    ("a/" + "n" * 40 + ".mp3", 12, "a/nnn…nn.mp3"),  # the name itself is too long
    ("no folder at all.mp3", 10, "no f…l.mp3"),
])
def test_shorten_path_keeps_the_file_name(text: str, width: int, expected: str) -> None:
    assert shorten_path(text, width) == expected
    assert cell_len(shorten_path(text, width)) <= width


def test_printable_escapes_what_would_break_a_line() -> None:
    assert printable("a\nb\tc.mp3") == "a\\nb\\tc.mp3"
    assert printable("caf\udce9.mp3") == "caf\\xe9.mp3"  # a Latin-1 byte in a UTF-8 name
    assert printable("plain – name.mp3") == "plain – name.mp3"


def test_mood_words_are_the_models() -> None:
    assert {q.value: name for q, name in MOOD_NAMES.items()} == dict(MOOD_WORDS)


def test_results_table_is_one_line_per_input_at_80_columns() -> None:
    lines = render(results_table(ROWS, width=80))
    assert len(lines) == 2 + len(ROWS), lines  # header, rule, one line per input
    assert all(cell_len(line) <= 80 for line in lines)
    header, _, happy, long, calm = lines
    assert header.split() == ["track", "mood", "runner-up", "val.", "aro.", "source"]
    assert happy.startswith("happy.wav ") and "😄 happy  70%  tense  10%" in happy
    name = long.split("  ")[0]  # the name column ends where two spaces begin
    assert name.startswith(LONG_NAME[:10]) and name.endswith("150_1.flac") and "…" in name
    assert "Remix" not in long
    assert "😬 tense" in long and "60%" in long and "sad" in long and "deezer, cached" in long
    assert "0.10" in long and "0.65" in long  # valence, arousal
    assert calm.startswith("music/calm one.ogg") and "😌 calm" in calm


def test_results_table_gives_the_names_the_room_left() -> None:
    at_80 = render(results_table(ROWS, width=80))
    at_120 = render(results_table(ROWS, width=120), width=120)
    assert max(map(cell_len, at_80)) == 80  # the long name takes exactly what is left
    assert max(map(cell_len, at_120)) == 120
    assert LONG_NAME[:25] in at_120[3] and LONG_NAME[:25] not in at_80[3]
    short = render(results_table(ROWS[:1], width=80))
    assert max(map(cell_len, short)) < 60  # short names: no padding to the full width


def test_wide_table_has_every_number_on_one_line() -> None:
    lines = render(wide_table(ROWS, width=110), width=110)
    assert len(lines) == 2 + len(ROWS)
    assert lines[0].split()[:6] == ["track", "mood", "Q1", "Q2", "Q3", "Q4"]
    assert "0.70  0.10  0.10  0.10" in lines[2] and "123" in lines[2]
    assert all(cell_len(line) <= 110 for line in lines)
    assert len(render(wide_table(ROWS, width=80))) == 2 + len(ROWS)


def test_legend_and_models_fit_80_columns() -> None:
    assert all(cell_len(line.plain) <= 80 for line in legend(wide=True))
    rows = [ModelRow("cldnn", "mood-4q-cldnn-1", 0.55, 0.618, 851_248),
            ModelRow("spotify-ensemble", "mood-spotify-ensemble-1", 1.0, None, 3_803_009),
            ModelRow("musicnn-msd", "m" * 120, 0.0, None, None)]
    lines = render(models_table(rows, width=80))
    assert len(lines) == 2 + len(rows) and all(cell_len(line) <= 80 for line in lines)
    assert lines[2].split() == ["mood-4q-cldnn-1", "cldnn", "0.55", "0.618", "851.2", "kB"]
    assert lines[3].split()[-4:] == ["1.00", "-", "3.8", "MB"]
    assert lines[4].split()[-3:] == ["-", "-", "missing"]


def test_print_lines_never_wraps() -> None:
    console = Console(width=40, file=io.StringIO(), color_system=None)
    print_lines(console, *legend())
    assert console.file.getvalue().count("\n") == 1  # type: ignore[attr-defined]


def test_scan_summary_counts_failures_and_mood_mix() -> None:
    report = ScanReport(total=12, classified=6, unchanged=2,
                        failed={f"/music/broken {i}.mp3": "not a decodable audio file"
                                for i in range(4)},
                        quadrants={"Q1": 4, "Q3": 2, "Q4": 2})
    lines = [t.plain for t in scan_summary(report, seconds=3.21, width=80, root="/music")]
    assert lines[0] == "12 files in 3.2 s: 6 classified, 2 unchanged, 4 failed"
    assert lines[1] == "  ✗ broken 0.mp3: not a decodable audio file"
    assert lines[4] == "  … and 1 more (mer scan -v lists them all)"
    assert lines[5] == "Mood mix of the 8 files with a mood:"
    mix = {line.split()[1]: line for line in lines[6:]}
    assert list(mix) == ["happy", "tense", "sad", "calm"]
    assert mix["happy"].split()[2] == "4" and mix["happy"].endswith(" 50%")
    assert mix["tense"].split()[2] == "0" and mix["tense"].endswith("  0%")
    assert all(cell_len(line) <= 80 for line in lines)
    everything = [t.plain for t in scan_summary(report, seconds=1, width=80, verbose=True)]
    assert sum("✗" in line for line in everything) == 4 and "more" not in "".join(everything)
    assert "  ✗ /music/broken 3.mp3: not a decodable audio file" in everything


def test_a_long_failure_keeps_its_path_readable() -> None:
    report = ScanReport(total=1, failed={"/a/" + "x" * 200 + ".mp3": "reason " * 30})
    line = scan_summary(report, seconds=1, width=80)[1]
    console = Console(width=80, file=io.StringIO(), color_system=None)
    print_lines(console, line)
    shown = console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]
    assert "\n" not in shown and cell_len(shown) <= 80
    assert shown.startswith("  ✗ /a/xxxxxxxx") and ".mp3: reason" in shown


def test_progress_label_has_a_fixed_width() -> None:
    for name in ("a.mp3", LONG_NAME, "音楽" * 30):
        assert cell_len(progress_label(name)) == LABEL_WIDTH
    assert progress_label(LONG_NAME).endswith("150_1.flac")
    assert interrupted_message(3, 10).startswith("interrupted after 3 of 10 files.\n")
    assert all(len(line) <= 80 for line in interrupted_message(999, 1000).splitlines())


def test_piped_output_has_no_control_codes(clean_env: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    console = make_console(file=out)
    assert not console.is_terminal
    console.print(results_table(ROWS, width=console.width))
    with progress_bar(console) as bar:  # drawn only on terminals
        bar.add_task(progress_label("x.mp3"), total=2, completed=1)
    text = out.getvalue()
    assert "\x1b" not in text and "files/s" not in text
    assert "happy.wav" in text and "😄 happy" in text


def test_terminal_output_is_coloured_unless_no_color(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TTY_COMPATIBLE", "1")  # rich: treat this file as a terminal
    coloured = io.StringIO()
    make_console(file=coloured).print(results_table(ROWS, width=80))
    assert COLOUR.search(coloured.getvalue())  # the check below can see colours
    clean_env.setenv("NO_COLOR", "1")
    plain = io.StringIO()
    console = make_console(file=plain)
    console.print(results_table(ROWS, width=80))
    assert console.is_terminal and not COLOUR.search(plain.getvalue())
    assert [ANSI.sub("", line) for line in plain.getvalue().splitlines()] == render(
        results_table(ROWS, width=80))


def test_names_are_printed_as_they_are(clean_env: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    odd = "[bold]live[/bold] :smile: 1.5.mp3"
    row = ResultRow(odd, result(odd, (0.4, 0.3, 0.2, 0.1)), "local")
    make_console(file=out).print(results_table([row], width=80))
    assert odd in out.getvalue()
