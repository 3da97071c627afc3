using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.LayerDiffuse;

/// <summary>Which of the two published encodings a LayerDiffuse attention file uses.</summary>
public enum LayerDiffuseAttentionFormat
{
    /// <summary><c>ld_diffusers_sdxl_attn.safetensors</c>: dense offsets keyed by diffusers UNet names.</summary>
    DenseDiffusers,
    /// <summary>Forge/ComfyUI <c>layer_xl_transparent_attn.safetensors</c>: <c>diffusion_model.&lt;ldm key&gt;::lora::{0,1,2}</c> = up, down, alpha.</summary>
    LoraLdm,
}

/// <summary>
/// LayerDiffuse foreground attention weights: the offsets dW that turn the base UNet's attention
/// projections into the foreground model's (W_fg = W + dW). Only these projections differ; every
/// other UNet weight is shared, so the result is layered over the base UNet, never a second UNet.
/// </summary>
public static class LayerDiffuseAttention
{
    const string LoraPrefix = "diffusion_model.";
    const string LoraMarker = "::lora::";

    /// <summary>True when any key of the file uses the Forge/ComfyUI <c>::lora::</c> encoding.</summary>
    public static LayerDiffuseAttentionFormat DetectFormat(IEnumerable<string> keys) =>
        keys.Any(k => k.Contains("::", StringComparison.Ordinal)) ? LayerDiffuseAttentionFormat.LoraLdm : LayerDiffuseAttentionFormat.DenseDiffusers;

    /// <summary>
    /// Reads either format and returns dense fp32 offsets by diffusers UNet name (a subset of
    /// <see cref="UNetAttentionLayout.Enumerate"/>; projections the file does not mention are
    /// unchanged). Unknown keys, shapes that contradict <paramref name="unet"/>, incomplete or
    /// inconsistent LoRA triples, and non-float tensors are errors naming the file and the key.
    /// </summary>
    public static IReadOnlyDictionary<string, WeightTensor> Load(string path, UNetConfig unet)
    {
        using var file = SafeTensorsFile.Open(path);
        return FromTensors(file.Tensors, unet, path);
    }

    /// <summary><see cref="Load"/> on tensors already in memory; <paramref name="source"/> names them in errors.</summary>
    public static IReadOnlyDictionary<string, WeightTensor> FromTensors(IReadOnlyList<WeightTensor> tensors, UNetConfig unet, string source)
    {
        var layout = UNetAttentionLayout.Enumerate(unet);
        if (tensors.Count == 0)
            throw new UserInputException($"{source}: LayerDiffuse attention file has no tensors");
        return DetectFormat(tensors.Select(t => t.Name)) == LayerDiffuseAttentionFormat.LoraLdm
            ? FromLora(tensors, layout, source)
            : FromDense(tensors, layout, source);
    }

    static Dictionary<string, WeightTensor> FromDense(IReadOnlyList<WeightTensor> tensors, IReadOnlyList<AttentionProjection> layout, string source)
    {
        var byName = layout.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var unknown = tensors.Where(t => !byName.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        if (unknown.Count > 0)
            throw new UserInputException($"{source}: {unknown.Count} key(s) are not attention projections of this UNet (dense diffusers format), first: {FirstNames(unknown)}");
        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            var p = byName[t.Name];
            RequireFloat(t, source, t.Name);
            RequireShape(t.Shape, p.Shape, source, t.Name);
            result[p.Name] = ArrayWeightTensor.FromFloat32(p.Name, p.Shape, t.ToFloat32(), DType.F32);
        }
        return result;
    }

    static Dictionary<string, WeightTensor> FromLora(IReadOnlyList<WeightTensor> tensors, IReadOnlyList<AttentionProjection> layout, string source)
    {
        var byLdm = layout.Where(p => !p.IsBias).ToDictionary(p => p.LdmName, StringComparer.Ordinal);
        var unknown = new List<string>();
        var parts = new Dictionary<string, WeightTensor?[]>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            int marker = t.Name.LastIndexOf(LoraMarker, StringComparison.Ordinal);
            if (marker < 0 || !t.Name.StartsWith(LoraPrefix, StringComparison.Ordinal)
                || !byLdm.ContainsKey(t.Name[LoraPrefix.Length..marker]))
            {
                unknown.Add(t.Name);
                continue;
            }
            string index = t.Name[(marker + LoraMarker.Length)..];
            int slot = index switch { "0" => 0, "1" => 1, "2" => 2, _ => -1 };
            if (slot < 0)
                throw new UserInputException($"{source}: key '{t.Name}': LoRA part '{index}' is not supported (0 = up, 1 = down, 2 = alpha)");
            string ldm = t.Name[LoraPrefix.Length..marker];
            if (!parts.TryGetValue(ldm, out var triple)) parts[ldm] = triple = new WeightTensor?[3];
            triple[slot] = t;
        }
        if (unknown.Count > 0)
            throw new UserInputException($"{source}: {unknown.Count} key(s) are not '{LoraPrefix}<attention projection>{LoraMarker}N' keys of this UNet (Forge/ComfyUI LoRA format), first: {FirstNames(unknown)}");

        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var (ldm, triple) in parts)
        {
            var p = byLdm[ldm];
            string key = LoraPrefix + ldm + LoraMarker;
            var up = triple[0] ?? throw new UserInputException($"{source}: '{key}1' (down) is present but '{key}0' (up) is missing");
            var down = triple[1] ?? throw new UserInputException($"{source}: '{key}0' (up) is present but '{key}1' (down) is missing");
            RequireFloat(up, source, up.Name);
            RequireFloat(down, source, down.Name);
            if (up.Shape.Length != 2 || down.Shape.Length != 2)
                throw new UserInputException($"{source}: LoRA factors of '{ldm}' must be matrices: up {FormatShape(up.Shape)}, down {FormatShape(down.Shape)}");
            long rank = down.Shape[0];
            if (rank < 1 || up.Shape[1] != rank)
                throw new UserInputException($"{source}: LoRA rank mismatch at '{ldm}': down {FormatShape(down.Shape)} has rank {rank}, up {FormatShape(up.Shape)} has {up.Shape[1]}");
            RequireShape([up.Shape[0], down.Shape[1]], p.Shape, source, $"{key}0 @ {key}1 (up @ down)");
            double scale = 1.0;
            if (triple[2] is { } alphaTensor)
            {
                RequireFloat(alphaTensor, source, alphaTensor.Name);
                if (alphaTensor.ElementCount != 1)
                    throw new UserInputException($"{source}: LoRA alpha '{alphaTensor.Name}' must be a scalar, found shape {FormatShape(alphaTensor.Shape)}");
                float alpha = alphaTensor.ToFloat32()[0];
                if (!float.IsFinite(alpha))
                    throw new UserInputException($"{source}: LoRA alpha '{alphaTensor.Name}' is not finite ({alpha.ToString(CultureInfo.InvariantCulture)})");
                // ComfyUI/Forge: an alpha scales by alpha / rank; without one the product is used as is
                scale = alpha / (double)rank;
            }
            var dense = LowRankProduct(up.ToFloat32(), down.ToFloat32(), (int)p.Shape[0], (int)rank, (int)p.Shape[1], scale);
            result[p.Name] = ArrayWeightTensor.FromFloat32(p.Name, p.Shape, dense, DType.F32);
        }
        return result;
    }

    /// <summary>
    /// scale * up[out, rank] @ down[rank, in], accumulated in float64 with the rank index ascending
    /// and unfused multiply-adds, then rounded once to fp32: the same value a plain float64 triple
    /// loop gives, so a dense file written from the same factors that way matches bit for bit.
    /// </summary>
    internal static float[] LowRankProduct(float[] up, float[] down, int rows, int rank, int cols, double scale)
    {
        var downD = new double[(long)rank * cols];
        for (long i = 0; i < downD.LongLength; i++) downD[i] = down[i];
        var result = new float[(long)rows * cols];
        Parallel.For(0, rows, () => new double[cols], (o, _, acc) =>
        {
            Array.Clear(acc);
            var accV = MemoryMarshal.Cast<double, Vector<double>>(acc.AsSpan());
            int vecEnd = accV.Length * Vector<double>.Count;
            for (int r = 0; r < rank; r++)
            {
                double u = up[(long)o * rank + r];
                var row = downD.AsSpan((int)((long)r * cols), cols);
                var rowV = MemoryMarshal.Cast<double, Vector<double>>(row);
                var uV = new Vector<double>(u);
                for (int k = 0; k < accV.Length; k++) accV[k] = accV[k] + uV * rowV[k];
                for (int k = vecEnd; k < cols; k++) acc[k] = acc[k] + u * row[k];
            }
            var dst = result.AsSpan((int)((long)o * cols), cols);
            for (int k = 0; k < cols; k++) dst[k] = (float)(scale * acc[k]);
            return acc;
        }, _ => { });
        return result;
    }

    /// <summary>
    /// Foreground attention weights W + dW for every offset, in the base tensor's dtype unless
    /// <paramref name="dtype"/> says otherwise (sum formed in fp32, rounded once). Only the
    /// offset parameters are returned: the caller layers them over the shared base UNet.
    /// </summary>
    public static IReadOnlyDictionary<string, WeightTensor> Merge(IReadOnlyDictionary<string, WeightTensor> baseUnet,
        IReadOnlyDictionary<string, WeightTensor> offsets, DType? dtype = null)
    {
        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var (name, offset) in offsets)
        {
            if (!baseUnet.TryGetValue(name, out var w))
                throw new UserInputException($"LayerDiffuse offset '{name}' has no base UNet weight of that name");
            RequireShape(w.Shape, offset.Shape, "base UNet", name);
            var merged = w.ToFloat32();
            var d = offset.ToFloat32();
            for (int i = 0; i < merged.Length; i++) merged[i] += d[i];
            var outType = dtype ?? (w.DType is DType.F16 or DType.BF16 ? w.DType : DType.F32);
            result[name] = ArrayWeightTensor.FromFloat32(name, w.Shape, merged, outType);
        }
        return result;
    }

    static void RequireFloat(WeightTensor t, string source, string key)
    {
        if (!DTypes.IsFloat(t.DType))
            throw new UserInputException($"{source}: tensor '{key}' has dtype {t.DType}; LayerDiffuse weights must be F16, BF16, F32 or F64");
    }

    internal static void RequireShape(long[] found, long[] expected, string source, string key)
    {
        if (!found.AsSpan().SequenceEqual(expected))
            throw new UserInputException($"{source}: tensor '{key}' has shape {FormatShape(found)}, the UNet config expects {FormatShape(expected)}");
    }

    internal static string FormatShape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    internal static string FirstNames(IReadOnlyList<string> names, int max = 5) =>
        string.Join(", ", names.Take(max).Select(n => $"'{n}'")) + (names.Count > max ? ", ..." : "");
}
