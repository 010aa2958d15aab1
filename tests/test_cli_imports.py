"""What a cold ``mer classify FILE`` imports: nothing of the network sources.

A local file needs neither the HTTP client (aiohttp) nor Spotify (spotipy, requests, redis);
the resolver builds them on first use. Importing them would add about 0.4 s to every start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf

from mer_models.card import find_cards
from mer_models.engine import DEFAULT_MODELS_DIR
from tests.synth import SR, mood_clip

#: Modules a local file's classification must not load.
NETWORK_MODULES = ("aiohttp", "spotipy", "requests", "redis", "bot.sources.http",
                   "bot.sources.deezer", "bot.sources.itunes", "bot.sources.spotify")

_CLASSIFY = textwrap.dedent("""
    import json, sys
    from bot.cli import main

    sys.argv = ["mer", "classify", sys.argv[1], "--json"]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    print(json.dumps(sorted(sys.modules)))
""")


@pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR), reason="no shipped models")
def test_classifying_a_file_imports_no_network_source(tmp_path: Path) -> None:
    clip = tmp_path / "q1.wav"
    sf.write(clip, mood_clip("Q1", seconds=3.0, seed=3), SR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MER_")}
    # Spotify configured: even then it is built only when a query needs it.
    env |= {"MER_DATA_DIR": str(tmp_path / "data"), "MER_WORKERS": "1",
            "MER_SPOTIFY_CLIENT_ID": "client", "MER_SPOTIFY_CLIENT_SECRET": "secret"}
    # cwd: a folder without a .env file, so the settings are the ones above.
    run = subprocess.run([sys.executable, "-c", _CLASSIFY, str(clip)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    *results, modules_line = run.stdout.strip().splitlines()
    assert [json.loads(line)["input"] for line in results] == [str(clip)]
    modules = set(json.loads(modules_line))
    assert "bot.sources.resolver" in modules  # the resolver did run
    loaded = sorted(name for name in modules
                    if any(name == m or name.startswith(m + ".") for m in NETWORK_MODULES))
    assert loaded == []
