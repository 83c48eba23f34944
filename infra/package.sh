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
#   BABEL_LOCALES     the languages whose Babel locale data is kept (each with all its
#                     territory variants and the locales they inherit from, down to root);
#                     every other locale file goes. The product formats money and dates in
#                     DEFAULT_LOCALE (chalicelib/formatting.py, "en"); add a language here
#                     before the product formats in it, or Babel raises UnknownLocaleError.
#   never loaded      C/Cython sources and headers (*.c *.pyx *.pxd *.h), __pycache__,
#                     powertools' Swagger UI bundle (served only by its own event handler,
#                     which the app does not use).
#   ACCELERATED_PURE  packages whose compiled accelerators (*.so) have a pure-Python module
#                     of the same name beside them (fontTools ships both); the .so goes and
#                     Python imports the .py. Slower font subsetting, same output.
#   TYPE_ONLY         subpackages that exist for type checkers only: stripe/params (request
#                     TypedDicts, ~6 MB unzipped), which stripe imports only under
#                     `if TYPE_CHECKING:` or on explicit `stripe.params` access. Checked on
#                     every build by reading the package's own imports: if any module imports
#                     it at run time, it is kept and the build says so.
#   PRECOMPILE        1 (default): the modules `import app` loads from the zip (the app and
#                     the libraries on the cold-start path) are shipped compiled, as
#                     __pycache__/*.cpython-3XX.pyc in unchecked-hash mode (valid whatever the
#                     files' times after unzipping). Lambda's file system is read-only, so
#                     without them every cold start compiles them again (measured: about half
#                     of the import time; docs/benchmarks.md). Only when this Python's version
#                     is the function's runtime (sam.json); otherwise skipped, with a note.
# Then the trimmed zip is unpacked next to a copy of what the runtime provides and checked
# in a Python without site-packages: `import app`, every module chalicelib imports (also
# inside functions), money and dates in every kept locale, and a PDF with the product's
# fonts. TRIM=0 skips trimming and the check.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

outdir="${1:-build/package}"
stage="${STAGE:-prod}"
merge_template="infra/template.yaml"
trim="${TRIM:-1}"
RUNTIME_PROVIDED="${RUNTIME_PROVIDED:-boto3 botocore s3transfer jmespath dateutil six urllib3}"
BABEL_LOCALES="${BABEL_LOCALES:-en de fr es it nl pl pt}"
ACCELERATED_PURE="${ACCELERATED_PURE:-fontTools}"
TYPE_ONLY="${TYPE_ONLY:-stripe/params}"
PRECOMPILE="${PRECOMPILE:-1}"

# Chalice needs a region to render ARNs and endpoints, even though it calls no AWS API here.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

# Tools: whatever is on PATH, else the repo's virtualenv.
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
    ACCELERATED_PURE="$ACCELERATED_PURE" TYPE_ONLY="$TYPE_ONLY" \
        "$chalice_python" - "$outdir/deployment.zip" <<'EOF'
import ast
import os
import re
import shutil
import sys
import zipfile
from collections import Counter

path = sys.argv[1]
runtime = os.environ["RUNTIME_PROVIDED"].split()
languages = os.environ["BABEL_LOCALES"].split()
accelerated = os.environ["ACCELERATED_PURE"].split()
type_only_candidates = os.environ["TYPE_ONLY"].split()

# Distribution names of the runtime-provided modules, for their *.dist-info folders.
dist_names = {"dateutil": "python_dateutil"}
runtime_dist = tuple(f"{dist_names.get(m, m)}-".lower() for m in runtime)
NEVER_LOADED = re.compile(
    r"(^|/)__pycache__/|\.pyc$|\.(c|pyx|pxd|h)$"
    r"|^aws_lambda_powertools/event_handler/openapi/swagger_ui/.*\.(js|css)$")

with zipfile.ZipFile(path) as src:
    infos = src.infolist()
    names = {i.filename for i in infos}

    # Babel: the kept languages, their territory variants, and every parent down to root.
    from babel.core import get_global

    parents = get_global("parent_exceptions")
    locale_files = {n[len("babel/locale-data/"):-4] for n in names
                    if n.startswith("babel/locale-data/") and n.endswith(".dat")}
    keep_locales = {"root"}
    for name in locale_files:
        if name.split("_")[0] in languages:
            keep_locales.add(name)
    for name in list(keep_locales):
        while name != "root":
            name = parents.get(name) or (name.rsplit("_", 1)[0] if "_" in name else "root")
            keep_locales.add(name)
    missing = [lang for lang in languages if lang not in locale_files]
    if missing:
        sys.exit(f"package.sh: BABEL_LOCALES names unknown locales: {missing}")

    def runtime_importers(folder: str, src: zipfile.ZipFile) -> list[str]:
        """Modules of folder's top package, outside folder, that import it at run time
        (anywhere but under ``if TYPE_CHECKING:``)."""
        dotted = folder.replace("/", ".")
        top = folder.split("/", 1)[0]
        out = []

        def visit(node, module, guarded):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for c in child.body:
                        visit_one(c, module, True)
                    for c in child.orelse:
                        visit_one(c, module, guarded)
                else:
                    visit_one(child, module, guarded)

        def visit_one(child, module, guarded):
            if not guarded:
                if isinstance(child, ast.ImportFrom):
                    target = child.module or ""
                    if child.level:  # relative: resolve against the importing module
                        base = module.split(".")[: -child.level]
                        target = ".".join(base + ([target] if target else []))
                    names = [target] + [f"{target}.{a.name}" for a in child.names]
                    if any(n == dotted or n.startswith(dotted + ".") for n in names):
                        out.append(module)
                elif isinstance(child, ast.Import):
                    if any(a.name == dotted or a.name.startswith(dotted + ".") for a in child.names):
                        out.append(module)
            visit(child, module, guarded)

        for n in names:
            if n.startswith(top + "/") and n.endswith(".py") and not n.startswith(folder + "/"):
                module = n[:-3].replace("/", ".")
                if module.endswith(".__init__"):
                    module = module[: -len(".__init__")] + ".__init__"
                visit(ast.parse(src.read(n)), module, False)
        return out

    type_only = []
    for folder in type_only_candidates:
        if not any(n.startswith(folder + "/") for n in names):
            continue
        importers = runtime_importers(folder, src)
        if importers:
            print(f"   kept {folder}: imported at run time by {importers[:3]}")
        else:
            type_only.append(folder)

    def dropped(name: str) -> str | None:
        top = name.split("/", 1)[0]
        module = top[:-3] if top.endswith(".py") else top
        if module in runtime or (top.endswith(".dist-info") and top.lower().startswith(runtime_dist)):
            return "provided by the Lambda runtime"
        if name.startswith("babel/locale-data/") and name.endswith(".dat") \
                and name[len("babel/locale-data/"):-4] not in keep_locales:
            return "Babel locales not in BABEL_LOCALES"
        if NEVER_LOADED.search(name):
            return "never loaded (sources, caches, unused assets)"
        if any(name.startswith(folder + "/") for folder in type_only):
            return "type-checking only (" + ", ".join(type_only) + ")"
        if top in accelerated and name.endswith(".so"):
            if f"{name.split('.cpython-')[0].split('.abi3')[0]}.py" in names:
                return "compiled accelerators with a pure-Python twin"
        return None

    reasons = Counter()
    saved = Counter()
    tmp = path + ".trimmed"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as dst:
        for info in infos:
            why = dropped(info.filename)
            if why:
                reasons[why] += 1
                saved[why] += info.compress_size
                continue
            dst.writestr(info, src.read(info.filename), zipfile.ZIP_DEFLATED, 6)
before = os.path.getsize(path)
shutil.move(tmp, path)
after = os.path.getsize(path)
for why, count in reasons.most_common():
    print(f"   dropped {count:5d} files, {saved[why] / 1048576:5.1f} MiB zipped: {why}")
print(f"   kept Babel locales: {len(keep_locales)} ({', '.join(sorted(languages))} and root)")
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
with zipfile.ZipFile(zip_path, "a", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
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
    PYTHONPATH="$check_dir/task:$check_dir/runtime" PYTHONDONTWRITEBYTECODE=1 \
        "$chalice_python" -S - "$check_dir/task" <<'EOF'
import ast
import importlib
import os
import sys
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

fonts = sorted((task / "chalicelib").rglob("*.ttf"))
if fonts:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("Check", "", str(fonts[0]))
    pdf.add_page()
    pdf.set_font("Check", size=12)
    pdf.cell(text="Zoë Łukasiewicz — 1 234,50 € — ¥1,500 — Kraków")
    assert bytes(pdf.output()).startswith(b"%PDF")
print(f"   ok: app and {len(wanted)} imported modules load from the zip and the runtime's SDK; "
      f"{len(os.environ['BABEL_LOCALES'].split())} locales format; "
      f"{'a PDF renders' if fonts else 'no fonts to render'}")
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
