#!/usr/bin/env python3
"""The PyTorch half of the CPU UNet side by side (perf/cpu-side-by-side.sh, issue 14).

In a fresh process: builds diffusers v0.25's UNet2DConditionModel from D/unet/config.json with
torch's random init switched off (the weights are replaced right away; its CPU init of 2.6 G
parameters would otherwise dominate the load time), loads D/unet/diffusion_pytorch_model.safetensors
(fp16) tensor by tensor into the fp32 parameters, runs the first evaluation on D/inputs-S.safetensors (batch 2), then R
timed ones; reports the median, "load to first result", the peak RSS (ru_maxrss), and the parity of
our output (--ours, written by `LayerFusion.Perf.Cpu unet-run --output`) against diffusers fp32:
max|ours - torch| / max|torch|.
Run: PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 perf/torch_cpu_unet.py ...
"""
import argparse, json, os, resource, statistics, struct, sys, time

t_start = time.perf_counter()
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet_bench import read_safetensors, rel_error, stub_missing_modules  # noqa: E402


def no_init():
    """torch.nn.init's in-place initializers (and Module.reset_parameters of Linear/Conv) as no-ops while building."""
    saved = {}
    for name in ("kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_", "xavier_uniform_", "xavier_normal_", "zeros_", "ones_", "constant_"):
        saved[name] = getattr(torch.nn.init, name)
        setattr(torch.nn.init, name, lambda t, *a, **k: t)
    return saved


_DT = {"F16": (torch.float16, 2), "F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2)}


def load_streaming(model, path):
    """The checkpoint into the model's (fp32, uninitialized) parameters one tensor at a time, read with
    plain file reads: the peak is the fp32 model plus one tensor, the fairest torch gets (a whole fp16
    state dict beside the fp32 model would add 4.8 GiB to its peak RSS)."""
    sd = model.state_dict()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        n = struct.unpack("<Q", f.read(8))[0]
        if n > size - 8 or n > 100 << 20:
            raise SystemExit(f"error: {path}: header length {n} exceeds the file")
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        if set(header) != set(sd):
            raise SystemExit(f"error: weights do not match diffusers' UNet: missing {sorted(set(sd) - set(header))[:5]}, "
                             f"unexpected {sorted(set(header) - set(sd))[:5]}")
        base = 8 + n
        with torch.no_grad():
            for name, meta in header.items():
                dt, width = _DT[meta["dtype"]]
                a, b = meta["data_offsets"]
                count = 1
                for d in meta["shape"]:
                    count *= d
                dst = sd[name]
                if list(dst.shape) != meta["shape"] or b - a != count * width or not 0 <= a <= b <= size - base:
                    raise SystemExit(f"error: {path}: tensor {name} has shape {meta['shape']} / offsets {a}..{b}, the model needs {list(dst.shape)}")
                f.seek(base + a)
                buf = bytearray(f.read(b - a))
                if count:
                    dst.copy_(torch.frombuffer(buf, dtype=dt).reshape(meta["shape"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", required=True)
    ap.add_argument("--ours", help="our output (safetensors, 'output') for the parity check")
    a = ap.parse_args()
    if a.repeats < 3:
        raise SystemExit("error: --repeats must be at least 3")
    torch.set_num_threads(a.threads)
    stub_missing_modules()
    import diffusers
    from diffusers.models.unet_2d_condition import UNet2DConditionModel

    t0 = time.perf_counter()
    with open(os.path.join(a.dir, "unet", "config.json")) as f:
        cfg = json.load(f)
    saved = no_init()
    try:
        unet = UNet2DConditionModel.from_config(cfg)
    finally:
        for k, v in saved.items():
            setattr(torch.nn.init, k, v)
    load_streaming(unet, os.path.join(a.dir, "unet", "diffusion_pytorch_model.safetensors"))
    unet = unet.eval()
    load_s = time.perf_counter() - t0

    case, _ = read_safetensors(os.path.join(a.dir, f"inputs-{a.size}.safetensors"))
    add = {"text_embeds": case["text_embeds"], "time_ids": case["time_ids"]}
    def run():
        with torch.no_grad():
            return unet(case["sample"], case["timestep"], case["encoder_hidden_states"], added_cond_kwargs=add).sample
    ref = run()
    first_s = time.perf_counter() - t0
    print(f"torch {a.size}x{a.size}: loaded in {load_s:.1f} s, first result at {first_s:.1f} s", flush=True)
    times = []
    for i in range(a.repeats):
        s = time.perf_counter(); run(); times.append(time.perf_counter() - s)
        print(f"  evaluation {i + 1}/{a.repeats}: {times[-1]:.2f} s", flush=True)
    res = {"impl": f"diffusers {diffusers.__version__} UNet2DConditionModel, torch {torch.__version__} (fp32, AttnProcessor)",
           "blas": "see torch.__config__", "size": a.size, "batch": 2, "threads": a.threads, "repeats": a.repeats,
           "times_s": times, "median_s": statistics.median(times), "load_s": load_s, "load_to_first_result_s": first_s,
           "import_s": t0 - t_start, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "output_max_abs": float(ref.abs().max())}
    if a.ours:
        ours, _ = read_safetensors(a.ours)
        res["parity_max_rel_error"] = rel_error(ours["output"], ref)
        print(f"parity (ours vs diffusers fp32): max rel. error {res['parity_max_rel_error']:.3e}", flush=True)
    print(f"torch {a.size}x{a.size}: median {res['median_s']:.2f} s, peak RSS {res['peak_rss_gib']:.2f} GiB", flush=True)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
