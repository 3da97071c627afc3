#!/usr/bin/env bash
# Builds and runs the CPU emulation of kernels/attention_priors.cu and kernels/prior_masks.cu
# (emulate_prior_attention.cpp) in the specializations CudaPriorAttention uses: plain, priors
# (s + c), narrow blocks, blend + key bias, head dims 16/32/64/80/128, fp16 and bf16.
#   run_priors.sh [--quick] [OUTDIR]   --quick: fp16 and one bf16 variant (what the xunit test runs)
# Needs g++ >= 12 (C++20, _Float16, ucontext). Exit status 0 = every check passed.
set -euo pipefail
cd "$(dirname "$0")"
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
out=${1:-$(mktemp -d)}
mkdir -p "$out"
rc=0
variants=(
  "-DLF_DTYPE=1 -DLF_HEAD_DIM=64 -DLF_WARPS=4 -DLF_EMU_MASKS"
  "-DLF_DTYPE=1 -DLF_HEAD_DIM=64 -DLF_WARPS=4 -DLF_PRIORS=1 -DLF_HEADS=3 -DLF_SPARSITY=1 -DLF_EOS=1"
  "-DLF_DTYPE=1 -DLF_HEAD_DIM=16 -DLF_WARPS=1 -DLF_PRIORS=1 -DLF_HEADS=4 -DLF_SPARSITY=1"
  "-DLF_DTYPE=1 -DLF_HEAD_DIM=32 -DLF_WARPS=2 -DLF_PRIORS=1 -DLF_HEADS=2 -DLF_EOS=1 -DLF_KEY_BIAS=1"
  "-DLF_DTYPE=2 -DLF_HEAD_DIM=64 -DLF_WARPS=2 -DLF_PRIORS=1 -DLF_HEADS=2 -DLF_SPARSITY=1 -DLF_EOS=1 -DLF_EMU_MASKS"
)
if [ $quick = 0 ]; then
  variants+=(
    "-DLF_DTYPE=2 -DLF_HEAD_DIM=64 -DLF_WARPS=4"
    "-DLF_DTYPE=1 -DLF_HEAD_DIM=128 -DLF_WARPS=2 -DLF_PRIORS=1 -DLF_HEADS=2 -DLF_SPARSITY=1 -DLF_EOS=1 -DLF_KEY_BIAS=1"
    "-DLF_DTYPE=1 -DLF_HEAD_DIM=64 -DLF_WARPS=1 -DLF_KEY_BIAS=1"
    "-DLF_DTYPE=2 -DLF_HEAD_DIM=80 -DLF_WARPS=4 -DLF_PRIORS=1 -DLF_HEADS=3 -DLF_SPARSITY=1 -DLF_EOS=1"
  )
fi
i=0
for v in "${variants[@]}"; do
  bin="$out/emu_priors_$i"
  # shellcheck disable=SC2086
  g++ -std=c++20 -O1 -Wall -Wno-unused-function -Wno-unknown-pragmas $v emulate_prior_attention.cpp -o "$bin"
  echo "== $v"
  "$bin" || rc=1
  i=$((i + 1))
done
exit $rc
