"""Typed lines as slash commands: ``/mood journey from:sad to:happy steps:5``.

A line is read against the command payloads (what ``sync`` publishes, so what a Discord
client knows): the longest command path that exists, then options as ``name:value`` (a value
runs until the next `` name:`` of an option of that command), and any free text before the
first option goes to the first required option not given by name (else the first option
not given). Values are converted and checked as a Discord client checks them before sending:
types, choices (by name or value, any case), minimum and maximum values and lengths.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

_WORD: Final = re.compile(r"\s*(\S+)")
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
#: Option types a console can give (string, integer, boolean, number); the others
#: (user, channel, role, mentionable, attachment) need Discord's resolved objects.
STRING, INTEGER, BOOLEAN, NUMBER = 3, 4, 5, 10
_GROUPS = (1, 2)  # subcommand, subcommand group
_KINDS: Final = {6: "a user", 7: "a channel", 8: "a role", 9: "a user or role",
                 11: "a file"}
_INT_LIMIT: Final = 2**53  # Discord's bound on integer options


class ParseError(ValueError):
    """A line that is not a command of the tree; the message (one line) says why.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str, optional
        The command (or group) it concerns, whose usage the console shows.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class CommandLine:
    """A line read as a command: its path, payload and option values.

    Attributes
    ----------
    path : str
        ``"mood journey"``.
    command : dict
        The command's payload (name, description, options).
    values : dict
        Option name to converted value, in the command's option order.
    """

    path: str
    command: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> dict[str, Any]:
        """The payload of one of the command's options."""
        return next(o for o in options_of(self.command) if o["name"] == name)

    def payload_options(self, **replaced: Any) -> list[dict[str, Any]]:
        """The options as an interaction's data carries them (``replaced``: other values)."""
        values = {**self.values, **replaced}
        return [{"type": self.option(name)["type"], "name": name, "value": value}
                for name, value in values.items()]


def options_of(command: dict[str, Any]) -> list[dict[str, Any]]:
    """A command's own options (not its subcommands)."""
    return [o for o in command.get("options", []) if o.get("type") not in _GROUPS]


def parse(payloads: Sequence[dict[str, Any]], line: str) -> CommandLine:
    """Read a line (the leading slash is optional) as one of the commands of ``payloads``.

    Raises
    ------
    ParseError
        Unknown command, a group without its subcommand, an unknown option (read as text,
        so: a value that does not fit), a missing required option, or a bad value.
    """
    path, command, rest = find_command(payloads, line.strip().removeprefix("/"))
    options = options_of(command)
    free, given = split_options(rest, [o["name"] for o in options], path)
    if free:
        if not options:
            raise ParseError(f"/{path} takes no options (got {free!r})", path)
        target = next((o for o in options if o.get("required") and o["name"] not in given),
                      next((o for o in options if o["name"] not in given), None))
        if target is None:
            raise ParseError(f"every option of /{path} is given already: what is "
                             f"{free!r}?", path)
        given[target["name"]] = free
    missing = [o["name"] for o in options if o.get("required") and o["name"] not in given]
    if missing:
        raise ParseError(f"/{path} needs {', '.join(missing)}", path)
    values = {o["name"]: convert(o, given[o["name"]], path) for o in options
              if o["name"] in given}
    return CommandLine(path, command, values)


def find_command(payloads: Sequence[dict[str, Any]], text: str
                 ) -> tuple[str, dict[str, Any], str]:
    """The longest command path at the start of ``text``: (path, payload, the rest).

    Raises
    ------
    ParseError
        No command starts ``text``, or it names a group without one of its subcommands.
    """
    candidates = list(payloads)
    found: dict[str, Any] | None = None
    words: list[str] = []
    position = 0
    while candidates and (match := _WORD.match(text, position)):
        word = match.group(1).lower()
        node = next((c for c in candidates if c["name"] == word), None)
        if node is None:
            break
        found, position = node, match.end()
        words.append(word)
        candidates = [o for o in node.get("options", []) if o.get("type") in _GROUPS]
    if found is None:
        first = text.split()[0] if text.split() else ""
        raise ParseError(f"unknown command /{first} (`help` lists the commands)")
    path = " ".join(words)
    if candidates:
        names = ", ".join(c["name"] for c in candidates)
        raise ParseError(f"/{path} is a group: name one of its commands ({names})", path)
    return path, found, text[position:]


def split_options(text: str, names: Sequence[str], path: str) -> tuple[str, dict[str, str]]:
    """Free text and ``name:value`` pairs; a value runs until the next known ``name:``.

    A value wrapped in one pair of matching quotes loses them (``query:"a: b"``).

    Raises
    ------
    ParseError
        An option given twice, or without a value.
    """
    if not names:
        return text.strip(), {}
    pattern = re.compile(r"(?<!\S)(" + "|".join(map(re.escape, names)) + r"):",
                         re.IGNORECASE)
    marks = list(pattern.finditer(text))
    free = text[:marks[0].start()] if marks else text
    given: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        name = mark.group(1).lower()
        value = _unquoted(text[mark.end():end])
        if name in given:
            raise ParseError(f"{name} is given twice", path)
        if not value:
            raise ParseError(f"{name}: give a value after the colon", path)
        given[name] = value
    return _unquoted(free), given


def _unquoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def convert(option: dict[str, Any], text: str, path: str = "") -> Any:
    """The value of an option from its text, checked as a Discord client checks it.

    Raises
    ------
    ParseError
        The text does not fit the option's type, choices or bounds.
    """
    name, kind = option["name"], option.get("type", STRING)
    if kind in _KINDS:
        raise ParseError(f"{name} takes {_KINDS[kind]}, which the console cannot give", path)
    if option.get("choices"):
        return _choice(option, text, path)
    if kind == BOOLEAN:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ParseError(f"{name}: {text!r} is not true or false", path)
    if kind in (INTEGER, NUMBER):
        return _number(option, text, path)
    length = len(text)
    if length < option.get("min_length", 0):
        raise ParseError(f"{name}: at least {option['min_length']} characters", path)
    if "max_length" in option and length > option["max_length"]:
        raise ParseError(f"{name}: at most {option['max_length']} characters (got {length})",
                         path)
    return text


def _choice(option: dict[str, Any], text: str, path: str) -> Any:
    wanted = text.strip().lower()
    for choice in option["choices"]:
        if wanted in (str(choice["name"]).lower(), str(choice["value"]).lower()):
            return choice["value"]
    names = ", ".join(str(c["name"]) for c in option["choices"])
    raise ParseError(f"{option['name']}: {text!r} is not one of {names}", path)


def _number(option: dict[str, Any], text: str, path: str) -> int | float:
    name = option["name"]
    value: int | float
    try:
        value = int(text) if option["type"] == INTEGER else float(text)
    except ValueError:
        kind = "a whole number" if option["type"] == INTEGER else "a number"
        raise ParseError(f"{name}: {text!r} is not {kind}", path) from None
    if not math.isfinite(value) or abs(value) > _INT_LIMIT:
        raise ParseError(f"{name}: {text!r} is out of range", path)
    low, high = option.get("min_value"), option.get("max_value")
    if low is not None and value < low:
        raise ParseError(f"{name}: {value} is less than {low}", path)
    if high is not None and value > high:
        raise ParseError(f"{name}: {value} is more than {high}", path)
    return value
