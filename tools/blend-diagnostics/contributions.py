import sys, os, json, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train-demo"))
import models
from clip_text import Conditioner
from safetensors.torch import load_file
torch.set_num_threads(2)
d = os.path.join(HERE, "..", "..", "models", "demo")
unet = models.make_unet(json.load(open(f"{d}/unet/config.json")))
unet.load_state_dict({k: v.float() for k, v in load_file(f"{d}/unet/diffusion_pytorch_model.safetensors").items()})
unet.eval()
cond = Conditioner(d)
from diffusers import DDPMScheduler
sch = DDPMScheduler.from_pretrained(f"{d}/scheduler") if False else DDPMScheduler(**{k: v for k, v in json.load(open(f"{d}/scheduler/scheduler_config.json")).items() if not k.startswith("_") and k in ("num_train_timesteps","beta_start","beta_end","beta_schedule","prediction_type","steps_offset")})
stats = {}
def hook(name):
    def f(mod, inp, out):
        x = inp[0]; y = out[0] if isinstance(out, tuple) else out
        stats.setdefault(name, []).append((y.norm() / x.norm()).item())
    return f
hs = []
for n, m in unet.named_modules():
    cls = type(m).__name__
    if cls == "BasicTransformerBlock":
        # residual contributions: attn outputs vs the block input (norm'd input is what attn sees; the residual is the block input)
        def mk(n, m):
            def pre(mod, args):
                h = args[0]
                mod._in_norm = h.norm()
            return pre
        hs.append(m.register_forward_pre_hook(mk(n, m)))
        for sub in ("attn1", "attn2", "ff"):
            def mk2(n, sub, blk):
                def f(mod, inp, out):
                    y = out[0] if isinstance(out, tuple) else out
                    stats.setdefault(f"{n}.{sub}", []).append((y.norm() / blk._in_norm).item())
                return f
            hs.append(getattr(m, sub).register_forward_hook(mk2(n, sub, m)))
    if cls == "Transformer2DModel":
        def mk3(n):
            def f(mod, inp, out):
                x = inp[0]; y = out[0] if isinstance(out, tuple) else out.sample
                stats.setdefault(n + " (whole, |out-in|/|in|)", []).append(((y - x).norm() / x.norm()).item())
            return f
        hs.append(m.register_forward_hook(mk3(n)))
    if cls == "ResnetBlock2D":
        def mk4(n):
            def f(mod, inp, out):
                x = inp[0]
                sc = mod.conv_shortcut(x) if mod.conv_shortcut is not None else x
                stats.setdefault(n + " (resnet, |out-shortcut|/|shortcut|)", []).append(((out - sc).norm() / sc.norm()).item())
            return f
        hs.append(m.register_forward_hook(mk4(n)))
vae = models.make_vae(json.load(open(f"{d}/vae/config.json")))
vae.load_state_dict({k: v.float() for k, v in load_file(f"{d}/vae/diffusion_pytorch_model.safetensors").items()})
vae.eval()
sf = json.load(open(f"{d}/vae/config.json")).get("scaling_factor", 1.0)
time_ids = torch.tensor([[64, 64, 0, 0, 64, 64]], dtype=torch.float32)
def eps(x, t, emb, pooled):
    return unet(x, torch.tensor([t]), encoder_hidden_states=emb[None] if emb.dim()==2 else emb, added_cond_kwargs={"text_embeds": pooled[None] if pooled.dim()==1 else pooled, "time_ids": time_ids}).sample
pairs = [("a red circle", "a green field"), ("a yellow star", "a night sky"), ("a blue square", "a sandy beach"), ("an orange circle", "a blue sky")]
sens = []
with torch.no_grad():
    for i, (fg, bg) in enumerate(pairs):
        comp = f"{fg}, {bg}"
        g = torch.Generator().manual_seed(i)
        x0 = torch.randn(1, 4, 8, 8, generator=g)  # the shape only; use a composite-like latent from the world below if available
        for t in (800, 400):
            noise = torch.randn(1, 4, 8, 8, generator=g)
            xt = sch.add_noise(x0 * 0, noise, torch.tensor([t]))
            eA, pA = cond(comp); eB, pB = cond(bg); eF, pF = cond(fg)
            base = eps(xt, t, eA, pA)
            swap_pool = eps(xt, t, eA, pB)
            swap_ehs = eps(xt, t, eB, pA)
            sens.append((t, (base - swap_pool).norm().item(), (base - swap_ehs).norm().item()))
for t, a, b in sens:
    print(f"t={t}: |eps(comp ehs, comp pooled) - eps(comp ehs, BG pooled)| = {a:.3f}   |... - eps(BG ehs, comp pooled)| = {b:.3f}")
for k, v in stats.items():
    print(f"{k:75s} {sum(v)/len(v):.3f}")
