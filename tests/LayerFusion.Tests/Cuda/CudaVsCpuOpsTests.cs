using System.Reflection;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The CUDA backend against the CPU backend (the engine's oracle) through the one op interface, on
/// the same fresh random inputs (rounded to the GPU's storage type first). The CPU backend is found
/// by reflection (LayerFusion.Cpu.CpuOps) so this file builds before that backend lands; without it,
/// or without a device, each test reports as skipped with the reason.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class CudaVsCpuOpsTests(CudaFixture fx) : IClassFixture<CudaFixture>
{
    static IOps? _cpu;
    static string _cpuReason = "";

    static IOps Cpu()
    {
        lock (typeof(CudaVsCpuOpsTests))
        {
            if (_cpu is null && _cpuReason.Length == 0)
            {
                var type = Type.GetType("LayerFusion.Cpu.CpuOps, LayerFusion.Cpu");
                var ctor = type?.GetConstructors(BindingFlags.Public | BindingFlags.Instance)
                    .OrderBy(c => c.GetParameters().Length)
                    .FirstOrDefault(c => c.GetParameters().All(p => p.IsOptional));
                if (type is null || !typeof(IOps).IsAssignableFrom(type)) _cpuReason = "LayerFusion.Cpu.CpuOps (an IOps) is not in this build";
                else if (ctor is null) _cpuReason = "LayerFusion.Cpu.CpuOps has no constructor callable without arguments";
                else _cpu = (IOps)ctor.Invoke(ctor.GetParameters().Select(_ => Type.Missing).ToArray());
            }
            if (_cpu is null) Assert.Skip($"no CPU oracle: {_cpuReason}");
            return _cpu;
        }
    }

    public static TheoryData<StorageType> Storages => new(StorageType.F32, StorageType.F16, StorageType.BF16);

    static double Bound(StorageType t) => t switch { StorageType.F32 => 1e-4, StorageType.F16 => 2e-3, _ => 1e-2 };

    [Theory, MemberData(nameof(Storages))]
    public void Every_op_matches_the_cpu_backend(StorageType t)
    {
        var gpu = fx.Ops(t);
        var cpu = Cpu();
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        var failures = new List<string>();

        float[] R(int n, double scale = 1) =>
            HostConvert.Decode(HostConvert.Encode(Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray(), t), t);

        // inputs are created on both backends from the same host values
        (Tensor G, Tensor C) In(float[] v, params int[] shape) => (gpu.FromHost(v, shape), cpu.FromHost(v, shape));

        void Same(string op, Tensor g, Tensor c)
        {
            var a = gpu.ToHost(g);
            var b = cpu.ToHost(c);
            if (!g.Shape.AsSpan().SequenceEqual(c.Shape)) { failures.Add($"{op}: shape {ShapeUtil.Format(g.Shape)} vs {ShapeUtil.Format(c.Shape)}"); return; }
            double num = 0, den = 0;
            for (int i = 0; i < a.Length; i++)
            {
                if (!float.IsFinite(a[i])) { failures.Add($"{op}: element {i} is {a[i]}"); return; }
                num += (double)(a[i] - b[i]) * (a[i] - b[i]);
                den += (double)b[i] * b[i];
            }
            double rel = Math.Sqrt(num / Math.Max(den, 1e-300));
            if (!(rel < Bound(t))) failures.Add($"{op}: relative error {rel:E3} >= {Bound(t):E0}");
        }

        var x = In(R(2 * 77 * 96), 2, 77, 96);
        var w = In(R(130 * 96, 0.1), 130, 96);
        var b = In(R(130), 130);
        Same("linear", gpu.Linear(x.G, w.G, b.G), cpu.Linear(x.C, w.C, b.C));
        var mb = In(R(2 * 96 * 50), 2, 96, 50);
        Same("matmul", gpu.MatMul(x.G, mb.G, false, 0.5f), cpu.MatMul(x.C, mb.C, false, 0.5f));
        Same("matmul^T", gpu.MatMul(x.G, x.G, true), cpu.MatMul(x.C, x.C, true));

        var img = In(R(2 * 16 * 12 * 10, 2), 2, 16, 12, 10);
        var cw = In(R(8 * 16 * 9, 0.1), 8, 16, 3, 3);
        var cb = In(R(8), 8);
        Same("conv3x3 s1 p1", gpu.Conv2d(img.G, cw.G, cb.G, 1, 1), cpu.Conv2d(img.C, cw.C, cb.C, 1, 1));
        Same("conv3x3 s2 p1", gpu.Conv2d(img.G, cw.G, cb.G, 2, 1), cpu.Conv2d(img.C, cw.C, cb.C, 2, 1));
        var g16 = In(R(16), 16);
        var b16 = In(R(16), 16);
        Same("groupnorm+silu", gpu.GroupNorm(img.G, 4, g16.G, b16.G, 1e-5f, true), cpu.GroupNorm(img.C, 4, g16.C, b16.C, 1e-5f, true));
        Same("groupnorm", gpu.GroupNorm(img.G, 8, null, null, 1e-6f), cpu.GroupNorm(img.C, 8, null, null, 1e-6f));
        var g96 = In(R(96), 96);
        Same("layernorm", gpu.LayerNorm(x.G, g96.G, null, 1e-5f), cpu.LayerNorm(x.C, g96.C, null, 1e-5f));
        Same("silu", gpu.Silu(x.G), cpu.Silu(x.C));
        Same("gelu", gpu.Gelu(x.G), cpu.Gelu(x.C));
        Same("gelu-tanh", gpu.Gelu(x.G, true), cpu.Gelu(x.C, true));
        Same("quick-gelu", gpu.QuickGelu(x.G), cpu.QuickGelu(x.C));
        Same("geglu", gpu.Geglu(x.G), cpu.Geglu(x.C));
        Same("softmax", gpu.Softmax(x.G), cpu.Softmax(x.C));
        Same("affine", gpu.Affine(x.G, 0.13025f, 0.25f), cpu.Affine(x.C, 0.13025f, 0.25f));
        Same("clamp", gpu.Clamp(x.G, -0.5f, 0.75f), cpu.Clamp(x.C, -0.5f, 0.75f));

        var q = In(R(2 * 77 * 128, 1.5), 2, 77, 128);
        var k = In(R(2 * 77 * 128, 1.5), 2, 77, 128);
        var v = In(R(2 * 77 * 128), 2, 77, 128);
        var kb = R(2 * 77);
        for (int j = 70; j < 77; j++) kb[j] = float.NegativeInfinity;
        var bias = In(kb, 2, 77);
        Same("attention", gpu.Attention(q.G, k.G, v.G, 2), cpu.Attention(q.C, k.C, v.C, 2));
        Same("attention causal+bias", gpu.Attention(q.G, k.G, v.G, 2, bias.G, true), cpu.Attention(q.C, k.C, v.C, 2, bias.C, true));

        Same("upsample2x", gpu.Upsample2xNearest(img.G), cpu.Upsample2xNearest(img.C));
        float[] ts = [999f, 500f, 1f];
        Same("timestep-embedding", gpu.TimestepEmbedding(ts, 320, true, 0f), cpu.TimestepEmbedding(ts, 320, true, 0f));
        var table = In(R(50 * 24), 50, 24);
        int[] ids = [.. Enumerable.Range(0, 77).Select(_ => rng.Next(50))];
        Same("gather", gpu.Gather(table.G, ids), cpu.Gather(table.C, ids));
        var bc = In(R(16), 16, 1, 1);
        Same("add broadcast", gpu.Add(img.G, bc.G), cpu.Add(img.C, bc.C));
        Same("sub broadcast", gpu.Sub(img.G, bc.G), cpu.Sub(img.C, bc.C));
        Same("mul broadcast", gpu.Mul(img.G, bc.G), cpu.Mul(img.C, bc.C));
        Same("concat", gpu.Concat([img.G, img.G], 1), cpu.Concat([img.C, img.C], 1));
        Same("slice", gpu.Slice(img.G, 2, 3, 5), cpu.Slice(img.C, 2, 3, 5));
        Same("permute", gpu.Permute(img.G, 0, 2, 3, 1), cpu.Permute(img.C, 0, 2, 3, 1));

        // the step table's ops, read at step 1 after one AdvanceStep (each row differs, so the counter decides)
        float[] rows = [999f, 0.5f, -1.25f, 2f, 500.5f, 1.5f, 0.75f, -0.5f, 1.25f, -2f, 0.125f, 3f];
        float[] constants = [1024f, 768f, 0f, 0f, 1152f, 896f];
        using var gt = gpu.CreateStepScalars(rows, 3, 4, constants);
        using var ct = cpu.CreateStepScalars(rows, 3, 4, constants);
        gpu.AdvanceStep(gt);
        cpu.AdvanceStep(ct);
        var img2 = In(R((int)img.C.ElementCount, 2), img.C.Shape);
        Same("step combine", gpu.StepCombine(img.G, gt.Column(1), img2.G, gt.Column(2)), cpu.StepCombine(img.C, ct.Column(1), img2.C, ct.Column(2)));
        Same("step scale", gpu.StepScale(img.G, gt.Column(3)), cpu.StepScale(img.C, ct.Column(3)));
        var noise = In(R(3 * 40), 3, 4, 10);
        Same("step row", gpu.StepRow(noise.G, gt), cpu.StepRow(noise.C, ct));
        Same("timestep embedding (step column)", gpu.TimestepEmbedding(gt.Column(0), 1, 3, 320, true, 0f), cpu.TimestepEmbedding(ct.Column(0), 1, 3, 320, true, 0f));
        Same("timestep embedding (constants)", gpu.TimestepEmbedding(gt.Constant(0), 6, 1, 256, true, 0f), cpu.TimestepEmbedding(ct.Constant(0), 6, 1, 256, true, 0f));

        Assert.True(failures.Count == 0, $"seed {seed}, {t}:\n" + string.Join("\n", failures));
    }
}
