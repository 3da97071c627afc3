#!/usr/bin/env python3
"""The per-op table of the CPU side by side (issue 14), PyTorch half: the same ops, shapes, names and
work counts as perf/cpu/OpTable.cs (GFLOP/s at 2 per multiply-add, GB/s of compulsory fp32 traffic),
as diffusers v0.25 runs them on torch 1.13's CPU path: F.linear (OpenBLAS), F.conv2d (oneDNN),
attention as diffusers' AttnProcessor does without SDPA (baddbmm, softmax, bmm per head batch),
F.group_norm + F.silu, GEGLU (chunk, gelu, mul), F.layer_norm. Median wall time of repeats after warm-ups, and
median process CPU time (what the work costs when other jobs share the cores).
Usage: /usr/bin/python3 perf/torch_cpu_ops.py --threads 2 [--repeats 5] [--json out.json] [--filter name]
"""
import argparse, json, statistics, time

import torch
import torch.nn.functional as F


def cases():
    def lin(m, n, k):
        x, w, b = torch.rand(1, m, k) * 2 - 1, torch.rand(n, k) * 2 - 1, torch.rand(n) * 2 - 1
        return lambda: F.linear(x, w, b)
    for m, n, k, what in [(2048, 640, 640, "attn proj, 1024 tok"), (2048, 5120, 640, "GEGLU proj 640"), (2048, 640, 2560, "ff out 640"),
                          (512, 1280, 1280, "attn proj, 256 tok"), (512, 10240, 1280, "GEGLU proj 1280"), (154, 1280, 2048, "text k/v 1280")]:
        yield f"gemm {m}x{n}x{k}", what, "GFLOP/s", 2.0 * m * n * k, (lambda m=m, n=n, k=k: lin(m, n, k))
    for c, hw in [(320, 64), (640, 32), (1280, 16)]:
        def conv(c=c, hw=hw):
            x, w, b = torch.rand(2, c, hw, hw) * 2 - 1, torch.rand(c, c, 3, 3) * 2 - 1, torch.rand(c) * 2 - 1
            return lambda: F.conv2d(x, w, b, 1, 1)
        yield f"conv3x3 {c}", f"[2,{c},{hw},{hw}]", "GFLOP/s", 2.0 * 2 * c * c * 9 * hw * hw, conv

    def attn(t, n, c, heads):
        q, k, v = torch.rand(2, t, c) * 2 - 1, torch.rand(2, n, c) * 2 - 1, torch.rand(2, n, c) * 2 - 1
        d = c // heads
        def heads_first(x):  # diffusers' head_to_batch_dim
            b, s, _ = x.shape
            return x.reshape(b, s, heads, d).permute(0, 2, 1, 3).reshape(b * heads, s, d)
        def run():
            qh, kh, vh = heads_first(q), heads_first(k), heads_first(v)
            s = torch.baddbmm(torch.empty(qh.shape[0], t, n), qh, kh.transpose(-1, -2), beta=0, alpha=d ** -0.5)
            o = torch.bmm(s.softmax(dim=-1), vh)
            return o.reshape(2, heads, t, d).permute(0, 2, 1, 3).reshape(2, t, c)
        return run
    for t in (1024, 4096):
        yield f"self-attn {t}", f"[2,{t},640] 10 heads", "GFLOP/s", 2.0 * 2 * 2 * t * t * 640, (lambda t=t: attn(t, t, 640, 10))
    yield "cross-attn 1024x77", "[2,1024,640] x [2,77,640] 10 heads", "GFLOP/s", 2.0 * 2 * 2 * 1024 * 77 * 640, lambda: attn(1024, 77, 640, 10)

    def gn():
        x, g, b = torch.rand(2, 640, 32, 32) * 2 - 1, torch.rand(640), torch.rand(640)
        return lambda: F.silu(F.group_norm(x, 32, g, b, 1e-5))
    yield "groupnorm+silu", "[2,640,32,32] 32 groups", "GB/s", 2.0 * 4 * 2 * 640 * 1024, gn

    def geglu():
        x = torch.rand(2, 1024, 5120) * 2 - 1
        def run():
            h, gate = x.chunk(2, dim=-1)
            return h * F.gelu(gate)
        return run
    yield "geglu", "[2,1024,5120] -> 2560", "GB/s", 4.0 * 2 * 1024 * (5120 + 2560), geglu

    def ln():
        x, g, b = torch.rand(2, 1024, 640) * 2 - 1, torch.rand(640), torch.rand(640)
        return lambda: F.layer_norm(x, (640,), g, b, 1e-5)
    yield "layernorm", "[2,1024,640]", "GB/s", 2.0 * 4 * 2 * 1024 * 640, ln


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--filter")
    a = ap.parse_args()
    if a.repeats < 3:
        raise SystemExit("error: --repeats must be at least 3")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for name, shape, unit, work, make in cases():
            if a.filter and a.filter.lower() not in name.lower():
                continue
            fn = make()
            fn(); fn()
            times, cpu = [], []
            for _ in range(a.repeats):
                c0 = time.process_time(); t0 = time.perf_counter(); fn()
                times.append((time.perf_counter() - t0) * 1e3); cpu.append((time.process_time() - c0) * 1e3)
            ms, cms = statistics.median(times), statistics.median(cpu)
            rate, crate = work / (ms * 1e-3) / 1e9, work / (cms * 1e-3) / 1e9
            rows.append({"name": name, "shape": shape, "unit": unit, "work": work, "median_ms": ms, "rate": rate, "cpu_ms": cms, "rate_per_cpu_s": crate})
            print(f"{name:<22} {shape:<36} {ms:9.2f} ms {rate:8.1f} {unit}   cpu {cms:9.2f} ms {crate:8.1f} per cpu-s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backend": f"torch {torch.__version__}", "threads": a.threads, "repeats": a.repeats, "ops": rows}, f, indent=2)


if __name__ == "__main__":
    main()
