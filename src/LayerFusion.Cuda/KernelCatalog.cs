using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda;

/// <summary>One NVRTC compilation unit: a kernels/ file specialized by storage type and -D defines.</summary>
public sealed record ModuleSpec(string File, StorageType Storage, IReadOnlyList<string> Defines)
{
    /// <summary>NVRTC options for <paramref name="target"/> ("sm_90" gives CUBIN, "compute_90" PTX).</summary>
    public IReadOnlyList<string> Options(string target)
    {
        var o = new List<string> { "--std=c++17", $"-arch={target}", $"-DLF_DTYPE={(int)Storage}" };
        o.AddRange(Defines);
        return o;
    }

    public override string ToString() => $"{File}[{Storage}{(Defines.Count > 0 ? " " + string.Join(" ", Defines) : "")}]";

    // Value equality over the defines too: the spec keys CudaOps' module cache, and a record's
    // default equality would compare the list by reference (a miss, and a leaked module, per call).
    public bool Equals(ModuleSpec? other) => other is not null && File == other.File && Storage == other.Storage
        && Defines.SequenceEqual(other.Defines);

    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(File);
        h.Add(Storage);
        foreach (var d in Defines) h.Add(d);
        return h.ToHashCode();
    }
}

/// <summary>The module specializations the CUDA backend compiles, and their kernel entry points.</summary>
public static class KernelCatalog
{
    public const string Elementwise = "elementwise.cu";
    public const string Norm = "norm.cu";
    public const string Softmax = "softmax.cu";
    public const string Resample = "resample.cu";
    public const string Shape = "shape.cu";
    public const string Conv = "conv.cu";
    public const string Attention = "attention.cu";
    /// <summary>Tensor-core attention with the fused LayerFusion priors; specialized by Fusion.CudaPriorAttention.Spec.</summary>
    public const string PriorAttention = "attention_priors.cu";
    public const string PriorMasks = "prior_masks.cu";
    /// <summary>IOps' prior ops on storage-typed tensors (CudaOps.Priors.cs).</summary>
    public const string PriorOps = "prior_ops.cu";

    /// <summary>Attention warps per block (must equal LF_WARPS in attention.cu) and key tile size (LF_BC).</summary>
    public const int AttentionWarps = 4, AttentionKeyTile = 32;

    public static ModuleSpec Plain(string file, StorageType t) => new(file, t, []);

    public static ModuleSpec AttentionSpec(StorageType t, int headDim, int rowsPerWarp) =>
        new(Attention, t, [$"-DLF_HEAD_DIM={headDim}", $"-DLF_ROWS_PER_WARP={rowsPerWarp}"]);

    /// <summary>Rows per warp for a head dim: fewer rows for wide heads keeps registers and shared memory in bounds.</summary>
    public static int RowsPerWarp(int headDim) => headDim <= 128 ? 4 : headDim <= 256 ? 2 : 1;

    /// <summary>Dynamic shared memory of the attention kernel: q tile, padded k tile, v tile (fp32).</summary>
    public static int AttentionSharedBytes(int headDim, int rowsPerWarp) =>
        4 * (AttentionWarps * rowsPerWarp * headDim + AttentionKeyTile * (headDim + 1) + AttentionKeyTile * headDim);

    /// <summary>Entry points per file (extern "C" names), for load checks.</summary>
    public static IReadOnlyDictionary<string, string[]> EntryPoints { get; } = new Dictionary<string, string[]>
    {
        [Elementwise] = ["lf_affine", "lf_clamp", "lf_silu", "lf_gelu_erf", "lf_gelu_tanh", "lf_quick_gelu", "lf_geglu", "lf_add", "lf_sub", "lf_mul", "lf_step_combine", "lf_step_select_row", "lf_step_advance"],
        [Norm] = ["lf_group_norm", "lf_layer_norm"],
        [Softmax] = ["lf_softmax"],
        [Resample] = ["lf_upsample2x_nearest", "lf_timestep_embedding", "lf_gather"],
        [Shape] = ["lf_permute", "lf_copy_rows"],
        [Conv] = ["lf_im2col"],
        [Attention] = ["lf_attention"],
        [PriorAttention] = ["lf_prior_attention"],
        [PriorMasks] = ["lf_density_prior", "lf_prior_masks", "lf_prior_blend"],
        [PriorOps] = ["lf_attention_stats", "lf_f32_to_storage", "lf_po_density", "lf_po_masks", "lf_po_resize_bilinear", "lf_po_blend", "lf_po_exclusion_bias"],
    };

    /// <summary>Head dims the attention kernel is checked at: SDXL/CLIP 64, VAE 512, transparent decoder 8, odd sizes.</summary>
    public static readonly int[] CheckedHeadDims = [8, 40, 64, 80, 128, 160, 512];

    /// <summary>Every specialization compiled in CI's NVRTC check: each file in each storage type, attention per head dim.</summary>
    public static IEnumerable<ModuleSpec> Representative()
    {
        foreach (var t in Enum.GetValues<StorageType>())
        {
            foreach (var file in EntryPoints.Keys.Where(f => f != Attention && f != PriorAttention)) yield return Plain(file, t);
            foreach (var d in CheckedHeadDims) yield return AttentionSpec(t, d, RowsPerWarp(d));
        }
    }
}
