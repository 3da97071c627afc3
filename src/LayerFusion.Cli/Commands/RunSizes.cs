using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `run` inputs are sized against the component before any work: the largest intermediate tensor a
/// forward pass makes must fit one array (tensor sizes are 32-bit element counts), so a large input
/// is refused with its numbers instead of overflowing a size computation minutes in. The bounds are
/// upper estimates from the config: per resolution level, the widest activation (a 3x3 conv's input
/// over the up path's skip concatenation, or the GEGLU feed-forward's 8x channels).
/// </summary>
internal static class RunSizes
{
    public static void CheckUnet(long[] sample, UNetConfig config)
    {
        long b = sample[0], h = sample[2], w = sample[3];
        var ch = config.BlockOutChannels;
        long worst = 0;
        for (int level = 0; level < ch.Length; level++)
        {
            long tokens = Ceil(h, level) * Ceil(w, level);
            long wide = Math.Max(ch[level] + ch[Math.Min(level + 1, ch.Length - 1)], 8L * ch[level]);
            worst = Math.Max(worst, Mul(b, tokens, wide));
        }
        Refuse("unet", "sample", sample, worst);
    }

    /// <summary>A decoder from a latent up by <paramref name="scale"/> with at most <paramref name="maxChannels"/> channels.</summary>
    public static void CheckDecoder(string what, long[] latent, int scale, int maxChannels, long[]? pixels = null)
    {
        long b = latent[0], h = latent[2] * scale, w = latent[3] * scale;
        if (pixels is not null) { h = Math.Max(h, pixels[2]); w = Math.Max(w, pixels[3]); b = Math.Max(b, pixels[0]); }
        Refuse(what, pixels is null ? "latent" : "pixel", pixels ?? latent, Mul(b, Mul(h, w, 1), 2L * maxChannels));
    }

    static long Ceil(long n, int level) => (n + (1L << level) - 1) >> level;

    static long Mul(long a, long b, long c)
    {
        try { return checked(a * b * c); }
        catch (OverflowException) { return long.MaxValue; }
    }

    static void Refuse(string what, string name, long[] shape, long worst)
    {
        if (worst > Array.MaxLength)
            throw new UserInputException($"run {what}: input '{name}' [{string.Join(", ", shape)}] needs intermediate tensors of about {worst:N0} values, " +
                $"more than one tensor can hold ({Array.MaxLength:N0}); use a smaller batch or size");
    }
}
