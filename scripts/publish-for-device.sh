#!/usr/bin/env bash
# Builds what perf/device-check.sh runs on the GPU machine, which has no .NET: the test project
# (an MTP executable holding the GPU parity suite and the kernel benchmarks) published
# self-contained for linux-x64, packed as publish/device.tar.xz (git-ignored; carry it to the device).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf publish/device publish/device.tar.xz
dotnet publish tests/LayerFusion.Tests -c Release -r linux-x64 --self-contained true -o publish/device
tar -C publish -cJf publish/device.tar.xz device
ls -l publish/device.tar.xz
echo "carry publish/device.tar.xz and run: bash perf/device-check.sh"
