#!/usr/bin/env bash
# Builds and runs the CPU emulation of kernels/prior_ops.cu (emulate_prior_ops.cpp) in each storage
# type (fp32, fp16, bf16). Needs g++ >= 12 (C++20, _Float16, ucontext). Exit status 0 = all passed.
#   run_prior_ops.sh [--quick] [OUTDIR]   (--quick is accepted for symmetry; all three types are fast)
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = --quick ]; then shift; fi
out=${1:-$(mktemp -d)}
mkdir -p "$out"
rc=0
for dtype in 0 1 2; do
  bin="$out/emu_prior_ops_$dtype"
  g++ -std=c++20 -O1 -Wall -Wno-unused-function -Wno-unknown-pragmas -DLF_DTYPE=$dtype emulate_prior_ops.cpp -o "$bin"
  "$bin" || rc=1
done
exit $rc
