"""The `mer` command line: JSON contract, table, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()
JSON_KEYS = {"input", "mood", "quadrant", "probabilities", "valence", "arousal", "confidence",
             "windows", "models", "elapsed_ms"}


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
    assert errors[1] == f"error: {missing}: no such file"
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
    assert all(len(c["sha256"]) == 64 for c in cards)


@pytest.mark.parametrize("args", [["classify"], ["classify", "x.mp3", "--windows", "0"]])
def test_usage_errors(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
