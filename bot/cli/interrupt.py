"""Ctrl-C for commands that may start worker processes: the command stops, the workers stay quiet.

A terminal sends Ctrl-C's SIGINT to every process in the foreground group, the service's
worker processes included; each would die with a ``KeyboardInterrupt`` traceback (dozens of
lines) and break the pool the command is still shutting down. A process started while SIGINT
is ignored keeps ignoring it, so :func:`run` ignores SIGINT while the command runs, and
hears Ctrl-C another way: the main thread blocks SIGINT and waits for it with
``sigtimedwait`` (on Linux a blocked signal stays pending even when ignored), while the
command's event loop runs in a second thread. The loop cannot run in the main thread: the
standard library unblocks SIGINT in the thread that starts multiprocessing's resource
tracker, which would let the kernel drop the ignored signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer

T = TypeVar("T")

#: The exit status of a program stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: How often the main thread looks whether the command is done, in seconds.
_POLL_S = 0.05
#: How long the event loop may take to close once a cancelled command has cleaned up.
_GRACE_S = 5.0


def run(main: Coroutine[Any, Any, T], *, interrupted: Callable[[], str]) -> T:
    """Run a command's coroutine to completion; Ctrl-C cancels it and exits with 130.

    The first Ctrl-C cancels ``main``: its ``finally`` blocks and ``async with`` exits run
    (the service closes, its workers finish the file in hand and stop), then
    ``interrupted()`` is printed on stderr. A second Ctrl-C ends the process at once.

    Parameters
    ----------
    main : coroutine
        The command's work.
    interrupted : callable
        The line(s) to print on stderr when Ctrl-C stopped ``main`` (called then, so it can
        say how far the command got).

    Returns
    -------
    object
        What ``main`` returned.

    Raises
    ------
    typer.Exit
        Ctrl-C, with status :data:`INTERRUPTED` (Click would print ``Aborted!`` and exit
        with 1, which scripts cannot tell from a failure).
    BaseException
        Whatever ``main`` raised.
    """
    if (not sys.platform.startswith("linux")
            or threading.current_thread() is not threading.main_thread()):
        # Elsewhere an ignored signal may be dropped even while blocked: plain asyncio.run,
        # whose Ctrl-C also cancels main (worker processes then print their tracebacks).
        try:
            return asyncio.run(main)
        except KeyboardInterrupt:
            typer.echo(interrupted(), err=True)
            raise typer.Exit(code=INTERRUPTED) from None
    return _Command(main, interrupted).run()


def _stop_now(message: str) -> None:
    """Print ``message`` and end the process without waiting for anything."""
    sys.stderr.write(message + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


class _Command:
    """One coroutine on an event loop in its own thread, cancelled by Ctrl-C."""

    def __init__(self, main: Coroutine[Any, Any, Any], interrupted: Callable[[], str]) -> None:
        self.main = main
        self.interrupted = interrupted
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.pressed = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.main_done = threading.Event()

    async def _tracked(self) -> Any:
        self.task = asyncio.current_task()
        self.started.set()
        try:
            return await self.main
        finally:
            self.main_done.set()

    def _work(self) -> None:
        try:
            with asyncio.Runner() as runner:
                self.loop = runner.get_loop()
                self.value = runner.run(self._tracked())
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.error = exc
        finally:
            self.started.set()
            self.main_done.set()

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _press(self) -> None:
        if self.pressed:  # the second Ctrl-C: stop waiting for a clean exit
            _stop_now(self.interrupted())
        self.pressed = True
        self.started.wait()
        if self.loop is not None and not self.loop.is_closed():
            # RuntimeError: the loop closed meanwhile, there is nothing to cancel.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._cancel)

    def run(self) -> Any:
        old_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            # Started after the mask is set: the loop thread and every thread it starts
            # inherit the block, so only the wait below takes Ctrl-C. A daemon: if closing
            # its loop hangs, the process may still end.
            worker = threading.Thread(target=self._work, name="mer-command", daemon=True)
            worker.start()
            deadline: float | None = None
            while worker.is_alive():
                if signal.sigtimedwait({signal.SIGINT}, _POLL_S) is not None:
                    self._press()
                if self.pressed and self.main_done.is_set():
                    deadline = deadline or time.monotonic() + _GRACE_S
                    if time.monotonic() > deadline:
                        # The command has cleaned up, but a task it left behind (a database
                        # connection closing after the cancellation, seen with aiosqlite)
                        # never finishes; nothing is left to save.
                        _stop_now(self.interrupted())
            worker.join()
            # A Ctrl-C pressed as the command ended must not surface after the handler is back.
            while signal.sigtimedwait({signal.SIGINT}, 0) is not None:
                self.pressed = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            signal.signal(signal.SIGINT, old_handler)
        if self.pressed and isinstance(self.error, asyncio.CancelledError):
            typer.echo(self.interrupted(), err=True)
            raise typer.Exit(code=INTERRUPTED)
        if self.error is not None:
            raise self.error
        return self.value
