#!/usr/bin/env bash
# One call on the GPU machine: the whole CUDA parity suite and the kernel benchmarks, from the
# self-contained build made by scripts/publish-for-device.sh (no .NET needed there), plus the PyTorch
# attention side by side, then the SDXL UNet at 1024x1024 on random full-size fp16 weights (ours:
# one evaluation, a guided step, the LayerFusion triplet end to end; then diffusers' UNet on the same
# weights: parity, guided step, the triplet as three separate UNets), with a report under $OUT:
# report.md, parity.tsv (per op), models.tsv (per model component on the tiny checkpoint, CUDA vs
# CPU: LayerFusion.Tests.CudaModels), bench.json, results.json (attention measures + the UNet
# measures + the torch UNet measures), torch_attention.json, torch_unet.json, and logs.tar.gz
# (tests.log, results.xml, bench.md, prior_bench.md, unet_bench.md, unet_bench.log, torch_unet.log,
# nvidia-smi.txt, torch_attention.log).
#   device tool: run(command="bash perf/device-check.sh", carry=["publish/device.tar.xz"])
#   LF_TEST_NAMESPACE=LayerFusion.Tests.CudaPriors* bash perf/device-check.sh: only the prior attention
#   parity tests and its benchmark (a quicker call while iterating on that kernel); LF_SANITIZE=1 adds
#   compute-sanitizer racecheck + memcheck over the prior attention parity tests.
#   LF_UNET=0 skips the SDXL UNet part; LF_UNET_ONLY=1 runs only it (no parity suite, no attention
#   benchmarks); LAYERFUSION_UNET_STEPS (default 30) sets the triplet's steps; LF_BUDGET_S (default
#   570) is the wall-clock budget the later parts are fitted into (the device tool stops a call at 600 s).
#   Step graph part (issue 10 item 4, not yet run on a GPU: no device was lent when it was written):
#   StepGraphBenchmarkRun times sdxl and the LayerFusion triplet with one CUDA graph per denoising step
#   and op by op on the tiny checkpoint, compares their latents, and writes graph_bench.md (in
#   report.md) and graph_bench.json (in logs.tar.gz). LF_GRAPH=0 skips it; LF_GRAPH_ONLY=1 runs only
#   it; LF_GRAPH_DRY_RUN=1 prints its command and checks its test exists, then stops (no GPU or build
#   needed). LAYERFUSION_GRAPH_SIZE (default 512) and LAYERFUSION_GRAPH_STEPS (default 20) size it.
# Exit status: the test run's (0 only if no test failed), else the UNet benchmark's (3: no time left
# for it, 4: stopped at its time limit; step timings saved before the triplet still count).
set -uo pipefail
t0=$(date +%s)
budget=${LF_BUDGET_S:-570}
left() { echo $(( budget - ($(date +%s) - t0) )); }
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/device-check}
mkdir -p "$OUT"
: >"$OUT/parity.tsv"
: >"$OUT/models.tsv"

graph_cmd() { echo timeout "${LF_GRAPH_TIMEOUT_S:-120}" "$1" -class LayerFusion.Tests.UNetBench.StepGraphBenchmarkRun -noColor -showLiveOutput; }
if [ "${LF_GRAPH_DRY_RUN:-0}" = 1 ]; then
  grep -q 'class StepGraphBenchmarkRun' tests/LayerFusion.Tests/UNetBench/StepGraphBenchmarkRun.cs \
    || { echo "dry run: StepGraphBenchmarkRun not found in this checkout"; exit 2; }
  echo "dry run: would run: LAYERFUSION_BENCH_OUT=$OUT LAYERFUSION_GRAPH_SIZE=${LAYERFUSION_GRAPH_SIZE:-512}" \
    "LAYERFUSION_GRAPH_STEPS=${LAYERFUSION_GRAPH_STEPS:-20} $(graph_cmd publish/device/LayerFusion.Tests) >$OUT/graph_bench.log"
  echo "dry run: then report.md gets graph_bench.md; graph_bench.json and graph_bench.log go into logs.tar.gz"
  exit 0
fi

pub=publish/device
if [ -f publish/device.tar.xz ]; then
  tmp=$(mktemp -d)
  tar -C "$tmp" -xJf publish/device.tar.xz && pub=$tmp/device
fi
exe=$pub/LayerFusion.Tests
if [ ! -x "$exe" ]; then
  echo "no published test build at $exe: run scripts/publish-for-device.sh first and carry publish/device.tar.xz" | tee "$OUT/report.md"
  exit 2
fi

# CUDA 13/12/11 user-space libraries: the toolkit's lib64, the distribution's, or pip's nvidia-* wheels.
# Every folder that has one goes on the list; which major is loaded is NativeLibraries' choice, by the
# driver's cuDriverGetVersion (the newest major <= the driver's), not the newest file found here.
dirs=()
for pattern in 'libnvrtc.so.1[1-3]*' 'libcublas.so.1[1-3]*' 'libcublasLt.so.1[1-3]*' 'libcuda.so.1'; do
  while IFS= read -r f; do dirs+=("$(dirname "$f")"); done < <(
    find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/local/nvidia /usr/lib/x86_64-linux-gnu /opt /usr/local/lib \
      -maxdepth 10 -name "$pattern" -not -path '*/compat/*' -not -path '*/stubs/*' 2>/dev/null | sort -rV)
done
libdir=$(printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' | paste -sd: -)
export LAYERFUSION_CUDA_LIB_DIR=$libdir
export LD_LIBRARY_PATH=${libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LAYERFUSION_REPORT_DIR=$OUT LAYERFUSION_BENCH_OUT=$OUT LAYERFUSION_REPO_ROOT=$PWD
export LAYERFUSION_KERNEL_CACHE=${LAYERFUSION_KERNEL_CACHE:-/tmp/layerfusion-kernels}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_gcServer=0

(nvidia-smi || echo "nvidia-smi not available") >"$OUT/nvidia-smi.txt" 2>&1

start=$(date -u +%FT%TZ)
rc=0
if [ "${LF_UNET_ONLY:-0}" = 1 ] || [ "${LF_GRAPH_ONLY:-0}" = 1 ]; then
  echo "LF_UNET_ONLY/LF_GRAPH_ONLY=1: parity suite and attention benchmarks not run" >"$OUT/tests.log"
else
  "$exe" -namespace "${LF_TEST_NAMESPACE:-LayerFusion.Tests.Cuda*}" -noColor -showLiveOutput -xml "$OUT/results.xml" >"$OUT/tests.log" 2>&1
  rc=$?
fi

# Optional (LF_SANITIZE=1): the prior attention parity tests under compute-sanitizer racecheck and
# memcheck (shared-memory races, out-of-bounds cp.async / ldmatrix); slow, so not by default.
if [ "${LF_SANITIZE:-0}" = 1 ]; then
  if command -v compute-sanitizer >/dev/null; then
    for tool in racecheck memcheck; do
      echo "== compute-sanitizer --tool $tool" >>"$OUT/sanitizer.log"
      timeout 300 compute-sanitizer --tool "$tool" --print-limit 20 "$exe" -class 'LayerFusion.Tests.CudaPriors.PriorAttentionParityTests' \
        -noColor >>"$OUT/sanitizer.log" 2>&1 || echo "compute-sanitizer $tool: exit $?" >>"$OUT/sanitizer.log"
    done
  else
    echo "compute-sanitizer not found" >"$OUT/sanitizer.log"
  fi
fi

# One CUDA graph per denoising step vs op by op (StepGraphBenchmarkRun; see the header).
if [ "${LF_GRAPH:-1}" = 0 ] || [ "${LF_UNET_ONLY:-0}" = 1 ]; then
  echo "LF_GRAPH=0 or LF_UNET_ONLY=1: not run" >"$OUT/graph_bench.log"
else
  $(graph_cmd "$exe") >"$OUT/graph_bench.log" 2>&1 || echo "StepGraphBenchmarkRun failed (exit $?)" >>"$OUT/graph_bench.log"
fi
if [ "${LF_GRAPH_ONLY:-0}" = 1 ]; then
  cat "$OUT/graph_bench.md" 2>/dev/null || tail -30 "$OUT/graph_bench.log"
  exit 0
fi

# PyTorch side by side on the same device (SDPA, explicit attention with materialized probabilities,
# and the same plus the priors); runs even when a test failed.
if [ "${LF_UNET_ONLY:-0}" = 1 ]; then
  echo "LF_UNET_ONLY=1: not run" >"$OUT/torch_attention.log"
elif command -v python3 >/dev/null; then
  PYTHONUNBUFFERED=1 timeout 120 python3 perf/torch_attention_bench.py "$OUT/torch_attention.json" >"$OUT/torch_attention.log" 2>&1 \
    || echo "torch_attention_bench.py failed (exit $?)" >>"$OUT/torch_attention.log"
else
  echo "python3 not found: no PyTorch side-by-side" >"$OUT/torch_attention.log"
fi

# The SDXL UNet at 1024x1024 on random full-size weights: ours (UNetBenchmarkRun writes the
# checkpoint, about 8 GB, to $LAYERFUSION_UNET_WEIGHTS, times it, saves the parity case and merges
# into results.json), then diffusers on the same files. Each part gets what is left of the budget.
unet_rc=0
export LAYERFUSION_UNET_WEIGHTS=${LAYERFUSION_UNET_WEIGHTS:-/tmp/layerfusion-random-sdxl}
if [ "${LF_UNET:-1}" = 0 ]; then
  echo "LF_UNET=0: not run" | tee "$OUT/unet_bench.log" >"$OUT/torch_unet.log"
else
  t_ours=$(( $(left) - 150 ))
  if [ "$t_ours" -lt 90 ]; then
    echo "not run: only $(left) s of the ${budget} s budget left (run again with LF_UNET_ONLY=1)" | tee "$OUT/unet_bench.log" >"$OUT/torch_unet.log"
    unet_rc=3
  else
    echo "UNetBenchmarkRun with a ${t_ours} s limit" >"$OUT/unet_bench.log"
    timeout "$t_ours" "$exe" -class LayerFusion.Tests.UNetBench.UNetBenchmarkRun -noColor -showLiveOutput >>"$OUT/unet_bench.log" 2>&1
    unet_rc=$?
    # 124 would read as the device tool's own time-out: report it as 4
    if [ "$unet_rc" = 124 ]; then echo "UNetBenchmarkRun stopped at its ${t_ours} s limit" >>"$OUT/unet_bench.log"; unet_rc=4; fi
    t_torch=$(( $(left) - 10 ))
    if ! command -v python3 >/dev/null; then
      echo "python3 not found: no diffusers side by side" >"$OUT/torch_unet.log"
    elif [ ! -f "$LAYERFUSION_UNET_WEIGHTS/.random-checkpoint" ]; then
      echo "no random checkpoint at $LAYERFUSION_UNET_WEIGHTS (UNetBenchmarkRun did not finish writing it)" >"$OUT/torch_unet.log"
    elif [ "$t_torch" -lt 60 ]; then
      echo "not run: only $(left) s of the budget left" >"$OUT/torch_unet.log"
    else
      parity_arg=()
      [ -f "$LAYERFUSION_UNET_WEIGHTS/parity.safetensors" ] && parity_arg=(--parity "$LAYERFUSION_UNET_WEIGHTS/parity.safetensors")
      echo "torch_unet_bench.py with a ${t_torch} s limit" >"$OUT/torch_unet.log"
      PYTHONUNBUFFERED=1 PYTHONPATH="$pub/pydeps:$pub/pyshims${PYTHONPATH:+:$PYTHONPATH}" timeout "$t_torch" \
        python3 perf/torch_unet_bench.py --weights "$LAYERFUSION_UNET_WEIGHTS" "${parity_arg[@]}" --steps "${LAYERFUSION_UNET_STEPS:-30}" \
        --out "$OUT/torch_unet.json" --merge "$OUT/results.json" >>"$OUT/torch_unet.log" 2>&1 \
        || echo "torch_unet_bench.py failed (exit $?)" >>"$OUT/torch_unet.log"
    fi
  fi
fi
[ "$rc" = 0 ] && rc=$unet_rc

{
  echo "# LayerFusion CUDA device check"
  echo
  echo "- started: $start, finished: $(date -u +%FT%TZ)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- CUDA libraries from: ${libdir:-<none found>}"
  echo "- test exit code: $rc"
  echo
  echo "## Test summary"
  echo '```'
  grep -E '\[FAIL\]|Total:' "$OUT/tests.log" || tail -20 "$OUT/tests.log"
  echo '```'
  echo "skipped: $(grep -c '\[SKIP\]' "$OUT/tests.log") (reasons in tests.log)"
  echo
  echo "## Parity: worst relative error per op (bound in brackets)"
  echo
  echo "| op | storage | max rel. error | bound |"
  echo "| --- | --- | ---: | ---: |"
  sort -t$'\t' -k1,1 -k2,2 -k3,3g "$OUT/parity.tsv" | awk -F'\t' '{k=$1"\t"$2; v[k]=$3; b[k]=$4} END{for (k in v){split(k,p,"\t"); printf "| %s | %s | %s | %s |\n", p[1], p[2], v[k], b[k]}}' | sort
  echo
  echo "## Models on the tiny checkpoint: CUDA vs CPU (max |gpu - cpu| / max |cpu|; LayerFusion.Tests.CudaModels)"
  echo
  echo "cuda-contract-* rows: the host-side stand-in (CPU compute, fp16 storage rounding only), for scale."
  echo
  echo "| component | backend | max rel. error | bound | detail |"
  echo "| --- | --- | ---: | ---: | --- |"
  if [ -s "$OUT/models.tsv" ]; then
    sort -t$'\t' -k2,2 -k1,1 "$OUT/models.tsv" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}'
  else
    echo "| (none recorded: see tests.log) | | | | |"
  fi
  echo
  echo "## Kernel benchmarks"
  echo
  if [ -f "$OUT/bench.md" ]; then cat "$OUT/bench.md"; else echo "(no benchmark output: see tests.log)"; fi
  echo
  echo "## Attention: plain vs prior-emitting vs materialized (layerfusion bench; results.json)"
  echo
  if [ -f "$OUT/prior_bench.md" ]; then cat "$OUT/prior_bench.md"; else echo "(no attention benchmark output: see tests.log)"; fi
  echo
  echo "## Prior attention SASS (cuobjdump on the kernel cache: tensor-core, ldmatrix, cp.async and local-memory instructions)"
  echo
  if command -v cuobjdump >/dev/null && [ -d "$LAYERFUSION_KERNEL_CACHE" ]; then
    echo "| cubin | registers / stack (ptxas) | HMMA | LDSM | LDGSTS | LDL+STL |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    for f in "$LAYERFUSION_KERNEL_CACHE"/*.bin; do
      [ -f "$f" ] || continue
      sass=$(cuobjdump -sass "$f" 2>/dev/null) || continue
      grep -q 'Function : lf_prior_attention' <<<"$sass" || continue
      res=$(cuobjdump -res-usage "$f" 2>/dev/null | grep -A1 'lf_prior_attention' | grep -o 'REG:[0-9]*.*STACK:[0-9]*' | head -1)
      echo "| $(basename "$f" | cut -c1-12) | ${res:-?} | $(grep -c HMMA <<<"$sass") | $(grep -c LDSM <<<"$sass") | $(grep -c LDGSTS <<<"$sass") | $(grep -cE '\b(LDL|STL)\b' <<<"$sass") |"
    done
  else
    echo "(cuobjdump or the kernel cache not found)"
  fi
  echo
  if [ -f "$OUT/sanitizer.log" ]; then
    echo "## compute-sanitizer (prior attention parity tests)"
    echo '```'
    grep -E '^==|ERROR SUMMARY|RACECHECK SUMMARY|exit|not found' "$OUT/sanitizer.log" | head -20
    echo '```'
    echo
  fi
  echo "## Attention: PyTorch on the same device (torch_attention.json)"
  echo
  echo '```'
  tail -15 "$OUT/torch_attention.log" 2>/dev/null
  echo '```'
  echo
  echo "## One CUDA graph per denoising step vs op by op (graph_bench.json in logs.tar.gz)"
  echo
  if [ -f "$OUT/graph_bench.md" ]; then cat "$OUT/graph_bench.md"; else echo '```'; tail -25 "$OUT/graph_bench.log"; echo '```'; fi
  echo
  echo "## SDXL UNet 1024x1024, random full-size fp16 weights (ours; results.json)"
  echo
  if [ -f "$OUT/unet_bench.md" ]; then cat "$OUT/unet_bench.md"; else echo '```'; tail -25 "$OUT/unet_bench.log"; echo '```'; fi
  echo
  echo "## diffusers UNet2DConditionModel on the same weights (torch_unet.json: parity, guided step, three-UNet triplet)"
  echo
  echo '```'
  tail -15 "$OUT/torch_unet.log" 2>/dev/null
  echo '```'
} >"$OUT/report.md"

# At most 8 files come back from the device: keep the machine-readable results and the report at
# the top, and pack the logs.
( cd "$OUT" || exit
  logs=(); for f in tests.log results.xml bench.md prior_bench.md graph_bench.md graph_bench.json graph_bench.log unet_bench.md unet_bench.log torch_unet.log nvidia-smi.txt torch_attention.log sanitizer.log; do [ -f "$f" ] && logs+=("$f"); done
  [ ${#logs[@]} -gt 0 ] && tar -czf logs.tar.gz "${logs[@]}" && rm -f "${logs[@]}" )

tail -60 "$OUT/report.md"
exit $rc
