"""Lines typed at the console's prompt, or read from a script on standard input."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import IO


class LineReader:
    """Lines from a terminal (at a prompt, with line editing) or from a pipe.

    Each line is read in a daemon thread, so the event loop never waits on the keyboard and
    Ctrl-C ends the program at once (a pool thread blocked in ``input`` would hold it).

    Parameters
    ----------
    stream : text stream
        Standard input, or any stream (read with ``readline`` when there is no prompt).
    prompt : str, optional
        Read with ``input(prompt)`` (a terminal); None: read ``stream`` as it is.
    """

    def __init__(self, stream: IO[str], prompt: str | None = None) -> None:
        self.stream = stream
        self.prompt = prompt
        if prompt is not None:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())

    async def read(self) -> str | None:
        """The next line, without its newline; None at the end."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def settle(line: str | None, error: Exception | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(line)

        def work() -> None:
            line: str | None = None
            error: Exception | None = None
            try:
                line = self._read()
            except Exception as exc:  # an unreadable stream: raised in the reader's caller
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (Ctrl-C)
                loop.call_soon_threadsafe(settle, line, error)

        threading.Thread(target=work, name="console input", daemon=True).start()
        return await future

    def _read(self) -> str | None:
        if self.prompt is not None:
            try:
                return input(self.prompt)
            except EOFError:
                print()
                return None
        line = self.stream.readline()
        return line.rstrip("\r\n") if line else None
