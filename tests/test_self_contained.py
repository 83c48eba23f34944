"""The repository runs from a clone of itself alone.

Nothing the project runs (code, tests, benchmarks, scripts, the Makefile, CI) may read the
developers' ``../shared`` folder or any other path outside the repository: a clone elsewhere
has neither. What the tests need from there is copied in (tests/fixtures/, with its licence).
The check is textual, over every tracked code and config file, so it also catches readers
that only run in ``make bench`` or CI.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = PurePosixPath(Path(__file__).resolve().relative_to(REPO).as_posix())

# Text the checks read: code, scripts and the build's and deployment's configuration.
CODE_SUFFIXES = {".py", ".sh", ".toml", ".cfg", ".ini", ".yaml", ".yml"}
CODE_NAMES = {"Makefile"}
CODE_DIRS = {".ci", ".chalice"}
# Data copied into the project: it is what is read, it reads nothing.
DATA_DIRS = {PurePosixPath("tests/fixtures")}
SKIP_WHEN_WALKING = {".git", ".venv", ".venv-checkov", ".devstack", "build", "dist",
                     "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}

# Literals with ``..`` segments that are not paths the project reads, each with why.
NOT_PATHS = {
    # A locale name the formatter must refuse (path traversal through the locale).
    (PurePosixPath("tests/test_formatting.py"), "../../etc"),
    # An export id the queue worker must drop (path traversal through the message).
    (PurePosixPath("tests/test_exports.py"), "../../etc"),
    # A time zone name the notice settings must refuse (zoneinfo reads files by that name).
    (PurePosixPath("tests/test_notices_timing.py"), "../../etc"),
}

SHARED = re.compile(
    r"\.\./+shared\b"                              # ../shared, ../../shared/...
    r"|\bshared/+(?:stripe|paypal|hooks)\b"        # its contents, by any prefix
    r"|[\"']shared[\"']\s*(?:/|,|\))"              # Path(...) / "shared" / ..., join(..., "shared")
    r"|/\s*[\"']shared[\"']")
PARENTS_INDEX = re.compile(r"__file__\W*(?:\.(?:resolve|absolute)\(\))?\s*\)?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\W*(?:\.(?:resolve|absolute)\(\))?\s*\)?((?:\.parent\b)+)")
DIRNAME_NEST = re.compile(r"((?:os\.path\.dirname\(\s*)+)(?:os\.path\.(?:abspath|realpath)\(\s*)?__file__")
DOTDOT_LITERAL = re.compile(r"""["']((?:[^"'\s]*/)?\.\.(?:/[^"'\s]*)?)["']""")
SHELL_DIRNAME_UP = re.compile(r"dirname\s+\"?\$(?:\{BASH_SOURCE\[0\]\}|0|BASH_SOURCE)\"?\s*\)\"?((?:/\.\.)+)")
MACHINE_PATH = re.compile(r"""["'](/(?:work|home|Users|root)/[^"']*)["']""")


def _tracked_files() -> list[PurePosixPath]:
    if (REPO / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                             capture_output=True).stdout.decode()
        return [PurePosixPath(p) for p in out.split("\0") if p]
    # An unpacked source archive: the same files, found by walking.
    found = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if path.is_file() and not SKIP_WHEN_WALKING.intersection(rel.parts):
            found.append(PurePosixPath(rel.as_posix()))
    return found


def _is_code(rel: PurePosixPath) -> bool:
    if any(rel.is_relative_to(d) for d in DATA_DIRS):
        return False
    return (rel.suffix in CODE_SUFFIXES or rel.name in CODE_NAMES
            or (len(rel.parts) > 1 and rel.parts[0] in CODE_DIRS))


def outside_reads(rel: PurePosixPath, text: str) -> list[str]:
    """What in ``text`` (the file at ``rel`` in the repo) points outside the repository."""
    # Directories between the file and the repository's root: how far up it may climb.
    depth = len(rel.parts) - 1
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{n}: {line.strip()}"
        if SHARED.search(line):
            found.append(f"{where}  (the developers' shared folder)")
        for m in PARENTS_INDEX.finditer(line):
            if int(m.group(1)) > depth:
                found.append(f"{where}  (parents[{m.group(1)}] is above the repository)")
        for m in PARENT_CHAIN.finditer(line):
            if m.group(1).count(".parent") - 1 > depth:
                found.append(f"{where}  (.parent chain climbs above the repository)")
        for m in DIRNAME_NEST.finditer(line):
            if m.group(1).count("dirname") - 1 > depth:
                found.append(f"{where}  (nested dirname climbs above the repository)")
        for m in SHELL_DIRNAME_UP.finditer(line):
            if m.group(1).count("..") > depth:
                found.append(f"{where}  (script directory/.. climbs above the repository)")
        for m in DOTDOT_LITERAL.finditer(line):
            literal = m.group(1)
            ups = 0
            for part in PurePosixPath(literal).parts:
                if part != "..":
                    break
                ups += 1
            # Whether a literal is read from the file's directory or from the repository's
            # root (make's and the tests' working directory), more ``..`` than the file's
            # depth leaves the repository either way.
            if ups > depth and (rel, literal) not in NOT_PATHS:
                found.append(f"{where}  ({literal!r} climbs above the repository)")
        for m in MACHINE_PATH.finditer(line):
            found.append(f"{where}  (absolute path of one machine: {m.group(1)!r})")
    return found


def test_nothing_tracked_reads_outside_the_repository():
    files = [rel for rel in _tracked_files() if _is_code(rel) and rel != THIS]
    # The scan must see the places such reads used to live, or it proves nothing.
    assert {PurePosixPath("tests/stripe_events.py"), PurePosixPath("Makefile"),
            PurePosixPath(".ci/run"), PurePosixPath("bench/webhooks.py")} <= set(files)
    problems = []
    for rel in files:
        try:
            text = (REPO / rel).read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            continue  # deleted in the working tree, or binary
        problems += outside_reads(rel, text)
    assert not problems, "reads outside the repository:\n" + "\n".join(problems)


@pytest.mark.parametrize("rel, line", [
    # What tests/stripe_events.py used to do.
    ("tests/stripe_events.py",
     '(Path(__file__).resolve().parents[2] / "shared" / "stripe" / "fixtures.json").read_text()'),
    ("bench/x.py", 'json.load(open("../shared/stripe/fixtures.json"))'),
    ("Makefile", "\tcp ../shared/paypal/signed-deliveries.json build/"),
    ("tests/x.py", 'ROOT = Path(__file__).resolve().parent.parent.parent'),
    ("tests/x.py", 'os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "x")'),
    ("tests/x.py", 'data = Path("../../elsewhere/data.json")'),
    ("infra/x.sh", 'root="$(cd "$(dirname "$0")/../.." && pwd)"'),
    ("bench/x.py", 'short = name.split("/work/main/")[-1]'),
    ("tests/x.py", 'p = os.path.join(here, "..", "shared", "stripe")'),
])
def test_the_check_finds_reads_outside(rel, line):
    assert outside_reads(PurePosixPath(rel), line)


@pytest.mark.parametrize("rel, line", [
    ("tests/stripe_events.py",
     '(Path(__file__).resolve().parent / "fixtures" / "stripe" / "fixtures.json").read_text()'),
    ("tests/test_infra.py", "REPO = Path(__file__).resolve().parents[1]"),
    ("bench/coldstart.py", "REPO = Path(__file__).resolve().parent.parent"),
    (".ci/run", 'cd "$(dirname "$0")/.."'),
    ("infra/package.sh", 'repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"'),
    ("bench/report.py", "times are this machine's and it is shared and noisy"),
])
def test_the_check_lets_reads_inside_pass(rel, line):
    assert not outside_reads(PurePosixPath(rel), line)


def test_the_stripe_fixtures_ship_with_their_licence():
    fixtures = REPO / "tests" / "fixtures" / "stripe"
    licence = (fixtures / "LICENSE").read_text()
    assert "MIT License" in licence and "Stripe, Inc." in licence
    assert "github.com/stripe/openapi" in licence
    assert (fixtures / "fixtures.json").is_file()
