"""The bot's answers as text: embeds, buttons and files, for a terminal or a transcript.

:func:`answer_of` turns what the bot sent (:class:`~bot.discord.console.interaction.Sent`)
into an :class:`Answer`: plain data, its markdown read into styled spans. :class:`PlainOutput`
writes answers as plain lines (a pipe, a file, a CI log); :class:`RichOutput` draws them with
rich on a terminal (an embed as a panel in its colour).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import discord
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from bot.discord.console.interaction import CONSOLE_USER_ID, Sent

#: Markdown the bot writes: code blocks, inline code, bold, italics, escaped characters.
_MARKUP: Final = re.compile(
    r"```(?:[a-z]*\n)?(?P<block>.*?)\n?```|`(?P<code>[^`\n]+)`"
    r"|\*\*(?P<bold>(?:\\.|[^\\])+?)\*\*"
    r"|(?<![\w*])\*(?P<italic>(?:\\.|[^*\\\n])+)\*(?![\w*])|\\(?P<escaped>[^\sA-Za-z0-9])"
    r"|<(?P<mention>@!?|@&|#)(?P<id>\d+)>", re.DOTALL)
_MENTIONS: Final = {"@": "@user", "@!": "@user", "@&": "@role", "#": "#channel"}
_STYLES: Final = {"bold": "bold", "italic": "italic", "code": "cyan", "block": ""}
_ATTACHMENT: Final = "attachment://"
#: How an answer is marked: a message only its asker sees, and edits.
PRIVATE: Final = "(only you)"
EDITED: Final = "(edited)"

Span = tuple[str, str]  # text, style ("" plain, "bold", "italic", "code", "block")


def spans(markdown: str, style: str = "") -> list[Span]:
    """Discord markdown as (text, style) spans; markers and escapes removed, mentions
    named (``@you``: the console user; ``@user42``, ``#channel7``)."""
    out: list[Span] = []
    position = 0
    for match in _MARKUP.finditer(markdown):
        if match.start() > position:
            out.append((markdown[position:match.start()], style))
        kind = match.lastgroup or ""
        inner = match.group(kind)
        if kind == "escaped":
            out.append((inner, style))
        elif kind == "id":
            out.append((_mention(match.group("mention"), int(inner)), "bold"))
        elif kind in ("bold", "italic"):
            out += spans(inner, style or kind)
        else:
            out.append((inner, kind))
        position = match.end()
    if position < len(markdown):
        out.append((markdown[position:], style))
    return out


def _mention(kind: str, snowflake: int) -> str:
    if kind in ("@", "@!") and snowflake == CONSOLE_USER_ID:
        return "@you"
    return f"{_MENTIONS[kind]}{snowflake}"


def plain(markdown: str) -> str:
    """Discord markdown as plain text."""
    return "".join(text for text, _ in spans(markdown))


@dataclass(frozen=True)
class Card:
    """An embed as text; ``image`` is the saved file it shows (or its URL)."""

    title: str = ""
    description: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    footer: str = ""
    image: str | None = None
    colour: int | None = None


@dataclass(frozen=True)
class Answer:
    """One message of the bot, ready to show.

    Attributes
    ----------
    kind : str
        ``message``, ``followup``, ``edit`` or ``message edit`` (see ``Sent``).
    private : bool
        Only the asker sees it (ephemeral).
    content : str
        Its text (markdown).
    cards : list of Card
        Its embeds.
    files : list of str
        Paths of the files it attached, saved, that no embed shows.
    items : list of str
        Its buttons and selects, numbered from 1 for ``press``.
    """

    kind: str
    private: bool = False
    content: str = ""
    cards: list[Card] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)

    @property
    def edited(self) -> bool:
        """An edit of a message shown before."""
        return self.kind in ("edit", "message edit")


def item_label(item: discord.ui.Item[Any]) -> str:
    """A button or select as the console lists it: ``✅ Right``, ``Pick...: happy|sad``."""
    if isinstance(item, discord.ui.Select):
        choices = "|".join(option.label for option in item.options)
        text = f"{item.placeholder or 'choose'}: {choices}"
    else:
        emoji = getattr(item, "emoji", None)
        label = getattr(item, "label", None) or type(item).__name__
        text = f"{emoji} {label}" if emoji else label
        url = getattr(item, "url", None)
        if url:
            text += f" <{url}>"
    return text + (" (greyed out)" if getattr(item, "disabled", False) else "")


def card_of(embed: discord.Embed, saved: Sequence[tuple[str, str]] = ()) -> Card:
    """An embed as a card; an ``attachment://`` image becomes the path it was saved at
    (``saved``: pairs of attachment name and path)."""
    image = embed.image.url
    if image and image.startswith(_ATTACHMENT):
        name = image.removeprefix(_ATTACHMENT)
        image = next((path for attached, path in saved if attached == name), image)
    colour = embed.colour.value if embed.colour is not None else None
    return Card(title=embed.title or "", description=embed.description or "",
                fields=[(f.name or "", f.value or "") for f in embed.fields],
                footer=embed.footer.text or "", image=image, colour=colour)


def answer_of(sent: Sent, saved: Sequence[tuple[str, str]] = ()) -> Answer:
    """What the bot sent, as an answer to show.

    Parameters
    ----------
    sent : Sent
        A reply, follow-up or edit (not a deferral).
    saved : sequence of (str, str)
        Its attachments: each one's file name and the path it was saved at.
    """
    cards = [card_of(embed, saved) for embed in sent.embeds]
    shown = {card.image for card in cards}
    files = [path for _, path in saved if path not in shown]
    items = ([item_label(item) for item in sent.view.children]
             if sent.view is not None else [])
    return Answer(sent.kind, sent.ephemeral, sent.content or "", cards, files, items)


def buttons_line(items: Sequence[str]) -> str:
    """``[1] ✅ Right  [2] ❌ Wrong``."""
    return "  ".join(f"[{i}] {label}" for i, label in enumerate(items, start=1))


def plain_lines(answer: Answer) -> list[str]:
    """An answer as plain lines (no colour, no markdown)."""
    lines = plain(answer.content).splitlines() if answer.content else []
    for card in answer.cards:
        lines += _card_lines(card)
    lines += [f"file: {path}" for path in answer.files]
    if answer.items:
        lines.append(buttons_line(answer.items))
    marks = " ".join(m for m, on in ((EDITED, answer.edited), (PRIVATE, answer.private)) if on)
    if marks:
        lines = [f"{marks} {lines[0]}" if lines else marks, *lines[1:]]
    return lines


def _card_lines(card: Card) -> list[str]:
    lines = [f"== {plain(card.title)} =="] if card.title else []
    lines += plain(card.description).splitlines()
    for name, value in card.fields:
        text = plain(value).strip("\n").splitlines() or [""]
        if len(text) == 1:
            lines.append(f"{plain(name)}: {text[0]}")
        else:
            lines += [f"{plain(name)}:", *(f"  {line}" for line in text)]
    if card.image:
        lines.append(f"chart: {card.image}")
    if card.footer:
        lines.append(f"-- {plain(card.footer)}")
    return lines


class Output(Protocol):
    """Where the console writes: the commands echoed, answers, errors and notes."""

    def command(self, line: str) -> None:
        """Echo a command read from a script."""

    def answer(self, answer: Answer) -> None:
        """Show one answer."""

    def error(self, message: str, usage: Sequence[str] = ()) -> None:
        """Say why a line was not run (and the usage of its command)."""

    def lines(self, lines: Sequence[str]) -> None:
        """Plain lines (help, notes)."""

    def done(self) -> None:
        """The end of a command's answers."""


class PlainOutput:
    """Plain lines on a text stream: a transcript a script or a test can read."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def _write(self, lines: Sequence[str]) -> None:
        for line in lines:
            print(line, file=self.stream)
        self.stream.flush()

    def command(self, line: str) -> None:
        """``> /mood track calm``."""
        self._write([f"> {line}"])

    def answer(self, answer: Answer) -> None:
        """See :func:`plain_lines`."""
        self._write(plain_lines(answer))

    def error(self, message: str, usage: Sequence[str] = ()) -> None:
        """``error: ...`` then ``usage: ...`` lines."""
        self._write([f"error: {message}", *(f"usage: {line}" for line in usage)])

    def lines(self, lines: Sequence[str]) -> None:
        """As they are."""
        self._write(lines)

    def done(self) -> None:
        """A blank line between commands."""
        self._write([""])


class RichOutput:
    """Answers drawn by rich on a terminal: an embed as a panel in its colour."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def command(self, line: str) -> None:
        """The command, dimmed."""
        self.console.print(Text(f"> {line}", style="dim"))

    def answer(self, answer: Answer) -> None:
        """Content, panels, files, then the buttons."""
        marks = [m for m, on in ((EDITED, answer.edited), (PRIVATE, answer.private)) if on]
        if answer.content or marks:
            text = Text(" ".join(marks) + (" " if marks and answer.content else ""),
                        style="dim italic")
            self.console.print(text + _rich(answer.content))
        for card in answer.cards:
            self.console.print(_panel(card))
        for path in answer.files:
            self.console.print(Text(f"file: {path}", style="dim"))
        if answer.items:
            self.console.print(Text(buttons_line(answer.items), style="bold"))

    def error(self, message: str, usage: Sequence[str] = ()) -> None:
        """In red, with the usage dimmed."""
        self.console.print(Text(f"error: {message}", style="red"))
        for line in usage:
            self.console.print(Text(f"usage: {line}", style="dim"))

    def lines(self, lines: Sequence[str]) -> None:
        """As they are (no markup)."""
        for line in lines:
            self.console.print(Text(line))

    def done(self) -> None:
        """A blank line between commands."""
        self.console.print()


def _rich(markdown: str) -> Text:
    text = Text()
    for part, style in spans(markdown):
        text.append(part, style=_STYLES.get(style, ""))
    return text


def _panel(card: Card) -> Panel:
    parts: list[Text] = []
    if card.description:
        parts.append(_rich(card.description))
    for name, value in card.fields:
        value = value.strip("\n")
        joint = "\n" if "\n" in plain(value) else " "
        parts.append(Text(f"{plain(name)}:", style="bold") + Text(joint) + _rich(value))
    if card.image:
        parts.append(Text(f"chart: {card.image}", style="dim"))
    if card.footer:
        parts.append(Text(plain(card.footer), style="dim"))
    colour = f"#{card.colour:06x}" if card.colour is not None else "white"
    return Panel(Group(*parts), title=_rich(card.title) if card.title else None,
                 title_align="left", border_style=colour, expand=False)


def make_output(stream: IO[str]) -> Output:
    """Rich on a terminal, plain lines otherwise (a pipe, a file)."""
    if stream.isatty():
        return RichOutput(Console(file=stream, highlight=False))
    return PlainOutput(stream)


def file_names(files: Sequence[discord.File], number: int, folder: Path) -> list[Path]:
    """Where the files of an answer to command ``number`` are saved: ``007-mood.png``
    (a second file of the same name gets ``-2``, ...)."""
    paths: list[Path] = []
    for file in files:
        stem, dot, suffix = (file.filename or "file").rpartition(".")
        base = f"{number:03d}-{stem or suffix}"
        name = f"{base}.{suffix}" if dot and stem else base
        count = 2
        while folder / name in paths:
            name = f"{base}-{count}.{suffix}" if dot and stem else f"{base}-{count}"
            count += 1
        paths.append(folder / name)
    return paths
