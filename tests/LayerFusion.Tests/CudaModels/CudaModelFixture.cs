using LayerFusion.Core.Fusion;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.Fusion;
using CpuBackend = LayerFusion.Cpu.CpuOps;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// The tiny checkpoint (make-tiny's writer, fp16 weights, with LayerDiffuse files) loaded twice: on
/// the CPU backend (the oracle) and on a backend pair built the way the CLI builds it
/// (BackendFactory.CreatePair: fp16 for the text encoders and UNet, a second fp32 instance for the
/// VAE and transparent decoder). Without the pair, <see cref="Gpu"/> reports the test as skipped
/// with the reason.
/// </summary>
public abstract class ModelPairFixture : IDisposable
{
    readonly TinyLayerFusionModel _model = new();
    readonly Func<((IOps Main, IOps Vae)? Pair, string Reason)> _create;
    IOps? _main, _vae;
    string _reason;
    LayerFusionPipeline? _cpuPipe, _gpuPipe;

    protected ModelPairFixture(Func<((IOps Main, IOps Vae)? Pair, string Reason)> create)
    {
        _create = create;
        (_main, _vae, _reason) = Open();
    }

    (IOps?, IOps?, string) Open()
    {
        var (pair, reason) = _create();
        return pair is { } p ? (p.Main, p.Vae, reason) : (null, null, reason);
    }

    public TinyLayerFusionModel Model => _model;
    public IOps Cpu { get; } = new CpuBackend();

    LayerDiffuseFiles Files => new(_model.Files.DenseAttention, _model.Files.TransparentDecoder);

    /// <summary>
    /// The fp16 backend and the fp32 VAE backend, or the test is reported as skipped. After an
    /// earlier test's fault poisoned the context, the pair (and the pipeline loaded on it) is dropped
    /// and built afresh on a new context (<see cref="LayerFusion.Tests.Cuda.CudaFixture"/>).
    /// </summary>
    public (IOps Main, IOps Vae) Gpu()
    {
        Requires.Device(_main is not null && _vae is not null, _reason);
        if (_main is CudaOps cuda)
        {
            LayerFusion.Tests.Cuda.EmulatedCuda.NoteTestRuns();
            lock (_model)
                if (LayerFusion.Tests.Cuda.DeviceFaults.Poisoned(cuda.Device) is { } fault)
                {
                    DisposeGpu();
                    (_main, _vae, _reason) = Open();
                    Requires.Device(_main is not null && _vae is not null, $"reopening after an earlier test's fault ({fault}): {_reason}");
                }
        }
        return (_main, _vae);
    }

    public LayerFusionPipeline CpuPipeline()
    {
        lock (_model) return _cpuPipe ??= LayerFusionPipeline.Load(Cpu, _model.Dir, Files);
    }

    public LayerFusionPipeline GpuPipeline()
    {
        var (main, vae) = Gpu();
        lock (_model) return _gpuPipe ??= LayerFusionPipeline.Load(main, _model.Dir, Files, vae);
    }

    void DisposeGpu()
    {
        _gpuPipe?.Dispose();
        _gpuPipe = null;
        (_vae as IDisposable)?.Dispose();
        (_main as IDisposable)?.Dispose();
    }

    public void Dispose()
    {
        DisposeGpu();
        _cpuPipe?.Dispose();
        _model.Dispose();
    }
}

/// <summary>The CUDA pair; both instances poison every output before its kernel writes it.</summary>
public sealed class CudaModelFixture() : ModelPairFixture(Create)
{
    static ((IOps, IOps)?, string) Create()
    {
        var main = CudaOps.TryCreate(StorageType.F16, out var why);
        if (main is null) return (null, why);
        main.PoisonOutputs = true;
        return ((main, new CudaOps(main.Device, StorageType.F32, main.Cache) { PoisonOutputs = true }), "");
    }
}

/// <summary>The host-side stand-in pair (<see cref="CudaContractOps"/>): runs everywhere.</summary>
public sealed class CudaContractFixture() : ModelPairFixture(() =>
    ((new CudaContractOps(new CpuBackend(), StorageType.F16), new CudaContractOps(new CpuBackend(), StorageType.F32)), ""));

/// <summary>Error metric and report of the model-level checks.</summary>
internal static class ModelParity
{
    /// <summary>max_i |y_i - ref_i| / max_i |ref_i| (the Models tests' metric); any non-finite y fails.</summary>
    public static double MaxRelError(ReadOnlySpan<float> y, ReadOnlySpan<float> reference, string what)
    {
        Assert.True(y.Length == reference.Length, $"{what}: {y.Length} values vs {reference.Length} on the CPU");
        double maxRef = 0, maxDiff = 0;
        for (int i = 0; i < y.Length; i++)
        {
            Assert.True(float.IsFinite(y[i]), $"{what}: element {i} is {y[i]} (unwritten output or overflow)");
            maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs(y[i] - (double)reference[i]));
        }
        Assert.True(maxRef > 0, $"{what}: the CPU result is all zeros, the comparison would be vacuous");
        return maxDiff / maxRef;
    }

    /// <summary>Records the error (test output, and models.tsv under LAYERFUSION_REPORT_DIR for
    /// perf/device-check.sh's report), then asserts it is under the bound.</summary>
    public static void Check(string component, string storage, double error, double bound, string detail = "")
    {
        TestContext.Current.TestOutputHelper?.WriteLine($"{component} [{storage}]: max relative error {error:E3} (bound {bound:E0}) {detail}");
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_REPORT_DIR");
        if (!string.IsNullOrEmpty(dir))
            lock (typeof(ModelParity))
                File.AppendAllText(Path.Combine(dir, "models.tsv"), $"{component}\t{storage}\t{error:E3}\t{bound:E0}\t{detail}\n");
        Assert.True(error < bound, $"{component} [{storage}]: max relative error {error:E3} >= {bound:E0} {detail}");
    }

    public static void Compare(string component, string storage, ReadOnlySpan<float> gpu, ReadOnlySpan<float> cpu, double bound, string detail = "") =>
        Check(component, storage, MaxRelError(gpu, cpu, component), bound, detail);

    public static float[] Pixels(ReadOnlySpan<byte> p)
    {
        var f = new float[p.Length];
        for (int i = 0; i < p.Length; i++) f[i] = p[i];
        return f;
    }
}
