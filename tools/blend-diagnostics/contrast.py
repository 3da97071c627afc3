import sys, glob, numpy as np
from PIL import Image
# per mode: share of the 16 pairs whose blend has a distinct region where the FG alpha is
# (|mean blend colour inside alpha - mean blend colour outside| > 0.2 RGB), and that contrast's mean
for d, mode, seeds in [(a.split(':')[0], a.split(':')[1], range(int(a.split(':')[2]), int(a.split(':')[2]) + 16)) for a in sys.argv[1:]]:
    cs = []
    for s in seeds:
        try:
            fg = np.asarray(Image.open(f"{d}/{mode}-{s}-fg.png").convert("RGBA"), dtype=float) / 255
            bl = np.asarray(Image.open(f"{d}/{mode}-{s}-blend.png").convert("RGB"), dtype=float) / 255
        except FileNotFoundError:
            continue
        a = fg[..., 3] > 0.5
        if a.sum() == 0 or (~a).sum() == 0: cs.append(0); continue
        cs.append(np.linalg.norm(bl[a].mean(0) - bl[~a].mean(0)))
    cs = np.array(cs)
    print(f"{mode:18s} seeds {seeds.start}: n={len(cs)} contrast mean {cs.mean():.3f}, pairs > 0.2: {(cs > 0.2).sum()}/{len(cs)}")
