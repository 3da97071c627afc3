"""Produces tests/reference/imaging/postprocess_v0.25.json: diffusers v0.25.0 VaeImageProcessor
postprocess(output_type="pil") bytes for a float NCHW batch in [-1, 1] (plus out-of-range values and
exact rounding ties), for the C# ImageConvert tests.

  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
      tests/reference/imaging/make_image_fixture.py
"""
import json
import os

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor

N, C, H, W = 2, 3, 6, 7
g = torch.Generator().manual_seed(2024)
x = torch.rand((N, C, H, W), generator=g) * 2.4 - 1.2  # some values outside [-1, 1]
flat = x.view(-1)
# exact ties of (x/2+0.5)*255 = k + 0.5 in float32, and the range ends
ties = [((k + 0.5) / 255.0 - 0.5) * 2.0 for k in (0, 1, 2, 100, 127, 128, 253, 254)]
for i, v in enumerate(ties + [-1.0, 1.0, 0.0, -1.0000001, 1.0000001]):
    flat[i * 3 + 1] = v
proc = VaeImageProcessor(vae_scale_factor=8)
pil = proc.postprocess(x, output_type="pil")
out = [np.asarray(im).astype(np.uint8).reshape(-1).tolist() for im in pil]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "postprocess_v0.25.json")
with open(path, "w") as f:
    json.dump(dict(diffusers="0.25.0", shape=[N, C, H, W],
                   input=[float(np.format_float_positional(np.float32(v), unique=True, trim="-")) for v in x.reshape(-1).tolist()],
                   images_hwc=out), f, separators=(",", ":"))
print("wrote", path, os.path.getsize(path))
