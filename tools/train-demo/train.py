"""Trains the demo model on the procedural world (world.py) and writes it in the released layouts.

  python3 train.py --text FOLDER --out DIR [--plan long|full|quick] [--seed 0] [--threads 1] [--resume DIR]

--resume DIR starts from DIR's exported VAE, base UNet and transparent decoder (a run of the same
plan stopped after its first UNet phase, or finished): it skips stages 1, 2a and 4 and runs the
second UNet phase and the FG offsets again.

FOLDER is a `layerfusion make-tiny` diffusers folder: its seeded random text encoders and
tokenizers are kept as they are (the UNet learns to read them) and copied into DIR unchanged.
Stages (all seeded; same plan + seed + thread count -> the same weights):
  1. VAE (AutoencoderKL, 4 latent channels, scale factor 8): MSE + small KL on FG-over-neutral,
     backgrounds and composites; scaling_factor = 1 / std of the training latents.
  2. base UNet (SDXL-shaped, text_time): epsilon prediction on the SDXL schedule; captions:
     background -> background, "<fg>, <bg>" -> composite, "<fg>" -> composite (any background);
     10% empty prompt (zeros, as force_zeros_for_empty_prompt) for guidance.
  3. LayerDiffuse foreground model: LoRA offsets on every attention projection of the frozen base
     UNet, "<fg>" -> the object over the neutral grey (LayerDiffuse's neutral background), plus the
     attention grounding loss of grounding.py (the priors pulled towards the object's alpha).
  4. transparent decoder (UNet1024 layout): (VAE-decoded FG pixels, latent) -> alpha + straight
     RGB, with the flips/rotations the engine's 8-pass median uses.
Writes DIR as a diffusers folder (fp16) plus ld_diffusers_sdxl_attn.safetensors (dense),
layer_xl_transparent_attn.safetensors (::lora::) and the transparent decoder, and DIR/train-log.txt.
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grounding  # noqa: E402
import models  # noqa: E402
import world  # noqa: E402
from clip_text import Conditioner  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

PLANS = {
    # scenes in the cached set, optimizer steps per stage, batch sizes
    "quick": dict(scenes=96, vae=20, unet=20, lora=10, dec=10, vb=8, ub=16, db=4),
    "full": dict(scenes=1536, vae=300, unet=700, lora=250, dec=150, vb=16, ub=24, db=8),
    # the shipped model's plan (tools/train-demo/README.md has its log). unet2 = steps of an optional
    # second base-UNet phase weighted towards composites; 1500 of them (with lora 600) did not move the
    # functional measures, so the shipped plan has none. lora 900 with the grounding loss: 600 gave
    # blend IoU 0.153, 900 0.172 (seeds 0-15)
    "long": dict(scenes=4096, vae=1200, unet=2000, unet2=0, lora=900, dec=400, vb=16, ub=32, db=8),
}
LORA_RANK = 8
DROP = 0.1
# weight of the FG offsets' attention grounding loss (grounding.py) beside the diffusion loss
GROUND = 0.1


class Log:
    def __init__(self, path):
        self.f = open(path, "w")
        self.t0 = time.time()

    def __call__(self, msg):
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def schedule():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def to_nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def lr_at(step, total, peak):
    warm = max(1, total // 20)
    return peak * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def d4(x, k, flip):
    if flip:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, k, dims=(2, 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plan", default="full", choices=PLANS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume")
    ap.add_argument("--ground", type=float, default=GROUND, help="weight of the FG offsets' attention grounding loss")
    a = ap.parse_args()
    plan = PLANS[a.plan]
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log = Log(os.path.join(a.out, "train-log.txt"))
    log(f"plan {a.plan} {plan} seed {a.seed} threads {a.threads} torch {torch.__version__}")

    # the world, cached: FG over neutral grey, backgrounds, composites (pixels in [-1, 1])
    n = plan["scenes"]
    fgs, bgs, comps, fcaps, bcaps = [], [], [], [], []
    for i in range(n):
        fg, bg, comp, fc, bc = world.sample(a.seed, i)
        fgs.append(fg), bgs.append(bg), comps.append(comp), fcaps.append(fc), bcaps.append(bc)
    fg_rgba = to_nchw(np.stack(fgs))
    fg_px = to_nchw(np.stack([world.over(f, world.NEUTRAL) for f in fgs])) * 2 - 1
    bg_px = to_nchw(np.stack(bgs)) * 2 - 1
    comp_px = to_nchw(np.stack(comps)) * 2 - 1
    pool = torch.cat([fg_px, bg_px, comp_px])
    # where the objects are (alpha; none in backgrounds): the VAE's loss weighs object pixels 5x, so the
    # flat object colours this world is about are not traded for background texture
    pool_alpha = torch.cat([fg_rgba[:, 3:4], torch.zeros_like(fg_rgba[:, 3:4]), fg_rgba[:, 3:4]])
    log(f"world: {n} scenes, {len(set(fcaps))} FG captions, {len(set(bcaps))} BG captions")

    # 1. VAE
    g = torch.Generator().manual_seed(a.seed + 1)
    vae = models.make_vae()
    if a.resume:
        vae.load_state_dict(load_fp32(os.path.join(a.resume, "vae", "diffusion_pytorch_model.safetensors")))
        log(f"resumed the VAE from {a.resume}")
    # latent preview head (trained with the VAE, not shipped): the latent must predict each 8x8 cell's mean
    # colour linearly, as SDXL's latents nearly do. Without it the tiny encoder collapsed colour onto one
    # latent direction (green and blue, white and yellow encoded alike: the first shipped model's VAE)
    preview = torch.nn.Conv2d(4, 3, 1)
    opt = torch.optim.AdamW(list(vae.parameters()) + list(preview.parameters()), lr=2e-3, weight_decay=0.0)
    for step in range(0 if a.resume else plan["vae"]):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, plan["vae"], 2e-3)
        idx = torch.randint(0, len(pool), (plan["vb"],), generator=g)
        x, w = pool[idx], 1 + 4 * pool_alpha[idx]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        err = vae.decode(z).sample - x
        mse = (err ** 2).mean()
        kl = post.kl().mean() / (64 * 64 * 3)
        cell = F.mse_loss(preview(post.mean), F.avg_pool2d(x, 8))
        loss = (err.abs() * w).mean() + (err ** 2 * w).mean() + 1e-4 * kl + cell
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == plan["vae"] - 1:
            log(f"vae step {step} mse {mse.item():.5f} kl {kl.item():.4f} cell colour mse {cell.item():.5f}")
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)

    @torch.no_grad()
    def encode(px):
        return torch.cat([vae.encode(px[i:i + 64]).latent_dist.mean for i in range(0, len(px), 64)])

    lat_fg, lat_bg, lat_comp = encode(fg_px), encode(bg_px), encode(comp_px)
    scale = float(1.0 / torch.cat([lat_fg, lat_bg, lat_comp]).std())
    if a.resume:
        with open(os.path.join(a.resume, "vae", "config.json")) as f:
            scale = json.load(f)["scaling_factor"]
    with torch.no_grad():
        rec = vae.decode(lat_comp[:64]).sample
    log(f"latents encoded; scaling_factor {scale:.5f}; composite recon mse {F.mse_loss(rec, comp_px[:64]).item():.5f}")

    # captions -> conditioning (exactly the engine's encode_prompt)
    cond = Conditioner(a.text)
    caps = sorted(set(fcaps) | set(bcaps) | {f"{f}, {b}" for f, b in zip(fcaps, bcaps)} | {""})
    emb = {c: cond(c) for c in caps}
    log(f"{len(caps)} captions encoded")
    alphas = schedule()
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])

    def diffusion_loss(unet, z0, captions, gen, recorder=None):
        """Epsilon MSE; with a recorder, also the captions used (after dropout) while it holds the maps."""
        b = z0.shape[0]
        captions = ["" if torch.rand((), generator=gen) < DROP else c for c in captions]
        e = torch.stack([emb[c][0] for c in captions])
        pooled = torch.stack([emb[c][1] for c in captions])
        t = torch.randint(0, 1000, (b,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        ab = alphas[t].view(-1, 1, 1, 1)
        zt = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
        with recorder or contextlib.nullcontext():
            pred = unet(zt, t, e, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.expand(b, 6)}).sample
        loss = F.mse_loss(pred, noise)
        return (loss, captions) if recorder else loss

    # 2. base UNet: phase a (all kinds alike), then phase b (composites weighted)
    unet = models.make_unet()

    def unet_phase(steps, seed, weights, peak, name):
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(unet.parameters(), lr=peak, weight_decay=0.0)
        ema = None
        unet.train()
        for step in range(steps):
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step, steps, peak)
            idx = torch.randint(0, n, (plan["ub"],), generator=g).tolist()
            # kind 0: background caption -> background; 1: "<fg>, <bg>" -> composite; 2: "<fg>" -> composite
            if len(set(weights)) == 1:
                kind = torch.randint(0, 3, (plan["ub"],), generator=g).tolist()
            else:
                kind = torch.multinomial(torch.tensor(weights), plan["ub"], replacement=True, generator=g).tolist()
            z0 = torch.stack([(lat_bg[i] if k == 0 else lat_comp[i]) for i, k in zip(idx, kind)]) * scale
            captions = [bcaps[i] if k == 0 else (f"{fcaps[i]}, {bcaps[i]}" if k == 1 else fcaps[i]) for i, k in zip(idx, kind)]
            loss = diffusion_loss(unet, z0, captions, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % 100 == 0 or step == steps - 1:
                log(f"{name} step {step} loss {loss.item():.4f} ema {ema:.4f}")

    if a.resume:
        unet.load_state_dict(load_fp32(os.path.join(a.resume, "unet", "diffusion_pytorch_model.safetensors")))
        log(f"resumed the base UNet (phase a) from {a.resume}")
    else:
        unet_phase(plan["unet"], a.seed + 2, [1.0, 1.0, 1.0], 1e-3, "unet")
    unet_phase(plan.get("unet2", 0), a.seed + 5, [0.2, 0.5, 0.3], 5e-4, "unet2")
    unet.eval()
    base_state = {k: v.clone() for k, v in unet.state_dict().items()}

    # 3. LayerDiffuse foreground offsets (LoRA on the frozen base UNet's attention projections)
    g = torch.Generator().manual_seed(a.seed + 3)
    for p in unet.parameters():
        p.requires_grad_(False)
    loras = models.add_lora(unet, LORA_RANK)
    params = [p for l in loras.values() for p in (l.up, l.down)]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    # with the attention grounding loss: the priors the engine reads from these offsets' attention
    # are pulled towards the object's alpha (grounding.py says why)
    recorder = grounding.AttentionRecorder(unet)
    eos_of = {c: cond.tok1(c).index(cond.tok1.eos) for c in set(fcaps)}
    unet.train()
    ema = None
    for step in range(plan["lora"]):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, plan["lora"], 2e-3)
        idx = torch.randint(0, n, (plan["ub"],), generator=g).tolist()
        loss, used = diffusion_loss(unet, lat_fg[idx] * scale, [fcaps[i] for i in idx], g, recorder)
        keep = torch.tensor([c != "" for c in used])
        eos = torch.tensor([eos_of.get(c, 0) for c in used])
        ls, lm = grounding.grounding_loss(recorder.probs, fg_rgba[idx, 3:4], eos, keep)
        total = loss + a.ground * (ls + lm)
        opt.zero_grad()
        total.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0 or step == plan["lora"] - 1:
            log(f"lora step {step} loss {loss.item():.4f} ema {ema:.4f} grounding s' {ls.item():.4f} mask {lm.item():.4f}")

    # 4. transparent decoder on what the engine gives it: VAE-decoded FG pixels and the latent
    g = torch.Generator().manual_seed(a.seed + 4)
    with torch.no_grad():
        dec_px = torch.cat([vae.decode(lat_fg[i:i + 64]).sample for i in range(0, n, 64)]).mul(0.5).add(0.5).clamp(0, 1)
    target = torch.cat([fg_rgba[:, 3:4], fg_rgba[:, :3]], 1)
    dec = models.TransparentDecoder()
    if a.resume:
        dec.load_state_dict(load_fp32(os.path.join(a.resume, "ld_diffusers_sdxl_vae_transparent_decoder.safetensors")))
        log(f"resumed the transparent decoder from {a.resume}")
    opt = torch.optim.AdamW(dec.parameters(), lr=1e-3, weight_decay=0.0)
    for step in range(0 if a.resume else plan["dec"]):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, plan["dec"], 1e-3)
        idx = torch.randint(0, n, (plan["db"],), generator=g)
        k, flip = int(torch.randint(0, 4, (), generator=g)), bool(torch.randint(0, 2, (), generator=g))
        px, lat, tg = d4(dec_px[idx], k, flip), d4(lat_fg[idx], k, flip), d4(target[idx], k, flip)
        y = dec(px, lat)
        la = F.mse_loss(y[:, :1], tg[:, :1])
        lc = ((y[:, 1:] - tg[:, 1:]) ** 2 * tg[:, :1]).mean() / tg[:, :1].mean().clamp_min(1e-3)
        loss = la + lc
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == plan["dec"] - 1:
            log(f"decoder step {step} alpha mse {la.item():.5f} colour mse (in alpha) {lc.item():.5f}")

    export(a, log, vae, scale, base_state, loras, dec)
    log("done")


def load_fp32(path):
    return {k: v.float() for k, v in load_file(path).items()}


def half(state):
    return {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def export(a, log, vae, scale, base_state, loras, dec):
    out = a.out
    for sub in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        shutil.copytree(os.path.join(a.text, sub), os.path.join(out, sub))
    shutil.copyfile(os.path.join(a.text, "model_index.json"), os.path.join(out, "model_index.json"))
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    shutil.copyfile(os.path.join(a.text, "scheduler", "scheduler_config.json"), os.path.join(out, "scheduler", "scheduler_config.json"))
    os.makedirs(os.path.join(out, "unet"), exist_ok=True)
    write_json(os.path.join(out, "unet", "config.json"), models.UNET)
    save_file(half(base_state), os.path.join(out, "unet", "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    os.makedirs(os.path.join(out, "vae"), exist_ok=True)
    write_json(os.path.join(out, "vae", "config.json"), dict(models.VAE, scaling_factor=round(scale, 5)))
    save_file(half(vae.state_dict()), os.path.join(out, "vae", "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})

    dense, lora = {}, {}
    for (path, ldm), l in loras.items():
        up = l.up.detach().to(torch.float16)
        down = l.down.detach().to(torch.float16)
        rank = up.shape[1]
        key = f"diffusion_model.{ldm}.weight::lora::"
        lora[key + "0"], lora[key + "1"] = up.contiguous(), down.contiguous()
        lora[key + "2"] = torch.tensor(float(rank))  # alpha = rank: dW = up @ down
        # the dense file from the stored (fp16) factors, product in float64, stored fp16 as released
        dense[path + ".weight"] = (up.double() @ down.double()).to(torch.float16).contiguous()
    save_file(dense, os.path.join(out, "ld_diffusers_sdxl_attn.safetensors"), metadata={"format": "pt"})
    save_file(lora, os.path.join(out, "layer_xl_transparent_attn.safetensors"))
    save_file(half(dec.state_dict()), os.path.join(out, "ld_diffusers_sdxl_vae_transparent_decoder.safetensors"),
              metadata={"format": "pt", "layerfusion.config": json.dumps(models.DECODER)})
    log(f"exported to {out}")


if __name__ == "__main__":
    main()
