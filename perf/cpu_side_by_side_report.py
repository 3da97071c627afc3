#!/usr/bin/env python3
"""Markdown report of perf/cpu-side-by-side.sh's JSON files (argument: its output folder)."""
import json, os, re, sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def peak_gflops(lscpu):
    """fp32 FMA peak: cores x FMA units x 16 lanes (AVX-512) x 2 flop x clock. lscpu names no clock on
    this VM, so the TSC rate (BogoMIPS / 2) stands in; 2 AVX-512 FMA units per core (Xeon Scalable
    with AMX, as the flags say) is an assumption lscpu cannot confirm."""
    cores = int(re.search(r"^CPU\(s\):\s+(\d+)", lscpu, re.M).group(1))
    mhz = re.search(r"CPU max MHz:\s+([\d.]+)", lscpu)
    ghz = float(mhz.group(1)) / 1000 if mhz else float(re.search(r"BogoMIPS:\s+([\d.]+)", lscpu).group(1)) / 2000
    wide = "avx512f" in lscpu
    units, lanes = 2, 16 if wide else 8
    return cores * units * lanes * 2 * ghz, cores, units, lanes, ghz


def main():
    out = sys.argv[1]
    lscpu = open(os.path.join(out, "lscpu.txt")).read()
    model = re.search(r"Model name:\s+(.*)", lscpu).group(1).strip()
    peak, cores, units, lanes, ghz = peak_gflops(lscpu)
    print(f"CPU: {model}, {cores} cores; fp32 peak {peak:.0f} GFLOP/s = {cores} cores x {units} FMA units x {lanes} lanes x 2 flop x {ghz:.2f} GHz "
          f"(clock: lscpu gives none, BogoMIPS/2; 2 AVX-512 FMA units assumed)")
    if os.path.exists(os.path.join(out, "load.log")):
        print("\nLoad average at each phase (the machine is shared with other jobs):\n")
        for line in open(os.path.join(out, "load.log")):
            print(f"    {line.rstrip()}")
    rows = []
    for s in (32, 64):
        o, t = load(os.path.join(out, f"ours-{s}.json")), load(os.path.join(out, f"torch-{s}.json"))
        if o and t:
            rows.append((s, o, t))
    if rows:
        print("\n| latent (batch 2) | ours median | PyTorch median | ratio | peak RSS ours / torch | load to first result ours / torch | parity (max rel. error) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s, o, t in rows:
            print(f"| {s}x{s} | {o['median_s']:.2f} s ({', '.join(f'{x:.1f}' for x in o['times_s'])}) | {t['median_s']:.2f} s ({', '.join(f'{x:.1f}' for x in t['times_s'])}) "
                  f"| {o['median_s'] / t['median_s']:.2f}x | {o['peak_rss_gib']:.2f} / {t['peak_rss_gib']:.2f} GiB "
                  f"| {o['load_to_first_result_s']:.1f} / {t['load_to_first_result_s']:.1f} s ({o['load_to_first_result_s'] / t['load_to_first_result_s']:.2f}x) "
                  f"| {t.get('parity_max_rel_error', float('nan')):.2e} |")
    oo, ot = load(os.path.join(out, "ops-ours.json")), load(os.path.join(out, "ops-torch.json"))
    if oo and ot:
        tb = {r["name"]: r for r in ot["ops"]}
        print(f"\nPer op, {oo['threads']} threads, median of {oo['repeats']} (wall, and CPU time of all threads: on a shared machine the wall time also measures the other jobs)\n")
        print("| op | shape | ours | torch | ours / torch time | ours per CPU-s | torch per CPU-s | ours % of peak (wall) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in oo["ops"]:
            t = tb.get(r["name"])
            if not t:
                continue
            pct = f"{100 * r['rate'] / peak:.0f}%" if r["unit"] == "GFLOP/s" else "—"
            print(f"| {r['name']} | {r['shape']} | {r['median_ms']:.1f} ms, {r['rate']:.1f} {r['unit']} | {t['median_ms']:.1f} ms, {t['rate']:.1f} {t['unit']} "
                  f"| {r['median_ms'] / t['median_ms']:.2f} | {r['rate_per_cpu_s']:.1f} | {t['rate_per_cpu_s']:.1f} | {pct} |")


if __name__ == "__main__":
    main()
