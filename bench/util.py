"""Small helpers shared by the benches."""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time


@contextlib.contextmanager
def quiet(counter: dict | None = None):
    """Send file descriptor 1 (powertools' JSON logs and EMF metrics) away meanwhile; with
    ``counter``, to a temporary file whose size lands in ``counter["bytes"]`` (what the
    function would send to CloudWatch Logs).

    The app still formats and writes every line, as it does in Lambda; only the
    terminal is spared. Done on the descriptor because powertools' log handler holds
    the original ``sys.stdout`` object.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    sink_file = tempfile.TemporaryFile() if counter is not None else None  # noqa: SIM115 (closed below)
    sink = os.dup(sink_file.fileno()) if sink_file else os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(sink)
        if sink_file is not None:
            counter["bytes"] = counter.get("bytes", 0) + os.fstat(sink_file.fileno()).st_size
            sink_file.close()


def timed(fn, n: int) -> list[float]:
    """Call ``fn(i)`` for i in range(n); seconds per call."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def summary(samples: list[float]) -> dict:
    s = sorted(samples)
    return {
        "n": len(s),
        "mean_ms": statistics.fmean(s) * 1000,
        "median_ms": statistics.median(s) * 1000,
        "p90_ms": s[min(len(s) - 1, int(len(s) * 0.9))] * 1000,
    }


def log(*parts) -> None:
    print("bench:", *parts, file=sys.stderr, flush=True)
