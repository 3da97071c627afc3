#!/usr/bin/env bash
# CPU side by side (issue 14): our CPU backend vs diffusers v0.25 on Debian's PyTorch 1.13, same random
# full-size SDXL UNet, same inputs, same threads, separate processes one after the other.
#   bash perf/cpu-side-by-side.sh            # both sizes, 3 timed evaluations each, the per-op tables, report.md
# Env: LF_SBS_DIR (checkpoint, default /tmp/lf-cpu-sbs; ~5 GB, written once), OUT_DIR (default
# perf/cpu-sbs-out, git-ignored), THREADS (default: all cores), REPEATS (>= 3), SIZES ("32 64"),
# OPS=0 skips the per-op tables, UNET=0 the UNet runs. Needs ~11 GiB free for the full-size runs.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${LF_SBS_DIR:-/tmp/lf-cpu-sbs}
OUT=${OUT_DIR:-perf/cpu-sbs-out}
THREADS=${THREADS:-$(nproc)}
REPEATS=${REPEATS:-3}
SIZES=${SIZES:-"32 64"}
PY=/usr/bin/python3
# diffusers v0.25 source (LAYERFUSION_DIFFUSERS_SRC, as the tests read it) and the hub stub in the shared folder beside the checkout
export PYTHONPATH=${PYTHONPATH:-${LAYERFUSION_DIFFUSERS_SRC:-/tmp/diffusers-0.25/src}:$(cd .. && pwd)/shared/reference/pyshims}
# the same thread count for every library on both sides
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT"
: > "$OUT/load.log"
note_load() { echo "$1 $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg) free_gib $(free -g | awk '/Mem:/{print $7}')" | tee -a "$OUT/load.log"; }

dotnet build perf/cpu -c Release -v q -nologo | grep -E "error|Warn|Error" || true
# run from a copy, so that rebuilding the worktree meanwhile cannot replace the assemblies under a running benchmark
BINDIR=$(mktemp -d /tmp/lf-cpu-sbs-bin.XXXXXX)
cp -r perf/cpu/bin/Release/net10.0/. "$BINDIR"
trap 'rm -rf "$BINDIR"' EXIT
BIN=$BINDIR/LayerFusion.Perf.Cpu.dll
lscpu > "$OUT/lscpu.txt"
$PY -c "import torch; print(torch.__version__); print(torch.__config__.show())" > "$OUT/torch-config.txt" 2>&1
OPENBLAS_VERBOSE=2 $PY -c "import torch; torch.ones(64,64) @ torch.ones(64,64)" 2>&1 | grep -i core >> "$OUT/torch-config.txt" || true

if [ "${OPS:-1}" != 0 ]; then
  note_load "ops-ours"
  dotnet "$BIN" ops --threads "$THREADS" --repeats "$REPEATS" --json "$OUT/ops-ours.json"
  note_load "ops-torch"
  $PY perf/torch_cpu_ops.py --threads "$THREADS" --repeats "$REPEATS" --json "$OUT/ops-torch.json"
  $PY perf/cpu_side_by_side_report.py "$OUT" > "$OUT/report.md"
fi
if [ "${UNET:-1}" != 0 ]; then
  dotnet "$BIN" unet-write --dir "$DIR"
  for s in $SIZES; do
    note_load "ours-$s"
    # the product's JIT settings (tiered), not the op table's
    DOTNET_TieredCompilation=1 dotnet "$BIN" unet-run --dir "$DIR" --size "$s" --threads "$THREADS" --repeats "$REPEATS" \
      --json "$OUT/ours-$s.json" --output "$OUT/ours-$s.safetensors"
    note_load "torch-$s"
    $PY perf/torch_cpu_unet.py --dir "$DIR" --size "$s" --threads "$THREADS" --repeats "$REPEATS" \
      --json "$OUT/torch-$s.json" --ours "$OUT/ours-$s.safetensors"
    $PY perf/cpu_side_by_side_report.py "$OUT" > "$OUT/report.md"  # partial report after each size
  done
fi
note_load "end"
$PY perf/cpu_side_by_side_report.py "$OUT" | tee "$OUT/report.md"
