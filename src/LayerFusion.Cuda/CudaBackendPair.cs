using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda;

/// <summary>
/// The CUDA backends a pipeline runs on, paired the way the CLI pairs them: the denoiser and text
/// encoders on <see cref="Main"/> (fp16 storage), the VAE and transparent decoder on <see cref="Vae"/>,
/// an fp32 instance on the same device and kernel cache (SDXL's VAE overflows in fp16; diffusers
/// upcasts it too). Pass both to a pipeline (<c>vaeOps</c> / <c>SdxlPipelineOptions.VaeOps</c>) with
/// <c>ownsOps</c> so they are freed with it, or dispose the pair yourself after the pipeline.
/// </summary>
public sealed class CudaBackendPair : IDisposable
{
    CudaBackendPair(CudaOps main, CudaOps vae)
    {
        Main = main;
        Vae = vae;
    }

    public CudaOps Main { get; }
    public CudaOps Vae { get; }

    /// <summary>Both backends on device 0; throws <see cref="Interop.CudaUnavailableException"/> when CUDA cannot run here.</summary>
    public static CudaBackendPair Create(StorageType storage = StorageType.F16)
    {
        var main = CudaOps.Create(storage);
        return Pair(main);
    }

    /// <summary>Both backends on device 0, or null and the one-line reason (missing library, no device).</summary>
    public static CudaBackendPair? TryCreate(out string reason, StorageType storage = StorageType.F16)
    {
        var main = CudaOps.TryCreate(storage, out reason);
        return main is null ? null : Pair(main);
    }

    static CudaBackendPair Pair(CudaOps main)
    {
        try { return new CudaBackendPair(main, new CudaOps(main.Device, StorageType.F32, main.Cache)); }
        catch
        {
            main.Dispose();
            throw;
        }
    }

    /// <summary>Frees the fp32 instance, then the main one.</summary>
    public void Dispose()
    {
        Vae.Dispose();
        Main.Dispose();
    }
}
