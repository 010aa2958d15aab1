"""Short garbage collections in a long-running front-end: freeze what start-up loaded.

CPython's cyclic garbage collector holds the GIL while it walks the objects it tracks, so every
thread waits for it, the event loop's included. A full (generation 2) walk of a bot that has
loaded the models, librosa, scikit-learn, discord.py and matplotlib (about 420,000 tracked
objects) took 300-470 ms on the development machine, and the loop stalled that long
(``bench/load.py discord``, docs/RELIABILITY.md). What is alive at the end of start-up lives
as long as the process: :func:`freeze_long_lived` moves it out of the collector's sight
(:func:`gc.freeze`), and later collections walk only what was created since.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterable


def freeze_long_lived(preload: Iterable[str] = ()) -> int:
    """Import ``preload``, collect once, then freeze every object alive (:func:`gc.freeze`).

    Call it once, at the end of a long-running process's start-up (service created, models
    loaded, extensions loaded). Frozen objects are never examined by the collector again: a
    reference cycle among them that becomes garbage later is not freed (:func:`gc.unfreeze`
    gives them back), which is why this is for start-up state, not for tests or short
    commands.

    Parameters
    ----------
    preload : iterable of str
        Modules to import first, so that what they build at import (matplotlib's font list,
        say) is frozen too instead of being walked by every later full collection.

    Returns
    -------
    int
        Objects now frozen (:func:`gc.get_freeze_count`).
    """
    for name in preload:
        importlib.import_module(name)
    gc.collect()  # what is already garbage is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()
