#!/usr/bin/env bash
# One command: retrains the built-in demo model from scratch and checks it against the engine.
#   tools/train-demo/train.sh [OUT_DIR] [PLAN] [train.py options, e.g. --resume DIR]   (defaults: /tmp/layerfusion-demo, long)
# Needs Debian's python3-torch (1.13, CPU), diffusers v0.25.0's source and the safetensors /
# huggingface_hub shims (see README.md here). Writes OUT_DIR; copy it over models/demo to ship it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-/tmp/layerfusion-demo}"
plan="${2:-long}"
: "${DIFFUSERS_SRC:=/tmp/diffusers-0.25/src}"
: "${PYSHIMS:=$root/../shared/reference/pyshims}"
export PYTHONPATH="$DIFFUSERS_SRC:$PYSHIMS" OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
dotnet build "$root/src/LayerFusion.Cli" -c Release -v q -nologo >/dev/null
cli="$root/src/LayerFusion.Cli/bin/Release/net10.0/layerfusion"
text="$(mktemp -d)"
trap 'rm -rf "$text"' EXIT
# the seeded random tiny text encoders + tokenizers (make-tiny seed 0), kept unchanged
"$cli" make-tiny "$text/tiny" --seed 0 >/dev/null
/usr/bin/python3 "$here/train.py" --text "$text/tiny" --out "$out" --plan "$plan" --seed 0 --threads 2 "${@:3}"
/usr/bin/python3 "$here/check_parity.py" "$out" --cli "$cli"
