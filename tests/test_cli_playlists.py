"""`mer recommend`, `mer journey -o`, `mer stats --plot` on a small scanned library."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import soundfile as sf
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from tests.synth import SR, mood_clip

runner = CliRunner()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path
            ) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("lib")
    music = root / "music"
    music.mkdir()
    for i in range(12):
        sf.write(music / f"Artist {i} - Song {i}.wav",
                 mood_clip(f"Q{i % 4 + 1}", seconds=6.0, seed=300 + i), SR)
    env = {"MER_DATA_DIR": str(root / "data"), "MER_MODELS_DIR": str(tiny_models_dir),
           "MER_WORKERS": "1"}
    get_settings.cache_clear()
    result = runner.invoke(app, ["scan", str(music)], env=env)
    assert result.exit_code == 0, result.output
    yield {**env, "MUSIC": str(music)}
    get_settings.cache_clear()


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    result = runner.invoke(app, list(args), env={k: v for k, v in env.items() if k != "MUSIC"})
    return result.exit_code, result.stdout, result.stderr


def test_recommend_a_mood_as_json(scanned: dict[str, str]) -> None:
    code, out, err = _run(scanned, "recommend", "--mood", "Q2", "-n", "3", "--json")
    assert code == 0, err
    picks = json.loads(out)
    assert 1 <= len(picks) <= 3 and all(p["quadrant"] == "Q2" for p in picks)
    assert len({p["artist"] for p in picks}) == len(picks)  # one track per artist
    assert all(p["reason"].startswith("tense") and Path(p["location"]).is_file()
               for p in picks)


def test_recommend_like_a_file(scanned: dict[str, str]) -> None:
    seed = sorted(Path(scanned["MUSIC"]).iterdir())[0]
    code, out, err = _run(scanned, "recommend", "--like", str(seed), "-n", "4", "--json")
    assert code == 0, err
    picks = json.loads(out)
    assert picks and str(seed) not in {p["location"] for p in picks}


def test_journey_writes_a_playlist_a_player_opens(scanned: dict[str, str],
                                                   tmp_path: Path) -> None:
    playlist = tmp_path / "j.m3u8"
    code, _, err = _run(scanned, "journey", "--from", "sad", "--to", "happy",
                          "--steps", "4", "-o", str(playlist))
    assert code == 0, err
    lines = playlist.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 1 + 2 * 4
    for info, location in zip(lines[1::2], lines[2::2], strict=True):
        assert info.startswith("#EXTINF:6,Artist ")
        assert not Path(location).is_absolute()
        assert (playlist.parent / location).resolve().is_file()
    xspf = tmp_path / "j.xspf"
    code, _, err = _run(scanned, "journey", "--from", "sad", "--to", "happy", "--steps", "4",
                        "--route", "circumplex", "-o", str(xspf))
    assert code == 0, err
    tracks = ET.parse(xspf).getroot().findall(".//{http://xspf.org/ns/0/}track")
    assert len(tracks) == 4
    code, _, err = _run(scanned, "journey", "--from", "sad", "--to", "happy", "-o",
                        str(tmp_path / "j.txt"))
    assert code == 1 and "unknown playlist format" in err


def test_stats_draws_the_library(scanned: dict[str, str], tmp_path: Path) -> None:
    chart = tmp_path / "lib.png"
    code, out, err = _run(scanned, "stats", "--plot", str(chart), "--journey-from", "sad")
    assert code == 0, err
    assert out.startswith("12 tracks: ")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_an_empty_library_is_one_clear_line(tmp_path: Path, tiny_models_dir: Path) -> None:
    env = {"MER_DATA_DIR": str(tmp_path), "MER_MODELS_DIR": str(tiny_models_dir)}
    code, _, err = _run(env, "recommend", "--mood", "calm")
    assert code == 1 and err.startswith("error: the library is empty")
    assert err.count("\n") == 1


def test_recommend_leaves_out_what_it_suggested_before(scanned: dict[str, str],
                                                        tmp_path: Path) -> None:
    # A copy of the scanned library with an empty history (other tests suggested from it).
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(Path(scanned["MER_DATA_DIR"]) / "mood.db", data / "mood.db")
    with sqlite3.connect(data / "mood.db") as db:
        db.execute("DELETE FROM track_events")
    env = {**scanned, "MER_DATA_DIR": str(data)}

    def ids(*args: str) -> list[int]:
        code, out, err = _run(env, "recommend", *args, "--json")
        assert code == 0, err
        return [p["track_id"] for p in json.loads(out)]

    def events() -> int:
        with sqlite3.connect(data / "mood.db") as db:
            return int(db.execute("SELECT count(*) FROM track_events WHERE scope = 'cli'")
                       .fetchone()[0])

    mood = next(q for q in ("Q1", "Q2", "Q3", "Q4")
                if len(ids("--mood", q, "-n", "12", "--no-history")) >= 2)
    assert events() == 0  # --no-history remembers nothing
    first, second = ids("--mood", mood, "-n", "1"), ids("--mood", mood, "-n", "1")
    assert len(first) == len(second) == 1 and first != second
    assert events() == 2
    assert ids("--mood", mood, "-n", "1", "--no-history") == first  # the history is ignored
