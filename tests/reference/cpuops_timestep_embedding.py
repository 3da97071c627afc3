"""Writes diffusers v0.25 get_timestep_embedding outputs for CpuOps tests.

Run: PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
     tests/reference/cpuops_timestep_embedding.py > tests/LayerFusion.Tests/CpuOps/Fixtures/timestep_embedding.txt
Format, per case: a line "case dim flip shift scale max_period", a line of timesteps, a line of the
[len(t) * dim] outputs (row-major); every float printed with repr() of its exact value.
"""
import torch
from diffusers.models.embeddings import get_timestep_embedding

t = torch.tensor([0.0, 1.0, 17.5, 261.0, 999.0, 500.25], dtype=torch.float32)
cases = [
    (320, True, 0.0, 1.0, 10000),   # SDXL UNet time_proj
    (256, True, 0.0, 1.0, 10000),   # SDXL add_time_proj
    (7, False, 1.0, 1.0, 10000),    # odd dim: zero padded, default shift
    (10, False, 1.0, 2.5, 10000),
    (12, True, 0.5, 1.0, 500),
]
for dim, flip, shift, scale, period in cases:
    e = get_timestep_embedding(t, dim, flip, shift, scale, period)
    print("case", dim, int(flip), repr(shift), repr(scale), period)
    print(" ".join(repr(float(v)) for v in t))
    print(" ".join(repr(float(v)) for v in e.flatten()))
