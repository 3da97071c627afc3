using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>One registered sampler: the canonical name the CLI and API use, the name A1111/Forge
/// write in their <c>parameters</c> PNG text (<c>Sampler: ...</c>), and accepted aliases.</summary>
/// <param name="Name">Canonical name (lower case, dashes), what <see cref="IScheduler.Name"/> reports.</param>
/// <param name="DisplayName">A1111's sampler label (legacy combined form, e.g. "DPM++ 2M Karras"; A1111 1.9+
/// splits a trailing " Karras" into its Schedule type when it reads the text back).</param>
/// <param name="Aliases">Other spellings accepted by <see cref="Samplers.Resolve"/> (ComfyUI's, A1111's k_ names).</param>
/// <param name="Stochastic">Adds fresh noise every step (needs a noise source; same seed, same image still).</param>
/// <param name="Diffusers">The diffusers v0.25 scheduler and switches it matches.</param>
public sealed record SamplerInfo(string Name, string DisplayName, IReadOnlyList<string> Aliases, bool Stochastic, string Diffusers);

/// <summary>
/// The samplers the CLI offers, built from the checkpoint's scheduler config the way diffusers users
/// switch samplers: <c>XScheduler.from_config(pipe.scheduler.config, ...)</c>, so spacing, offset
/// and betas come from the checkpoint and only the sampler-specific switches are set here.
/// </summary>
public static class Samplers
{
    public const string Euler = "euler";
    public const string EulerKarras = "euler-karras";
    public const string EulerAncestral = "euler-a";
    public const string DpmPP2MKarras = "dpmpp-2m-karras";
    public const string DpmPP2M = "dpmpp-2m";
    public const string DpmPP2MSdeKarras = "dpmpp-2m-sde-karras";
    public const string DpmPP2MSde = "dpmpp-2m-sde";
    public const string Ddim = "ddim";

    /// <summary>Every sampler, in the order help texts list them.</summary>
    public static IReadOnlyList<SamplerInfo> All { get; } =
    [
        new(Euler, "Euler", ["k_euler"], false, "EulerDiscreteScheduler (use_karras_sigmas as the checkpoint says)"),
        new(EulerAncestral, "Euler a", ["euler_a", "euler-ancestral", "euler_ancestral", "k_euler_a", "k_euler_ancestral"], true,
            "EulerAncestralDiscreteScheduler"),
        new(DpmPP2MKarras, "DPM++ 2M Karras", ["dpmpp_2m_karras", "k_dpmpp_2m_ka"], false,
            "DPMSolverMultistepScheduler(algorithm_type=\"dpmsolver++\", use_karras_sigmas=True)"),
        new(DpmPP2MSdeKarras, "DPM++ 2M SDE Karras", ["dpmpp_2m_sde_karras", "k_dpmpp_2m_sde_ka"], true,
            "DPMSolverMultistepScheduler(algorithm_type=\"sde-dpmsolver++\", use_karras_sigmas=True)"),
        new(DpmPP2M, "DPM++ 2M", ["dpmpp_2m", "k_dpmpp_2m"], false,
            "DPMSolverMultistepScheduler(algorithm_type=\"dpmsolver++\", use_karras_sigmas=False)"),
        new(DpmPP2MSde, "DPM++ 2M SDE", ["dpmpp_2m_sde", "k_dpmpp_2m_sde"], true,
            "DPMSolverMultistepScheduler(algorithm_type=\"sde-dpmsolver++\", use_karras_sigmas=False)"),
        new(EulerKarras, "Euler Karras", ["euler_karras"], false, "EulerDiscreteScheduler(use_karras_sigmas=True)"),
        new(Ddim, "DDIM", [], false, "DDIMScheduler (eta 0)"),
    ];

    /// <summary>The canonical names.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(s => s.Name).ToArray();

    private static readonly Dictionary<string, SamplerInfo> s_lookup = BuildLookup();

    private static Dictionary<string, SamplerInfo> BuildLookup()
    {
        var d = new Dictionary<string, SamplerInfo>(StringComparer.OrdinalIgnoreCase);
        foreach (var s in All)
            foreach (var n in s.Aliases.Append(s.Name).Append(s.DisplayName))
                if (!d.TryAdd(n, s) && d[n] != s) // "euler" and "Euler" are one key
                    throw new InvalidOperationException($"sampler spelling '{n}' names both {d[n].Name} and {s.Name}");
        return d;
    }

    /// <summary>The sampler a canonical name, alias or A1111 label (any case, surrounding blanks ignored) names.</summary>
    public static bool TryGet(string? name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SamplerInfo? info)
    {
        info = null;
        return name is not null && s_lookup.TryGetValue(name.Trim(), out info);
    }

    /// <summary>The canonical name for <paramref name="name"/>; an unknown name is a user error listing the choices.</summary>
    public static string Resolve(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return TryGet(name, out var info) ? info.Name
            : throw new UserInputException($"unknown sampler '{name}' (one of: {string.Join(", ", Names)})");
    }

    /// <summary>A1111's label for a sampler name (canonical, alias or an <see cref="IScheduler.Name"/>), for
    /// <c>Sampler: ...</c> in PNG parameters. Names outside the registry (dpmpp-1s...) come back unchanged.</summary>
    public static string DisplayName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return TryGet(name, out var info) ? info.DisplayName : name;
    }

    /// <summary>The checkpoint's own sampler (scheduler_config.json's _class_name), with diffusers' defaults
    /// for the fields SchedulerConfig does not carry (DPM-Solver: order 2, dpmsolver++, midpoint).</summary>
    public static IScheduler FromConfig(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.ClassName switch
        {
            "EulerDiscreteScheduler" => new EulerDiscreteScheduler(config),
            "EulerAncestralDiscreteScheduler" => new EulerAncestralDiscreteScheduler(config),
            "DPMSolverMultistepScheduler" => new DpmSolverMultistepScheduler(config),
            "DDIMScheduler" => new DdimScheduler(config),
            _ => throw new UserInputException(
                $"scheduler config: _class_name '{config.ClassName}' is not supported; choose a sampler ({string.Join(", ", Names)})"),
        };
    }

    /// <summary>A sampler by canonical name, alias or A1111 label, built from the checkpoint's config.</summary>
    public static IScheduler Create(string sampler, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentNullException.ThrowIfNull(config);
        return Resolve(sampler) switch
        {
            Euler => new EulerDiscreteScheduler(config),
            EulerKarras => new EulerDiscreteScheduler(config with { UseKarrasSigmas = true }),
            EulerAncestral => new EulerAncestralDiscreteScheduler(config),
            // LayerDiffuse: DPMSolverMultistepScheduler(use_karras_sigmas=True, algorithm_type="dpmsolver++")
            DpmPP2MKarras => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = true }),
            DpmPP2M => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = false }),
            // LayerDiffuse's recommended "DPM++ 2M SDE Karras" (its Forge/ComfyUI defaults)
            DpmPP2MSdeKarras => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = true }, sde: true),
            DpmPP2MSde => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = false }, sde: true),
            Ddim => new DdimScheduler(config),
            var other => throw new InvalidOperationException($"sampler '{other}' is registered but not constructible"),
        };
    }
}

/// <summary>Classifier-free guidance over a CFG batch laid out [uncond, cond].</summary>
public static class Guidance
{
    /// <summary>noise = uncond + scale * (cond - uncond), float32 in torch's order.</summary>
    public static void Apply(ReadOnlySpan<float> uncond, ReadOnlySpan<float> cond, float scale, Span<float> destination)
    {
        if (uncond.Length != cond.Length || destination.Length != cond.Length)
            throw new ArgumentException($"CFG: uncond ({uncond.Length}), cond ({cond.Length}) and destination ({destination.Length}) lengths differ");
        for (int i = 0; i < cond.Length; i++) destination[i] = uncond[i] + scale * (cond[i] - uncond[i]);
    }

    /// <summary>Splits a [uncond; cond] model output (first half uncond) and combines the halves.</summary>
    public static float[] Combine(ReadOnlySpan<float> batchedOutput, float scale)
    {
        if (batchedOutput.Length % 2 != 0)
            throw new ArgumentException($"CFG: batched model output length {batchedOutput.Length} is odd");
        int half = batchedOutput.Length / 2;
        var r = new float[half];
        Apply(batchedOutput[..half], batchedOutput[half..], scale, r);
        return r;
    }
}

/// <summary>SDXL micro-conditioning: add_time_ids = original_size + crops_coords_top_left + target_size.</summary>
public static class SdxlTimeIds
{
    public static float[] Create(int originalHeight, int originalWidth, int cropTop, int cropLeft, int targetHeight, int targetWidth)
    {
        if (originalHeight <= 0 || originalWidth <= 0 || targetHeight <= 0 || targetWidth <= 0)
            throw new ArgumentOutOfRangeException(nameof(originalHeight), "SDXL time ids: sizes must be positive");
        if (cropTop < 0 || cropLeft < 0)
            throw new ArgumentOutOfRangeException(nameof(cropTop), "SDXL time ids: crop coordinates must be non-negative");
        return [originalHeight, originalWidth, cropTop, cropLeft, targetHeight, targetWidth];
    }

    /// <summary>The pipeline default: original = target = (height, width), crop (0, 0).</summary>
    public static float[] ForSize(int height, int width) => Create(height, width, 0, 0, height, width);

    /// <summary>Time ids for a CFG batch: <paramref name="batch"/> copies of <paramref name="ids"/> ([batch, 6] flat).</summary>
    public static float[] Repeat(float[] ids, int batch)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Length != 6) throw new ArgumentException("SDXL time ids have 6 entries");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        var r = new float[6 * batch];
        for (int b = 0; b < batch; b++) ids.CopyTo(r, 6 * b);
        return r;
    }
}
