"""Cold start: importing the Lambda entry module (``app``) in a fresh interpreter, against
``import boto3`` alone; and the deployment zip's size, before and after infra/package.sh
trims it.

Two set-ups, both with ``PYTHONDONTWRITEBYTECODE=1`` so no run leaves bytecode for the next:
  source  app.py and chalicelib copied to a temporary folder without ``__pycache__``; the
          libraries come from the virtualenv as installed (with their .pyc files);
  zip     the trimmed deployment.zip unpacked, next to the SDK the Lambda runtime provides
          (boto3, botocore, … from this virtualenv), in a Python started with ``-S`` (no
          site-packages): the libraries in the zip have no .pyc, as in Lambda, so they are
          compiled on every cold start. This is the closer picture of a Lambda cold start.
Each figure alternates the runs (app, boto3, bare interpreter) so drift hits all alike.

By depth (a diagnostic, not the headline): the same two imports made from inside 0 to
DEPTHS-1 nested Python calls, CPU time, medians. CPython 3.11 keeps Python frames in 16 KiB
chunks and frees a chunk as soon as the stack drops below it, so work that calls in and out
right at a chunk boundary pays an mmap/munmap pair per call (python/cpython#142183; the 3.13
and later branches cache one chunk since March 2026, 3.11 does not). Where the boundary
falls depends on how deep the import runs: ``python -c "import app"`` puts urllib3's regex
compilation right on it (~5,900 munmap calls, against 15 for ``import boto3``), Lambda's
bootstrap imports the handler from deeper down.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

from bench.util import log

REPO = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_COLD_ROUNDS", "12"))
DEPTHS = int(os.environ.get("BENCH_COLD_DEPTHS", "9"))
DEPTH_ROUNDS = int(os.environ.get("BENCH_COLD_DEPTH_ROUNDS", "3"))
RUNTIME_PROVIDED = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"]
MEASURE = ("import time, sys; t = time.perf_counter(); import {module}; "
           "sys.stdout.write(repr(time.perf_counter() - t))")
NESTED = ("import sys, time\n"
          "def nest(n):\n"
          "    if n:\n"
          "        return nest(n - 1)\n"
          "    t = time.process_time()\n"
          "    __import__(sys.argv[1])\n"
          "    return time.process_time() - t\n"
          "sys.stdout.write(repr(nest(int(sys.argv[2]))))\n")

# Groups for the zip's composition.
ZIP_GROUPS = {
    "receipt PDFs (fpdf2, fontTools, defusedxml, DejaVu fonts)": (
        "fpdf", "fontTools", "PIL", "pillow.libs", "defusedxml", "fpdf2-", "fonttools-",
        "pillow-", "defusedxml-", "chalicelib/receipts/fonts"),
    "stripe with requests, idna, charset_normalizer, certifi": (
        "stripe", "requests", "idna", "charset_normalizer", "certifi", "typing_extensions"),
    "babel": ("babel",),
    "aws_lambda_powertools": ("aws_lambda_powertools",),
    "app code (app.py, chalicelib)": ("app.py", "chalicelib"),
}


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_ENDPOINT"))}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "TABLE_NAME": "billing-portal"})
    env.update(extra or {})
    return env


def _run(args: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(process wall seconds, in-process import seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{args}: {out.stderr[-2000:]}")
    return wall, float(out.stdout or 0)


def _compare(python_args: list[str], cwd: Path, env: dict) -> dict:
    samples = {"app": [], "boto3": [], "bare": []}
    for _ in range(ROUNDS):
        for name, module in (("app", "app"), ("boto3", "boto3"), ("bare", None)):
            code = MEASURE.format(module=module) if module else "pass"
            samples[name].append(_run([*python_args, "-c", code], cwd, env))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(i for _, i in v))
           for k, v in samples.items()}
    return {
        "rounds": ROUNDS,
        "process_ms": {k: w * 1000 for k, (w, _) in med.items()},
        "import_ms": {k: i * 1000 for k, (_, i) in med.items() if k != "bare"},
        "ratio_process": med["app"][0] / med["boto3"][0],
        "ratio_import": med["app"][1] / med["boto3"][1],
    }


def _by_depth(python_args: list[str], cwd: Path, env: dict) -> dict:
    """app ÷ boto3 (import CPU time, medians) with the import made DEPTH calls deep."""
    samples: dict = {}
    for _ in range(DEPTH_ROUNDS):
        for depth in range(DEPTHS):
            for module in ("app", "boto3"):
                _, cpu = _run([*python_args, "-c", NESTED, module, str(depth)], cwd, env)
                samples.setdefault(depth, {}).setdefault(module, []).append(cpu)
    ratios = {depth: statistics.median(s["app"]) / statistics.median(s["boto3"])
              for depth, s in samples.items()}
    return {
        "rounds": DEPTH_ROUNDS,
        "import_cpu_ms": {depth: {m: statistics.median(v) * 1000 for m, v in s.items()}
                          for depth, s in samples.items()},
        "ratio": ratios,
        "ratio_median": statistics.median(ratios.values()),
        "ratio_min": min(ratios.values()),
        "ratio_max": max(ratios.values()),
    }


def _importtime(python_args: list[str], cwd: Path, env: dict) -> dict:
    """``-X importtime`` of ``import app``: self time summed per top-level package, and the
    biggest cumulative entries directly under app's own imports."""
    out = subprocess.run([*python_args, "-X", "importtime", "-c", "import app"], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=120)
    by_package: Counter = Counter()
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        self_us, cumulative_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
        by_package[name.split(".")[0]] += self_us
        rows.append((indent, name, cumulative_us))
    total = sum(by_package.values())
    heavy = ("stripe", "jinja2", "babel", "fpdf", "PIL", "fontTools", "requests", "markupsafe")
    top_level = sorted(((name, us) for indent, name, us in rows if indent <= 3),
                       key=lambda r: -r[1])[:12]
    return {
        "total_ms": total / 1000,
        "self_ms_by_package": {k: v / 1000 for k, v in by_package.most_common(15)},
        "share_by_package": {k: v / total for k, v in by_package.most_common(15)},
        "direct_imports_cumulative_ms": {name: us / 1000 for name, us in top_level},
        "heavy_loaded_at_import": sorted(h for h in heavy if h in by_package),
        "heavy_lazy": sorted(h for h in heavy if h not in by_package),
    }


def _source_setup(root: Path) -> Path:
    src = root / "source"
    src.mkdir()
    shutil.copy2(REPO / "app.py", src / "app.py")
    shutil.copytree(REPO / "chalicelib", src / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def _lambda_python(runtime: str) -> str:
    """The interpreter of the function's runtime (``python3.13``): the virtualenv
    infra/package.sh packages with (build/venv-3.13), else this one if it is that version."""
    version = runtime.removeprefix("python")
    candidate = REPO / "build" / f"venv-{version}" / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    raise RuntimeError(f"no {runtime} interpreter for the zip variant (run infra/package.sh)")


def _zip_setup(root: Path, zip_path: Path, python: str) -> tuple[Path, str]:
    """The zip unpacked, and beside it the SDK the runtime provides, from ``python``'s
    site-packages (the same versions the package was checked against)."""
    task, runtime = root / "task", root / "runtime"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(task)
    runtime.mkdir()
    finder = ("import importlib.util, sys\n"
              "for m in sys.argv[1:]:\n"
              "    print(importlib.util.find_spec(m).origin)\n")
    origins = subprocess.run([python, "-c", finder, *RUNTIME_PROVIDED], capture_output=True,
                             text=True, check=True, timeout=60).stdout.split()
    for origin in origins:
        target = os.path.dirname(origin) if origin.endswith("__init__.py") else origin
        os.symlink(target, runtime / os.path.basename(target))
    return task, f"{task}{os.pathsep}{runtime}"


def package() -> dict:
    """Run infra/package.sh into a temporary folder; sizes before and after trimming."""
    outdir = Path(tempfile.mkdtemp(prefix="bench-package-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    out = subprocess.run(["bash", str(REPO / "infra" / "package.sh"), str(outdir)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"infra/package.sh failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    m = re.search(r"== trimmed: before (\d+) bytes, after (\d+) bytes", out.stdout)
    zip_path = outdir / "deployment.zip"
    groups: Counter = Counter()
    unzipped = 0
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            unzipped += info.file_size
            group = next((g for g, prefixes in ZIP_GROUPS.items()
                          if info.filename.startswith(prefixes)), "other")
            groups[group] += info.compress_size
    dropped = re.findall(r"dropped\s+(\d+) files,\s+([\d.]+) MiB zipped: (.+)", out.stdout)
    compiled = re.search(r"(\d+) modules compiled: \+([\d.]+) MiB", out.stdout)
    template = json.loads((outdir / "sam.json").read_text())
    runtime = next(r["Properties"]["Runtime"] for r in template["Resources"].values()
                   if r.get("Properties", {}).get("Runtime"))
    return {
        "zip": str(zip_path),
        "runtime": runtime,
        "seconds": time.perf_counter() - t0,
        "before_bytes": int(m[1]) if m else None,
        "trimmed_bytes": int(m[2]) if m else None,
        "after_bytes": zip_path.stat().st_size,  # trimmed, plus the precompiled modules
        "unzipped_bytes": unzipped,
        "by_group_bytes": dict(groups.most_common()),
        "dropped": [{"files": int(f), "mib": float(mb), "why": why} for f, mb, why in dropped],
        "notes": [line.strip() for line in out.stdout.splitlines()
                  if re.match(r"\s*(kept (TYPE_ONLY|NOT_IMPORTED|OPTIONAL_IMPORTS) |note: )", line)],
        "precompiled_modules": int(compiled[1]) if compiled else 0,
        "precompiled_mib": float(compiled[2]) if compiled else 0.0,
        "check": next((line.strip() for line in out.stdout.splitlines()
                       if line.strip().startswith("ok:")), None),
    }


def run() -> dict:
    out: dict = {}
    log("cold start: infra/package.sh (chalice package + trim + check)")
    out["package"] = package()
    root = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    try:
        log(f"cold start: source copy, {ROUNDS} rounds")
        src = _source_setup(root)
        env = _env()
        out["source"] = _compare([sys.executable], src, env)
        out["source"]["importtime"] = _importtime([sys.executable], src, env)
        out["source"]["by_depth"] = _by_depth([sys.executable], src, env)

        lambda_python = _lambda_python(out["package"]["runtime"])
        log(f"cold start: unpacked zip + runtime SDK ({out['package']['runtime']}), {ROUNDS} rounds")
        task, path = _zip_setup(root, Path(out["package"]["zip"]), lambda_python)
        env = _env({"PYTHONPATH": path})
        out["zip"] = _compare([lambda_python, "-S"], task, env)
        out["zip"]["python"] = out["package"]["runtime"]
        out["zip"]["importtime"] = _importtime([lambda_python, "-S"], task, env)
        out["zip"]["by_depth"] = _by_depth([lambda_python, "-S"], task, env)
        out["source"]["python"] = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(Path(out.get("package", {}).get("zip", "/nonexistent")).parent,
                      ignore_errors=True)
    return out
