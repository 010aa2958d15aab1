"""``python -m bot.player listen ...``: follow MPD with the listener (``mer listen`` runs it).

``mer listen`` runs this module in a child process, since front-ends never import each other;
it reads the same settings (the password only from ``MER_MPD_PASSWORD``, never from the
command line). Ctrl-C (SIGINT) or SIGTERM cancels the listener: the MPD connection and the
service close (a classification in hand finishes first), the status line ends, and the exit
status is 130.

Exit status: 0 the player closed, 1 refused (invalid settings or options, the service or MPD
refused; one line on stderr), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.player.listen import StatusLine, listen, player_settings
from bot.service.errors import ServiceError
from bot.service.listening import MODES, ListenConfig

if TYPE_CHECKING:
    from bot.settings import Settings

#: The exit status of a program stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    from bot.settings import SettingsError, get_settings

    try:
        settings = get_settings()
        player = player_settings(settings.player, args.mpd, args.music_root)
        after_current = (player.mpd_autodj_next if args.after_current is None
                         else args.after_current)
        config = ListenConfig(mode=args.mode, ahead=args.ahead, keep=args.keep,
                              after_current=after_current, to=args.to, steps=args.steps)
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if player.mpd_music_root is None and not player.mpd_host.startswith(("/", "@")):
        print("error: give --music-root DIR (or MER_MPD_MUSIC_ROOT): MPD's music directory "
              "on this machine, where its song files are", file=sys.stderr)
        return 1
    settings = settings.model_copy(update={"player": player})
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    status = StatusLine(sys.stdout, sys.stderr)
    try:
        return asyncio.run(_run(settings, config, status, args.workers))
    except ServiceError as exc:
        status.close()  # end the live line before the error's
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        status.close()


async def _run(settings: Settings, config: ListenConfig, status: StatusLine,
               workers: int) -> int:
    """Run the listener; SIGINT and SIGTERM cancel it (exit status 130), a second one ends
    the process at once."""
    task = asyncio.create_task(listen(settings, config, status=status, workers=workers))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        if stopping.is_set():  # the second Ctrl-C: stop waiting for a clean exit
            status.close()
            sys.stderr.write("stopped listening (without cleaning up)\n")
            sys.stderr.flush()
            os._exit(INTERRUPTED)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    waiter = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        # Cancel until it ends: on Python 3.11 asyncio.wait_for can swallow a cancellation
        # that lands as its command completes (an MPD command, here).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
    finally:
        waiter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if stopping.is_set():
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
        status.close()
        print("stopped listening", file=sys.stderr)
        return INTERRUPTED
    task.result()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mer listen", description=(
        "Follow MPD's queue: classify tracks before they play, and annotate, suggest, "
        "auto-DJ or steer a journey."))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("listen", help="follow an MPD server")
    run.add_argument("--mpd", help="HOST:PORT or the path of MPD's Unix socket "
                                   "(default: MER_MPD_HOST, MER_MPD_PORT)")
    run.add_argument("--music-root", type=Path,
                     help="MPD's music directory on this machine (MER_MPD_MUSIC_ROOT)")
    run.add_argument("--mode", choices=MODES, default="annotate")
    run.add_argument("--to", help="journey: the target mood (happy, tense, sad, calm)")
    run.add_argument("--steps", type=int, default=8, help="journey: tracks in the journey")
    run.add_argument("--ahead", type=int, default=3,
                     help="classify this many queued tracks before they play")
    run.add_argument("--keep", type=int, default=3,
                     help="autodj: keep at least this many tracks after the current one")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--after-current", dest="after_current", action="store_true",
                       default=None, help="autodj: add right after the current track")
    where.add_argument("--at-end", dest="after_current", action="store_false",
                       help="autodj: add at the end of the queue (default; "
                            "MER_MPD_AUTODJ_NEXT=true makes --after-current the default)")
    run.add_argument("--workers", type=int, default=1,
                     help="classification processes (1: a thread of this process)")
    return parser
