using LayerFusion.Core.Imaging;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Core.Fusion;

/// <summary>How <see cref="LayerFusionOutputs.Write(string, LayerFusionResult, LayerFusionWriteOptions?)"/> names and tags the files.</summary>
public sealed record LayerFusionWriteOptions
{
    /// <summary>The checkpoint's name for the A1111 "Model" field (a file or folder name, not a local path); null: left out.</summary>
    public string? ModelName { get; init; }
    /// <summary>Also write layers.psd: background and transparent foreground as layers, the blend as a hidden third.</summary>
    public bool Psd { get; init; }
}

/// <summary>
/// Writes a triplet to a folder: fg.png (RGBA), bg.png, blend.png, alpha-composite.png, each with the
/// generation parameters as PNG text (A1111's <c>parameters</c> entry with that file's own prompt and
/// role first, plus our <c>layerfusion:*</c> keys) and tagged sRGB; optionally layers.psd; with a prior
/// dump also priors/{s_prime,content,mask_soft,mask_hard}.png and priors/priors.safetensors (raw values).
/// </summary>
public static class LayerFusionOutputs
{
    public static readonly string[] ImageNames = ["fg.png", "bg.png", "blend.png", "alpha-composite.png"];
    public const string PsdName = "layers.psd";

    /// <summary>The roles of the four images, in <see cref="ImageNames"/> order.</summary>
    public static readonly string[] Roles = ["fg", "bg", "blend", "composite"];

    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> Write(string dir, LayerFusionResult result) => Write(dir, result, null);

    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> Write(string dir, LayerFusionResult result, LayerFusionWriteOptions? options)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        ArgumentNullException.ThrowIfNull(result);
        options ??= new LayerFusionWriteOptions();
        Directory.CreateDirectory(dir);
        var text = result.Parameters.ToList();
        var written = new List<string>();
        void Png(string name, Image8 image, IEnumerable<KeyValuePair<string, string>> meta)
        {
            var path = Path.Combine(dir, name);
            PngFile.Write(path, image, meta, srgb: true);
            written.Add(path);
        }
        Image8[] images = [result.Foreground, result.Background, result.Blend, result.AlphaComposite];
        for (int i = 0; i < ImageNames.Length; i++)
            Png(ImageNames[i], images[i], FileText(result, Roles[i], options.ModelName));
        if (options.Psd)
        {
            var path = Path.Combine(dir, PsdName);
            PsdFile.Write(path, result.Background.Width, result.Background.Height,
            [
                new PsdLayer("background", result.Background, Visible: true),
                new PsdLayer("foreground", result.Foreground, Visible: true),
                new PsdLayer("blend", result.Blend, Visible: false),
            ], composite: result.AlphaComposite);
            written.Add(path);
        }
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

    /// <summary>One image's text: A1111's parameters with the role's own prompt first, then our keys.</summary>
    public static List<KeyValuePair<string, string>> FileText(LayerFusionResult result, string role, string? modelName)
    {
        var p = result.Parameters;
        string Get(string key) => p.TryGetValue(key, out var v) ? v : "";
        string fg = Get("layerfusion:fg"), bg = Get("layerfusion:bg"), blend = Get("layerfusion:blend");
        string prompt = role switch
        {
            "fg" => fg,
            "bg" => bg,
            "blend" => blend,
            // the composite shows both layers: both prompts, as the default blend prompt joins them
            _ => string.IsNullOrEmpty(bg) ? fg : $"{fg}, {bg}",
        };
        var size = Get("layerfusion:size").Split('x');
        var fields = Infotext.StandardFields(
            int.Parse(Get("layerfusion:steps"), System.Globalization.CultureInfo.InvariantCulture),
            Get("layerfusion:sampler"),
            float.Parse(Get("layerfusion:cfg"), System.Globalization.CultureInfo.InvariantCulture),
            ulong.Parse(Get("layerfusion:seed"), System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(size[0], System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(size[^1], System.Globalization.CultureInfo.InvariantCulture),
            modelName);
        fields.Add(new("LayerFusion role", role));
        fields.Add(new("LayerFusion FG prompt", fg));
        fields.Add(new("LayerFusion BG prompt", bg));
        fields.Add(new("LayerFusion blend prompt", blend));
        fields.Add(new("LayerFusion options", Get("layerfusion:options")));
        var text = new List<KeyValuePair<string, string>> { new(Infotext.Keyword, Infotext.Format(prompt, Get("layerfusion:negative"), fields)) };
        text.Add(new("layerfusion:role", role));
        if (modelName is not null) text.Add(new("layerfusion:model", modelName));
        text.Add(new("layerfusion:version", Infotext.Version));
        text.AddRange(p.Where(kv => kv.Key is not ("layerfusion:role" or "layerfusion:model" or "layerfusion:version")));
        return text;
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
