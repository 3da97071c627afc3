"""README's picture: a few triplets made by `layerfusion generate` (FG over a checkerboard, BG,
blend, alpha composite) and the prior maps (s', c, mask_soft, mask_hard at t = 0.8T) of the first.

  python3 make_figure.py OUT.png [--cli layerfusion] [--model DIR]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

PAIRS = [("a red circle", "a green field", 0), ("a blue square", "a sandy beach", 1),
         ("a yellow star", "a night sky", 2), ("a white ring", "a brick wall", 3)]
ZOOM = 3


def load(path, rgba=False):
    return np.asarray(Image.open(path).convert("RGBA" if rgba else "RGB")).astype(np.float32) / 255


def checker(h, w, cell=8):
    y, x = np.mgrid[0:h, 0:w]
    v = np.where(((y // cell) + (x // cell)) % 2 == 0, 0.85, 0.6)
    return np.repeat(v[..., None], 3, -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cli", default="layerfusion")
    ap.add_argument("--model")
    a = ap.parse_args()
    rows, priors = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for k, (fg, bg, seed) in enumerate(PAIRS):
            out = os.path.join(tmp, str(k))
            cmd = [a.cli, "generate", "--fg", fg, "--bg", bg, "--seed", str(seed), "--out", out, "--dump-priors"]
            if a.model:
                cmd += ["--model", a.model]
            subprocess.run(cmd, check=True, capture_output=True)
            out = os.path.join(out, f"00000-{seed}")  # generate's numbered output folder NNNNN-SEED
            f = load(os.path.join(out, "fg.png"), rgba=True)
            board = checker(*f.shape[:2])
            fg_over = f[..., :3] * f[..., 3:] + board * (1 - f[..., 3:])
            tiles = [fg_over] + [load(os.path.join(out, n)) for n in ("bg.png", "blend.png", "alpha-composite.png")]
            rows.append(tiles)
            if priors is None:
                priors = [load(os.path.join(out, "priors", n)) for n in ("s_prime.png", "content.png", "mask_soft.png", "mask_hard.png")]
    gap = 2
    h, w = rows[0][0].shape[:2]

    def strip(tiles):
        parts = []
        for t in tiles:
            parts += [t, np.ones((h, gap, 3))]
        return np.concatenate(parts[:-1], 1)

    blocks = []
    for r in rows + [priors]:
        blocks += [strip(r), np.ones((gap, strip(r).shape[1], 3))]
    grid = np.concatenate(blocks[:-1], 0)
    img = Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8))
    img = img.resize((img.width * ZOOM, img.height * ZOOM), Image.NEAREST)
    tmp_out = a.out + ".partial.png"
    img.save(tmp_out)
    os.replace(tmp_out, a.out)
    print(f"wrote {a.out}: rows = {', '.join(f'{f} / {b}' for f, b, _ in PAIRS)}; last row = priors of the first")


if __name__ == "__main__":
    main()
