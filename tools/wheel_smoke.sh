#!/usr/bin/env bash
# The installed-wheel smoke test (CI's wheel job and .ci/run): from a folder outside any checkout, the CLIs
# answer --help and `paperzoo reproduce <paper> --preset smoke` writes results that name the installed
# distribution as their provenance.
#   bash tools/wheel_smoke.sh VENV PACKAGE [PACKAGE ...]      (PACKAGE: shared or a folder name under packages/)
set -euo pipefail
venv=$(cd "$1" && pwd)
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$venv/bin/paperzoo" --help > /dev/null
"$venv/bin/paperzoo" list
for package in "$@"; do
  [ "$package" = "shared" ] && continue
  dist="paperzoo-${package//_/-}"
  "$venv/bin/python" -c "import paperzoo_${package}"
  "$venv/bin/$dist" --help > /dev/null
  echo "== $dist: smoke reproduction in $work"
  PAPERZOO_QUIET=1 "$venv/bin/paperzoo" reproduce "$package" --preset smoke --out "$work/$package" > /dev/null
  "$venv/bin/python" - "$work/$package" "$dist" <<'PY'
import json, sys
from pathlib import Path
files = sorted(Path(sys.argv[1]).glob("*.json"))
assert files, f"no results JSON in {sys.argv[1]}"
for path in files:
    git = json.loads(path.read_text())["git"]
    assert git.get("installed", "").startswith(sys.argv[2] + " "), f"{path}: provenance {git}"
print(f"   {len(files)} results file(s), provenance {git['installed']}")
PY
done
echo "wheel smoke passed: $*"
