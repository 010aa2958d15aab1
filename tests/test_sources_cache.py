"""bot.sources.audio_cache: content addressing, LRU eviction under a size cap, safe writes."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot.sources.audio_cache import AudioCache
from tests.fakes.audio import tone_mp3


def _blob(tag: int, size: int = 1000) -> bytes:
    return b"ID3" + bytes([tag]) * (size - 3)


def _age(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_put_stores_by_hash_with_the_sniffed_extension(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=10**6)
    data = tone_mp3(1.0)
    entry = cache.put(data)
    sha = hashlib.sha256(data).hexdigest()
    assert entry.sha256 == sha
    assert entry.path == tmp_path / sha[:2] / f"{sha}.mp3"
    assert entry.path.read_bytes() == data
    assert cache.get(sha) == entry
    assert cache.get("0" * 64) is None


def test_the_same_bytes_are_stored_once(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=10**6)
    first, second = cache.put(_blob(1)), cache.put(_blob(1), ext="wav")
    assert first == second
    assert len(list(tmp_path.rglob("*.*"))) == 1


def test_least_recently_used_files_are_evicted(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=2500)
    a, b = cache.put(_blob(1)), cache.put(_blob(2))
    _age(a.path, 300)
    _age(b.path, 200)
    assert cache.get(a.sha256) is not None  # a hit makes a the most recently used
    c = cache.put(_blob(3))
    assert a.path.exists() and c.path.exists()
    assert not b.path.exists()
    assert cache.size_bytes() == 2000


def test_a_file_larger_than_the_cap_is_kept_alone(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=1500)
    small = cache.put(_blob(1))
    _age(small.path, 100)
    big = cache.put(_blob(2, size=4000))
    assert big.path.exists() and not small.path.exists()


def test_concurrent_writers_leave_one_complete_file(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=10**6)
    data = _blob(7, size=200_000)
    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = list(pool.map(lambda _: cache.put(data), range(16)))
    assert len({e.path for e in entries}) == 1
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [entries[0].path]
    assert files[0].read_bytes() == data


def test_stale_temporary_files_are_cleaned(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=10**6)
    entry = cache.put(_blob(1))
    stale = entry.path.parent / ".tmp-crashed"
    fresh = entry.path.parent / ".tmp-writing"
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"x" * 10)
    _age(stale, 7200)
    assert cache.size_bytes() == 1000  # temporaries do not count
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("bad", ["", "abc", "../" * 21 + "x", "g" * 64, "*" * 64])
def test_get_refuses_what_is_not_a_sha256(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        AudioCache(tmp_path, max_bytes=10).get(bad)


def test_cap_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        AudioCache(tmp_path, max_bytes=0)
