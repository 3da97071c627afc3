#!/usr/bin/env bash
# Builds the stand-in CUDA libraries (README.md) into OUTDIR; does nothing when OUTDIR already
# holds a build of these exact sources. Needs g++ >= 12.
#   build.sh OUTDIR      then: export LAYERFUSION_CUDA_LIB_DIR=OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
emu=$(cd "$here/../kernel-emulation" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$(cat "$here"/*.cpp "$here"/*.hpp "$here"/build.sh "$emu"/cuda_emu.hpp "$emu"/prior_ptx_emu.hpp | sha256sum | cut -c1-16)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then exit 0; fi
cd "$here"
flags=(-std=c++20 -O2 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers "-DLF_EMU_DIR=\"$emu\"")
tmp=$(mktemp -d "$out/.build.XXXXXX")
g++ "${flags[@]}" nvrtc.cpp -o "$tmp/libnvrtc.so.12" -Wl,-soname,libnvrtc.so.12 -ldl &
nvrtc=$!
g++ "${flags[@]}" driver.cpp -o "$tmp/libcuda.so.1" -Wl,-soname,libcuda.so.1 -ldl
wait $nvrtc
g++ "${flags[@]}" cublas.cpp -o "$tmp/libcublas.so.12" -Wl,-soname,libcublas.so.12 -L"$tmp" -l:libcuda.so.1 -Wl,-rpath,'$ORIGIN'
g++ "${flags[@]}" cublaslt.cpp -o "$tmp/libcublasLt.so.12" -Wl,-soname,libcublasLt.so.12 -L"$tmp" -l:libcuda.so.1 -Wl,-rpath,'$ORIGIN'
for f in libcuda.so.1 libnvrtc.so.12 libcublas.so.12 libcublasLt.so.12; do mv -f "$tmp/$f" "$out/$f"; done
rmdir "$tmp"
echo "$stamp" > "$out/.stamp"
