using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Tensors;

/// <summary>
/// The one op interface model code calls (ggml-style): every backend (CPU reference, CUDA)
/// implements all of it, and the model graphs never know which one runs them.
/// Layout conventions: images are NCHW; token sequences are [B, T, C]; linear weights are
/// [out, in] as in PyTorch checkpoints; conv weights are [out, in, kh, kw].
/// Every op returns a new tensor and leaves its inputs unchanged.
/// </summary>
public partial interface IOps
{
    string Name { get; }

    // ---- data movement -------------------------------------------------------------------
    Tensor FromHost(ReadOnlySpan<float> data, params int[] shape);
    float[] ToHost(Tensor x);
    Tensor Zeros(params int[] shape);
    /// <summary>A checkpoint tensor in this backend's storage precision (CPU: fp32; CUDA: fp16/bf16/fp32 as stored).</summary>
    Tensor Upload(WeightTensor weight);

    // ---- linear algebra ------------------------------------------------------------------
    /// <summary>y[..., out] = x[..., in] @ weight[out, in]^T + bias[out].</summary>
    Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null);

    /// <summary>Batched matmul: a [..., M, K] @ b [..., K, N] (or b [..., N, K] with transposeB), times alpha.
    /// Leading dims must match exactly.</summary>
    Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1f);

    /// <summary>2-D convolution, x [N, C, H, W], weight [O, C, kh, kw], bias [O]; zero padding on all sides.</summary>
    Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0);

    // ---- normalization -------------------------------------------------------------------
    /// <summary>GroupNorm over x [N, C, ...] (biased variance, as torch), optional affine [C], optional fused SiLU.</summary>
    Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false);

    /// <summary>LayerNorm over the last dimension (biased variance), optional affine.</summary>
    Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps);

    // ---- activations ---------------------------------------------------------------------
    Tensor Silu(Tensor x);
    /// <summary>GELU: exact erf form, or the tanh approximation (torch approximate="tanh").</summary>
    Tensor Gelu(Tensor x, bool tanhApproximation = false);
    /// <summary>CLIP's quick_gelu: x * sigmoid(1.702 x).</summary>
    Tensor QuickGelu(Tensor x);
    /// <summary>diffusers GEGLU after its projection: x [..., 2D] -> x[..., :D] * gelu(x[..., D:]) (erf GELU).</summary>
    Tensor Geglu(Tensor x);
    /// <summary>Softmax over the last dimension.</summary>
    Tensor Softmax(Tensor x);

    /// <summary>
    /// Scaled-dot-product attention. q [B, M, H*D], k and v [B, N, H*D] -> [B, M, H*D];
    /// scale 1/sqrt(D). keyBias, if given, is [B, N] and added to every score row (use -inf to mask
    /// a key); causal masks keys j > i.
    /// </summary>
    Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false);

    // ---- resampling & embeddings --------------------------------------------------------
    /// <summary>Nearest-neighbour 2x upsampling of x [N, C, H, W].</summary>
    Tensor Upsample2xNearest(Tensor x);

    /// <summary>
    /// diffusers get_timestep_embedding: [len(timesteps), dim]; exponent = -ln(maxPeriod) * i / (half - shift);
    /// emb = scale * t * exp(exponent); [sin, cos] (or [cos, sin] when flipSinToCos); zero pad if dim is odd.
    /// </summary>
    Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000);

    /// <summary>Rows of table [V, D] picked by ids -> [ids.Length, D].</summary>
    Tensor Gather(Tensor table, ReadOnlySpan<int> ids);

    // ---- elementwise & shape --------------------------------------------------------------
    /// <summary>a + b with numpy broadcasting of b to a's shape (b's rank may be lower; dims of 1 broadcast).</summary>
    Tensor Add(Tensor a, Tensor b);
    /// <summary>a - b, broadcasting as <see cref="Add"/>.</summary>
    Tensor Sub(Tensor a, Tensor b);
    /// <summary>a * b, broadcasting as <see cref="Add"/>.</summary>
    Tensor Mul(Tensor a, Tensor b);
    /// <summary>alpha * x + beta.</summary>
    Tensor Affine(Tensor x, float alpha, float beta = 0f);
    /// <summary>x limited to [min, max] (torch clamp: NaN stays NaN); DDIM's clip_sample.</summary>
    Tensor Clamp(Tensor x, float min, float max);
    Tensor Concat(IReadOnlyList<Tensor> parts, int axis);
    Tensor Slice(Tensor x, int axis, int start, int length);
    /// <summary>Materialized permutation of axes (torch permute + contiguous).</summary>
    Tensor Permute(Tensor x, params int[] axes);
}
