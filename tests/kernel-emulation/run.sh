#!/usr/bin/env bash
# Builds and runs the CPU emulation of every kernel (see cuda_emu.hpp): each storage type (fp32,
# fp16, bf16) with the common kernels and head dim 64, plus attention at the other head dims CudaOps
# specializes (8, 40, 160, 512). Needs g++ >= 12 (C++20, _Float16, ucontext).
#   run.sh [--quick] [OUTDIR]   --quick: the other head dims in fp16 only (what the xunit test runs)
# Exit status 0 = every check passed.
set -euo pipefail
cd "$(dirname "$0")"
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
out=${1:-$(mktemp -d)}
mkdir -p "$out"
rc=0
build() { g++ -std=c++20 -O1 -Wall -Wno-unused-function -Wno-unknown-pragmas "$@"; }
run_one() {
  local dtype=$1 hd=$2 r extra=""
  case $hd in 8|40|64|128) r=4 ;; 160|256) r=2 ;; *) r=1 ;; esac
  [ "$hd" != 64 ] && extra="-DLF_SKIP_COMMON"
  local bin="$out/emu_${dtype}_${hd}"
  build -DLF_DTYPE="$dtype" -DLF_HEAD_DIM="$hd" -DLF_ROWS_PER_WARP="$r" $extra emulate_kernels.cpp -o "$bin"
  "$bin" || rc=1
}
for dtype in 0 1 2; do
  run_one "$dtype" 64
  if [ $quick = 0 ] || [ "$dtype" = 1 ]; then
    for hd in 8 40 160 512; do run_one "$dtype" "$hd"; done
  fi
done
exit $rc
