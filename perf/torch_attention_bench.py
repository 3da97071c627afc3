#!/usr/bin/env python3
"""PyTorch side of the attention benchmark, run on the GPU machine (it has PyTorch; no .NET needed).

Same shapes and method as `layerfusion bench` (src/LayerFusion.Cuda/Bench/PriorAttentionBenchmarks.cs):
SDXL self-attention, guided batch 2, fp16, CUDA events, warm-up then the median of repeats, random
inputs. Variants:
  sdpa               F.scaled_dot_product_attention (PyTorch picks flash / memory-efficient)
  explicit           diffusers' AttnProcessor: baddbmm(Q, K^T) * scale, softmax, bmm(P, V)
  explicit + priors  the same plus what the fused kernel emits: head-mean of P, s = 1/sum_j m^2, <EOS> column
Also the device's dense fp16 GEMM ceiling (8192^3) and, for parity, the relative error of each
variant's output (and s, c) against a float64 reference on a slice of queries.
Writes JSON to the path given (default $OUT/torch_attention.json) and prints a table last.
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [(2, 4096, 10, 64), (2, 1024, 20, 64)]
EOS = 76
WARMUP, REPEATS = 3, 20


def timed(fn):
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    times = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(REPEATS):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return statistics.median(times), times[0], (times[int(REPEATS * 0.9)] - times[REPEATS // 10]) / statistics.median(times) * 100


def heads_first(x, b, n, h, d):
    return x.view(b, n, h, d).transpose(1, 2)  # [B, H, N, D]


def explicit(q, k, v, h, priors):
    b, m, c = q.shape
    d = c // h
    qh = heads_first(q, b, m, h, d).reshape(b * h, m, d)
    kh = heads_first(k, b, m, h, d).reshape(b * h, m, d)
    vh = heads_first(v, b, m, h, d).reshape(b * h, m, d)
    scores = torch.baddbmm(torch.empty(b * h, m, m, dtype=q.dtype, device=q.device), qh, kh.transpose(-1, -2), beta=0, alpha=1 / math.sqrt(d))
    p = scores.softmax(dim=-1)
    o = torch.bmm(p, vh).view(b, h, m, d).transpose(1, 2).reshape(b, m, c)
    if not priors:
        return o, None, None
    mean = p.view(b, h, m, m).float().mean(dim=1)  # head-mean before squaring
    s = 1.0 / (mean * mean).sum(dim=-1)
    col = mean[:, :, EOS]
    return o, s, col


def sdpa(q, k, v, h):
    b, m, c = q.shape
    d = c // h
    o = F.scaled_dot_product_attention(heads_first(q, b, m, h, d), heads_first(k, b, m, h, d), heads_first(v, b, m, h, d))
    return o.transpose(1, 2).reshape(b, m, c)


def reference64(q, k, v, h, rows):
    b, m, c = q.shape
    d = c // h
    q64, k64, v64 = (heads_first(x.double(), b, m, h, d) for x in (q, k, v))
    p = torch.softmax(q64[:, :, :rows] @ k64.transpose(-1, -2) / math.sqrt(d), dim=-1)
    o = (p @ v64).transpose(1, 2).reshape(b, rows, c)
    mean = p.mean(dim=1)
    return o, 1.0 / (mean * mean).sum(-1), mean[:, :, EOS]


def rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def peak_gib(fn, baseline):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - baseline) / 2**30


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("OUT", "."), "torch_attention.json")
    if not torch.cuda.is_available():
        print("no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.manual_seed(1234)
    props = torch.cuda.get_device_properties(0)
    result = {
        "device": f"{props.name} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.1f} GiB)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "storage": "fp16",
        "method": f"CUDA events; {WARMUP} warm-up, median of {REPEATS}; random inputs",
        "measures": [],
    }
    rows = []

    a = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
    bm = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
    ms, _, _ = timed(lambda: a @ bm)
    ceiling = 2 * 8192**3 / (ms * 1e-3) / 1e12
    result["measures"].append({"name": "gemm_ceiling_tflops", "shape": "8192^3 fp16", "kernel": "torch.matmul", "value": round(ceiling, 1), "unit": "TFLOP/s"})
    rows.append(("gemm ceiling", "8192^3", ms, ceiling, 0.0, float("nan")))
    del a, bm

    for (b, m, h, d) in SHAPES:
        c = h * d
        q, k, v = (torch.randn(b, m, c, device=dev, dtype=torch.float16) for _ in range(3))
        flops = 4.0 * b * h * m * m * d
        shape = f"b{b} m{m} n{m} h{h} d{d}"
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        ref_o, ref_s, ref_c = reference64(q, k, v, h, 64)
        variants = {
            "torch sdpa": (lambda: sdpa(q, k, v, h)),
            "torch explicit": (lambda: explicit(q, k, v, h, False)),
            "torch explicit + priors": (lambda: explicit(q, k, v, h, True)),
        }
        times = {}
        for name, fn in variants.items():
            ms, mn, spread = timed(fn)
            gib = peak_gib(fn, base)
            res = fn()
            o = res if isinstance(res, torch.Tensor) else res[0]
            err = rel(o[:, :64], ref_o)
            times[name] = ms
            entry = {"shape": shape, "kernel": name}
            result["measures"] += [
                dict(entry, name="attention_ms", value=round(ms, 4), unit="ms"),
                dict(entry, name="attention_tflops", value=round(flops / (ms * 1e-3) / 1e12, 2), unit="TFLOP/s"),
                dict(entry, name="peak_memory_gib", value=round(gib, 4), unit="GiB"),
                dict(entry, name="output_rel_err_vs_fp64", value=float(f"{err:.3e}"), unit="1"),
            ]
            if not isinstance(res, torch.Tensor) and res[1] is not None:
                result["measures"] += [
                    dict(entry, name="sparsity_rel_err_vs_fp64", value=float(f"{rel(res[1][:, :64], ref_s):.3e}"), unit="1"),
                    dict(entry, name="eos_rel_err_vs_fp64", value=float(f"{rel(res[2][:, :64], ref_c):.3e}"), unit="1"),
                ]
            rows.append((name, shape, ms, flops / (ms * 1e-3) / 1e12, spread, gib))
        result["measures"].append({"name": "explicit_priors_to_sdpa_ratio", "shape": shape, "kernel": "torch explicit + priors / torch sdpa",
                                   "value": round(times["torch explicit + priors"] / times["torch sdpa"], 3), "unit": "x"})
        del q, k, v
        torch.cuda.empty_cache()

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"device: {result['device']}, torch {result['torch']}")
    print(f"| {'kernel':<24} | {'shape':<24} | {'median ms':>9} | {'TFLOP/s':>8} | {'spread':>7} | {'peak GiB':>8} |")
    for name, shape, ms, tf, spread, gib in rows:
        print(f"| {name:<24} | {shape:<24} | {ms:9.3f} | {tf:8.1f} | {spread:6.1f}% | {gib:8.3f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
