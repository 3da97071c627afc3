"""The demo's procedural world: seeded, deterministic numpy drawings at 64x64.

Foreground: one flat-coloured shape (SHAPES x COLOURS) with a soft (anti-aliased, ~1.5 px) edge,
straight (un-premultiplied) RGB plus alpha; GLASS_FRACTION of them are "glass" (alpha 0.45-0.6
inside) so alpha is not only 0/1. Background: one of BACKGROUNDS, textured. Composite: the
foreground alpha-blended over a background. Captions: "a red circle", "a red glass circle",
"a green field", and "<fg>, <bg>" for composites (what the pipeline's blend prompt is).
Everything comes from numpy's PCG64 seeded per sample, so (seed, index) -> the same pixels.
"""
import numpy as np

SIZE = 64
COLOURS = {
    "red": (0.86, 0.12, 0.12),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.12, 0.28, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.98, 0.52, 0.08),
    "purple": (0.58, 0.18, 0.80),
    "pink": (0.98, 0.50, 0.72),
    "white": (0.97, 0.97, 0.97),
}
SHAPES = ["circle", "square", "triangle", "star", "ring", "diamond"]
BACKGROUNDS = ["a blue sky", "a green field", "a sandy beach", "a blue lake", "a brick wall", "a night sky", "a sunset", "a wooden table"]
GLASS_FRACTION = 0.25
NEUTRAL = 0.5  # the FG model's neutral background grey (LayerDiffuse generates objects over one)


def _grid():
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    return x, y


def _sdf(shape, x, y, cx, cy, r, rot):
    """Signed distance (px, negative inside) of the shape of 'radius' r centred at (cx, cy)."""
    dx, dy = x - cx, y - cy
    c, s = np.cos(rot), np.sin(rot)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape == "circle":
        return np.hypot(u, v) - r
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.72 * r) - 0.28 * r
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
    if shape == "diamond":
        return (np.abs(u) + np.abs(v)) / np.sqrt(2) - 0.75 * r
    ang = np.arctan2(v, u)
    dist = np.hypot(u, v)
    if shape == "triangle":
        k = 2 * np.pi / 3
        a = np.mod(ang + np.pi / 2, k) - k / 2
        return dist * np.cos(a) - 0.55 * r
    if shape == "star":
        k = 2 * np.pi / 5
        a = np.abs(np.mod(ang + np.pi / 2, k) - k / 2) / (k / 2)  # 0 at a tip, 1 between tips
        return dist - r * (1.0 - 0.55 * a)
    raise ValueError(shape)


def foreground(rng, colour=None, shape=None, glass=None):
    """(rgba [64, 64, 4] float32 straight colour, caption)."""
    colour = colour or rng.choice(list(COLOURS))
    shape = shape or rng.choice(SHAPES)
    glass = bool(rng.random() < GLASS_FRACTION) if glass is None else glass
    r = rng.uniform(11, 19)
    cx, cy = rng.uniform(22, 42, size=2)
    rot = rng.uniform(-0.25, 0.25)
    x, y = _grid()
    d = _sdf(shape, x, y, cx, cy, r, rot)
    alpha = np.clip(0.5 - d / 1.5, 0, 1)
    if glass:
        alpha = alpha * rng.uniform(0.45, 0.6)
    rgb = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 0.03, 3), 0, 1)
    shade = 1.0 + 0.08 * ((cx - x) + (cy - y)) / r  # a little light from the top left
    img = np.clip(rgb[None, None, :] * np.clip(shade, 0.85, 1.12)[..., None], 0, 1)
    caption = fg_caption(colour, shape, glass)
    return np.concatenate([img, alpha[..., None]], -1).astype(np.float32), caption


def background(rng, caption=None):
    """(rgb [64, 64, 3] float32, caption)."""
    caption = caption or rng.choice(BACKGROUNDS)
    x, y = _grid()
    t = y / SIZE
    noise = rng.normal(0, 1, (SIZE, SIZE))

    def mix(a, b, w):
        w = np.asarray(w)[..., None]
        return np.array(a) * (1 - w) + np.array(b) * w

    if caption == "a blue sky":
        img = mix((0.25, 0.50, 0.95), (0.70, 0.85, 1.0), t)
        for _ in range(rng.integers(1, 4)):  # soft clouds
            cx, cy, rr = rng.uniform(0, 64), rng.uniform(5, 40), rng.uniform(6, 12)
            w = np.clip(1.2 - np.hypot((x - cx) / 1.8, y - cy) / rr, 0, 1)
            img = mix(img, (0.97, 0.97, 1.0), w)
    elif caption == "a green field":
        img = mix((0.20, 0.55, 0.15), (0.35, 0.70, 0.25), t) + 0.05 * noise[..., None] + 0.04 * np.sin(x * 1.7 + 3 * noise)[..., None]
    elif caption == "a sandy beach":
        img = mix((0.90, 0.80, 0.58), (0.82, 0.70, 0.48), t) + 0.04 * noise[..., None]
    elif caption == "a blue lake":
        img = mix((0.10, 0.35, 0.60), (0.05, 0.22, 0.45), t) + 0.06 * np.sin(y * 1.3 + 0.3 * np.sin(x * 0.4 + rng.uniform(0, 6)))[..., None]
    elif caption == "a brick wall":
        row = np.floor(y / 8)
        off = (row % 2) * 8
        mortar = (np.mod(y, 8) < 1.2) | (np.mod(x + off, 16) < 1.2)
        img = np.where(mortar[..., None], np.array((0.78, 0.75, 0.70)), np.array((0.62, 0.26, 0.18))) + 0.03 * noise[..., None]
    elif caption == "a night sky":
        img = mix((0.02, 0.03, 0.12), (0.08, 0.10, 0.25), t)
        stars = rng.random((SIZE, SIZE)) < 0.015
        img = np.where(stars[..., None], np.array((0.95, 0.95, 0.85)), img)
    elif caption == "a sunset":
        img = mix((0.45, 0.20, 0.50), (0.98, 0.60, 0.25), t) + 0.02 * noise[..., None]
    elif caption == "a wooden table":
        grain = np.sin(y * 0.9 + 2.5 * np.sin(x * 0.08 + rng.uniform(0, 6)) + 0.5 * noise)
        img = mix((0.45, 0.28, 0.14), (0.60, 0.40, 0.22), 0.5 + 0.5 * grain)
    else:
        raise ValueError(caption)
    return np.clip(img, 0, 1).astype(np.float32), caption


def over(rgba, rgb):
    """Straight-colour RGBA over an RGB background (or a grey level)."""
    a = rgba[..., 3:4]
    return rgba[..., :3] * a + np.asarray(rgb, dtype=np.float32) * (1 - a)


def sample(seed, index):
    """One scene: fg rgba, bg rgb, composite rgb, fg caption, bg caption."""
    rng = np.random.Generator(np.random.PCG64([seed, index]))
    fg, fcap = foreground(rng)
    bg, bcap = background(rng)
    return fg, bg, over(fg, bg), fcap, bcap


def fg_caption(colour, shape, glass=False):
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {'glass ' if glass else ''}{shape}"


def fg_captions():
    return [fg_caption(c, s, g) for c in COLOURS for g in (False, True) for s in SHAPES]
