#!/usr/bin/env bash
# Package the Chalice app (repo root) merged with infra/template.yaml into one
# CloudFormation/SAM template, and lint it.
#
#   infra/package.sh [OUTDIR]        # OUTDIR defaults to build/package
#   STAGE=dev infra/package.sh       # Chalice stage, prod by default
#
# Output: OUTDIR/sam.json and OUTDIR/deployment.zip (see docs/deploy.md to deploy).
# Chalice writes YAML (sam.yaml) whenever the merge template is YAML; it is converted
# to OUTDIR/sam.json, the one artifact the deploy steps use.
#
# The zip Chalice writes is then trimmed (see "trim" below, and docs/benchmarks.md):
#   RUNTIME_PROVIDED  packages the Lambda Python runtime already has: "the Lambda Python
#                     runtimes include the AWS SDK for Python (Boto3) and its dependencies"
#                     (docs.aws.amazon.com/lambda/latest/dg/python-package.html); shipping
#                     our own copy of them is also what AWS warns can misalign versions.
#   BABEL_LOCALES     the locales whose Babel data is kept (and the locales they inherit
#                     from, down to root); every other locale file goes. By default the
#                     product's SUPPORTED_LOCALES (chalicelib/formatting.py), the only ones it
#                     formats in: a merchant's other locale setting falls back to its language
#                     or to English (formatting.supported_locale).
#   never loaded      C/Cython sources and headers (*.c *.pyx *.pxd *.h), __pycache__, type
#                     stubs (*.pyi, py.typed), pip's install records (*.dist-info/RECORD, read
#                     only to uninstall), wheels' *.data/ folders (scripts and man pages pip
#                     installs outside site-packages), powertools' Swagger UI bundle (served
#                     only by its own event handler, which the app does not use).
#   ACCELERATED_PURE  packages whose compiled accelerators (*.so) have a pure-Python module
#                     of the same name beside them (fontTools ships both; charset_normalizer's
#                     mypyc builds of md.py and cd.py, which requests uses only to guess the
#                     encoding of a response that declares none); the .so goes and Python
#                     imports the .py. Slower, same results.
#   TYPE_ONLY         subpackages that exist for type checkers only: stripe/params (request
#                     TypedDicts, ~6 MB unzipped), which stripe imports only under
#                     `if TYPE_CHECKING:` or on explicit `stripe.params` access. Checked on
#                     every build by reading the package's own imports: if any module imports
#                     it at run time, it is kept and the build says so.
#   NOT_IMPORTED      folders and modules of the libraries that nothing the zip keeps imports:
#                     powertools' event handlers and the utilities the app does not use (it
#                     uses Logger and Metrics), Babel's message-catalog tools (the app formats
#                     numbers and dates only), and the parts of fontTools for font sources and
#                     font building (UFO, feature files, VOLT, merging, curve conversion, Type 1
#                     and AFM) that fpdf2's TrueType subsetting does not use. Checked on every
#                     build from the imports of every module kept, also those inside functions
#                     and module names in strings (importlib, lazy-import tables): anything a
#                     kept module imports is kept, and the build says so. An import that fails
#                     whatever is trimmed does not count (powertools' pydantic helpers import
#                     pydantic, which is not installed).
#   OPTIONAL_IMPORTS  packages that every kept module importing them imports inside
#                     `try: … except ImportError:`, coping without them, and that the product
#                     does not need: Pillow, which fpdf2 imports only to add images (without
#                     it fpdf2 warns once and can add none; a receipt draws none, its logo is
#                     text). Dropped with its dist-info and the libraries its wheel vendors
#                     (pillow.libs); checked on every build from the imports of every kept
#                     module (an import outside such a `try` keeps the package, and the
#                     build says so), and the build fails if app code draws images or
#                     imports Pillow.
#   UNREACHED         code a kept module names but the product's calls never reach: stripe/
#                     events, the typed classes of Stripe's v2 "thin" events, which stripe
#                     imports only to convert a response of its v2 API (`api_mode == "V2"`,
#                     object `v2.core.event`) or for its event-notification handler (only
#                     under TYPE_CHECKING otherwise). The product calls the v1 API and parses
#                     webhooks itself; the build fails if app code names Stripe's v2 API or
#                     its event classes.
#   PRECOMPILE        1 (default): the modules `import app` loads from the zip (the app and
#                     the libraries on the cold-start path) are shipped compiled, as
#                     __pycache__/*.cpython-3XX.pyc in unchecked-hash mode (valid whatever the
#                     files' times after unzipping). Lambda's file system is read-only, so
#                     without them every cold start compiles them again (measured: about half
#                     of the import time; docs/benchmarks.md). Only when this Python's version
#                     is the function's runtime (sam.json); otherwise skipped, with a note.
# Then the trimmed zip is unpacked next to a copy of what the runtime provides and checked
# in a Python without site-packages: `import app`, every module chalicelib imports (also
# inside functions), every module kept of the packages NOT_IMPORTED trims (an
# import that misses a trimmed module fails the build), money and dates in every kept locale,
# text in each of the product's fonts, and a receipt PDF built by chalicelib.receipts.
# TRIM=0 skips trimming and the check.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

outdir="${1:-build/package}"
stage="${STAGE:-prod}"
merge_template="infra/template.yaml"
trim="${TRIM:-1}"
RUNTIME_PROVIDED="${RUNTIME_PROVIDED:-boto3 botocore s3transfer jmespath dateutil six urllib3}"
BABEL_LOCALES="${BABEL_LOCALES:-$(cd "$repo_root" && python3 -c 'from chalicelib.formatting import SUPPORTED_LOCALES; print(*SUPPORTED_LOCALES)')}"
ACCELERATED_PURE="${ACCELERATED_PURE:-fontTools charset_normalizer}"
TYPE_ONLY="${TYPE_ONLY:-stripe/params}"
NOT_IMPORTED="${NOT_IMPORTED-
    aws_lambda_powertools/event_handler aws_lambda_powertools/middleware_factory
    aws_lambda_powertools/metrics/provider/datadog
    aws_lambda_powertools/utilities/auth_alpha aws_lambda_powertools/utilities/batch
    aws_lambda_powertools/utilities/circuit_breaker aws_lambda_powertools/utilities/data_classes
    aws_lambda_powertools/utilities/data_masking aws_lambda_powertools/utilities/feature_flags
    aws_lambda_powertools/utilities/idempotency aws_lambda_powertools/utilities/kafka
    aws_lambda_powertools/utilities/metadata aws_lambda_powertools/utilities/parameters
    aws_lambda_powertools/utilities/parser aws_lambda_powertools/utilities/streaming
    aws_lambda_powertools/utilities/typing aws_lambda_powertools/utilities/validation
    aws_lambda_powertools/utilities/serialization.py
    babel/messages
    fontTools/ufoLib fontTools/feaLib/builder.py
    fontTools/feaLib/parser.py fontTools/feaLib/lexer.py fontTools/feaLib/variableScalar.py
    fontTools/voltLib fontTools/mtiLib fontTools/merge fontTools/diff fontTools/cu2qu
    fontTools/qu2cu fontTools/t1Lib fontTools/afmLib.py fontTools/tfmLib.py
    fontTools/fontBuilder.py fontTools/misc/filesystem fontTools/misc/psLib.py
    fontTools/misc/psOperators.py fontTools/ttLib/scaleUpem.py fontTools/ttLib/removeOverlaps.py
    fontTools/varLib/avar fontTools/varLib/avarPlanner.py fontTools/varLib/hvar.py
    fontTools/varLib/interpolatable*.py fontTools/varLib/mutator.py fontTools/varLib/plot.py
    fontTools/pens/cu2quPen.py fontTools/pens/qu2cuPen.py fontTools/annotations.py
    fontTools/*__main__.py}"
OPTIONAL_IMPORTS="${OPTIONAL_IMPORTS-PIL}"
UNREACHED="${UNREACHED-stripe/events}"
PRECOMPILE="${PRECOMPILE:-1}"

# Chalice needs a region to render ARNs and endpoints, even though it calls no AWS API here.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

# The Lambda runtime is the version of the Python chalice runs with. LAMBDA_PYTHON picks it
# (python3.13 by default: python3.11, the development Python here, passed AWS's deprecation
# on 2026-06-30 and functions on it can no longer be updated since 2026-08-31; see
# docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html). chalice, PyYAML, boto3 (the
# runtime's SDK, for the check below) and the app's requirements are installed for it into
# build/venv-<version>, rebuilt when the requirements change. LAMBDA_PYTHON="" packages with whatever chalice is on PATH (or .venv's).
LAMBDA_PYTHON="${LAMBDA_PYTHON-python3.13}"
if [ -n "$LAMBDA_PYTHON" ]; then
    if ! "$LAMBDA_PYTHON" -c pass >/dev/null 2>&1; then
        # A pyenv shim answers only for the selected version: take the installed one.
        wanted="${LAMBDA_PYTHON#python}"
        found="$(ls -d "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$wanted".*/bin/"$LAMBDA_PYTHON" 2>/dev/null | sort -V | tail -n1)"
        if [ -n "$found" ] && "$found" -c pass >/dev/null 2>&1; then
            LAMBDA_PYTHON="$found"
        else
            echo "package.sh: $LAMBDA_PYTHON not found (the Lambda runtime the package targets;" \
                 "set LAMBDA_PYTHON to another python3.12+)" >&2
            exit 1
        fi
    fi
    lambda_version="$("$LAMBDA_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    lambda_venv="$repo_root/build/venv-$lambda_version"
    chalice_pin="$(grep -E '^(chalice|pyyaml|boto3)==' requirements-dev.txt | tr '\n' ' ')"
    stamp="$(cat requirements.txt; echo "$chalice_pin")"
    if [ ! -x "$lambda_venv/bin/chalice" ] || [ "$(cat "$lambda_venv/.requirements" 2>/dev/null)" != "$stamp" ]; then
        echo "== $lambda_venv: chalice and the requirements for python$lambda_version"
        rm -rf "$lambda_venv"
        "$LAMBDA_PYTHON" -m venv "$lambda_venv"
        "$lambda_venv/bin/python" -m pip install --quiet --upgrade 'pip<26.3' \
            2> >(grep -v '^WARNING: Location' >&2)
        # shellcheck disable=SC2086  # the pins are words
        "$lambda_venv/bin/python" -m pip install --quiet -r requirements.txt $chalice_pin \
            2> >(grep -v '^WARNING: Location' >&2)
        printf '%s' "$stamp" > "$lambda_venv/.requirements"
    fi
    PATH="$lambda_venv/bin:$PATH"
fi
# Other tools (cfn-lint): the repo's virtualenv first, else whatever is on PATH.
if [ -x "$repo_root/.venv/bin/cfn-lint" ]; then
    mkdir -p "$repo_root/build/tools"
    ln -sf "$repo_root/.venv/bin/cfn-lint" "$repo_root/build/tools/cfn-lint"
    PATH="$repo_root/build/tools:$PATH"
fi
if ! command -v chalice >/dev/null 2>&1 && [ -x "$repo_root/.venv/bin/chalice" ]; then
    PATH="$repo_root/.venv/bin:$PATH"
fi
for tool in chalice cfn-lint; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "package.sh: $tool not found (pip install -r requirements-dev.txt)" >&2
        exit 1
    }
done
# A Python with PyYAML, to convert the template: the one chalice runs with, as a rule.
chalice_python=""
for candidate in "$(dirname "$(command -v chalice)")/python" "$(head -n1 "$(command -v chalice)" | sed -e 's/^#!//' -e 's/ .*//')" python3; do
    if "$candidate" -c 'import yaml' >/dev/null 2>&1; then chalice_python="$candidate"; break; fi
done
[ -n "$chalice_python" ] || { echo "package.sh: no Python with PyYAML found" >&2; exit 1; }

[ -f app.py ] || { echo "package.sh: no app.py in $repo_root" >&2; exit 1; }

echo "== cfn-lint $merge_template"
# The file only completes Chalice's template: APIHandler's Handler/Runtime come from
# Chalice, hence W2533 (Handler/Runtime missing) is expected here and only here.
cfn-lint --non-zero-exit-code error --ignore-checks W2533 -- "$merge_template"

echo "== chalice package --stage $stage --merge-template $merge_template $outdir"
mkdir -p "$outdir"
rm -f "$outdir/sam.json" "$outdir/sam.yaml" "$outdir/deployment.zip"
chalice package --stage "$stage" --merge-template "$merge_template" "$outdir"

if [ -f "$outdir/sam.yaml" ]; then
    "$chalice_python" - "$outdir/sam.yaml" "$outdir/sam.json" <<'EOF'
import json
import sys

import yaml

with open(sys.argv[1]) as src:
    template = yaml.safe_load(src)
with open(sys.argv[2], "w") as dst:
    json.dump(template, dst, indent=2)
    dst.write("\n")
EOF
    rm -f "$outdir/sam.yaml"
fi
[ -f "$outdir/sam.json" ] || { echo "package.sh: chalice wrote no template" >&2; exit 1; }

echo "== cfn-lint $outdir/sam.json"
cfn-lint --non-zero-exit-code error -- "$outdir/sam.json"

if [ "$trim" != "0" ]; then
    echo "== trim $outdir/deployment.zip"
    RUNTIME_PROVIDED="$RUNTIME_PROVIDED" BABEL_LOCALES="$BABEL_LOCALES" \
    ACCELERATED_PURE="$ACCELERATED_PURE" TYPE_ONLY="$TYPE_ONLY" NOT_IMPORTED="$NOT_IMPORTED" \
    OPTIONAL_IMPORTS="$OPTIONAL_IMPORTS" UNREACHED="$UNREACHED" \
        "$chalice_python" - "$outdir/deployment.zip" <<'EOF'
import ast
import fnmatch
import os
import re
import shutil
import sys
import zipfile
from collections import Counter, defaultdict

path = sys.argv[1]
runtime = os.environ["RUNTIME_PROVIDED"].split()
languages = os.environ["BABEL_LOCALES"].split()
accelerated = os.environ["ACCELERATED_PURE"].split()
type_only_candidates = os.environ["TYPE_ONLY"].split()
not_imported_entries = os.environ["NOT_IMPORTED"].split()
optional_imports = os.environ["OPTIONAL_IMPORTS"].split()
unreached_entries = os.environ["UNREACHED"].split()

# Distribution names of the runtime-provided modules, for their *.dist-info folders.
dist_names = {"dateutil": "python_dateutil"}
runtime_dist = tuple(f"{dist_names.get(m, m)}-".lower() for m in runtime)
NEVER_LOADED = re.compile(
    r"(^|/)__pycache__/|\.pyc$|\.(c|pyx|pxd|h)$|\.pyi$|(^|/)py\.typed$|\.dist-info/RECORD$"
    r"|^[^/]+\.data/"
    r"|^aws_lambda_powertools/event_handler/openapi/swagger_ui/.*\.(js|css)$")
def matches(entry: str, name: str) -> bool:
    """A list entry names a folder, a file, or a glob of files."""
    return name == entry or name.startswith(entry + "/") or fnmatch.fnmatchcase(name, entry)


def dotted(name: str) -> str:
    """The module a .py or extension module file is: a/b/__init__.py -> a.b."""
    module = re.sub(r"(\.cpython-[^/]*|\.abi3)?\.(py|so)$", "", name).replace("/", ".")
    return module[: -len(".__init__")] if module.endswith(".__init__") else module


with zipfile.ZipFile(path) as src:
    infos = src.infolist()
    names = {i.filename for i in infos}

    # Babel: the kept locales and every parent down to root.
    from babel.core import get_global

    parents = get_global("parent_exceptions")
    locale_files = {n[len("babel/locale-data/"):-4] for n in names
                    if n.startswith("babel/locale-data/") and n.endswith(".dat")}
    keep_locales = {"root"}
    for name in locale_files:
        if name in languages:
            keep_locales.add(name)
    for name in list(keep_locales):
        while name != "root":
            name = parents.get(name) or (name.rsplit("_", 1)[0] if "_" in name else "root")
            keep_locales.add(name)
    missing = [lang for lang in languages if lang not in locale_files]
    if missing:
        sys.exit(f"package.sh: BABEL_LOCALES names unknown locales: {missing}")

    def first_reason(name: str) -> str | None:
        """Why a file goes, by the rules that need no import analysis."""
        top = name.split("/", 1)[0]
        module = top[:-3] if top.endswith(".py") else top
        if module in runtime or (top.endswith((".dist-info", ".data"))
                                 and top.lower().startswith(runtime_dist)):
            return "provided by the Lambda runtime"
        if name.startswith("babel/locale-data/") and name.endswith(".dat") \
                and name[len("babel/locale-data/"):-4] not in keep_locales:
            return "Babel locales not in BABEL_LOCALES"
        if NEVER_LOADED.search(name):
            return "never loaded (sources, caches, type stubs, install records, unused assets)"
        if top in accelerated and name.endswith(".so"):
            if f"{name.split('.cpython-')[0].split('.abi3')[0]}.py" in names:
                return "compiled accelerators with a pure-Python twin"
        return None

    reason = {n: first_reason(n) for n in names}
    modules = {dotted(n): n for n in names if n.endswith(".py") and not reason[n]}
    # Top-level names an import can find: the zip's, the runtime's SDK, the standard library.
    present = {n.split("/", 1)[0].split(".", 1)[0] for n in names if not reason[n]}
    present |= set(runtime) | set(sys.stdlib_module_names)

    parsed: dict[str, tuple[list[str], list[str], list[str]]] = {}

    def imports(name: str) -> tuple[list[str], list[str], list[str]]:
        """(modules imported at run time, also inside functions, i.e. anywhere but under
        ``if TYPE_CHECKING:``; string constants that look like module names; top-level
        packages imported unconditionally by the module body) of one .py in the zip."""
        if name in parsed:
            return parsed[name]
        module = name[:-3].replace("/", ".")  # a.b.__init__ / a.b.c: relative imports' base
        tree = ast.parse(src.read(name))
        found, strings = [], []

        def visit(node, guarded):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for c in child.body:
                        visit_one(c, True)
                    for c in child.orelse:
                        visit_one(c, guarded)
                else:
                    visit_one(child, guarded)

        def visit_one(child, guarded):
            if not guarded and isinstance(child, ast.ImportFrom):
                target = child.module or ""
                if child.level:  # relative: resolve against the importing module
                    base = module.split(".")[: -child.level]
                    target = ".".join(base + ([target] if target else []))
                found.append(target)
                found.extend(f"{target}.{a.name}" for a in child.names)
            elif not guarded and isinstance(child, ast.Import):
                found.extend(a.name for a in child.names)
            elif isinstance(child, ast.Constant) and isinstance(child.value, str) \
                    and re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+(:\w+)?", child.value):
                strings.append(child.value.split(":")[0])  # importlib / entry-point style
            visit(child, guarded)

        visit(tree, False)
        body = []
        for node in tree.body:
            if isinstance(node, ast.Import):
                body.extend(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                body.append(node.module.split(".")[0])
        parsed[name] = (found, strings, body)
        return parsed[name]

    def doomed(target: str) -> bool:
        """Importing target always fails here: it, or a package on its way, unconditionally
        imports a top-level package that is neither in the zip nor in the runtime."""
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            name = modules.get(".".join(parts[:i]))
            if name and any(top not in present for top in imports(name)[2]):
                return True
        return False

    def unimported(entries: dict[str, str], use_strings: set[str]) -> dict[str, list[str]]:
        """The entries (entry -> variable) whose files no kept module imports at run time, as
        {entry: files}, by unit: a listed folder or file, or one file a glob matches.
        A unit a kept module imports is kept, and the build says so; repeated until nothing
        kept imports anything dropped. An import that fails anyway (doomed) does not count.
        For the variables in use_strings, a string naming a module counts as an import of it
        (importlib, lazy-import tables)."""
        origin = {}
        for entry in entries:
            files = [n for n in names if not reason[n] and matches(entry, n)]
            if any(c in entry for c in "*?["):
                origin.update({n: entry for n in files})
            elif files:
                origin[entry] = entry
        live = {unit: [n for n in names if not reason[n] and matches(unit, n)] for unit in origin}
        kept = defaultdict(list)
        while True:
            owner = {dotted(n): unit for unit, files in live.items() for n in files
                     if n.endswith((".py", ".so"))}
            dropping = {n for files in live.values() for n in files}
            blocked: defaultdict[str, set[str]] = defaultdict(set)
            for name in modules.values():
                if name in dropping or reason[name]:
                    continue
                found, strings, _ = imports(name)
                for target, statement in [(t, True) for t in found] + [(t, False) for t in strings]:
                    parts = target.split(".")
                    for i in range(1, len(parts) + 1):
                        unit = owner.get(".".join(parts[:i]))
                        if unit and (statement or entries[origin[unit]] in use_strings) \
                                and not doomed(target):
                            blocked[unit].add(name)
                            break
            if not blocked:
                for entry, notes in kept.items():
                    print(f"   kept {entries[entry]} {entry}: {'; '.join(notes)}")
                out = defaultdict(list)
                for unit, files in live.items():
                    out[origin[unit]].extend(files)
                return dict(out)
            for unit, importers in sorted(blocked.items()):
                kept[origin[unit]].append(f"{unit} (by {sorted(importers)[0]})"
                                          if unit != origin[unit] else
                                          f"imported at run time by {sorted(importers)[:3]}")
                del live[unit]

    # TYPE_ONLY: imported only under TYPE_CHECKING (strings do not count: stripe names its
    # params in a lazy-attribute table that only explicit `stripe.params` access uses).
    type_only = unimported({f: "TYPE_ONLY" for f in type_only_candidates
                            if any(n.startswith(f + "/") for n in names)}, use_strings=set())
    for files in type_only.values():
        for n in files:
            reason[n] = "type-checking only (" + ", ".join(type_only) + ")"
    listed = {e: "NOT_IMPORTED" for e in not_imported_entries}
    for entry, files in unimported(listed, use_strings={"NOT_IMPORTED"}).items():
        for n in files:
            reason[n] = "never imported (NOT_IMPORTED)"

    # UNREACHED: as long as the app code stays off Stripe's v2 API.
    if unreached_entries:
        app_code = (n for n in modules.values() if n.startswith("chalicelib/") or n == "app.py")
        for name in sorted(app_code):
            if re.search(rb"\.v2\b|stripe\.events|api_mode", src.read(name)):
                sys.exit(f"package.sh: {name} names Stripe's v2 API or its event classes: "
                         "clear UNREACHED")
        for n in names:
            if not reason[n] and any(matches(e, n) for e in unreached_entries):
                reason[n] = "never reached by the product's calls (UNREACHED)"

    # OPTIONAL_IMPORTS: every import of the package by a kept module sits in a `try:` with
    # an `except ImportError` (or ModuleNotFoundError, Exception) handler.
    def required_by(package: str) -> list[str]:
        out = []

        def visit(node, optional):
            for child in ast.iter_child_nodes(node):
                inner = optional
                if isinstance(child, ast.Try) and any(
                        h.type is None or re.search(r"\b(ImportError|ModuleNotFoundError|Exception)\b",
                                                    ast.unparse(h.type)) for h in child.handlers):
                    for c in child.body:
                        check(c, True)
                        visit(c, True)
                    for c in child.handlers + child.orelse + child.finalbody:
                        check(c, optional)
                        visit(c, optional)
                    continue
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    inner = True
                check(child, inner)
                visit(child, inner)

        def check(node, optional):
            if optional:
                return
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                       else [])
            if any(t == package or t.startswith(package + ".") for t in targets):
                out.append(current[0])

        current = [""]
        for name in sorted(modules.values()):
            if reason[name] or name.startswith(package + "/") or doomed(dotted(name)):
                continue  # (doomed: it cannot be imported anyway, e.g. fontTools' FreeType pen)
            current[0] = name
            visit(ast.parse(src.read(name)), False)
        return sorted(set(out))

    for package in optional_imports:
        if not any(n.startswith(package + "/") for n in names):
            continue
        app_code = (n for n in modules.values() if n.startswith("chalicelib/") or n == "app.py")
        for name in sorted(app_code):
            if re.search(rb"\.image\(|^\s*(from|import) " + package.encode() + rb"\b",
                         src.read(name), re.M):
                sys.exit(f"package.sh: {name} draws images or imports {package}: "
                         f"take {package} out of OPTIONAL_IMPORTS")
        needing = required_by(package)
        if needing:
            print(f"   kept OPTIONAL_IMPORTS {package}: imported outside a try by {needing[:3]}")
            continue
        dist = {n.split("/", 1)[0] for n in names
                if n.endswith(".dist-info/top_level.txt")
                and package in src.read(n).decode().split()}
        dist |= {n.split("/", 1)[0] for n in names if re.match(r"[^/]+\.dist-info/RECORD$", n)
                 and f"{package}/__init__.py" in src.read(n).decode()}
        libs = {d.split("-", 1)[0].lower() + ".libs" for d in dist}
        for n in names:
            top = n.split("/", 1)[0]
            if top == package or top in dist or top.lower() in libs:
                reason[n] = "optional imports the product does not need (OPTIONAL_IMPORTS)"
    unused_entries = sorted(e for e in listed if not any(matches(e, n) for n in names))
    if unused_entries:
        print(f"   note: listed but not in the zip: {unused_entries}")

    reasons = Counter()
    saved = Counter()
    tmp = path + ".trimmed"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in infos:
            why = reason[info.filename]
            if why:
                reasons[why] += 1
                saved[why] += info.compress_size
                continue
            dst.writestr(info, src.read(info.filename), zipfile.ZIP_DEFLATED, 9)
before = os.path.getsize(path)
shutil.move(tmp, path)
after = os.path.getsize(path)
for why, count in reasons.most_common():
    print(f"   dropped {count:5d} files, {saved[why] / 1048576:5.1f} MiB zipped: {why}")
print(f"   kept Babel locales: {len(keep_locales)} ({', '.join(sorted(languages))}, their parents)")
print(f"== trimmed: before {before} bytes, after {after} bytes "
      f"({before / 1048576:.1f} MiB -> {after / 1048576:.1f} MiB)")
EOF

    echo "== check the trimmed zip against the runtime's SDK (no site-packages)"
    check_dir="$(mktemp -d)"
    trap 'rm -rf "$check_dir"' EXIT
    "$chalice_python" - "$outdir/deployment.zip" "$check_dir" "$RUNTIME_PROVIDED" <<'EOF'
import importlib.util
import os
import sys
import zipfile

zip_path, root, runtime = sys.argv[1], sys.argv[2], sys.argv[3].split()
with zipfile.ZipFile(zip_path) as z:
    z.extractall(os.path.join(root, "task"))
# Stand-in for the runtime's /var/runtime: this Python's copies of what Lambda provides.
os.makedirs(os.path.join(root, "runtime"))
for module in runtime:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        sys.exit(f"package.sh: {module} is not installed here, cannot check the zip")
    origin = spec.origin
    src = os.path.dirname(origin) if origin.endswith("__init__.py") else origin
    os.symlink(src, os.path.join(root, "runtime", os.path.basename(src)))
EOF
    zip_abs="$(cd "$(dirname "$outdir/deployment.zip")" && pwd)/deployment.zip"
    runtime_version="$("$chalice_python" -c 'import json, sys; print(next(r["Properties"]["Runtime"] for r in json.load(open(sys.argv[1]))["Resources"].values() if r.get("Properties", {}).get("Runtime")))' "$outdir/sam.json")"
    this_version="$("$chalice_python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [ "$PRECOMPILE" = "1" ] && [ "$runtime_version" = "$this_version" ]; then
        echo "== precompile what \`import app\` loads ($runtime_version, unchecked-hash .pyc)"
        # From inside the unpacked zip: a script on stdin puts the working directory first
        # on sys.path, and the repo's own app.py must not stand in for the zip's.
        (cd "$check_dir/task" && AWS_DEFAULT_REGION="$AWS_DEFAULT_REGION" \
        PYTHONPATH="$check_dir/task:$check_dir/runtime" PYTHONDONTWRITEBYTECODE=1 \
            "$chalice_python" -S - "$check_dir/task" "$zip_abs" <<'EOF'
import os
import py_compile
import sys
import zipfile

task, zip_path = os.path.realpath(sys.argv[1]), sys.argv[2]
import app  # noqa: F401

compiled = []
for module in list(sys.modules.values()):
    source = getattr(module, "__file__", None) or ""
    if source.endswith(".py") and os.path.realpath(source).startswith(task + os.sep):
        target = py_compile.compile(
            source, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        compiled.append(os.path.relpath(target, task))
before = os.path.getsize(zip_path)
with zipfile.ZipFile(zip_path, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    present = set(z.namelist())
    for name in sorted(compiled):
        if name not in present:
            z.write(os.path.join(task, name), name)
print(f"   {len(compiled)} modules compiled: +{(os.path.getsize(zip_path) - before) / 1048576:.1f} MiB "
      f"zipped")
EOF
        )
    elif [ "$PRECOMPILE" = "1" ]; then
        echo "== precompile skipped: this Python is $this_version, the function runs $runtime_version"
    fi
    (cd "$check_dir/task" && AWS_DEFAULT_REGION="$AWS_DEFAULT_REGION" BABEL_LOCALES="$BABEL_LOCALES" \
    TRIMMED="$NOT_IMPORTED" \
    PYTHONPATH="$check_dir/task:$check_dir/runtime" PYTHONDONTWRITEBYTECODE=1 \
        "$chalice_python" -S - "$check_dir/task" <<'EOF'
import ast
import contextlib
import importlib
import io
import os
import re
import sys
import warnings
from pathlib import Path

task = Path(sys.argv[1])
assert not any(p.endswith("site-packages") for p in sys.path), sys.path
import app  # noqa: F401  the Lambda handler's module

assert Path(app.__file__).resolve().parent == task.resolve(), app.__file__

# Every module the product imports, also the lazy imports inside functions.
wanted = set()
for py in (task / "chalicelib").rglob("*.py"):
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            wanted.add(node.module)
# fpdf2 warns on import that, without Pillow (OPTIONAL_IMPORTS), it can add no images.
warnings.filterwarnings("ignore", message="Pillow could not be imported")
for name in sorted(wanted):
    importlib.import_module(name)
    origin = getattr(sys.modules[name], "__file__", None) or ""
    assert "site-packages" not in origin, (name, origin)
    assert not name.startswith(("app", "chalicelib")) or origin.startswith(str(task.resolve())), (
        name, origin)

from datetime import date
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_currency

for language in os.environ["BABEL_LOCALES"].split():
    format_currency(Decimal("1234.5"), "EUR", locale=language)
    format_date(date(2026, 3, 12), format="medium", locale=language)

# Every module kept of the packages NOT_IMPORTED trims imports, unless it
# needs something that is not installed anyway (an optional dependency): an import that
# misses a module of a package the zip holds means the trim took too much.
tops = sorted({entry.split("/", 1)[0] for entry in os.environ["TRIMMED"].split()})
casualties, loaded = [], 0
for top in tops:
    for py in sorted((task / top).rglob("*.py")):
        if py.name == "__main__.py" or "__pycache__" in py.parts:
            continue
        name = ".".join(py.relative_to(task).with_suffix("").parts).removesuffix(".__init__")
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                importlib.import_module(name)
            loaded += 1
        except Exception as exc:  # noqa: BLE001  optional dependencies fail here, untrimmed too
            missing = getattr(exc, "name", None) or ""
            m = re.search(r"cannot import name '(\w+)' from '([\w.]+)'", str(exc))
            if m:
                missing = f"{m[2]}.{m[1]}"
            path = task.joinpath(*missing.split("."))
            if missing.split(".")[0] in tops and not path.with_suffix(".py").exists() \
                    and not path.is_dir() and not list(path.parent.glob(path.name + ".*.so")):
                casualties.append(f"{name}: {exc}")
assert not casualties, "trimmed too much:\n" + "\n".join(casualties)

fonts = sorted((task / "chalicelib").rglob("*.ttf"))
for font in fonts:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("Check", "", str(font))
    pdf.add_page()
    pdf.set_font("Check", size=12)
    pdf.cell(text="Zoë Łukasiewicz — 1 234,50 € — ¥1,500 — Kraków — Ελληνικά — Ковалёва")
    assert bytes(pdf.output()).startswith(b"%PDF"), font
receipt = ""
if (task / "chalicelib" / "receipts" / "pdf.py").exists():
    # The product's own receipt: both fonts, the line-item table, money and dates.
    from chalicelib.receipts import service
    from chalicelib.receipts.pdf import build_pdf

    payment = {"id": "pay_1", "status": "succeeded", "amount": 12300, "currency": "eur",
               "tax": 2300, "description": None, "number": "INV-0042",
               "paid_at": "2026-03-12T10:00:00Z", "card": {"brand": "visa", "last4": "4242"},
               "lines": [{"description": "Crème brûlée course", "amount": 10000, "quantity": 2}],
               "refunded": 2300, "refunds": [{"id": "rfd_1", "amount": 2300, "status": "succeeded",
                                              "created_at": "2026-03-20T10:00:00Z"}]}
    record = {"name": "Зоя Ковалёва", "email": "zoe@example.com",
              "address": {"line1": "Οδός Ερμού 1", "city": "Αθήνα", "country": "GR"},
              "orders": [{"id": "ord_1", "description": "Course", "payment_ids": ["pay_1"]}],
              "payments": [payment]}
    brand = {"name": "Łódź Café", "support_email": "support@shop.test", "color": "#3b5bdb",
             "company_address": "ul. Długa 1\n31-147 Kraków"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. fpdf2's "Pillow could not be imported"
        built = build_pdf(service.document(brand, record, payment))
    assert built.startswith(b"%PDF") and built.count(b"/FontFile2") == 2, built[:200]
    receipt = f"; a receipt PDF builds ({len(built) // 1024} KiB)"
print(f"   ok: app and {len(wanted)} imported modules load from the zip and the runtime's SDK; "
      f"{len(os.environ['BABEL_LOCALES'].split())} locales format; "
      f"{len(fonts)} fonts render{receipt}; {loaded} modules of {', '.join(tops)} import")
EOF
    )
fi

zip_bytes="$(wc -c <"$outdir/deployment.zip" | tr -d ' ')"
unzipped_bytes="$("$chalice_python" -c 'import sys, zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$outdir/deployment.zip")"
awk -v z="$zip_bytes" -v u="$unzipped_bytes" -v f="$outdir/deployment.zip" 'BEGIN {
    printf "== %s: %d bytes (%.1f MiB) zipped, %.1f MiB unzipped\n", f, z, z / 1048576, u / 1048576
    if (u > 250 * 1048576) { print "   over Lambda'\''s 250 MB unzipped limit: the deploy will fail"; exit 1 }
}'
echo "== template: $outdir/sam.json (deploy: docs/deploy.md)"
