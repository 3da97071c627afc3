using BenchmarkDotNet.Attributes;
using LayerFusion.Core.Tensors;
using LayerFusion.Cpu;

namespace LayerFusion.Perf.Cpu;

/// <summary>Shared setup: a CpuOps with all cores and seeded random tensors (never zeros).</summary>
public abstract class CpuBench
{
    protected readonly CpuOps Ops = new();
    readonly Random _rng = new(1234);

    protected Tensor Rand(params int[] shape)
    {
        var a = new float[ShapeUtil.ElementCount(shape)];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(_rng.NextDouble() * 2 - 1);
        return Ops.FromHost(a, shape);
    }
}

/// <summary>GEMM through Linear (B = weight [out, in], transposed) and MatMul (B [K, N]) at SDXL-like sizes.
/// GFLOP/s = 2 M N K / mean time.</summary>
[MemoryDiagnoser]
public class GemmBenchmarks : CpuBench
{
    [Params("1024x1024x1024", "4096x640x640", "77x768x768", "1024x1280x5120")]
    public string Mnk { get; set; } = "";

    Tensor _x = null!, _w = null!, _b = null!;

    [GlobalSetup]
    public void Setup()
    {
        var p = Mnk.Split('x').Select(int.Parse).ToArray();
        int m = p[0], n = p[1], k = p[2];
        _x = Rand(1, m, k); _w = Rand(n, k); _b = Rand(1, k, n);
    }

    [Benchmark] public Tensor Linear() => Ops.Linear(_x, _w);
    [Benchmark] public Tensor MatMul() => Ops.MatMul(_x, _b);
}

[MemoryDiagnoser]
public class ConvBenchmarks : CpuBench
{
    Tensor _x = null!, _w3 = null!, _w1 = null!, _bias = null!;

    [GlobalSetup]
    public void Setup() { _x = Rand(1, 320, 64, 64); _w3 = Rand(320, 320, 3, 3); _w1 = Rand(640, 320, 1, 1); _bias = Rand(640); }

    [Benchmark] public Tensor Conv3x3() => Ops.Conv2d(_x, _w3, null, 1, 1);
    [Benchmark] public Tensor Conv3x3Stride2() => Ops.Conv2d(_x, _w3, null, 2, 1);
    [Benchmark] public Tensor Conv1x1() => Ops.Conv2d(_x, _w1, _bias);
}

[MemoryDiagnoser]
public class AttentionBenchmarks : CpuBench
{
    Tensor _q = null!, _k = null!, _kText = null!, _mask = null!;

    [GlobalSetup]
    public void Setup() { _q = Rand(2, 1024, 640); _k = Rand(2, 1024, 640); _kText = Rand(2, 77, 640); _mask = Rand(2, 77); }

    [Benchmark] public Tensor SelfAttention1024() => Ops.Attention(_q, _k, _k, 10);
    [Benchmark] public Tensor CrossAttention77() => Ops.Attention(_q, _kText, _kText, 10, _mask);
    [Benchmark] public Tensor CausalText77() => Ops.Attention(_kText, _kText, _kText, 10, null, causal: true);
}

[MemoryDiagnoser]
public class ElementwiseBenchmarks : CpuBench
{
    Tensor _img = null!, _tok = null!, _proj = null!, _gamma = null!, _beta = null!, _bc = null!;

    [GlobalSetup]
    public void Setup()
    {
        _img = Rand(2, 640, 32, 32); _tok = Rand(2, 1024, 640); _proj = Rand(2, 1024, 5120);
        _gamma = Rand(640); _beta = Rand(640); _bc = Rand(2, 640, 1, 1);
    }

    [Benchmark] public Tensor GroupNormSilu() => Ops.GroupNorm(_img, 32, _gamma, _beta, 1e-5f, fuseSilu: true);
    [Benchmark] public Tensor LayerNorm() => Ops.LayerNorm(_tok, _gamma, _beta, 1e-5f);
    [Benchmark] public Tensor Geglu() => Ops.Geglu(_proj);
    [Benchmark] public Tensor GeluErf() => Ops.Gelu(_tok);
    [Benchmark] public Tensor GeluTanh() => Ops.Gelu(_tok, tanhApproximation: true);
    [Benchmark] public Tensor Silu() => Ops.Silu(_img);
    [Benchmark] public Tensor Softmax() => Ops.Softmax(_tok);
    [Benchmark] public Tensor AddBroadcast() => Ops.Add(_img, _bc);
    [Benchmark] public Tensor Upsample() => Ops.Upsample2xNearest(_img);
    [Benchmark] public Tensor Permute() => Ops.Permute(_img, 0, 2, 3, 1);
}
