"""Does a demo VAE keep the world's colours? Encodes and decodes a square of each palette colour on
the neutral grey and prints the decoded colour at the square's centre, its error, and the latent
there (colours that encode alike cannot be told apart by the UNet either).

  python3 vae_colours.py DIR        # DIR: a diffusers folder written by train.py (its vae/)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import world  # noqa: E402
from train import load_fp32  # noqa: E402


def main():
    vae = models.make_vae()
    vae.load_state_dict(load_fp32(os.path.join(sys.argv[1], "vae", "diffusion_pytorch_model.safetensors")))
    vae.eval()
    worst = 0.0
    for name, rgb in world.COLOURS.items():
        x = torch.full((1, 3, world.SIZE, world.SIZE), world.NEUTRAL * 2 - 1)
        lo, hi = world.SIZE * 5 // 16, world.SIZE * 11 // 16
        x[:, :, lo:hi, lo:hi] = torch.tensor(rgb).view(1, 3, 1, 1) * 2 - 1
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
            y = vae.decode(z).sample.clamp(-1, 1) * 0.5 + 0.5
        c = world.SIZE // 2
        got = y[0, :, c - 4:c + 4, c - 4:c + 4].mean((1, 2)).numpy()
        err = float(np.linalg.norm(got - np.array(rgb)))
        worst = max(worst, err)
        print(f"{name:7s} {np.round(rgb, 2)} -> {got.round(2)}  error {err:.3f}  latent {z[0, :, c // 8, c // 8].numpy().round(2)}")
    print(f"largest colour error {worst:.3f} (RGB distance in [0, 1]; DemoMeasures classifies within 0.25)")


if __name__ == "__main__":
    main()
