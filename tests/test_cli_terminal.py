"""The real `mer` commands in a real 80x24 pseudo-terminal, read back as a screen.

Each command runs as a newcomer would run it (a terminal, colours, progress bars), with the
tiny test models, synthetic audio and its own database. What it writes is replayed through a
small terminal model (cursor moves, line erases, automatic wrap at 80 columns), so a row
that wraps, or a progress bar whose count falls off the screen, fails the test.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.cells import cell_len

from tests.synth import SR, mood_clip

pexpect = pytest.importorskip("pexpect", reason="pexpect drives the pseudo-terminal (dev extra)")

MER = Path(sys.executable).with_name("mer")
WIDTH, HEIGHT = 80, 24
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])[;m]")
MOODS = ("happy", "tense", "sad", "calm")
LONG_NAME = ("The Extremely Long-Named Orchestra and Friends - A Piece Whose Title Goes On "
             "and On (Live at the Very Long Hall, Second Night) [Remaster] - 150")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not MER.exists(),
                                reason="needs a Linux pseudo-terminal and the mer script")


def screen(raw: str, width: int = WIDTH) -> list[str]:
    """The lines a terminal ``width`` columns wide shows after receiving ``raw``.

    Handles what rich and the terminal driver send: text (wrapping at the last column),
    CR, LF, cursor up/down/column, erase in line, and SGR/mode codes (ignored).
    """
    rows: dict[int, list[str]] = {}
    row = col = 0

    def line(r: int) -> list[str]:
        return rows.setdefault(r, [" "] * width)

    pos = 0
    while pos < len(raw):
        match = CSI.match(raw, pos)
        if match:
            params, command = match.groups()
            n = int(params) if params.isdigit() else None
            if command == "A":
                row = max(0, row - (n or 1))
            elif command == "B":
                row += n or 1
            elif command == "G":
                col = (n or 1) - 1
            elif command == "K":
                cells = line(row)
                start, end = {0: (col, width), 1: (0, col + 1), 2: (0, width)}[n or 0]
                cells[start:end] = [" "] * (end - start)
            pos = match.end()
            continue
        char = raw[pos]
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
        elif char >= " ":
            size = cell_len(char)
            if size == 0:  # a combining mark or variation selector joins the previous cell
                cells = line(row)
                cells[max(0, col - 1)] += char
                continue
            if col + size > width:  # the terminal wraps: what rich must never make it do
                row, col = row + 1, 0
            cells = line(row)
            cells[col] = char
            if size == 2:
                cells[col + 1] = ""
            col += size
    last = max(rows, default=-1)
    return ["".join(rows.get(r, [])).rstrip() for r in range(last + 1)]


def run(args: list[str], env: dict[str, str], cwd: Path, *, timeout: float = 90
        ) -> tuple[int, str, list[str]]:
    """Run ``mer args`` in an 80x24 pseudo-terminal; (exit status, raw output, screen)."""
    child = pexpect.spawn(str(MER), args, env=env, cwd=str(cwd), dimensions=(HEIGHT, WIDTH),
                          encoding="utf-8", codec_errors="replace", timeout=timeout)
    child.expect(pexpect.EOF)
    raw = child.before
    child.close()
    return child.exitstatus, raw, screen(raw)


def interrupt(args: list[str], env: dict[str, str], cwd: Path, *, after: str,
              wait: float = 0.0) -> tuple[int, str, list[str]]:
    """Run ``mer args`` in the pseudo-terminal and press Ctrl-C ``wait`` s after ``after``."""
    child = pexpect.spawn(str(MER), args, env=env, cwd=str(cwd), dimensions=(HEIGHT, WIDTH),
                          encoding="utf-8", codec_errors="replace", timeout=120)
    if child.expect([after, pexpect.EOF]) == 1:
        pytest.fail(f"never showed {after!r}: {screen(child.before)}")
    raw = child.before + child.after
    time.sleep(wait)
    child.sendintr()
    child.expect(pexpect.EOF)
    raw += child.before
    child.close()
    return child.exitstatus, raw, screen(raw)


def table_rows(lines: list[str], header: str) -> list[str]:
    """The lines of a results table: after its header's rule, before the legend."""
    start = next(i for i, text in enumerate(lines) if text.startswith(header))
    assert set(lines[start + 1]) == {"─"}, lines[start: start + 2]
    rows = []
    for text in lines[start + 2:]:
        if text.startswith("val. valence"):
            return rows
        rows.append(text)
    raise AssertionError(f"no legend after the table: {lines}")


@pytest.fixture
def env(tmp_path: Path, tiny_models_dir: Path) -> dict[str, str]:
    """A newcomer's terminal: colours allowed, nothing forced; tiny models, own database."""
    keep = {k: v for k, v in os.environ.items()
            if k not in {"NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                         "COLUMNS", "LINES", "PYTHONPATH"} and not k.startswith("MER_")}
    return {**keep, "TERM": "xterm-256color", "LANG": "C.UTF-8",
            "MER_DATA_DIR": str(tmp_path / "data"), "MER_MODELS_DIR": str(tiny_models_dir),
            "MER_WORKERS": "1"}


def write_clips(folder: Path, names: list[str], *, seconds: float = 4.0, sr: int = SR,
                **kwargs: object) -> list[Path]:
    """One synthetic clip per name, cycling through the quadrants."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        clip = mood_clip(("Q1", "Q2", "Q3", "Q4")[i % 4], seconds=seconds, seed=i)
        path = folder / name
        sf.write(path, np.asarray(clip), sr, **kwargs)
        paths.append(path)
    return paths


def test_classify_is_one_row_per_input_at_80_columns(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    write_clips(tmp_path / "music", ["first.wav", f"{LONG_NAME}.wav", "third.wav"])
    paths = ["music/first.wav", f"music/{LONG_NAME}.wav", "music/third.wav"]
    status, raw, lines = run(["classify", *paths], env, tmp_path)
    assert status == 0, lines
    rows = table_rows(lines, "track")
    assert len(rows) == 3, lines
    assert all(cell_len(text) <= WIDTH for text in lines)
    assert rows[0].startswith("music/first.wav ") and rows[2].startswith("music/third.wav ")
    name = rows[1].split("  ")[0]
    assert name.startswith("music/The Ext") and name.endswith("- 150.wav") and "…" in name
    for text in rows:
        assert sum(f" {mood} " in text for mood in MOODS) >= 2, text  # mood and runner-up
        assert text.rstrip().endswith("local")
    assert COLOUR.search(raw), "a terminal gets colours"
    assert "Traceback" not in raw


def test_demo_is_one_row_per_track_and_honours_no_color(tmp_path: Path,
                                                         env: dict[str, str]) -> None:
    # A stand-in for the demo package, first on the path: folders named after moods.
    tracks = tmp_path / "tracks"
    for folder in ("calm", "energetic"):
        write_clips(tracks / folder, [f"{folder}_one.opus", f"{folder} {LONG_NAME}.opus"],
                    sr=24_000, format="OGG", subtype="OPUS")
    package = tmp_path / "fake" / "immich_memories_music"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"from pathlib import Path\n\n\ndef tracks_dir():\n    return Path({str(tracks)!r})\n")
    status, raw, lines = run(["demo"], {**env, "PYTHONPATH": str(package.parent),
                                        "NO_COLOR": "1"}, tmp_path)
    assert status == 0, lines
    assert not COLOUR.search(raw), "NO_COLOR: no colours, even in a terminal"
    assert any(text.startswith("Demo library") for text in lines)
    rows = table_rows(lines, "file")
    assert len(rows) == 4, lines
    assert all(cell_len(text) <= WIDTH for text in lines)
    assert [text.split()[-1] for text in rows] == ["calm", "calm", "energetic", "energetic"]
    assert rows[0].startswith("calm The Ext") and rows[1].startswith("calm_one.opus")
    assert "150.opus" in rows[0] and "…" in rows[0]
    assert "Traceback" not in raw


def test_scan_shows_progress_stops_on_ctrl_c_and_resumes(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    total = 24
    library = tmp_path / "library"
    write_clips(library, [f"song {i:02d} of a fairly long album name.wav" for i in range(total)],
                seconds=3.5)

    # Ctrl-C while the two worker processes start: it reaches them too (the terminal signals
    # the whole process group), and must not make each print a KeyboardInterrupt traceback.
    status, raw, lines = interrupt(["scan", str(library), "--workers", "2"], env, tmp_path,
                                   after="finding files", wait=1.0)
    assert status == 130, lines
    assert "Traceback" not in raw and "KeyboardInterrupt" not in raw, raw[-3000:]
    assert any(text.startswith("interrupted") for text in lines), lines

    # Ctrl-C once files are done: it says how far it got, and what it stored stays.
    status, raw, lines = interrupt(["scan", str(library)], env, tmp_path,
                                   after=rf"\b[1-9]\d*/{total}\b")
    assert status == 130, lines
    stopped = [i for i, text in enumerate(lines) if text.startswith("interrupted")]
    assert len(stopped) == 1, lines
    done = int(re.fullmatch(rf"interrupted after (\d+) of {total} files\.",
                            lines[stopped[0]]).group(1))
    assert 0 < done < total, lines
    assert "the same mer scan resumes" in lines[stopped[0] + 1]
    assert "KeyboardInterrupt" not in raw

    (library / "notes.mp3").write_text("not audio\n" * 50)
    total += 1
    status, raw, lines = run(["scan", str(library)], env, tmp_path)
    assert status == 1, lines  # notes.mp3 is not audio
    assert "Traceback" not in raw
    bar = [text for text in lines if f"{total}/{total}" in text]
    assert bar, lines
    assert "files/s" in bar[-1] and re.search(r"\d:\d\d:\d\d$", bar[-1]), bar[-1]
    assert all(cell_len(text) <= WIDTH for text in lines)
    summary = next(text for text in lines if text.startswith(f"{total} files in "))
    counts = re.search(r"(\d+) classified, (\d+) unchanged, 1 failed", summary)
    assert counts, lines
    classified, unchanged = map(int, counts.groups())
    assert unchanged >= done and classified + unchanged == total - 1, summary
    assert any("✗" in text and "notes.mp3: not a decodable audio file" in text
               for text in lines)
    assert f"Mood mix of the {total - 1} files with a mood:" in lines
    mix = lines[lines.index(f"Mood mix of the {total - 1} files with a mood:") + 1:][:4]
    assert [text.split()[1] for text in mix] == list(MOODS)
