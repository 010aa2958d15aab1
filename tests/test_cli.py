"""The `mer` command line: JSON contract, table, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings
from tests.tiny_models import reweighted_copy

runner = CliRunner()
JSON_KEYS = {"input", "mood", "quadrant", "probabilities", "valence", "arousal", "confidence",
             "windows", "models", "elapsed_ms", "track"}


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own database (created on first use) and settings."""
    monkeypatch.setenv("MER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MER_WORKERS", "1")
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_json_contract(tiny_models_dir: Path, mood_files: dict[str, Path]) -> None:
    paths = [str(mood_files[q]) for q in ("Q1", "Q3")]
    result = runner.invoke(app, ["classify", *paths, "--json", "--models", str(tiny_models_dir)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [obj["input"] for obj in lines] == paths
    for obj in lines:
        assert set(obj) == JSON_KEYS
        assert set(obj["probabilities"]) == {"Q1", "Q2", "Q3", "Q4"}
        assert obj["mood"] in {"happy", "tense", "sad", "calm"}
        assert obj["quadrant"] == max(obj["probabilities"], key=obj["probabilities"].get)
        assert obj["models"] == {"cldnn": "mood-4q-cldnn-test",
                                 "ensemble": "mood-4q-ensemble-test"}
        assert len(obj["windows"]) == 3
        assert all(set(w["probabilities"]) == {"Q1", "Q2", "Q3", "Q4"} for w in obj["windows"])
        assert obj["elapsed_ms"] > 0
        assert obj["track"]["provider"] == "local" and obj["track"]["cached"] is False


def test_bad_input_is_reported_and_others_still_run(tiny_models_dir: Path,
                                                    mood_files: dict[str, Path],
                                                    tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("just some text\n" * 50)
    missing = tmp_path / "missing.flac"
    good = str(mood_files["Q2"])
    result = runner.invoke(app, ["classify", str(text), good, str(missing), "--json",
                                 "--models", str(tiny_models_dir)])
    assert result.exit_code == 1
    assert [json.loads(line)["input"] for line in result.stdout.splitlines()] == [good]
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith(f"error: {text}: not a decodable audio file")
    assert errors[1].startswith(f"error: {missing}: no such file")
    assert "Traceback" not in result.output


def test_table_output(tiny_models_dir: Path, mood_files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["classify", str(mood_files["Q4"]),
                                 "--models", str(tiny_models_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "valence" in result.stdout and "Q4.wav" in result.stdout


def test_no_models_gives_clean_error(tmp_path: Path, mood_files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["classify", str(mood_files["Q1"]), "--models", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "no trained models" in result.stderr
    assert "Traceback" not in result.output


def test_models_prints_cards(tiny_models_dir: Path) -> None:
    result = runner.invoke(app, ["models", "--json", "--models", str(tiny_models_dir)])
    assert result.exit_code == 0, result.output
    cards = json.loads(result.stdout)
    assert {c["kind"] for c in cards} == {"cldnn", "ensemble"}
    shipped = runner.invoke(app, ["models", "--json"])
    assert {c["kind"] for c in json.loads(shipped.stdout)} >= {"cldnn", "ensemble",
                                                             "spotify-ensemble"}
    assert all(len(c["sha256"]) == 64 for c in cards)


@pytest.mark.parametrize("args", [["classify"], ["classify", "x.mp3", "--windows", "0"]])
def test_usage_errors(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2


def test_settings_and_database_errors_are_one_line(tiny_models_dir: Path,
                                                    mood_files: dict[str, Path],
                                                    data_dir: Path) -> None:
    args = ["classify", str(mood_files["Q1"]), "--models", str(tiny_models_dir)]
    cases = {
        "MER_N_WINDOWS": ("zero", "invalid settings: MER_N_WINDOWS"),
        "MER_DATABASE_URL": ("postgresql+nosuchdriver://u:hunter2@db.test/mood", "database "),
    }
    for variable, (value, expected) in cases.items():
        get_settings.cache_clear()
        result = runner.invoke(app, args, env={variable: value})
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"error: {expected}"), result.stderr
        assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr
    get_settings.cache_clear()
    empty = runner.invoke(app, ["classify", "  "])
    assert empty.stderr.startswith("error:   : empty query")
    blocked = data_dir.parent / "blocked"
    blocked.write_text("a file where the data folder should be")
    get_settings.cache_clear()
    result = runner.invoke(app, args, env={"MER_DATA_DIR": str(blocked)})
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: database ")


def test_piped_table_is_plain_and_one_line_per_input(tiny_models_dir: Path,
                                                     mood_files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    long = tmp_path / ("a very long file name " * 7 + "end.wav")
    long.write_bytes(mood_files["Q2"].read_bytes())
    inputs = [str(mood_files["Q1"]), str(long)]
    result = runner.invoke(app, ["classify", *inputs, "--models", str(tiny_models_dir)],
                           env={"COLUMNS": "80", "NO_COLOR": None, "FORCE_COLOR": None})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout  # not a terminal: no colours, no progress bar
    assert lines[0].split() == ["track", "mood", "runner-up", "val.", "aro.", "source"]
    assert len(lines) == 2 + len(inputs) + 1 and lines[-1].startswith("val. valence")
    assert all(len(line) <= 80 for line in lines)
    assert lines[3].rstrip().endswith("local") and "end.wav" in lines[3] and "…" in lines[3]
    wide = runner.invoke(app, ["classify", *inputs, "--wide", "--models", str(tiny_models_dir)],
                         env={"COLUMNS": "120"})
    assert wide.stdout.splitlines()[0].split()[:6] == ["track", "mood", "Q1", "Q2", "Q3", "Q4"]


def test_scan_summary(tiny_models_dir: Path, mood_files: dict[str, Path],
                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for q in ("Q1", "Q3"):
        (library / f"{q}.wav").write_bytes(mood_files[q].read_bytes())
    (library / "broken.mp3").write_text("not audio\n" * 50)
    monkeypatch.setenv("MER_MODELS_DIR", str(tiny_models_dir))
    get_settings.cache_clear()
    result = runner.invoke(app, ["scan", str(library)], env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout and "files/s" not in result.stdout
    assert re.fullmatch(r"3 files in \d+\.\d s: 2 classified, 0 unchanged, 1 failed", lines[0])
    assert lines[1].startswith("  ✗ broken.mp3: not a decodable audio file")
    assert lines[2] == "Mood mix of the 2 files with a mood:"
    assert [line.split()[1] for line in lines[3:7]] == ["happy", "tense", "sad", "calm"]
    again = runner.invoke(app, ["scan", str(library)])
    assert "0 classified, 2 unchanged, 1 failed" in again.stdout


def test_db_prune_deletes_the_moods_of_models_no_longer_served(
        tiny_models_dir: Path, mood_files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for q in ("Q1", "Q3"):
        (library / f"{q}.wav").write_bytes(mood_files[q].read_bytes())
    reweighted = reweighted_copy(tiny_models_dir, tmp_path / "reweighted")
    for models in (tiny_models_dir, reweighted):  # new weights: the library again
        monkeypatch.setenv("MER_MODELS_DIR", str(models))
        get_settings.cache_clear()
        assert runner.invoke(app, ["scan", str(library)]).exit_code == 0
    dry = runner.invoke(app, ["db", "prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert lines[0].endswith(": 2 model sets with stored moods")
    assert lines[1].split()[:2] == ["live", "2"] and "*0.9" in lines[1]
    assert lines[2].split()[:2] == ["old", "2"] and "*0.9" not in lines[2]
    assert lines[3] == "would delete 2 predictions of 1 older model set (run without --dry-run)"
    pruned = runner.invoke(app, ["db", "prune"])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.splitlines()[2].split()[:2] == ["deleted", "2"]
    assert pruned.stdout.splitlines()[-1] == "deleted 2 predictions of 1 older model set"
    again = runner.invoke(app, ["db", "prune"])
    assert again.stdout.splitlines()[-1] == (
        "nothing to prune: every stored mood is the live models'")
    assert "0 classified, 2 unchanged" in runner.invoke(app, ["scan", str(library)]).stdout
    monkeypatch.setenv("MER_MODELS_DIR", str(tiny_models_dir))  # the old weights come back
    get_settings.cache_clear()
    assert "2 classified, 0 unchanged" in runner.invoke(app, ["scan", str(library)]).stdout


def test_db_prune_reports_a_database_it_cannot_open(monkeypatch: pytest.MonkeyPatch,
                                                    tiny_models_dir: Path) -> None:
    monkeypatch.setenv("MER_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.setenv("MER_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1:1/mood")
    get_settings.cache_clear()
    result = runner.invoke(app, ["db", "prune"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database ") and result.stderr.count("\n") == 1
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_models_table_fits_80_columns(tiny_models_dir: Path) -> None:
    result = runner.invoke(app, ["models", "--models", str(tiny_models_dir)],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "kind", "fusion", "macro-F1", "size"]
    assert sorted(line.split()[1] for line in lines[2:4]) == ["cldnn", "ensemble"]
    assert all(len(line) <= 80 for line in lines) and len(lines) == 6


# --- mer console, mer run ------------------------------------------------------------------------


@pytest.fixture
def delegated(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """What `mer console` and `mer run` hand to `python -m bot.discord` (not started here)."""
    import typer

    from bot.cli import console

    calls: list[tuple[str, ...]] = []

    def record(*args: str) -> None:
        calls.append(args)
        raise typer.Exit(code=0)

    monkeypatch.setattr(console, "delegate", record)
    return calls


def test_console_runs_the_discord_front_end_with_its_folder(
        delegated: list[tuple[str, ...]], tmp_path: Path) -> None:
    assert runner.invoke(app, ["console"]).exit_code == 0
    assert runner.invoke(app, ["console", "--out", str(tmp_path / "o")]).exit_code == 0
    assert delegated == [("console",), ("console", "--out", str(tmp_path / "o"))]


def test_run_with_a_token_is_the_bot(delegated: list[tuple[str, ...]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import library

    monkeypatch.setattr(library, "scan", lambda *a, **k: pytest.fail("scanned"))
    result = runner.invoke(app, ["run"], env={"MER_DISCORD_TOKEN": "a-token"})
    assert result.exit_code == 0, result.output
    assert delegated == [("run",)]


def test_run_without_a_token_scans_the_demo_library_then_opens_the_console(
        delegated: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    from immich_memories_music import tracks_dir

    from bot.cli import library

    scanned: list[Path] = []
    monkeypatch.setattr(library, "scan", lambda directory, **_: scanned.append(directory))
    result = runner.invoke(app, ["run"], env={"MER_DISCORD_TOKEN": ""})
    assert result.exit_code == 0, result.output
    assert scanned == [Path(tracks_dir())]
    assert sorted(p.parent.name for p in scanned[0].glob("*/*.opus"))[:1] == ["calm"]
    assert delegated == [("console",)]
    assert "No Discord token (MER_DISCORD_TOKEN)" in result.stderr


def test_run_without_the_demo_library_says_how_to_get_it(
        delegated: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "immich_memories_music", None)  # import fails
    result = runner.invoke(app, ["run"], env={"MER_DISCORD_TOKEN": ""})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == ("error: the demo library is not installed: "
                                              "pip install immich-memories-music")
    assert delegated == [] and "Traceback" not in result.output
