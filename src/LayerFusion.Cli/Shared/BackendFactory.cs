using LayerFusion.Core.Tensors;
using LayerFusion.Cpu;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// The one place the CLI turns `--backend` into backends. cpu: the reference backend. cuda: the
/// NVRTC/cuBLAS backend (fp16 storage; the VAE on a second, fp32 instance because SDXL's VAE
/// overflows in fp16). No name: cuda when a device is usable, else cpu, and the reason said once
/// on stderr.
/// </summary>
internal static class BackendFactory
{
    public static readonly string[] Names = ["cpu", "cuda"];

    /// <summary>The backend for the denoiser and text encoders, and the one for the VAE (same object on the CPU).</summary>
    public sealed record Backends(IOps Main, IOps Vae);

    public static IOps Create(string? name, TextWriter stderr) => CreatePair(name, stderr).Main;

    public static Backends CreatePair(string? name, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        switch (name?.Trim().ToLowerInvariant())
        {
            case null or "" or "auto":
                var cuda = CudaBackendPair.TryCreate(out var reason);
                if (cuda is not null) return new Backends(cuda.Main, cuda.Vae);
                stderr.WriteLine(CpuFallbackNote(reason));
                return Cpu();
            case "cpu":
                return Cpu();
            case "cuda" or "gpu":
                try
                {
                    var pair = CudaBackendPair.Create();
                    return new Backends(pair.Main, pair.Vae);
                }
                catch (CudaUnavailableException e)
                {
                    throw new UserInputException($"--backend cuda: {OneLine(e.Message)}");
                }
            case var other:
                throw new UserInputException($"--backend must be one of {string.Join(", ", Names)}, not '{other}'");
        }
    }

    /// <summary>The one-line note of the automatic CPU choice: the reason's first sentence, cut to fit a terminal line.</summary>
    internal static string CpuFallbackNote(string? reason)
    {
        var r = OneLine(reason ?? "no CUDA device");
        const string prefix = "CUDA backend unavailable: ";
        if (r.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) r = r[prefix.Length..];
        int stop = r.IndexOf(". ", StringComparison.Ordinal);
        if (stop > 0) r = r[..stop];
        const string head = "note: using the CPU backend (", tail = ")";
        int room = 119 - head.Length - tail.Length;
        if (r.Length > room) r = r[..(room - 3)].TrimEnd() + "...";
        return head + r + tail;
    }

    static Backends Cpu()
    {
        var cpu = new CpuOps();
        return new Backends(cpu, cpu);
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ").TrimEnd('.');
}
