#!/usr/bin/env python3
"""diffusers' UNet2DConditionModel side by side with LayerFusion.Native on the SAME random weights.

Reads the diffusers folder written by RandomSdxlCheckpoint (`layerfusion bench --unet`, or the
device-check's UNetBenchmarkRun) and the parity case our engine saved (inputs + its output of one
UNet evaluation), then:
  * parity: diffusers fp32 on the same inputs vs our output (max relative error = max|ours - ref| /
    max|ref|), and diffusers fp16 vs fp32 as the error level fp16 itself brings;
  * timing (CUDA events, warm-up, median of repeats): one evaluation (batch 1), one guided step
    (UNet batch 2 + CFG + diffusers' EulerDiscreteScheduler.step), SDPA attention, fp16;
  * the triplet as THREE SEPARATE diffusers UNets per step (FG UNet with the LayerDiffuse offsets
    merged, BLEND and BG on the base UNet, each a guided batch-2 call) for the same number of steps,
    then three VAE decodes in fp32 (no transparent decoder: diffusers has none, so this baseline is
    a lower bound of the real pipeline's time).
Writes JSON (--out) and, with --merge, adds the torch measures to perf/results.json.

diffusers (v0.25.0 source) and a huggingface_hub stub are found on PYTHONPATH (device-check.sh
carries them); safetensors files are read here directly (no safetensors package needed).
--tiny: a small-config run on the CPU (the plumbing check the unit tests do against our CPU engine).
"""
import argparse, json, mmap, os, statistics, struct, sys, time

import torch
import torch.utils._pytree as _pytree

# diffusers v0.25 registers its outputs with torch's private pytree API of 2023; newer torch renamed it
if not hasattr(_pytree, "_register_pytree_node") and hasattr(_pytree, "register_pytree_node"):
    _pytree._register_pytree_node = lambda cls, flatten, unflatten: _pytree.register_pytree_node(cls, flatten, unflatten)


def stub_missing_modules():
    """diffusers v0.25 imports Pillow, requests and packaging at import time though the UNet, VAE and
    Euler scheduler use none of them but packaging's version.parse; a device with bare PyTorch may
    lack them. Missing ones get inert stand-ins (packaging a minimal version parser); present ones
    are left alone."""
    import importlib, importlib.abc, importlib.machinery, types
    class _Dummy:
        def __init__(self, *a, **k): pass
        def __call__(self, *a, **k): return _Dummy()
        def __getattr__(self, n): return _Dummy()
        def __mro_entries__(self, bases): return (object,)
    missing = []
    for name in ("PIL", "requests"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split(".")[0] in missing:
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        def create_module(self, spec):
            m = types.ModuleType(spec.name); m.__path__ = []
            m.__getattr__ = lambda n: (lambda *a, **k: False) if n.startswith("is_") else _Dummy()
            return m
        def exec_module(self, m): pass
    if missing:
        sys.meta_path.insert(0, _Finder())
        print(f"note: {', '.join(missing)} not installed: inert stand-ins (diffusers imports them, the benchmark does not use them)", flush=True)
    try:
        importlib.import_module("packaging.version")
    except ImportError:
        import re
        class Version:
            def __init__(self, s):
                self.public = self.base_version = str(s)
                self.release = tuple(int(x) for x in re.findall(r"\d+", str(s).split("+")[0])[:3])
                self.major = self.release[0] if self.release else 0
                self.minor = self.release[1] if len(self.release) > 1 else 0
                self.is_prerelease = self.is_devrelease = False
            def _k(self, o): return (self.release, (o if isinstance(o, Version) else Version(o)).release)
            def __lt__(self, o): a, b = self._k(o); return a < b
            def __le__(self, o): a, b = self._k(o); return a <= b
            def __gt__(self, o): a, b = self._k(o); return a > b
            def __ge__(self, o): a, b = self._k(o); return a >= b
            def __eq__(self, o): a, b = self._k(o); return a == b
            def __hash__(self): return hash(self.release)
        pkg = types.ModuleType("packaging"); pkg.__path__ = []
        ver = types.ModuleType("packaging.version"); ver.Version = Version; ver.parse = Version; ver.InvalidVersion = ValueError
        pkg.version = ver
        sys.modules["packaging"] = pkg; sys.modules["packaging.version"] = ver
        print("note: packaging not installed: a minimal version parser stands in", flush=True)


_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path, keep_mmap=None):
    """{name: tensor} from a safetensors file, bounds-checked; tensors are copies (the map is closed)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        n = struct.unpack("<Q", f.read(8))[0]
        if n > size - 8 or n > 100 << 20:
            raise ValueError(f"{path}: header length {n} exceeds the file")
        header = json.loads(f.read(n))
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    base = 8 + n
    out = {}
    try:
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            a, b = meta["data_offsets"]
            dt = _DT[meta["dtype"]]
            count = 1
            for d in meta["shape"]:
                count *= d
            if not (0 <= a <= b <= size - base) or b - a != count * torch.tensor([], dtype=dt).element_size():
                raise ValueError(f"{path}: tensor {name} has bad offsets {a}..{b}")
            if b == a:
                out[name] = torch.empty(meta["shape"], dtype=dt)
                continue
            buf = bytearray(mm[base + a: base + b])
            out[name] = torch.frombuffer(buf, dtype=dt).reshape(meta["shape"])
    finally:
        mm.close()
    return out, header.get("__metadata__", {})


def rel_error(a, ref):
    a = a.double().cpu(); ref = ref.double().cpu()
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def construct(make, device):
    """Builds a model directly on the GPU where torch can (its random init of 2.6 G parameters on the
    CPU takes longer than the benchmark); the weights are replaced by load_state_dict anyway."""
    if device.type == "cuda" and hasattr(torch, "device") and hasattr(torch.device(device), "__enter__"):
        with torch.device(device):
            return make()
    return make()


def build_unet(folder, dtype, device, offsets=None):
    from diffusers.models.unet_2d_condition import UNet2DConditionModel
    with open(os.path.join(folder, "unet", "config.json")) as f:
        cfg = json.load(f)
    unet = construct(lambda: UNet2DConditionModel.from_config(cfg), device)
    sd, _ = read_safetensors(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    if offsets is not None:
        for k, dw in offsets.items():
            sd[k] = (sd[k].float() + dw.float()).to(sd[k].dtype)
    missing, unexpected = unet.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not match diffusers' UNet: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return unet.to(device=device, dtype=dtype).eval()


def timed(fn, device, warmup, repeats):
    """Median ms over repeats: CUDA events on a GPU, perf_counter on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); fn(); e.record(); torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        else:
            t0 = time.perf_counter(); fn(); times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True, help="diffusers folder written by RandomSdxlCheckpoint")
    ap.add_argument("--parity", help="parity case safetensors written by our harness")
    ap.add_argument("--out", required=True)
    ap.add_argument("--merge", help="perf/results.json to add the torch measures to")
    ap.add_argument("--tiny", action="store_true", help="small config on the CPU: parity + a short triplet, plumbing only")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--no-triplet", action="store_true")
    args = ap.parse_args()
    if args.tiny:
        args.repeats, args.warmup, args.steps, args.size = min(args.repeats, 3), 1, min(args.steps, 2), 64
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    half = torch.float16 if device.type == "cuda" else torch.float32
    stub_missing_modules()
    import diffusers
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "diffusers": diffusers.__version__, "dtype": str(half).replace("torch.", ""), "size": args.size,
              "sdpa": hasattr(torch.nn.functional, "scaled_dot_product_attention"), "measures": {}}
    M = result["measures"]
    def log(*a):
        print(*a, flush=True)

    t0 = time.perf_counter()
    unet = build_unet(args.weights, half, device)
    M["load_s"] = round(time.perf_counter() - t0, 2)
    log(f"diffusers {diffusers.__version__}, torch {torch.__version__}, {result['device']}: UNet loaded in {M['load_s']} s")
    cfg = unet.config

    # parity on our inputs
    if args.parity:
        case, meta = read_safetensors(args.parity)
        ours = case["output"]
        kw = {}
        if "text_embeds" in case:
            kw = {"added_cond_kwargs": {"text_embeds": case["text_embeds"], "time_ids": case["time_ids"]}}
        def run(model, dtype, dev):
            with torch.no_grad():
                args_ = {k: v.to(dev, dtype) for k, v in kw.get("added_cond_kwargs", {}).items()}
                y = model(case["sample"].to(dev, dtype), case["timestep"].to(dev), case["encoder_hidden_states"].to(dev, dtype),
                          added_cond_kwargs=args_ or None).sample
            return y.float().cpu()
        if half == torch.float32:
            ref32 = run(unet, torch.float32, device)
        else:
            ref16 = run(unet, half, device)
            unet32 = build_unet(args.weights, torch.float32, device)
            ref32 = run(unet32, torch.float32, device)
            del unet32
            torch.cuda.empty_cache()
            M["parity_torch_fp16_vs_fp32_max_rel_error"] = rel_error(ref16, ref32)
        M["parity_ours_vs_torch_fp32_max_rel_error"] = rel_error(ours, ref32)
        M["parity_output_max_abs"] = float(ref32.abs().max())
        log(f"parity ({meta.get('backend', '?')} vs diffusers fp32): max rel. error {M['parity_ours_vs_torch_fp32_max_rel_error']:.3e}"
            + (f" (diffusers fp16 vs fp32: {M['parity_torch_fp16_vs_fp32_max_rel_error']:.3e})" if "parity_torch_fp16_vs_fp32_max_rel_error" in M else ""))

    # timing: one evaluation and one guided step
    from diffusers import EulerDiscreteScheduler
    with open(os.path.join(args.weights, "scheduler", "scheduler_config.json")) as f:
        sched = EulerDiscreteScheduler.from_config(json.load(f))
    lh = lw = args.size // 8
    g = torch.Generator().manual_seed(0)
    pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    def cond(batch):
        return (torch.randn(batch, 77, cfg.cross_attention_dim, generator=g).to(device, half),
                {"text_embeds": torch.randn(batch, pooled, generator=g).to(device, half),
                 "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]] * batch, dtype=half, device=device)})
    ehs1, add1 = cond(1)
    ehs2, add2 = cond(2)
    x1 = torch.randn(1, cfg.in_channels, lh, lw, generator=g).to(device, half)
    sched.set_timesteps(args.steps, device=device)
    t = sched.timesteps[0]

    def step(model, latents, ehs, add):
        sched._step_index = None  # every timed call is step 0
        inp = sched.scale_model_input(torch.cat([latents] * 2), t)
        eps = model(inp, t, ehs, added_cond_kwargs=add).sample
        u, c = eps.chunk(2)
        return sched.step(u + 7.0 * (c - u), t, latents).prev_sample

    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        M["unet_eval_ms"] = timed(lambda: unet(x1, t, ehs1, added_cond_kwargs=add1), device, args.warmup, args.repeats)
        M["guided_step_ms"] = timed(lambda: step(unet, x1, ehs2, add2), device, args.warmup, args.repeats)
        if device.type == "cuda":
            M["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    log(f"diffusers UNet evaluation (batch 1): {M['unet_eval_ms']:.2f} ms; guided step (batch 2 + CFG + Euler): {M['guided_step_ms']:.2f} ms")

    if not args.no_triplet:
        ld = os.path.join(args.weights, "layerdiffuse", "ld_diffusers_sdxl_attn.safetensors")
        offsets, _ = read_safetensors(ld)
        fg_unet = build_unet(args.weights, half, device, offsets)
        del offsets
        vae = load_vae(args.weights, device)
        streams = [(fg_unet, cond(2)), (unet, cond(2)), (unet, cond(2))]
        def triplet():
            sched.set_timesteps(args.steps, device=device)
            lat = [torch.randn(1, cfg.in_channels, lh, lw, generator=torch.Generator().manual_seed(7)).to(device, half) * sched.init_noise_sigma
                   for _ in streams]
            # one scheduler, its step index set per stream (Euler's state is the index alone)
            for i, tt in enumerate(sched.timesteps):
                for s, (model, (ehs, add)) in enumerate(streams):
                    sched._step_index = i
                    inp = sched.scale_model_input(torch.cat([lat[s]] * 2), tt)
                    eps = model(inp, tt, ehs, added_cond_kwargs=add).sample
                    u, c = eps.chunk(2)
                    lat[s] = sched.step(u + 7.0 * (c - u), tt, lat[s]).prev_sample
            return [vae.decode(l.float() / vae.config.scaling_factor).sample for l in lat]
        with torch.no_grad():
            steps_keep = args.steps
            args.steps = 2
            triplet()  # warm-up
            args.steps = steps_keep
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            triplet()
            if device.type == "cuda":
                torch.cuda.synchronize()
                M["triplet_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            M["triplet_three_unets_s"] = time.perf_counter() - t0
        log(f"triplet as three separate diffusers UNets, {args.steps} steps + 3 VAE decodes (fp32): {M['triplet_three_unets_s']:.2f} s")

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    log(f"wrote {args.out}")
    if args.merge:
        merge(args.merge, result, args)


def load_vae(folder, device):
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    with open(os.path.join(folder, "vae", "config.json")) as f:
        vae_cfg = json.load(f)
    vae = construct(lambda: AutoencoderKL.from_config(vae_cfg), device)
    sd, _ = read_safetensors(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
    missing, unexpected = vae.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not match diffusers' VAE: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return vae.to(device=device, dtype=torch.float32).eval()


def merge(path, result, args):
    """Adds the torch measures (and ours-vs-torch ratios where ours are there) to results.json."""
    try:
        with open(path) as f:
            root = json.load(f)
    except FileNotFoundError:
        root = {"device": result["device"], "measures": []}
    measures = root.setdefault("measures", [])
    shape = f"sdxl unet {args.size}x{args.size}"
    names = set()
    def add(name, kernel, value, unit):
        names.add(name)
        measures.append({"name": name, "shape": shape, "kernel": kernel, "value": round(float(value), 6), "unit": unit})
    M = result["measures"]
    ours = {m["name"]: m["value"] for m in measures if m.get("shape") == shape}
    pending = []
    lib = f"diffusers {result['diffusers']} UNet2DConditionModel, torch {result['torch']}, {result['dtype']}, SDPA={result['sdpa']}"
    staged = []
    if "parity_ours_vs_torch_fp32_max_rel_error" in M:
        staged.append(("unet_parity_max_rel_error", "ours (cuda fp16) vs diffusers fp32, same weights and inputs", M["parity_ours_vs_torch_fp32_max_rel_error"], "relative"))
    if "parity_torch_fp16_vs_fp32_max_rel_error" in M:
        staged.append(("torch_fp16_parity_max_rel_error", "diffusers fp16 vs diffusers fp32", M["parity_torch_fp16_vs_fp32_max_rel_error"], "relative"))
    staged.append(("torch_unet_eval_ms", lib, M["unet_eval_ms"], "ms"))
    staged.append(("torch_guided_step_ms", lib + " + CFG + EulerDiscreteScheduler.step", M["guided_step_ms"], "ms"))
    if "guided_step_ms" in ours:
        staged.append(("guided_step_speedup_vs_torch", "torch_guided_step_ms / guided_step_ms", M["guided_step_ms"] / ours["guided_step_ms"], "x"))
    if "triplet_three_unets_s" in M:
        staged.append(("torch_triplet_three_unets_s", f"three separate diffusers UNets x {args.steps} steps + 3 fp32 VAE decodes (no transparent decoder)", M["triplet_three_unets_s"], "s"))
        if "triplet_e2e_s" in ours:
            staged.append(("triplet_speedup_vs_three_unets", "torch_triplet_three_unets_s / triplet_e2e_s (target >= 3)", M["triplet_three_unets_s"] / ours["triplet_e2e_s"], "x"))
    drop = {s[0] for s in staged}
    measures[:] = [m for m in measures if not (m.get("shape") == shape and m.get("name") in drop)]
    for s in staged:
        add(*s)
    if isinstance(root.get("not_measured"), list):
        root["not_measured"] = [n for n in root["not_measured"] if n != "pytorch_unet_side_by_side"]
    with open(path, "w") as f:
        json.dump(root, f, indent=2)
    print(f"merged {len(names)} torch measures into {path}", flush=True)


if __name__ == "__main__":
    main()
