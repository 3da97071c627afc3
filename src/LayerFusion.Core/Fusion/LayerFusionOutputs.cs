using LayerFusion.Core.Imaging;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Core.Fusion;

/// <summary>
/// Writes a triplet to a folder: fg.png (RGBA), bg.png, blend.png, alpha-composite.png, each with the
/// generation parameters as PNG text; with a prior dump also priors/{s_prime,content,mask_soft,mask_hard}.png
/// and priors/priors.safetensors (raw values).
/// </summary>
public static class LayerFusionOutputs
{
    public static readonly string[] ImageNames = ["fg.png", "bg.png", "blend.png", "alpha-composite.png"];

    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> Write(string dir, LayerFusionResult result)
    {
        Directory.CreateDirectory(dir);
        var text = result.Parameters.ToList();
        var written = new List<string>();
        void Png(string name, Image8 image, IEnumerable<KeyValuePair<string, string>> meta)
        {
            var path = Path.Combine(dir, name);
            PngFile.Write(path, image, meta);
            written.Add(path);
        }
        Png("fg.png", result.Foreground, text);
        Png("bg.png", result.Background, text);
        Png("blend.png", result.Blend, text);
        Png("alpha-composite.png", result.AlphaComposite, text);
        if (result.Priors is { } d)
        {
            var pdir = Path.Combine(dir, "priors");
            Directory.CreateDirectory(pdir);
            var vis = d.Maps[d.VisualizedSite];
            var meta = text.Concat([
                new("layerfusion:prior_step", d.Step.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                new("layerfusion:prior_timestep", d.Timestep.ToString("R", System.Globalization.CultureInfo.InvariantCulture)),
                new("layerfusion:prior_site", d.VisualizedSite),
            ]).ToList();
            int w = result.Background.Width, h = result.Background.Height;
            Png(Path.Combine("priors", "s_prime.png"), MapImage(d.Structure.Density, d.Structure.Height, d.Structure.Width, w, h), meta);
            // c holds small probabilities: shown min-max normalized (raw values in the safetensors)
            Png(Path.Combine("priors", "content.png"), MapImage(PriorMath.MinMax(vis.Content), vis.Height, vis.Width, w, h), meta);
            Png(Path.Combine("priors", "mask_soft.png"), MapImage(vis.SoftMask, vis.Height, vis.Width, w, h), meta);
            Png(Path.Combine("priors", "mask_hard.png"), MapImage(vis.HardMask, vis.Height, vis.Width, w, h), meta);

            var tensors = new List<WeightTensor>
            {
                Map("structure.sparsity", d.Structure.Sparsity, d.Structure.Height, d.Structure.Width),
                Map("structure.density", d.Structure.Density, d.Structure.Height, d.Structure.Width),
            };
            foreach (var (site, m) in d.Maps.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                tensors.Add(Map($"{site}.density", m.Density, m.Height, m.Width));
                tensors.Add(Map($"{site}.content", m.Content, m.Height, m.Width));
                tensors.Add(Map($"{site}.mask_soft", m.SoftMask, m.Height, m.Width));
                tensors.Add(Map($"{site}.mask_hard", m.HardMask, m.Height, m.Width));
            }
            if (d.PriorProbabilities is { } p)
            {
                int tokens = d.Structure.Height * d.Structure.Width;
                tensors.Add(ArrayWeightTensor.FromFloat32("prior_layer.head_mean_probabilities", [tokens, tokens], p));
            }
            var path = Path.Combine(pdir, "priors.safetensors");
            SafeTensorsWriter.Write(path, tensors, meta.ToDictionary(kv => kv.Key, kv => kv.Value));
            written.Add(path);
        }
        return written;
    }

    static WeightTensor Map(string name, float[] values, int h, int w) => ArrayWeightTensor.FromFloat32(name, [h, w], values);

    /// <summary>A [h, w] map in [0, 1] as a gray RGB image of the output size (nearest neighbour, so layer cells stay visible).</summary>
    public static Image8 MapImage(ReadOnlySpan<float> map, int h, int w, int outW, int outH)
    {
        if (map.Length != h * w) throw new ArgumentException($"map has {map.Length} values, not {h}x{w}");
        var px = new byte[outW * outH * 3];
        for (int y = 0; y < outH; y++)
            for (int x = 0; x < outW; x++)
            {
                byte v = ImageConvert.QuantizeUnit(map[(int)((long)y * h / outH) * w + (int)((long)x * w / outW)]);
                int o = (y * outW + x) * 3;
                px[o] = px[o + 1] = px[o + 2] = v;
            }
        return new Image8(outW, outH, 3, px);
    }
}
