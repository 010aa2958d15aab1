"""The model admin: retrain behind the gate, atomic swap, rollback, status, reload.

The success path runs the real ``python -m train models --tiny`` on a synthetic stand-in for
the 4Q folder (the ensemble alone: seconds, not hours). A crash, a timeout, a worse model and
a wrong sha256 come from a small script that behaves like the training command would.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy import select

from bot.service import MoodService, ServiceError
from bot.service.models_admin import (
    BASE_SET,
    ModelAdmin,
    RetrainBusyError,
    gate,
    live_models_dir,
)
from bot.settings import Settings
from bot.storage.engine import create_engine, make_sessionmaker
from bot.storage.migrate import upgrade
from bot.storage.models import RetrainJob
from bot.storage.store import Store
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from tests.fakes.moodlib import OfflineResolver
from tests.synth import SR, mood_clip

#: The live (base) set's validation figures in these tests.
LIVE_FIGURES = {"cv_macro_f1_mean": 0.5, "cv_accuracy_mean": 0.5,
                "cv_valence_accuracy_mean": 0.6, "cv_arousal_accuracy_mean": 0.7}

#: Behaves like ``python -m train models``: ``fake_train.py MODE SOURCE F1 PIDFILE --run R
#: --version V``; MODE is crash, hang (with a child process), worse/good (an ensemble copied
#: from SOURCE whose card reports macro-F1 F1) or badhash (a card whose sha256 is wrong).
FAKE_TRAIN = r'''
import json, shutil, subprocess, sys, time
from pathlib import Path

mode, source, f1, pidfile = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rest = sys.argv[5:]
run, version = Path(rest[rest.index("--run") + 1]), rest[rest.index("--version") + 1]
print("stage: ensemble", flush=True)
if mode == "crash":
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "train/pipeline.py", line 90, in run_ensemble', file=sys.stderr)
    print("ValueError: no clips in fold 3", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    Path(pidfile).write_text(str(child.pid))
    for i in range(300):
        print(f"epoch {i}", flush=True)
        time.sleep(1)
for fold in range(5):
    print(f"fold {fold}: macro-F1 {f1}", flush=True)
models = run / "models"
models.mkdir(parents=True)
card = json.loads((source / "mood-4q-ensemble-test.json").read_text())
artifact = f"mood-4q-ensemble-{version}.skops"
shutil.copy(source / card["artifact"], models / artifact)
card.update(version=version, artifact=artifact, fusion_weight=1.0,
            metrics={"cv_macro_f1_mean": f1, "cv_accuracy_mean": f1,
                     "cv_valence_accuracy_mean": 0.9, "cv_arousal_accuracy_mean": 0.9})
if mode == "badhash":
    card["sha256"] = "0" * 64
(models / f"mood-4q-ensemble-{version}.json").write_text(json.dumps(card))
'''


def with_figures(source: Path, folder: Path, figures: dict[str, float]) -> Path:
    """A copy of a model folder whose cards report ``figures`` for their fusion."""
    shutil.copytree(source, folder)
    for path in folder.glob("*.json"):
        card = json.loads(path.read_text())
        card["metrics"] = {**card["metrics"], "fused": dict(figures)}
        path.write_text(json.dumps(card))
    return folder


def install_set(home: Path, source: Path, set_id: str, version: str) -> Path:
    """Put a set into a models home by hand (cards renamed to ``version``), made live."""
    folder = home / "sets" / set_id
    shutil.copytree(source, folder)
    for path in folder.glob("*.json"):
        card = json.loads(path.read_text())
        card["version"] = version
        path.write_text(json.dumps(card))
    (home / "live.json").write_text(json.dumps({"live": set_id, "previous": [BASE_SET]}))
    return folder


async def stopped(pid: int) -> bool:
    """Whether a process has ended (gone, or a zombie its new parent has not reaped yet)."""
    for _ in range(50):
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state == "Z":
            return True
        await asyncio.sleep(0.1)
    return False


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def fake_4q(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stand-in for ../shared/data: 4q/splits.csv and 40 six-second clips."""
    root = tmp_path_factory.mktemp("data")
    rows = []
    for q in ("Q1", "Q2", "Q3", "Q4"):
        (root / "4q" / "audio" / q).mkdir(parents=True)
        for fold in range(5):
            for i in range(2):  # the fewest the stacking's inner 5-fold CV and SMOTE accept
                song = f"MT{q}{fold}{i}"
                sf.write(root / "4q" / "audio" / q / f"{song}.mp3",
                         mood_clip(q, seconds=6.0, seed=1000 * int(q[1]) + 10 * fold + i),
                         SR, format="MP3")
                rows.append((song, q, f"artist {fold}-{i}", fold))
    with (root / "4q" / "splits.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "quadrant", "artist", "fold"])
        writer.writerows(rows)
    return root


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path}/mood.db"
    upgrade(url)
    engine = create_engine(url)
    yield Store(make_sessionmaker(engine))
    await engine.dispose()


@pytest.fixture
def base(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """The base ("shipped") set: the tiny models, reporting :data:`LIVE_FIGURES`."""
    return with_figures(tiny_models_dir, tmp_path / "shipped", LIVE_FIGURES)


@pytest.fixture
def fake_train(tmp_path: Path) -> Path:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return script


def fake_admin(store: Store, base: Path, script: Path, mode: str, *, f1: float = 0.9,
               **options: object) -> ModelAdmin:
    command = [sys.executable, str(script), mode, str(base), str(f1),
               str(base.parent / "child.pid")]
    return ModelAdmin(store, home=base.parent / "home", base_dir=base, command=command,
                      progress_every_s=0, **options)  # type: ignore[arg-type]


async def jobs(store: Store) -> list[RetrainJob]:
    async with store.sessions() as session:
        return list(await session.scalars(select(RetrainJob).order_by(RetrainJob.id)))


def service_on(store: Store, base: Path, admin: ModelAdmin) -> MoodService:
    return MoodService(store=store, resolver=OfflineResolver(),  # type: ignore[arg-type]
                       engine=MoodEngine(base, threads=1), models_admin=admin)


# --- the real training command ---------------------------------------------------------------


async def test_real_training_goes_live_then_rolls_back(
        store: Store, base: Path, fake_4q: Path, tmp_path: Path,
        mood_files: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "train", "models", "--tiny", "--data", str(fake_4q),
               "--cache", str(tmp_path / "cache")]
    admin = ModelAdmin(store, home=tmp_path / "home", base_dir=base, command=command,
                       timeout_s=300, progress_every_s=0)
    service = service_on(store, base, admin)
    shipped = digests(base)
    lines: list[str] = []

    async def progress(line: str) -> None:
        lines.append(line)

    result = await service.retrain_models(requested_by="test", progress=progress)

    assert result.outcome == "installed", result.reason
    # The synthetic quadrants are separable from the descriptors: out-of-fold macro-F1 1.0
    # against the base set's 0.5.
    assert result.new_figures["cv_macro_f1_mean"] > LIVE_FIGURES["cv_macro_f1_mean"]
    assert "against the live models' 0.5000" in result.reason
    assert "stage: ensemble" in lines  # the training's own output, streamed
    assert result.set_id == "v2" and admin.live_dir() == tmp_path / "home" / "sets" / "v2"
    assert json.loads((tmp_path / "home" / "live.json").read_text()) == \
        {"live": "v2", "previous": [BASE_SET]}
    assert not (tmp_path / "home" / "runs" / f"job-{result.job_id}").exists()
    assert digests(base) == shipped  # the base set is referenced, never written
    # Served at once, by the new models (the tiny run trains the ensemble alone).
    assert service.versions == {"ensemble": "mood-4q-ensemble-2"}
    assert service.engine.classify(mood_files["Q2"]).models == service.versions
    assert [f"{m.name}-{m.version}" for m in await store.live_models()] == ["mood-4q-ensemble-2"]
    (job,) = await jobs(store)
    assert job.status == "succeeded" and job.log.startswith("installed: set v2 is live")
    assert job.model_version_id is not None and job.finished_at is not None

    live = await service.rollback_models()
    assert live.id == BASE_SET and admin.live_dir() == base
    assert service.versions == {"cldnn": "mood-4q-cldnn-test",
                                "ensemble": "mood-4q-ensemble-test"}
    assert sorted(f"{m.name}-{m.version}" for m in await store.live_models()) == \
        ["mood-4q-cldnn-test", "mood-4q-ensemble-test"]
    with pytest.raises(ServiceError, match="no earlier model set"):
        await service.rollback_models()


# --- what leaves the live models untouched ------------------------------------------------------


async def test_a_crash_keeps_the_live_models_and_says_why(
        store: Store, base: Path, fake_train: Path) -> None:
    admin = fake_admin(store, base, fake_train, "crash")
    service = service_on(store, base, admin)
    before = service.engine

    result = await service.retrain_models(requested_by="discord:1")

    assert result.outcome == "crashed" and not result.installed
    assert result.reason.startswith("training failed (exit status 3): ValueError: no clips in "
                                    "fold 3")
    assert "Traceback" not in result.reason  # the log has it, the one-line reason does not
    assert service.engine is before and admin.live_dir() == base
    assert not (admin.home / "live.json").exists()
    (job,) = await jobs(store)
    assert job.status == "failed" and job.requested_by == "discord:1"
    assert "stderr: Traceback (most recent call last):" in job.log
    assert "stderr: ValueError: no clips in fold 3" in job.log


async def test_a_timeout_kills_the_whole_process_group(
        store: Store, base: Path, fake_train: Path) -> None:
    admin = fake_admin(store, base, fake_train, "hang", timeout_s=3.0)
    lines: list[str] = []

    async def progress(line: str) -> None:
        lines.append(line)

    result = await admin.retrain(requested_by="test", progress=progress)

    assert result.outcome == "timeout"
    assert result.reason == ("training ran past its limit of 3 s and was stopped; the live "
                             "models were not changed")
    assert "epoch 0" in lines
    assert await stopped(int((base.parent / "child.pid").read_text()))  # its child too
    assert admin.live_dir() == base
    (job,) = await jobs(store)
    assert job.status == "failed" and job.log.startswith("timeout: ")


async def test_a_worse_model_is_kept_out_with_both_numbers(
        store: Store, base: Path, fake_train: Path) -> None:
    admin = fake_admin(store, base, fake_train, "worse", f1=0.45)

    result = await admin.retrain(requested_by="test")

    assert result.outcome == "worse"
    assert result.reason == ("worse on the validation folds: macro-F1 0.4500 against the live "
                             "models' 0.5000; the live models were kept")
    assert result.live_figures == LIVE_FIGURES
    assert admin.live_dir() == base and not list((admin.home / "sets").glob("*"))


async def test_an_artifact_that_does_not_match_its_card_is_refused(
        store: Store, base: Path, fake_train: Path) -> None:
    admin = fake_admin(store, base, fake_train, "badhash")

    result = await admin.retrain(requested_by="test")

    assert result.outcome == "refused"
    assert "do not verify" in result.reason and "does not match its card" in result.reason
    assert str(admin.home) not in result.reason  # no host paths in the message
    assert admin.live_dir() == base and not list((admin.home / "sets").glob("*"))


@pytest.mark.parametrize(("new", "ok"), [
    ({**LIVE_FIGURES, "cv_macro_f1_mean": 0.499}, True),   # within the tolerance
    ({**LIVE_FIGURES, "cv_macro_f1_mean": 0.497}, False),
    ({**LIVE_FIGURES, "cv_arousal_accuracy_mean": 0.6}, False),  # better F1 is not enough
    ({"cv_macro_f1_mean": 0.9}, False),  # does not report what the live set does
    ({}, False),
])
def test_gate_needs_every_live_figure_no_worse(new: dict[str, float], ok: bool) -> None:
    assert gate(new, LIVE_FIGURES, 0.002)[0] is ok


def test_gate_passes_when_the_live_set_has_no_figures() -> None:
    ok, why = gate({"cv_macro_f1_mean": 0.3}, {}, 0.002)
    assert ok and "carry no validation figures" in why


# --- one at a time, status, recovery --------------------------------------------------------


async def test_one_retrain_at_a_time_and_cancel_records_the_job(
        store: Store, base: Path, fake_train: Path) -> None:
    admin = fake_admin(store, base, fake_train, "hang")
    started = asyncio.Event()

    async def progress(line: str) -> None:
        if line.startswith("epoch"):  # after the child's pid is written
            started.set()

    first = asyncio.create_task(admin.retrain(requested_by="a", progress=progress))
    await asyncio.wait_for(started.wait(), 30)
    assert admin.running
    with pytest.raises(RetrainBusyError, match="already running"):
        await admin.retrain(requested_by="b")
    with pytest.raises(RetrainBusyError):
        await admin.rollback()
    status = await admin.status()
    assert status.running and status.jobs[0].status == "running"

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await stopped(int((base.parent / "child.pid").read_text()))
    (job,) = await jobs(store)
    assert job.status == "failed" and job.log.startswith("cancelled: ")
    assert not admin.running


async def test_status_lists_the_live_set_and_recent_jobs(
        store: Store, base: Path, fake_train: Path) -> None:
    await fake_admin(store, base, fake_train, "crash").retrain(requested_by="a")
    admin = fake_admin(store, base, fake_train, "worse", f1=0.1)
    await admin.retrain(requested_by="b")
    await store.start_job("c")  # left running by a process that stopped

    assert await admin.recover() == 1
    status = await admin.status()

    assert status.live.id == BASE_SET and status.live.path == base
    assert [m.display_name for m in status.live.models] == ["mood-4q-cldnn-test",
                                                            "mood-4q-ensemble-test"]
    assert status.live.figures == LIVE_FIGURES
    assert status.previous == () and not status.pinned and not status.running
    assert [(j.requested_by, j.outcome) for j in status.jobs] == [
        ("c", "interrupted"), ("b", "worse"), ("a", "crashed")]
    assert status.jobs[1].reason.startswith("worse on the validation folds: macro-F1 0.1000")


async def test_pinned_models_cannot_be_retrained_or_rolled_back(
        store: Store, base: Path, tmp_path: Path) -> None:
    settings = Settings.load(None, data_dir=tmp_path, engine={"models_dir": base})
    admin = ModelAdmin.from_settings(settings, store)
    assert admin.pinned and admin.live_dir() == base and live_models_dir(settings) == base
    with pytest.raises(ServiceError, match="pinned by MER_MODELS_DIR"):
        await admin.retrain(requested_by="test")
    with pytest.raises(ServiceError, match="pinned by MER_MODELS_DIR"):
        await admin.rollback()
    assert await jobs(store) == []


def test_the_default_command_trains_the_fused_models(store: Store, tmp_path: Path) -> None:
    settings = Settings.load(None, data_dir=tmp_path, engine={"retrain_data": tmp_path / "d"})
    admin = ModelAdmin.from_settings(settings, store)
    assert admin.command == (sys.executable, "-m", "train", "models", "--data",
                             str(tmp_path / "d"))
    assert not admin.pinned and admin.home == tmp_path / "models"
    custom = Settings.load(None, data_dir=tmp_path,
                           engine={"retrain_command": "nice python -m train models --tiny"})
    assert ModelAdmin.from_settings(custom, store).command == (
        "nice", "python", "-m", "train", "models", "--tiny")


# --- reload and start-up ---------------------------------------------------------------------


async def test_reload_swaps_in_the_live_set(store: Store, base: Path, tmp_path: Path) -> None:
    admin = ModelAdmin(store, home=tmp_path / "home", base_dir=base)
    service = service_on(store, base, admin)
    old = service.engine
    install_set(admin.home, base, "v5", "5")

    versions = await service.reload_models()

    assert versions == {"cldnn": "mood-4q-cldnn-5", "ensemble": "mood-4q-ensemble-5"}
    assert service.engine is not old and old.versions["cldnn"] == "mood-4q-cldnn-test"
    assert sorted(f"{m.name}-{m.version}" for m in await store.live_models()) == \
        ["mood-4q-cldnn-5", "mood-4q-ensemble-5"]

    (admin.home / "sets" / "v5" / "mood-4q-cldnn-test.onnx").write_bytes(b"tampered")
    with pytest.raises(ServiceError, match="does not match its card"):
        await service.reload_models()
    assert service.versions == versions  # a set that does not load changes nothing


async def test_create_serves_the_live_set_or_falls_back_to_the_shipped_one(
        base: Path, tmp_path: Path) -> None:
    settings = Settings.load(None, data_dir=tmp_path / "data", engine={"workers": 1})
    home = settings.data_dir / "models"
    install_set(home, base, "v7", "7")
    assert live_models_dir(settings) == home / "sets" / "v7"

    async with await MoodService.create(settings) as service:
        assert service.versions == {"cldnn": "mood-4q-cldnn-7",
                                    "ensemble": "mood-4q-ensemble-7"}
        assert service.models_admin is not None
        assert service.models_admin.live_dir() == home / "sets" / "v7"

    (home / "sets" / "v7" / "mood-4q-ensemble-test.skops").write_bytes(b"tampered")
    async with await MoodService.create(settings) as service:
        shipped = next(DEFAULT_MODELS_DIR.glob("mood-4q-cldnn-*.json")).stem
        assert service.versions["cldnn"] == shipped  # the shipped weights


async def test_a_command_that_does_not_start_is_a_crash(store: Store, base: Path,
                                                         tmp_path: Path) -> None:
    admin = ModelAdmin(store, home=tmp_path / "home", base_dir=base,
                       command=[str(tmp_path / "no-such-trainer")])
    result = await admin.retrain(requested_by="test")
    assert result.outcome == "crashed"
    assert "cannot start no-such-trainer: No such file or directory" in result.reason
    assert admin.live_dir() == base


async def test_a_new_set_keeps_the_live_sets_supporting_models_whole(
        store: Store, base: Path, tmp_path: Path) -> None:
    """The Spotify-feature model is not retrained: its card, .skops and ONNX conversion are
    copied into the new set, so serving there still runs it through onnxruntime."""
    from mer_models.engine import DEFAULT_MODELS_DIR

    for path in DEFAULT_MODELS_DIR.glob("mood-spotify-ensemble-1.*"):
        shutil.copy(path, base / path.name)
    run_models = with_figures(base, tmp_path / "run" / "models", LIVE_FIGURES)
    for path in run_models.glob("mood-spotify-ensemble-1.*"):
        path.unlink()
    admin = ModelAdmin(store, home=tmp_path / "home", base_dir=base, command=["true"])

    set_id = await asyncio.to_thread(admin._install, run_models, await admin.live_set(), "2")

    installed = {p.name for p in (tmp_path / "home" / "sets" / set_id).iterdir()}
    assert {"mood-spotify-ensemble-1.json", "mood-spotify-ensemble-1.skops",
            "mood-spotify-ensemble-1.onnx"} <= installed
