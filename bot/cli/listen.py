"""``mer listen``: follow an MPD server, run as ``python -m bot.player listen``.

Front-ends never import each other, so this command starts the MPD front-end
(:mod:`bot.player.main`) in a child process with this Python and this terminal; it reads the
same settings (the password only from ``MER_MPD_PASSWORD``) and its exit status becomes this
command's. Ctrl-C reaches the child too, which stops cleanly (status 130).
"""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import app


class ListenMode(StrEnum):
    """What ``mer listen`` does besides classifying ahead."""

    annotate = "annotate"
    suggest = "suggest"
    autodj = "autodj"
    journey = "journey"


def child_command(*args: str) -> list[str]:
    """The command line of the MPD front-end: ``python -m bot.player listen ARGS``."""
    return [sys.executable, "-m", "bot.player", "listen", *args]


@app.command()
def listen(
    mpd: Annotated[str | None, typer.Option(
        "--mpd", help="HOST:PORT or the path of MPD's Unix socket (default: MER_MPD_HOST, "
                      "MER_MPD_PORT).")] = None,
    music_root: Annotated[Path | None, typer.Option(
        "--music-root", help="MPD's music directory on this machine (MER_MPD_MUSIC_ROOT).")
    ] = None,
    mode: Annotated[ListenMode, typer.Option(
        help="annotate: write mood stickers; suggest: three tracks like the current one; "
             "autodj: keep the queue filled; journey: steer toward --to.")
    ] = ListenMode.annotate,
    to: Annotated[str | None, typer.Option(help="journey: the target mood (happy, tense, "
                                                "sad, calm).")] = None,
    steps: Annotated[int, typer.Option(min=2, help="journey: tracks in the journey.")] = 8,
    ahead: Annotated[int, typer.Option(min=0, help="Classify this many queued tracks "
                                                   "before they play.")] = 3,
    keep: Annotated[int, typer.Option(min=1, help="autodj: keep at least this many tracks "
                                                  "after the current one.")] = 3,
    after_current: Annotated[bool | None, typer.Option(
        "--after-current/--at-end", help="autodj: add right after the current track or at "
                                         "the end (default: MER_MPD_AUTODJ_NEXT, else the "
                                         "end).", show_default=False)] = None,
) -> None:
    """Follow MPD's queue: classify tracks before they play; annotate, suggest, auto-DJ or
    steer a journey. Ctrl-C stops."""
    args = ["--mode", mode.value, "--steps", str(steps), "--ahead", str(ahead),
            "--keep", str(keep)]
    if mpd is not None:
        args += ["--mpd", mpd]
    if music_root is not None:
        args += ["--music-root", str(music_root)]
    if to is not None:
        args += ["--to", to]
    if after_current is not None:
        args.append("--after-current" if after_current else "--at-end")
    process = subprocess.Popen(child_command(*args))
    try:
        status = process.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: let it close cleanly
        status = process.wait()
    raise typer.Exit(code=status)
