"""Experiment (issue 11, not the shipped plan): fine-tune the shipped demo UNet + FG offsets at a given image
size (64 = control, 128 = 16x16 latents on the 2x-upscaled world) from the shipped weights, same steps,
then export a model folder (VAE, text, decoder unchanged).
Usage: finetune_size.py SIZE OUT UNET_STEPS LORA_STEPS (batch 16, 1024 scenes)."""
import sys, os, json, math, shutil, time, torch, numpy as np
import torch.nn.functional as F
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train-demo")
sys.path.insert(0, HERE)
import models, world
from clip_text import Conditioner
from safetensors.torch import load_file, save_file
size, out = int(sys.argv[1]), sys.argv[2]
US, LS, B, NSC = int(sys.argv[3]), int(sys.argv[4]), 16, 1024
torch.set_num_threads(2); torch.manual_seed(0)
d = os.path.join(HERE, "..", "..", "models", "demo")
t0 = time.time()
def log(m): print(f"[{time.time()-t0:7.1f}s] {m}", flush=True)
f32 = lambda p: {k: v.float() for k, v in load_file(p).items()}
vae = models.make_vae(); vae.load_state_dict(f32(f"{d}/vae/diffusion_pytorch_model.safetensors")); vae.eval()
scale = json.load(open(f"{d}/vae/config.json"))["scaling_factor"]
fgs, bgs, comps, fcaps, bcaps = [], [], [], [], []
for i in range(NSC):
    fg, bg, comp, fc, bc = world.sample(0, i)
    fgs.append(world.over(fg, world.NEUTRAL)); bgs.append(bg); comps.append(comp); fcaps.append(fc); bcaps.append(bc)
def px(a):
    x = torch.from_numpy(np.ascontiguousarray(np.stack(a))).permute(0, 3, 1, 2).contiguous() * 2 - 1
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if size != 64 else x
@torch.no_grad()
def enc(x): return torch.cat([vae.encode(x[i:i+64]).latent_dist.mean for i in range(0, len(x), 64)]) * scale
lat_fg, lat_bg, lat_comp = enc(px(fgs)), enc(px(bgs)), enc(px(comps))
log(f"encoded {NSC} scenes at {size}: latents {tuple(lat_fg.shape)}")
cond = Conditioner(d)
caps = sorted(set(fcaps) | set(bcaps) | {f"{f}, {b}" for f, b in zip(fcaps, bcaps)} | {""})
emb = {c: cond(c) for c in caps}
betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
alphas = torch.cumprod(1 - betas, 0).float()
time_ids = torch.tensor([[float(size), float(size), 0.0, 0.0, float(size), float(size)]])
def lr_at(step, total, peak):
    warm = max(1, total // 20)
    return peak * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
def loss_of(unet, z0, captions, g):
    b = z0.shape[0]
    captions = ["" if torch.rand((), generator=g) < 0.1 else c for c in captions]
    e = torch.stack([emb[c][0] for c in captions]); pooled = torch.stack([emb[c][1] for c in captions])
    t = torch.randint(0, 1000, (b,), generator=g); noise = torch.randn(z0.shape, generator=g)
    ab = alphas[t].view(-1, 1, 1, 1)
    pred = unet(ab.sqrt() * z0 + (1 - ab).sqrt() * noise, t, e, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.expand(b, 6)}).sample
    return F.mse_loss(pred, noise)
unet = models.make_unet(); unet.load_state_dict(f32(f"{d}/unet/diffusion_pytorch_model.safetensors"))
g = torch.Generator().manual_seed(7); opt = torch.optim.AdamW(unet.parameters(), lr=5e-4, weight_decay=0.0); unet.train(); ema = None
for step in range(US):
    for grp in opt.param_groups: grp["lr"] = lr_at(step, US, 5e-4)
    idx = torch.randint(0, NSC, (B,), generator=g).tolist(); kind = torch.randint(0, 3, (B,), generator=g).tolist()
    z0 = torch.stack([(lat_bg[i] if k == 0 else lat_comp[i]) for i, k in zip(idx, kind)])
    caps_b = [bcaps[i] if k == 0 else (f"{fcaps[i]}, {bcaps[i]}" if k == 1 else fcaps[i]) for i, k in zip(idx, kind)]
    loss = loss_of(unet, z0, caps_b, g); opt.zero_grad(); loss.backward(); opt.step()
    ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
    if step % 50 == 0 or step == US - 1: log(f"unet step {step} loss {loss.item():.4f} ema {ema:.4f}")
unet.eval(); base_state = {k: v.clone() for k, v in unet.state_dict().items()}
for p in unet.parameters(): p.requires_grad_(False)
loras = models.add_lora(unet, 8)
lf = load_file(f"{d}/layer_xl_transparent_attn.safetensors")
with torch.no_grad():
    for (path, ldm), l in loras.items():
        key = f"diffusion_model.{ldm}.weight::lora::"
        l.up.copy_(lf[key + "0"].float()); l.down.copy_(lf[key + "1"].float())
params = [p for l in loras.values() for p in (l.up, l.down)]
g = torch.Generator().manual_seed(8); opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0); unet.train(); ema = None
for step in range(LS):
    for grp in opt.param_groups: grp["lr"] = lr_at(step, LS, 1e-3)
    idx = torch.randint(0, NSC, (B,), generator=g).tolist()
    loss = loss_of(unet, lat_fg[idx], [fcaps[i] for i in idx], g); opt.zero_grad(); loss.backward(); opt.step()
    ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
    if step % 50 == 0 or step == LS - 1: log(f"lora step {step} loss {loss.item():.4f} ema {ema:.4f}")
shutil.rmtree(out, ignore_errors=True); shutil.copytree(d, out)
half = lambda s: {k: v.detach().to(torch.float16).contiguous() for k, v in s.items()}
save_file(half(base_state), f"{out}/unet/diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
dense, lora = {}, {}
for (path, ldm), l in loras.items():
    up, down = l.up.detach().to(torch.float16), l.down.detach().to(torch.float16)
    key = f"diffusion_model.{ldm}.weight::lora::"
    lora[key + "0"], lora[key + "1"], lora[key + "2"] = up.contiguous(), down.contiguous(), torch.tensor(float(up.shape[1]))
    dense[path + ".weight"] = (up.double() @ down.double()).to(torch.float16).contiguous()
save_file(dense, f"{out}/ld_diffusers_sdxl_attn.safetensors", metadata={"format": "pt"})
save_file(lora, f"{out}/layer_xl_transparent_attn.safetensors")
log(f"exported {out}")
