using LayerFusion.Core.Tensors;
using LayerFusion.Cpu;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// The one place the CLI turns `--backend` into an <see cref="IOps"/>. cpu: the reference backend.
/// cuda: not wired in this build yet (the CUDA backend lands separately; the integrator replaces
/// <see cref="CreateCuda"/>). No name: cpu for now; once CUDA is wired, cuda when a device is
/// usable, else cpu, said once on <c>stderr</c>.
/// </summary>
internal static class BackendFactory
{
    public static readonly string[] Names = ["cpu", "cuda"];

    public static IOps Create(string? name, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        return name?.Trim().ToLowerInvariant() switch
        {
            null or "" or "auto" => new CpuOps(),
            "cpu" => new CpuOps(),
            "cuda" or "gpu" => CreateCuda(),
            var other => throw new UserInputException($"--backend must be one of {string.Join(", ", Names)}, not '{other}'"),
        };
    }

    /// <summary>Throws until the CUDA backend is part of this build.</summary>
    static IOps CreateCuda() => throw new UserInputException(
        "--backend cuda: the CUDA backend is not available in this build (no CUDA device support compiled in); use --backend cpu");
}
