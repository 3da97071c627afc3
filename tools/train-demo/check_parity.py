"""Parity of a demo folder between torch (diffusers v0.25 classes, the training code) and the C#
engine (`layerfusion run`): the base UNet, the FG UNet (base + the dense LayerDiffuse offsets,
merged here into a temporary folder the engine loads), VAE decode, transparent decode (one pass)
and the prompt conditioning, on seeded random inputs. Prints max |diff| / max |ref| per part and
exits 1 when one exceeds --tol.

  python3 check_parity.py DIR [--cli PATH-TO-layerfusion] [--tol 2e-3] [--fixture FIXTURE_DIR]

With --fixture, the base-model cases are also written as engine inputs + torch outputs
(<case>.inputs.safetensors, <case>.expected.safetensors) for tests/LayerFusion.Tests/Demo, which
runs them through `layerfusion run` without torch.
"""
import argparse
import json
import os
import struct
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
from clip_text import Conditioner  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_grad_enabled(False)


FIXTURE = None


def safe_open_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def run(cli, component, model, inputs, tmp, extra=(), case=None):
    src, dst = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    if os.path.exists(dst):
        os.remove(dst)
    meta = inputs.pop("__meta__", None)
    save_file({k: v.contiguous() for k, v in inputs.items()}, src, metadata=meta)
    if FIXTURE and case:
        shutil.copyfile(src, os.path.join(FIXTURE, f"{case}.inputs.safetensors"))
    r = subprocess.run([cli, "run", component, "--model", model, "--inputs", src, "--out", dst, "--backend", "cpu", *extra], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{component}: {r.stderr.strip()}")
    return load_file(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--cli", default="layerfusion")
    ap.add_argument("--tol", type=float, default=2e-3)
    ap.add_argument("--fixture")
    a = ap.parse_args()
    d = a.dir
    global FIXTURE
    FIXTURE = a.fixture
    if FIXTURE:
        os.makedirs(FIXTURE, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    worst = {}

    def check(name, ref, got, case=None, key="out_sample"):
        if FIXTURE and case:
            save_file({key: ref.float().contiguous()}, os.path.join(FIXTURE, f"{case}.expected.safetensors"))
        err = ((got.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
        worst[name] = err
        print(f"{name:20s} max|diff|/max|ref| = {err:.2e}")

    def config(path):
        with open(path) as f:
            return json.load(f)

    # every model is built from the folder's own configs, as the engine builds it
    unet = models.make_unet(config(f"{d}/unet/config.json"))
    base = {k: v.float() for k, v in load_file(f"{d}/unet/diffusion_pytorch_model.safetensors").items()}
    unet.load_state_dict(base)
    unet.eval()
    b = 2
    inp = {
        "sample": torch.randn(b, 4, 8, 8, generator=g),
        "timestep": torch.tensor([801.0, 41.0]),
        "encoder_hidden_states": torch.randn(b, 77, 64, generator=g),
        "text_embeds": torch.randn(b, 32, generator=g),
        "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * b),
    }

    def unet_ref(m):
        return m(inp["sample"], inp["timestep"], inp["encoder_hidden_states"],
                 added_cond_kwargs={"text_embeds": inp["text_embeds"], "time_ids": inp["time_ids"]}).sample

    with tempfile.TemporaryDirectory() as tmp:
        check("unet (base)", unet_ref(unet), run(a.cli, "unet", d, dict(inp), tmp, case="unet")["out_sample"], "unet")

        # the FG model: W + dW in fp32 rounded once to the base dtype, as the engine merges it
        dense = load_file(f"{d}/ld_diffusers_sdxl_attn.safetensors")
        fg = {k: ((v.float() + dense[k].float()).half().float() if k in dense else v) for k, v in base.items()}
        unet.load_state_dict(fg)
        fgdir = os.path.join(tmp, "fg")
        shutil.copytree(d, fgdir, ignore=shutil.ignore_patterns("*.png"))
        save_file({k: v.half().contiguous() for k, v in fg.items()}, f"{fgdir}/unet/diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
        check("unet (fg = base+dW)", unet_ref(unet), run(a.cli, "unet", fgdir, dict(inp), tmp)["out_sample"])

        vae = models.make_vae(config(f"{d}/vae/config.json"))
        vae.load_state_dict({k: v.float() for k, v in load_file(f"{d}/vae/diffusion_pytorch_model.safetensors").items()})
        vae.eval()
        lat = torch.randn(1, 4, 8, 8, generator=g)
        check("vae decode", vae.decode(lat).sample, run(a.cli, "vae-decode", d, {"latent": lat}, tmp, case="vae-decode")["out_sample"], "vae-decode")

        dec = models.TransparentDecoder(json.loads(safe_open_metadata(f"{d}/ld_diffusers_sdxl_vae_transparent_decoder.safetensors")["layerfusion.config"]))
        dec.load_state_dict({k: v.float() for k, v in load_file(f"{d}/ld_diffusers_sdxl_vae_transparent_decoder.safetensors").items()})
        dec.eval()
        px = torch.rand(1, 3, 64, 64, generator=g)
        got = run(a.cli, "transparent-decode", d, {"pixel": px, "latent": lat}, tmp, ["--single-pass"], case="transparent-decode")["out_sample"]
        check("transparent decode", dec(px, lat).clamp(0, 1), got, "transparent-decode")

        cond = Conditioner(d)
        prompt = "a red glass circle, a green field"
        e, pooled = cond(prompt)
        out = run(a.cli, "text-encode", d, {"dummy": torch.zeros(1), "__meta__": {"prompt": prompt}}, tmp, case="text-encode")
        if FIXTURE:
            save_file({"prompt_embeds": e[None].contiguous(), "pooled_prompt_embeds": pooled[None].contiguous()},
                      os.path.join(FIXTURE, "text-encode.expected.safetensors"))
        check("prompt_embeds", e, out["prompt_embeds"][0])
        check("pooled_prompt_embeds", pooled, out["pooled_prompt_embeds"][0])
    bad = [k for k, v in worst.items() if not v <= a.tol]
    if bad:
        raise SystemExit(f"parity FAILED (> {a.tol}): {', '.join(bad)}")
    print(f"parity ok (all <= {a.tol})")


if __name__ == "__main__":
    main()
