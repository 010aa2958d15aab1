"""mer_models.pool: workers answer like the engine, and die with their parent (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PARENT = """
import sys, time
from mer_models.pool import EngineSpec, WorkerPool
from mer_models.config import AnalysisConfig
pool = WorkerPool(EngineSpec(__import__("pathlib").Path(sys.argv[1]), AnalysisConfig()), 2)
futures = [pool.submit(sys.argv[2]) for _ in range(2)]
[f.result() for f in futures]
print("ready", flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_parent_is_killed(tiny_models_dir: Path,
                                                mood_files: dict[str, Path]) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tiny_models_dir),
                               str(mood_files["Q1"])], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "ready"
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        workers = [int(pid) for pid in children]
        assert len(workers) >= 2 and all(_alive(pid) for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "orphaned workers kept running"
    finally:
        parent.kill()
