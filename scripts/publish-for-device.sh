#!/usr/bin/env bash
# Builds what perf/device-check.sh runs on the GPU machine, which has no .NET and no internet: the
# test project (an MTP executable holding the GPU parity suite and the benchmarks) published
# self-contained for linux-x64, plus, under device/pydeps/, the Python sources the PyTorch side by
# side needs and may not find there: diffusers v0.25.0 (the project's reference version; never
# committed, copied from DIFFUSERS_SRC) and the huggingface_hub stub + minimal safetensors of
# PYSHIMS. Packed as publish/device.tar.xz (git-ignored; carry it to the device, under 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
DIFFUSERS_SRC=${DIFFUSERS_SRC:-/tmp/diffusers-0.25/src/diffusers}
PYSHIMS=${PYSHIMS:-/work/shared/reference/pyshims}
rm -rf publish/device publish/device.tar.xz
dotnet publish tests/LayerFusion.Tests -c Release -r linux-x64 --self-contained true -o publish/device
mkdir -p publish/device/pydeps
if [ -d "$DIFFUSERS_SRC" ]; then
  cp -r "$DIFFUSERS_SRC" publish/device/pydeps/
else
  echo "warning: $DIFFUSERS_SRC not found: the device run has no diffusers unless the device has it installed" >&2
fi
if [ -d "$PYSHIMS" ]; then
  mkdir -p publish/device/pyshims
  cp -r "$PYSHIMS"/. publish/device/pyshims/
else
  echo "warning: $PYSHIMS not found: diffusers v0.25 needs a huggingface_hub it can import" >&2
fi
find publish/device/pydeps publish/device/pyshims -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
tar -C publish -cJf publish/device.tar.xz device
size=$(stat -c %s publish/device.tar.xz)
ls -l publish/device.tar.xz
if [ "$size" -gt $((64 << 20)) ]; then echo "publish/device.tar.xz is over the device tool's 64 MiB carry limit" >&2; exit 1; fi
echo "carry publish/device.tar.xz and run: bash perf/device-check.sh"
