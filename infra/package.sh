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
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

outdir="${1:-build/package}"
stage="${STAGE:-prod}"
merge_template="infra/template.yaml"

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

zip_bytes="$(wc -c <"$outdir/deployment.zip" | tr -d ' ')"
unzipped_bytes="$("$chalice_python" -c 'import sys, zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$outdir/deployment.zip")"
awk -v z="$zip_bytes" -v u="$unzipped_bytes" -v f="$outdir/deployment.zip" 'BEGIN {
    printf "== %s: %d bytes (%.1f MiB) zipped, %.1f MiB unzipped\n", f, z, z / 1048576, u / 1048576
    if (u > 250 * 1048576) { print "   over Lambda'\''s 250 MB unzipped limit: the deploy will fail"; exit 1 }
}'
echo "== template: $outdir/sam.json (deploy: docs/deploy.md)"
