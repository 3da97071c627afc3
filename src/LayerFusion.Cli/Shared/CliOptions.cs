using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using LayerFusion.Core.Schedulers;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// Options shared by the generating commands, with the names and short aliases Stable Diffusion users
/// know (A1111/Forge, stable-diffusion.cpp's `sd`): -p/--prompt, -n/--negative-prompt, --cfg-scale,
/// --sampling-method, -W/-H, -s/--seed, -b/--batch-count, -o/--out; our older names stay as aliases.
/// Numbers go through our own parsers so that a bad value gets a plain message ("--width must be an
/// integer, got 'abc'") instead of a .NET type name, and so that every non-finite float ("inf",
/// "nan", "1e39") gets the same one.
/// </summary>
internal static class CliOptions
{
    /// <summary>diffusers' StableDiffusionXLPipeline default, for both sdxl and generate (the paper gives none).</summary>
    public const float DefaultCfg = 5f;
    public const int DefaultSteps = 30;
    public const int MaxSteps = 1000;
    public const int MaxBatchCount = 10000;

    public static string SamplerList => string.Join(", ", Samplers.Names);

    public static Option<string?> Negative() => new("--negative-prompt", "-n", "--negative")
    {
        Description = "Negative prompt (empty: zero embeddings, as SDXL does).",
    };

    public static Option<int> Steps() => new("--steps", "--sampling-steps")
    {
        Description = $"Denoising steps, 1..{MaxSteps}.",
        DefaultValueFactory = _ => DefaultSteps,
        CustomParser = r => Int(r, 1, MaxSteps, DefaultSteps),
    };

    public static Option<float> Cfg() => new("--cfg-scale", "--cfg")
    {
        Description = "Classifier-free guidance scale (<= 1: no guidance); the default is diffusers' SDXL default, the same for sdxl and generate.",
        DefaultValueFactory = _ => DefaultCfg,
        CustomParser = r => Float(r, 0f, 1000f, DefaultCfg),
    };

    public static Option<long> Seed(string what = "Seed of the initial noise") => new("--seed", "-s")
    {
        Description = $"{what}; a negative seed picks a random one (printed and recorded in the files). With --batch-count N, images use seed, seed+1, ...",
        DefaultValueFactory = _ => 0L,
        CustomParser = r => Long(r, long.MinValue, long.MaxValue, 0L),
    };

    public static Option<int> BatchCount() => new("--batch-count", "-b")
    {
        Description = $"How many images (or triplets) to make, one after another, with consecutive seeds (1..{MaxBatchCount}).",
        DefaultValueFactory = _ => 1,
        CustomParser = r => Int(r, 1, MaxBatchCount, 1),
    };

    public static Option<int?> Width() => new("--width", "-W")
    {
        Description = "Width in pixels, a positive multiple of 8 (default: the model's, 1024 for SDXL).",
        CustomParser = r => Int(r, int.MinValue, int.MaxValue, 0),
    };

    public static Option<int?> Height() => new("--height", "-H")
    {
        Description = "Height in pixels, a positive multiple of 8 (default: the model's).",
        CustomParser = r => Int(r, int.MinValue, int.MaxValue, 0),
    };

    public static Option<string?> Sampler() => new("--sampler", "--sampling-method")
    {
        Description = $"Sampler, one of: {SamplerList} (default: the checkpoint's scheduler).",
        CompletionSources = { _ => Samplers.Names.Select(n => new System.CommandLine.Completions.CompletionItem(n)) },
    };

    public static Option<string?> Backend() => new("--backend")
    {
        Description = $"Backend, one of: {string.Join(", ", BackendFactory.Names)} (default: cuda when a device is usable, else cpu, said once on stderr).",
    };

    public static Option<bool> NoCudaGraph() => new("--no-cuda-graph")
    {
        Description = "On cuda, run every denoising step op by op instead of replaying one captured CUDA graph of a step (for comparison; same output).",
    };

    /// <summary>The "wrote" line's note of how many denoising steps ran from the captured CUDA graph (empty without one).</summary>
    public static string GraphNote(int graphSteps, int steps) => graphSteps > 0 ? $", cuda graph: {graphSteps} of {steps} steps" : "";

    /// <summary>The option's (or argument's) name for messages.</summary>
    static string NameOf(ArgumentResult r) => r.Parent is OptionResult o ? o.Option.Name : r.Argument.Name;

    static string? Token(ArgumentResult r) => r.Tokens.Count == 0 ? null : r.Tokens[^1].Value;

    internal static int Int(ArgumentResult r, int min, int max, int fallback)
    {
        var t = Token(r);
        if (t is null) return fallback;
        if (!long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v))
        {
            r.AddError($"{NameOf(r)} must be an integer, got '{t}'");
            return fallback;
        }
        if (v < min || v > max)
        {
            r.AddError($"{NameOf(r)} must be {min}..{max}, got {t}");
            return fallback;
        }
        return (int)v;
    }

    internal static long Long(ArgumentResult r, long min, long max, long fallback)
    {
        var t = Token(r);
        if (t is null) return fallback;
        if (!long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v))
        {
            r.AddError($"{NameOf(r)} must be an integer from {min} to {max}, got '{t}'");
            return fallback;
        }
        if (v < min || v > max)
        {
            r.AddError($"{NameOf(r)} must be {min}..{max}, got {t}");
            return fallback;
        }
        return v;
    }

    /// <summary>A finite float in [min, max]; "inf", "nan" and values beyond float's range all get the same message.</summary>
    internal static float Float(ArgumentResult r, float min, float max, float fallback)
    {
        var t = Token(r);
        if (t is null) return fallback;
        if (!TryFinite(t, out var d) || d > float.MaxValue || d < -float.MaxValue)
        {
            r.AddError($"{NameOf(r)} must be a finite number, got '{t}'");
            return fallback;
        }
        float v = (float)d;
        if (v < min || v > max)
        {
            r.AddError($"{NameOf(r)} must be {min.ToString(CultureInfo.InvariantCulture)}..{max.ToString(CultureInfo.InvariantCulture)}, got {t}");
            return fallback;
        }
        return v;
    }

    internal static double Double(ArgumentResult r, double fallback)
    {
        var t = Token(r);
        if (t is null) return fallback;
        if (!TryFinite(t, out var d))
        {
            r.AddError($"{NameOf(r)} must be a finite number, got '{t}'");
            return fallback;
        }
        return d;
    }

    static bool TryFinite(string t, out double d) =>
        double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out d) && double.IsFinite(d);

    /// <summary>
    /// The seeds of a batch: <paramref name="seed"/>, seed + 1, ...; a negative seed is replaced by a
    /// random one in [0, 2^32) (the range A1111 and sd.cpp draw from).
    /// </summary>
    public static (ulong[] Seeds, bool Random) Seeds(long seed, int count)
    {
        bool random = seed < 0;
        ulong first = random ? (ulong)System.Random.Shared.NextInt64(0, 1L << 32) : (ulong)seed;
        if (first > long.MaxValue - (ulong)(count - 1))
            throw new WeightsLoader.UserInputException($"--seed {seed} with --batch-count {count} runs past the largest seed, {long.MaxValue}");
        return (Enumerable.Range(0, count).Select(i => first + (ulong)i).ToArray(), random);
    }

    /// <summary>Prompts end up in PNG text, which cannot hold NUL; refused before any work.</summary>
    public static string? CheckPrompt(string option, string? text)
    {
        if (text is not null && text.Contains('\0'))
            throw new WeightsLoader.UserInputException($"{option} contains a NUL character (U+0000), which a prompt cannot hold");
        return text;
    }
}
