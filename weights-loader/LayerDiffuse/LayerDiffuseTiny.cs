using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.LayerDiffuse;

/// <summary>Paths of the LayerDiffuse files <see cref="LayerDiffuseTiny.WriteAll"/> wrote.</summary>
public sealed record LayerDiffuseTinyFiles(string DenseAttention, string LoraAttention, string TransparentDecoder);

/// <summary>
/// Seeded random LayerDiffuse files in the released layouts and names, with every dimension taken
/// from the configs: the attention offsets in both encodings (the same dW), and a transparent decoder.
/// </summary>
public static class LayerDiffuseTiny
{
    public const string DenseAttentionFileName = "ld_diffusers_sdxl_attn.safetensors";
    public const string LoraAttentionFileName = "layer_xl_transparent_attn.safetensors";
    public const string TransparentDecoderFileName = "ld_diffusers_sdxl_vae_transparent_decoder.safetensors";

    /// <summary>A narrow decoder with the released architecture (7 levels, 3 with attention).</summary>
    public static TransparentDecoderConfig TinyDecoderConfig => new()
    {
        BlockOutChannels = [8, 8, 16, 16, 32, 32, 32],
        LayersPerBlock = 2,
        NormNumGroups = 4,
        AttentionHeadDim = 8,
        LatentInjectLevel = 3,
    };

    /// <summary>
    /// Writes the three files into <paramref name="dir"/>. The LoRA factors (stored as
    /// <paramref name="dtype"/>) are drawn first; the dense offsets are then computed from the
    /// stored factor values as alpha/rank * up @ down in float64 (rank ascending, unfused
    /// multiply-adds) and stored as <paramref name="denseDtype"/>. With the default F32 the two
    /// files encode bit-identical dW, since <see cref="LayerDiffuseAttention.Load"/> expands the
    /// LoRA the same way; the released dense file is F16, which the loader reads too.
    /// Every third projection has no alpha tensor (scale 1), as LoRA files may omit it.
    /// </summary>
    public static LayerDiffuseTinyFiles WriteAll(string dir, UNetConfig unet, int seed, DType dtype = DType.F16,
        DType denseDtype = DType.F32, TransparentDecoderConfig? decoder = null)
    {
        Directory.CreateDirectory(dir);
        var files = new LayerDiffuseTinyFiles(
            Path.Combine(dir, DenseAttentionFileName),
            Path.Combine(dir, LoraAttentionFileName),
            Path.Combine(dir, TransparentDecoderFileName));
        WriteAttention(files.DenseAttention, files.LoraAttention, unet, seed, dtype, denseDtype);
        WriteDecoder(files.TransparentDecoder, decoder ?? TinyDecoderConfig, unchecked(seed * 7919 + 17), dtype);
        return files;
    }

    static void WriteAttention(string densePath, string loraPath, UNetConfig unet, int seed, DType dtype, DType denseDtype)
    {
        var rng = new Random(seed);
        var dense = new List<WeightTensor>();
        var lora = new List<WeightTensor>();
        int index = 0;
        foreach (var p in UNetAttentionLayout.Enumerate(unet))
        {
            // LoRA cannot express a bias offset, so both files offset the weights only
            if (p.IsBias) continue;
            int rows = (int)p.Shape[0], cols = (int)p.Shape[1];
            int rank = Math.Max(1, Math.Min(rows, cols) / 4);
            bool hasAlpha = index++ % 3 != 2;
            float alpha = hasAlpha ? (float)(rank * (0.5 + 1.5 * rng.NextDouble())) : 0f;
            double scale = hasAlpha ? alpha / (double)rank : 1.0;
            // |dW| about a tenth of a unit-variance-preserving weight (std 1/sqrt(in))
            double upStd = 0.1 / (Math.Sqrt(rank) * scale);
            double downStd = 1.0 / Math.Sqrt(cols);
            var up = Stored($"diffusion_model.{p.LdmName}::lora::0", [rows, rank], Gaussian(rng, rows * rank, upStd), dtype);
            var down = Stored($"diffusion_model.{p.LdmName}::lora::1", [rank, cols], Gaussian(rng, rank * cols, downStd), dtype);
            lora.Add(up);
            lora.Add(down);
            if (hasAlpha) lora.Add(ArrayWeightTensor.FromFloat32($"diffusion_model.{p.LdmName}::lora::2", [], [alpha], DType.F32));

            float[] u = up.ToFloat32(), d = down.ToFloat32();
            var dw = new float[rows * cols];
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++)
                {
                    double acc = 0;
                    for (int r = 0; r < rank; r++) acc += (double)u[o * rank + r] * d[r * cols + i];
                    dw[o * cols + i] = (float)(scale * acc);
                }
            dense.Add(ArrayWeightTensor.FromFloat32(p.Name, p.Shape, dw, denseDtype));
        }
        SafeTensorsWriter.Write(densePath, dense, new Dictionary<string, string> { ["format"] = "pt" });
        SafeTensorsWriter.Write(loraPath, lora);
    }

    static void WriteDecoder(string path, TransparentDecoderConfig config, int seed, DType dtype)
    {
        TransparentDecoderSchema.Validate(config, path);
        var rng = new Random(seed);
        var tensors = new List<WeightTensor>();
        foreach (var s in TransparentDecoderSchema.Enumerate(config))
        {
            int n = checked((int)s.Shape.Aggregate(1L, (a, b) => a * b));
            float[] v;
            if (s.Shape.Length == 1 && s.Name.EndsWith(".weight", StringComparison.Ordinal))
            {
                v = Gaussian(rng, n, 0.1); // GroupNorm gains near 1
                for (int i = 0; i < n; i++) v[i] += 1f;
            }
            else if (s.Shape.Length == 1)
                v = Gaussian(rng, n, 0.02);
            else
            {
                long fanIn = s.Shape.Skip(1).Aggregate(1L, (a, b) => a * b);
                v = Gaussian(rng, n, 1.0 / Math.Sqrt(fanIn));
            }
            tensors.Add(ArrayWeightTensor.FromFloat32(s.Name, s.Shape, v, dtype));
        }
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string>
        {
            ["format"] = "pt",
            [TransparentDecoderFile.ConfigMetadataKey] = ConfigJson(config),
        });
    }

    /// <summary>The config in the JSON field names <see cref="TransparentDecoderConfig.Read"/> takes.</summary>
    public static string ConfigJson(TransparentDecoderConfig c) => new JsonObject
    {
        ["in_channels"] = c.InChannels,
        ["out_channels"] = c.OutChannels,
        ["latent_channels"] = c.LatentChannels,
        ["block_out_channels"] = new JsonArray(c.BlockOutChannels.Select(x => (JsonNode)x).ToArray()),
        ["layers_per_block"] = c.LayersPerBlock,
        ["norm_num_groups"] = c.NormNumGroups,
        ["attention_head_dim"] = c.AttentionHeadDim,
        ["latent_inject_level"] = c.LatentInjectLevel,
    }.ToJsonString();

    static ArrayWeightTensor Stored(string name, long[] shape, float[] values, DType dtype) =>
        ArrayWeightTensor.FromFloat32(name, shape, values, dtype);

    static float[] Gaussian(Random rng, int n, double std)
    {
        var v = new float[n];
        for (int i = 0; i < n; i += 2)
        {
            // Box-Muller: deterministic for a seeded System.Random on every platform
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1)) * std;
            v[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < n) v[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        return v;
    }
}
