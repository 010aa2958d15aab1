"""The import rule of docs/ARCHITECTURE.md, read from the source with ``ast``.

{cli, discord, player} -> service -> {sources, storage, recommend} -> mer_models <- train;
front-ends never import each other, nothing imports a front-end, siblings never import each
other, storage does not import mer_models, bot never imports train, and mer_models imports
neither. ``bot.settings`` is the one shared module: anything in ``bot`` may read it, and it
reads only the provider names of ``bot.sources.models``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRONT_ENDS = ("bot.cli", "bot.discord", "bot.player")
LOWER = ("bot.sources", "bot.storage", "bot.recommend")

#: Which parts each part may import (besides itself and third-party packages).
ALLOWED: dict[str, tuple[str, ...]] = {
    **{f: ("bot.service", "bot.settings") for f in FRONT_ENDS},
    "bot.service": ("bot.sources", "bot.storage", "bot.recommend", "mer_models",
                    "bot.settings"),
    "bot.sources": ("mer_models", "bot.settings"),
    "bot.storage": (),
    "bot.recommend": ("mer_models",),
    "bot.settings": ("bot.sources.models",),
    "bot": (),
    "mer_models": (),
    "train": ("mer_models",),
}
OURS = ("bot", "mer_models", "train")


def part_of(module: str) -> str:
    """The part of the architecture a module belongs to (the longest prefix in ALLOWED)."""
    for name in sorted(ALLOWED, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    raise ValueError(f"{module} belongs to no part")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names += [f"{base}.{alias.name}" for alias in node.names] or [base]
    return names


def violations(root: Path) -> list[str]:
    """Every import in ``root``'s packages that breaks the rule, as ``"a -> b"``."""
    found = []
    for package in OURS:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            here = part_of(module)
            for name in imports_of(path, root):
                if not name.startswith(tuple(p + "." for p in OURS) + OURS):
                    continue  # third-party
                there = part_of(name)
                if there == here or name.startswith(ALLOWED[here]):
                    continue
                found.append(f"{module} -> {name}")
    return found


def test_the_project_follows_the_import_rule() -> None:
    assert violations(REPO) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in OURS:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "expected"), [
    ({"bot/cli/x.py": "from bot.discord import bot_app\n"}, "bot.cli.x -> bot.discord.bot_app"),
    ({"bot/player/x.py": "import bot.cli.common\n"}, "bot.player.x -> bot.cli.common"),
    ({"bot/cli/x.py": "from bot.storage.store import Store\n"},
     "bot.cli.x -> bot.storage.store.Store"),
    ({"bot/cli/x.py": "from mer_models.engine import MoodEngine\n"},
     "bot.cli.x -> mer_models.engine.MoodEngine"),
    ({"bot/service/x.py": "from bot.cli import app\n"}, "bot.service.x -> bot.cli.app"),
    ({"bot/storage/x.py": "from mer_models.moods import Quadrant\n"},
     "bot.storage.x -> mer_models.moods.Quadrant"),
    ({"bot/sources/x.py": "from ..storage import store\n"}, "bot.sources.x -> bot.storage.store"),
    ({"mer_models/x.py": "import bot.settings\n"}, "mer_models.x -> bot.settings"),
    ({"bot/service/x.py": "import train.pipeline\n"}, "bot.service.x -> train.pipeline"),
])
def test_a_forbidden_import_is_caught(tmp_path: Path, files: dict[str, str],
                                      expected: str) -> None:
    assert violations(_tree(tmp_path, files)) == [expected]


def test_allowed_imports_pass(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "bot/cli/x.py": "from bot.service import MoodService\nimport typer\n",
        "bot/service/x.py": "from bot.storage.store import Store\nfrom mer_models import x\n",
        "train/x.py": "from mer_models.fusion import fuse\n",
    })
    assert violations(root) == []
