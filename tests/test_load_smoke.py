"""bench/load.py at tiny scale: the same code paths, checked for correctness, not timed.

10 concurrent ``/mood track`` over 3 tracks through the command tree (a real service with the
shipped models, one window per clip, previews over HTTP from 127.0.0.1), a burst of 5 changes
on a throwaway MPD under the listener, the lag monitor against a loop that is blocked on
purpose, and the bot's ``freeze_heap`` start-up.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.load import (
    DiscordOptions,
    LagMonitor,
    MpdOptions,
    count_classifications,
    print_discord,
    print_mpd,
    run_discord,
    run_mpd,
    write_clips,
)
from bot.discord.bot import CHART_MODULES, MoodBot
from bot.service import MoodService
from bot.settings import Settings


async def test_lag_monitor_measures_a_blocked_loop_and_finds_the_blocker() -> None:
    async with LagMonitor(sample_stacks=True) as monitor:
        await asyncio.sleep(0.1)
        quiet = monitor.mark()
        time.sleep(0.15)  # blocking the loop is the point
        await asyncio.sleep(0.05)
    assert monitor.stats(0, quiet).samples >= 3
    stats = monitor.stats()
    assert stats.over >= 1 and stats.max_ms >= 100 and not stats.met
    assert stats.p50_ms < stats.max_ms
    assert monitor.worst(n=1)[0][1] == pytest.approx(stats.max_ms)
    assert any("test_lag_monitor_measures" in frame
               for stall in monitor.stalls for frame in stall.stack), monitor.stalls
    assert monitor.late_ticks()["count"] == stats.over


async def test_concurrent_mood_track_all_answered_one_classification_per_track(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_discord(DiscordOptions(commands=10, tracks=3, workers=1,
                                              n_windows=1,
                                              seconds=8.0))
    assert result["warm_ok"] == result["warm_commands"] == 1
    assert result["answered"] == result["ok"] == result["deferred"] == 10, result["errors"]
    assert result["classifications"] == result["classified_tracks"] == 3  # single flight
    assert result["classified_twice"] == [] and result["other_classifications"] == 0
    assert result["stored_tracks"] == 3 and result["missing_tracks"] == []
    assert result["tracks_without_one_prediction"] == []
    assert result["correct"]
    assert result["lag"]["samples"] > 0
    assert result["frozen_objects"] > 0 and gc.get_freeze_count() == 0  # given back
    print_discord(result)
    assert "answered 10/10" in capsys.readouterr().out


async def test_mpd_burst_every_queued_track_handled_no_crash(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_mpd(MpdOptions(changes=5, tracks=4, workers=1,
                                      n_windows=1,
                                      settle_timeout_s=20.0))
    assert len(result["burst_ops"]) == 5
    assert not result["timed_out"] and not result["crashed"]
    assert result["final_queue"] >= 1 and result["unhandled"] == []
    assert result["events"].get("annotated", 0) >= result["final_queue"]
    assert result["classified_twice"] == [] and result["stored_without_one_prediction"] == []
    assert result["correct"] and result["lag"]["samples"] > 0
    print_mpd(result)
    assert "settled" in capsys.readouterr().out


async def test_the_bot_freezes_its_start_up_heap_only_when_asked() -> None:
    async with MoodBot(None) as plain:
        await plain.setup_hook()
        assert gc.get_freeze_count() == 0
    try:
        async with MoodBot(None, freeze_heap=True) as bot:
            await bot.setup_hook()
            assert gc.get_freeze_count() > 0
            assert all(name in sys.modules for name in CHART_MODULES)
    finally:
        gc.unfreeze()


async def test_charts_drawn_one_at_a_time_and_collected_after_when_the_heap_is_frozen(
        ) -> None:
    from bot.discord.cogs.mood.cog import _render

    drawn_in: list[str] = []
    full_collections_in: list[str] = []

    def draw() -> io.BytesIO:
        drawn_in.append(threading.current_thread().name)
        return io.BytesIO(b"png")

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_collections_in.append(threading.current_thread().name)

    gc.callbacks.append(seen)
    try:
        await asyncio.gather(*(_render(draw) for _ in range(4)))
        assert len(drawn_in) == 4 and len(set(drawn_in)) == 1  # one chart thread
        assert drawn_in[0].startswith("mood-charts")
        before = len(full_collections_in)
        gc.freeze()  # as MoodBot(freeze_heap=True) leaves the process
        await _render(draw)
        assert drawn_in[0] in full_collections_in[before:]
    finally:
        gc.unfreeze()
        gc.callbacks.remove(seen)


async def test_single_flight_holds_when_a_classification_ends_during_a_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by ``bench/load.py discord``: a request whose database look-up began before
    another request stored the track, and ended after that one had left, classified the track
    a second time (41 classifications for 40 tracks)."""
    clip = write_clips(tmp_path / "audio", ["Artist - Title.mp3"], 8.0)[0]
    settings = Settings.load(None, data_dir=tmp_path / "data",
                             engine={"workers": 1, "n_windows": 1})
    async with await MoodService.create(settings, allow_local_files=True) as service:
        counts = count_classifications(service)
        lookup = service.store.find_analysis
        first_done = asyncio.Event()

        async def slow_lookup(*args: Any, **kwargs: Any) -> Any:
            found = await lookup(*args, **kwargs)
            if counts:  # read while the first request classifies; answer after it finished
                await first_done.wait()
            return found

        monkeypatch.setattr(service.store, "find_analysis", slow_lookup)
        first = asyncio.create_task(service.classify(str(clip)))
        while not counts:
            await asyncio.sleep(0.005)
        second = asyncio.create_task(service.classify(str(clip)))
        mood = await first
        first_done.set()
        again = await second
    assert sum(counts.values()) == 1
    assert again.track_id == mood.track_id
    assert again.result.probabilities == mood.result.probabilities
