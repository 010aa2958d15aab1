"""``python -m train <stage>``: cldnn, ensemble, reference, fuse, robustness, evaluate,
reproduce-seed, all, models (and ship, convert-musicnn, convert-sklearn).

``models`` trains the fused models only, into a run directory, and ships nothing: it is what
``/mood-admin retrain`` runs in a child process before gating and installing the result.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TimeRemainingColumn

from train.data import DEFAULT_CACHE_DIR, DEFAULT_DATA_ROOT, DataMissingError

app = typer.Typer(help="Train, evaluate and ship the mood models.", no_args_is_help=True,
                  add_completion=False)
console = Console()
DEFAULT_RUN = Path(__file__).resolve().parents[1] / "runs" / "latest"

DataOpt = Annotated[Path, typer.Option("--data", help="Folder holding 4q/ and spotify/.")]
RunOpt = Annotated[Path, typer.Option("--run", help="Run directory (metrics, PNGs, models).")]
FeedbackOpt = Annotated[Path | None, typer.Option(
    "--feedback", help="CSV of /mood-admin feedback-export: the users' clips join the training "
                       "folds (never a held-out one) and the final models.")]
MinVotesOpt = Annotated[int, typer.Option(
    "--feedback-min-votes", min=1, help="Answers a feedback track's voted quadrant needs.")]


def _data(root: Path, cache: Path = DEFAULT_CACHE_DIR):  # type: ignore[no-untyped-def]
    from train.pipeline import load_data

    with Progress("[progress.description]{task.description}", BarColumn(),
                  "{task.completed}/{task.total}", TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("features (decoded once, then cached)", total=None)
        try:
            data = load_data(root, cache_dir=cache, progress=lambda done, total: progress.update(
                task, completed=done, total=total))
        except DataMissingError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
        progress.update(task, total=len(data.clips), completed=len(data.clips))
        return data


def _with_feedback(d, path: Path | None, min_votes: int,  # type: ignore[no-untyped-def]
                   cache: Path = DEFAULT_CACHE_DIR):
    from train.feedback import FeedbackFileError
    from train.pipeline import with_feedback

    if path is None:
        return d
    try:
        d = with_feedback(d, path, min_votes=min_votes, cache_dir=cache)
    except FeedbackFileError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"feedback: {len(d.feedback)} of {d.feedback.n_rows} tracks used for "
                  f"training, {len(d.feedback.skipped)} skipped (reasons in the log)")
    return d


def _device(gpu: bool) -> str:
    import torch

    return "cuda" if gpu and torch.cuda.is_available() else "cpu"


def _config(device: str, epochs: int | None):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from train.cldnn_train import CPU_CONFIG, GPU_CONFIG

    cfg = GPU_CONFIG if device == "cuda" else CPU_CONFIG
    return replace(cfg, epochs=epochs) if epochs else cfg


@app.command()
def ensemble(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
             feedback: FeedbackOpt = None, feedback_min_votes: MinVotesOpt = 1) -> None:
    """Stacking ensemble: grid search on the artist-disjoint folds, final model on all clips."""
    from train.pipeline import run_ensemble

    run.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    m = run_ensemble(_with_feedback(_data(data), feedback, feedback_min_votes), run)
    console.print(f"ensemble: macro-F1 {m['macro_f1_mean']:.3f} ± {m['macro_f1_std']:.3f} "
                  f"({time.perf_counter() - start:.0f} s) best {m['best_params']}")


@app.command()
def cldnn(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
          gpu: Annotated[bool, typer.Option(help="Use CUDA when present.")] = True,
          epochs: Annotated[int | None, typer.Option(help="Override the epoch count.")] = None,
          feedback: FeedbackOpt = None, feedback_min_votes: MinVotesOpt = 1) -> None:
    """CLDNN: 5-fold cross-validation, then the final model, exported to ONNX."""
    from train.pipeline import run_cldnn

    run.mkdir(parents=True, exist_ok=True)
    device = _device(gpu)
    start = time.perf_counter()
    m = run_cldnn(_with_feedback(_data(data), feedback, feedback_min_votes), run,
                  _config(device, epochs), device=device)
    console.print(f"CLDNN on {device}: macro-F1 {m['macro_f1_mean']:.3f} ± "
                  f"{m['macro_f1_std']:.3f} ({time.perf_counter() - start:.0f} s)")


@app.command()
def reference(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN) -> None:
    """SVM on the dataset authors' top-100 features, on the same folds."""
    from train.pipeline import run_reference

    run.mkdir(parents=True, exist_ok=True)
    m = run_reference(_data(data), run, data)
    console.print(f"reference SVM: macro-F1 {m['macro_f1_mean']:.3f} ± {m['macro_f1_std']:.3f}")


@app.command()
def fuse(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN) -> None:
    """Choose fusion weights on out-of-fold probabilities; record them in the cards."""
    from train.pipeline import run_fusion

    m = run_fusion(_data(data), run)
    console.print(f"fused (weights {m['weights']}): macro-F1 "
                  f"{m['macro_f1_mean']:.3f} ± {m['macro_f1_std']:.3f}")
    for subset, s in m["subsets"].items():
        console.print(f"  {subset}: macro-F1 {s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}")


@app.command()
def musicnn(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
            augment: Annotated[bool, typer.Option(
                help="Add MP3/Opus/AAC re-encodings and gain changes to the training folds."
            )] = False, feedback: FeedbackOpt = None,
            feedback_min_votes: MinVotesOpt = 1,
            version: Annotated[str, typer.Option(
                help="Version written into the head's card and file names.")] = "1",
            layout: Annotated[str, typer.Option(
                help="serving: MSD+MTT on 5 windows x 2 patches (shipped); fast: MSD on the "
                     "3 serving windows x 1 patch (the first head: 6x cheaper, 0.752 fused)."
            )] = "serving") -> None:
    """Head on the musicnn embedding: cross-validation, then the final head with its card."""
    from train.musicnn_head import FAST_LAYOUT, SERVING_LAYOUT, run_musicnn
    from train.pipeline import SERVING, TRAINING_DATA

    layouts = {"serving": SERVING_LAYOUT, "fast": FAST_LAYOUT}
    if layout not in layouts:
        raise typer.BadParameter(f"--layout must be one of {', '.join(layouts)}, got {layout!r}")

    run.mkdir(parents=True, exist_ok=True)
    d = _with_feedback(_data(data), feedback, feedback_min_votes)
    m = run_musicnn(d.labels, d.folds, [c.song_id for c in d.clips], run, root=data,
                    analysis=SERVING, training=TRAINING_DATA, augment=augment,
                    feedback=d.feedback, version=version, layout=layouts[layout])
    console.print(f"musicnn head: macro-F1 {m['macro_f1_mean']:.3f} ± "
                  f"{m['macro_f1_std']:.3f}, final {m['final_params']}")


@app.command()
def robustness(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN) -> None:
    """Re-encode the held-out fold 4 (MP3 128k stereo 44.1 kHz, Opus 96k) and re-score it."""
    from train.pipeline import run_robustness

    for name, r in run_robustness(_data(data), run, root=data).items():
        console.print(f"{name:28s} fused macro-F1 {r['fused']['macro_f1']:.3f}")


@app.command()
def evaluate(run: RunOpt = DEFAULT_RUN,
             out: Annotated[Path, typer.Option(help="Report to write.")] = Path(
                 "docs/MODEL_REPORT.md")) -> None:
    """Write the model report from a run directory's metrics."""
    from train.report import write_report

    write_report(run, out)
    console.print(f"wrote {out}")


@app.command("reproduce-seed")
def reproduce_seed(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
                   out: Annotated[Path, typer.Option(help="Report to write.")] = Path(
                       "docs/REPRODUCTION.md")) -> None:
    """Reproduce the 2021 seed report on its Spotify-feature table; save the Spotify model."""
    from train import seed_report

    table = data / "spotify" / "seed_moods.csv"
    seed_report.main(["--data", str(table), "--out", str(out)])
    card = seed_report.save_spotify_model(run / "models", table)
    console.print(f"Spotify-feature model: {card}")


@app.command()
def ship(run: RunOpt = DEFAULT_RUN) -> None:
    """Copy a run's verified models into mer_models/weights."""
    from train.pipeline import ship as ship_models

    for path in ship_models(run):
        console.print(f"shipped {path}")


@app.command("convert-musicnn")
def convert_musicnn(
    out: Annotated[Path, typer.Option(help="Folder of the ONNX files and cards.")] = Path(
        "mer_models/weights"),
    venv: Annotated[Path, typer.Option(help="Throwaway virtualenv with TensorFlow.")] = Path(
        ".cache/musicnn-convert-venv"),
) -> None:
    """Convert musicnn's checkpoints (PyPI wheel) to ONNX with cards; TensorFlow stays in venv."""
    from train import musicnn_convert

    for card in musicnn_convert.convert(out, venv, fixture=musicnn_convert.DEFAULT_FIXTURE,
                                        work=musicnn_convert.DEFAULT_WORK):
        console.print(f"wrote {card}")


@app.command("convert-sklearn")
def convert_sklearn(
    models_dir: Annotated[Path, typer.Option(
        "--models-dir", help="Folder of model cards and .skops artifacts.")] = Path(
        "mer_models/weights"),
) -> None:
    """Convert a folder's .skops models to ONNX in place and list the files in their cards."""
    from mer_models.errors import MerError
    from train.export import convert_folder

    try:
        converted = convert_folder(models_dir)
    except MerError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    for c in converted:
        console.print(f"wrote {c.onnx} (max |Δp| {c.max_abs_difference:.2g}), updated {c.card}")
    if not converted:
        console.print(f"{models_dir}: no .skops model to convert")


@app.command("cldnn-pack")
def cldnn_pack(data: DataOpt = DEFAULT_DATA_ROOT,
               out: Annotated[Path, typer.Option(help="Pack file to write (git-ignored).")] =
               Path(".cache/cldnn-pack/pack.npz"),
               quality: Annotated[int, typer.Option(
                   min=50, max=100, help="JPEG quality (85: the 4Q pack fits a lent "
                                         "machine's 64 MiB beside the repository).")] = 85
               ) -> None:
    """Pack the CLDNN's training windows for a machine with torch alone (a lent GPU): see
    ``train/cldnn_pack.py``; train there with ``python -m train.cldnn_pack PACK --out DIR``."""
    from train.cldnn_pack import write_pack

    info = write_pack(_data(data), out, quality=quality)
    console.print(f"{out}: {info['windows']} windows ({info['codec_windows']} re-encoded), "
                  f"{info['bytes'] / 2**20:.1f} MiB")


@app.command("cldnn-import")
def cldnn_import(results: Annotated[Path, typer.Argument(
                     help="Folder of the checkpoints and summary.json that "
                          "python -m train.cldnn_pack wrote.")],
                 variant: Annotated[str, typer.Option(help="Which trained variant.")] =
                 "augmented",
                 data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
                 version: Annotated[str, typer.Option(help="Model version.")] = "1") -> None:
    """Score checkpoints trained elsewhere on the exact cached windows, then export and card
    the final model into --run, like ``python -m train cldnn``."""
    from train.pipeline import import_cldnn

    run.mkdir(parents=True, exist_ok=True)
    try:
        m = import_cldnn(_data(data), run, results, variant, version=version)
    except (FileNotFoundError, KeyError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"CLDNN ({variant}, trained on {m['trained_on']}): macro-F1 "
                  f"{m['macro_f1_mean']:.3f} ± {m['macro_f1_std']:.3f}")


@app.command("all")
def all_(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
         gpu: Annotated[bool, typer.Option(help="Use CUDA when present.")] = True,
         feedback: FeedbackOpt = None, feedback_min_votes: MinVotesOpt = 1) -> None:
    """Everything: ensemble, CLDNN, musicnn head, reference, fusion, robustness, report, seed
    report, ship. ``--feedback`` trains the fused models on the users' clips too."""
    ensemble(data, run, feedback, feedback_min_votes)
    cldnn(data, run, gpu, None, feedback, feedback_min_votes)
    musicnn(data, run, False, feedback, feedback_min_votes)
    reference(data, run)
    fuse(data, run)
    robustness(data, run)
    evaluate(run, Path("docs/MODEL_REPORT.md"))
    reproduce_seed(data, run, Path("docs/REPRODUCTION.md"))
    ship(run)


@app.command("models")
def models(data: DataOpt = DEFAULT_DATA_ROOT, run: RunOpt = DEFAULT_RUN,
           version: Annotated[str, typer.Option(
               help="Version written into the models' cards and file names.")] = "1",
           cache: Annotated[Path, typer.Option(
               help="Folder of the decoded-feature cache.")] = DEFAULT_CACHE_DIR,
           gpu: Annotated[bool, typer.Option(help="Use CUDA when present.")] = True,
           tiny: Annotated[bool, typer.Option(
               help="Smoke test in seconds: the ensemble alone (one grid point, 10 trees), "
                    "no CLDNN, no musicnn head, no fusion. Not for serving.")] = False,
           feedback: FeedbackOpt = None, feedback_min_votes: MinVotesOpt = 1,
           ) -> None:
    """The fused models only (ensemble, CLDNN, musicnn head, fusion weights) into --run:
    no report, nothing shipped. What /mood-admin retrain runs."""
    from train.musicnn_head import run_musicnn
    from train.pipeline import SERVING, TRAINING_DATA, run_cldnn, run_ensemble, run_fusion

    run.mkdir(parents=True, exist_ok=True)
    d = _with_feedback(_data(data, cache), feedback, feedback_min_votes, cache)
    console.print("stage: ensemble")
    grid: dict[str, list[Any]] | None = {
        "pca__n_components": [0.95], "stack__svm__C": [1.0],
        "stack__forest__n_estimators": [10]} if tiny else None
    m = run_ensemble(d, run, version=version, n_jobs=1 if tiny else 2, grid=grid)
    console.print(f"ensemble: macro-F1 {m['macro_f1_mean']:.3f}")
    if tiny:
        return
    console.print("stage: CLDNN")
    device = _device(gpu)
    m = run_cldnn(d, run, _config(device, None), device=device, version=version)
    console.print(f"CLDNN on {device}: macro-F1 {m['macro_f1_mean']:.3f}")
    console.print("stage: musicnn head")
    m = run_musicnn(d.labels, d.folds, [c.song_id for c in d.clips], run, root=data,
                    analysis=SERVING, training=TRAINING_DATA, version=version, augment=False,
                    feedback=d.feedback)
    console.print(f"musicnn head: macro-F1 {m['macro_f1_mean']:.3f}")
    console.print("stage: fusion")
    m = run_fusion(d, run)
    console.print(f"fused (weights {m['weights']}): macro-F1 {m['macro_f1_mean']:.3f}")


def main() -> None:
    """Entry point with rich logging."""
    logging.basicConfig(level=logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    app()


if __name__ == "__main__":
    main()
