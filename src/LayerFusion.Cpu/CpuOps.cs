using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cpu;

/// <summary>
/// The fp32 CPU reference backend: the oracle every other backend is checked against.
/// Multi-threaded with <see cref="Parallel"/> over independent rows/channels/batches, capped by
/// <see cref="MaxDegreeOfParallelism"/>; SIMD through System.Numerics.Tensors.
/// </summary>
public sealed partial class CpuOps : IOps, IBackendMemory
{
    readonly ParallelOptions _po;

    /// <param name="maxDegreeOfParallelism">Threads per op; null or -1 = all cores, 1 = single-threaded.</param>
    public CpuOps(int? maxDegreeOfParallelism = null)
    {
        int dop = maxDegreeOfParallelism ?? -1;
        if (dop == 0 || dop < -1) throw new ArgumentOutOfRangeException(nameof(maxDegreeOfParallelism), "must be positive or -1");
        _po = new ParallelOptions { MaxDegreeOfParallelism = dop };
    }

    public string Name => "cpu";

    /// <summary>The machine's available memory (the CPU backend allocates managed arrays).</summary>
    public long AvailableBytes => HostMemory.AvailableBytes();

    /// <summary>fp32 throughout.</summary>
    public int ActivationElementBytes => 4;
    public int MaxDegreeOfParallelism => _po.MaxDegreeOfParallelism;
    internal ParallelOptions ParallelOptions => _po;

    /// <summary>Floats of im2col buffer per conv band, for the small convolutions below the blocked GEMM's
    /// threshold (larger ones run as an implicit GEMM); tests shrink it to exercise banding.</summary>
    internal int Im2ColBudget { get; init; } = 1 << 22;

    // ---- helpers --------------------------------------------------------------------------

    internal CpuTensor C(Tensor t, string what = "tensor")
    {
        if (t is not CpuTensor c) throw new ArgumentException($"{what} {t} does not belong to the CPU backend");
        return c;
    }

    CpuTensor New(params int[] shape) => CpuTensor.Pooled(this, shape);

    static int Prod(ReadOnlySpan<int> s)
    {
        long n = 1;
        foreach (var d in s) n = checked(n * d);
        return checked((int)n);
    }

    static string Fmt(Tensor t) => ShapeUtil.Format(t.Shape);

    /// <summary>Runs body(i) for i in [0, count), in parallel only when there is enough work to pay for it.</summary>
    void For(int count, long workPerItem, Action<int> body)
    {
        if (count <= 0) return;
        if (count == 1 || _po.MaxDegreeOfParallelism == 1 || (long)count * workPerItem < 16384)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0, count, _po, body);
    }

    static void ScaleShift(ReadOnlySpan<float> x, float scale, float shift, Span<float> y)
    {
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Add(y, shift, y);
    }

    // ---- data movement --------------------------------------------------------------------

    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape)
    {
        var s = (int[])shape.Clone();
        if (ShapeUtil.ElementCount(s) != data.Length)
            throw new ArgumentException($"FromHost: {data.Length} values do not fill shape {ShapeUtil.Format(s)}");
        return new CpuTensor(this, data.ToArray(), 0, s);
    }

    public float[] ToHost(Tensor x) => C(x).ReadOnlySpan.ToArray();

    public Tensor Zeros(params int[] shape) => New((int[])shape.Clone());

    /// <summary>fp32 copy of a checkpoint tensor; fp16 widened with F16C (TensorPrimitives), 10x the scalar
    /// loop, read chunk by chunk (file-backed tensors read only each chunk's byte range), so the
    /// checkpoint is never held whole beside its fp32 copy (peak RSS).</summary>
    /// <summary>Weights on the pinned object heap, apart from the activations on the large-object heap
    /// (see Upload).</summary>
    internal bool PinWeights { get; init; } = true;

    public Tensor Upload(WeightTensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var shape = weight.ShapeInt32;
        float[] data;
        if (weight.DType == DType.F16 && BitConverter.IsLittleEndian)
        {
            data = GC.AllocateUninitializedArray<float>(checked((int)weight.ElementCount), pinned: PinWeights);
            // in chunks over the cores: the first touch of the fresh pages and the reads are most of
            // the cost, and they run in parallel
            const int Chunk = 1 << 18;
            var w = weight; var dst = data;
            For((data.Length + Chunk - 1) / Chunk, Chunk, ci =>
            {
                int s0 = ci * Chunk, len = Math.Min(Chunk, dst.Length - s0);
                var raw = System.Buffers.ArrayPool<byte>.Shared.Rent(2 * len);
                try
                {
                    w.ReadBytes(2L * s0, raw.AsSpan(0, 2 * len));
                    TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(raw.AsSpan(0, 2 * len)),
                        dst.AsSpan(s0, len));
                }
                finally { System.Buffers.ArrayPool<byte>.Shared.Return(raw); }
            });
        }
        else data = weight.ToFloat32();
        return new CpuTensor(this, data, 0, shape);
    }

    // ---- linear algebra -------------------------------------------------------------------

    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        var cx = C(x, "Linear x"); var cw = C(weight, "Linear weight");
        if (cw.Rank != 2) throw new ArgumentException($"Linear: weight must be [out, in], got {Fmt(cw)}");
        int outF = cw.Shape[0], inF = cw.Shape[1];
        if (cx.Rank < 1 || cx.Shape[^1] != inF)
            throw new ArgumentException($"Linear: x {Fmt(cx)} last dim does not match weight {Fmt(cw)}");
        CpuTensor? cb = null;
        if (bias != null)
        {
            cb = C(bias, "Linear bias");
            if (cb.Rank != 1 || cb.Shape[0] != outF) throw new ArgumentException($"Linear: bias {Fmt(cb)} must be [{outF}]");
        }
        int rows = Prod(cx.Shape.AsSpan(0, cx.Rank - 1));
        var shape = (int[])cx.Shape.Clone(); shape[^1] = outF;
        var y = New(shape);
        Gemm.Run(_po, rows, outF, inF, cx.Data, cx.Offset, inF, cw.Data, cw.Offset, inF, true, y.Data, 0, outF,
            1f, cb?.Data, cb?.Offset ?? 0);
        return y;
    }

    public Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1f)
    {
        var ca = C(a, "MatMul a"); var cb = C(b, "MatMul b");
        if (ca.Rank < 2 || ca.Rank != cb.Rank)
            throw new ArgumentException($"MatMul: a {Fmt(ca)} and b {Fmt(cb)} must have the same rank >= 2");
        for (int i = 0; i < ca.Rank - 2; i++)
            if (ca.Shape[i] != cb.Shape[i]) throw new ArgumentException($"MatMul: leading dims of a {Fmt(ca)} and b {Fmt(cb)} differ");
        int m = ca.Shape[^2], k = ca.Shape[^1];
        int kb = transposeB ? cb.Shape[^1] : cb.Shape[^2];
        int n = transposeB ? cb.Shape[^2] : cb.Shape[^1];
        if (kb != k) throw new ArgumentException($"MatMul: inner dims of a {Fmt(ca)} and b {Fmt(cb)} (transposeB={transposeB}) differ");
        int batch = Prod(ca.Shape.AsSpan(0, ca.Rank - 2));
        var shape = (int[])ca.Shape.Clone(); shape[^1] = n;
        var y = New(shape);
        // many small products (per-head attention maps): one serial GEMM per batch entry, batches in parallel;
        // few large ones: batches in sequence, each GEMM parallel inside
        bool perBatch = batch > 1 && (long)m * n * k < 1L << 22;
        var inner = perBatch ? new ParallelOptions { MaxDegreeOfParallelism = 1 } : _po;
        void One(int bi) => Gemm.Run(inner, m, n, k, ca.Data, ca.Offset + bi * m * k, k, cb.Data, cb.Offset + bi * k * n,
            transposeB ? k : n, transposeB, y.Data, bi * m * n, n, alpha);
        if (perBatch) For(batch, (long)m * n * k, One);
        else for (int bi = 0; bi < batch; bi++) One(bi);
        return y;
    }

    public Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0)
    {
        var cx = C(x, "Conv2d x"); var cw = C(weight, "Conv2d weight");
        if (cx.Rank != 4 || cw.Rank != 4) throw new ArgumentException($"Conv2d: x {Fmt(cx)} and weight {Fmt(cw)} must be 4-D");
        if (stride < 1 || padding < 0) throw new ArgumentException($"Conv2d: bad stride {stride} / padding {padding}");
        int nB = cx.Shape[0], ci = cx.Shape[1], h = cx.Shape[2], w = cx.Shape[3];
        int co = cw.Shape[0], kh = cw.Shape[2], kw = cw.Shape[3];
        if (cw.Shape[1] != ci) throw new ArgumentException($"Conv2d: x {Fmt(cx)} channels do not match weight {Fmt(cw)}");
        CpuTensor? cb = null;
        if (bias != null)
        {
            cb = C(bias, "Conv2d bias");
            if (cb.Rank != 1 || cb.Shape[0] != co) throw new ArgumentException($"Conv2d: bias {Fmt(cb)} must be [{co}]");
        }
        int oh = (h + 2 * padding - kh) / stride + 1, ow = (w + 2 * padding - kw) / stride + 1;
        if (oh <= 0 || ow <= 0) throw new ArgumentException($"Conv2d: kernel {kh}x{kw} larger than padded input {Fmt(cx)}");
        var y = New(nB, co, oh, ow);
        int kdim = ci * kh * kw, hw = oh * ow;
        bool direct = kh == 1 && kw == 1 && stride == 1 && padding == 0;
        if (!direct && Gemm.BlockedAvailable && (long)co * hw * kdim >= Gemm.SmallWork)
        {
            // implicit GEMM: the GEMM packs its B panels straight from the image (no im2col matrix:
            // two fewer passes over 9x the input, the conv3x3 then runs at the GEMM's rate)
            for (int n = 0; n < nB; n++)
            {
                int yOff = n * co * hw, xOff = cx.Offset + n * ci * h * w;
                var xd = cx.Data;
                Gemm.Run(_po, co, hw, kdim, cw.Data, cw.Offset, kdim,
                    (pc, kc, j0, nr, NR, dst, d) => PackPatches(xd, xOff, ci, h, w, kh, kw, stride, padding, ow, pc, kc, j0, nr, NR, dst, d),
                    y.Data, yOff, hw);
                if (cb != null) AddChannelBias(y.Data, yOff, co, hw, cb);
            }
            return y;
        }
        // im2col a band of output rows at a time, bounding the column buffer at ~16 MB whatever the image size
        int bandRows = direct ? oh : Math.Clamp(Im2ColBudget / Math.Max(1, kdim * ow), 1, oh);
        float[]? cols = direct ? null : System.Buffers.ArrayPool<float>.Shared.Rent(kdim * bandRows * ow);
        try
        {
            for (int n = 0; n < nB; n++)
            {
                int yOff = n * co * hw, xOff = cx.Offset + n * ci * h * w;
                for (int oy0 = 0; oy0 < oh; oy0 += bandRows)
                {
                    int rows = Math.Min(bandRows, oh - oy0), cols0 = oy0 * ow, ncols = rows * ow;
                    if (direct)
                        Gemm.Run(_po, co, hw, kdim, cw.Data, cw.Offset, kdim, cx.Data, xOff, hw, false, y.Data, yOff, hw);
                    else
                    {
                        Im2Col(cx.Data, xOff, ci, h, w, kh, kw, stride, padding, oy0, rows, ow, cols!);
                        Gemm.Run(_po, co, ncols, kdim, cw.Data, cw.Offset, kdim, cols!, 0, ncols, false, y.Data, yOff + cols0, hw);
                    }
                }
                if (cb != null) AddChannelBias(y.Data, yOff, co, hw, cb);
            }
        }
        finally { if (cols != null) System.Buffers.ArrayPool<float>.Shared.Return(cols); }
        return y;
    }

    void AddChannelBias(float[] yd, int yOff, int co, int hw, CpuTensor cb)
    {
        var bd = cb.Data; int bo = cb.Offset;
        For(co, hw, o => TensorPrimitives.Add(new ReadOnlySpan<float>(yd, yOff + o * hw, hw), bd[bo + o], new Span<float>(yd, yOff + o * hw, hw)));
    }

    /// <summary>The implicit GEMM's B panel: dst[d + p * NR + j] = patch value of row pc + p = (c, ky, kx) at output
    /// position j0 + j = (oy, ox), i.e. x[c, oy*stride - pad + ky, ox*stride - pad + kx] (0 outside), zero for j &gt;= nr.
    /// Runs of one output row are copied (stride 1) with the padded edges cleared.</summary>
    static void PackPatches(float[] x, int xOff, int ci, int h, int w, int kh, int kw, int stride, int pad, int ow,
        int pc, int kc, int j0, int nr, int NR, float[] dst, int d)
    {
        int taps = kh * kw;
        for (int p = 0; p < kc; p++)
        {
            int r = pc + p, c = r / taps, ky = r / kw % kh, kx = r % kw;
            int src = xOff + c * h * w;
            var row = new Span<float>(dst, d + p * NR, NR);
            int j = 0;
            while (j < nr)
            {
                int col = j0 + j, oy = col / ow, ox = col - oy * ow;
                int run = Math.Min(nr - j, ow - ox);
                int iy = oy * stride - pad + ky;
                var seg = row.Slice(j, run);
                if ((uint)iy >= (uint)h) seg.Clear();
                else if (stride == 1)
                {
                    int ix0 = ox - pad + kx;
                    int lo = Math.Clamp(-ix0, 0, run), hi = Math.Clamp(w - ix0, lo, run);
                    if (lo > 0) seg[..lo].Clear();
                    if (hi > lo) new ReadOnlySpan<float>(x, src + iy * w + ix0 + lo, hi - lo).CopyTo(seg[lo..]);
                    if (hi < run) seg[hi..].Clear();
                }
                else
                {
                    int rowSrc = src + iy * w;
                    for (int t = 0; t < run; t++)
                    {
                        int ix = (ox + t) * stride - pad + kx;
                        seg[t] = (uint)ix < (uint)w ? x[rowSrc + ix] : 0f;
                    }
                }
                j += run;
            }
            if (nr < NR) row[nr..].Clear();
        }
    }

    /// <summary>cols[r, (oy - oy0) * ow + ox] = x[c, oy*stride - pad + ky, ox*stride - pad + kx] (0 outside),
    /// r = (c, ky, kx), for output rows oy in [oy0, oy0 + rows).</summary>
    void Im2Col(float[] x, int xOff, int ci, int h, int w, int kh, int kw, int stride, int pad, int oy0, int rows, int ow, float[] cols)
    {
        int ncols = rows * ow;
        For(ci * kh * kw, ncols, r =>
        {
            int c = r / (kh * kw), ky = r / kw % kh, kx = r % kw;
            int dst = r * ncols;
            int src = xOff + c * h * w;
            for (int oy = 0; oy < rows; oy++)
            {
                int iy = (oy0 + oy) * stride - pad + ky;
                int rowDst = dst + oy * ow;
                if ((uint)iy >= (uint)h) { Array.Clear(cols, rowDst, ow); continue; }
                int rowSrc = src + iy * w;
                if (stride == 1)
                {
                    // valid ox range where 0 <= ox - pad + kx < w; zero the padded edges, copy the middle
                    int lo = Math.Clamp(pad - kx, 0, ow), hi = Math.Clamp(w + pad - kx, lo, ow);
                    if (lo > 0) Array.Clear(cols, rowDst, lo);
                    if (hi > lo) Array.Copy(x, rowSrc + lo - pad + kx, cols, rowDst + lo, hi - lo);
                    if (hi < ow) Array.Clear(cols, rowDst + hi, ow - hi);
                    continue;
                }
                for (int ox = 0; ox < ow; ox++)
                {
                    int ix = ox * stride - pad + kx;
                    cols[rowDst + ox] = (uint)ix < (uint)w ? x[rowSrc + ix] : 0f;
                }
            }
        });
    }

    // ---- normalization --------------------------------------------------------------------

    public Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false)
    {
        var cx = C(x, "GroupNorm x");
        if (cx.Rank < 2) throw new ArgumentException($"GroupNorm: x {Fmt(cx)} must be [N, C, ...]");
        int nB = cx.Shape[0], ch = cx.Shape[1];
        if (groups <= 0 || ch % groups != 0) throw new ArgumentException($"GroupNorm: {ch} channels not divisible into {groups} groups");
        int spatial = Prod(cx.Shape.AsSpan(2));
        var g = gamma == null ? null : CheckVec(gamma, ch, "GroupNorm gamma");
        var bt = beta == null ? null : CheckVec(beta, ch, "GroupNorm beta");
        var y = New((int[])cx.Shape.Clone());
        int cpg = ch / groups, gsize = cpg * spatial;
        For(nB * groups, gsize, idx =>
        {
            int n = idx / groups, gi = idx % groups;
            int off = (n * ch + gi * cpg) * spatial;
            var src = new ReadOnlySpan<float>(cx.Data, cx.Offset + off, gsize);
            var (mean, rstd) = MeanRstd(src, eps);
            for (int c = 0; c < cpg; c++)
            {
                int cc = gi * cpg + c;
                float scale = (float)(rstd * (g == null ? 1f : g.Data[g.Offset + cc]));
                float shift = bt == null ? 0f : bt.Data[bt.Offset + cc];
                var s = src.Slice(c * spatial, spatial);
                var d = new Span<float>(y.Data, off + c * spatial, spatial);
                // subtract the mean before scaling: x * scale - mean * scale cancels when |mean| >> std
                TensorPrimitives.Subtract(s, (float)mean, d);
                ScaleShift(d, scale, shift, d);
                if (fuseSilu) Activations.Silu(d, d);
            }
        });
        return y;
    }

    CpuTensor CheckVec(Tensor t, int len, string what)
    {
        var c = C(t, what);
        if (c.ElementCount != len) throw new ArgumentException($"{what} {Fmt(c)} must have {len} elements");
        return c;
    }

    /// <summary>Mean and 1/sqrt(biased var + eps), accumulated in double over fp32 chunks (two-pass),
    /// so groups of millions of elements keep full fp32 accuracy.</summary>
    static (double mean, double rstd) MeanRstd(ReadOnlySpan<float> s, float eps)
    {
        const int Chunk = 512;
        double sum = 0;
        for (int i = 0; i < s.Length; i += Chunk) sum += TensorPrimitives.Sum(s.Slice(i, Math.Min(Chunk, s.Length - i)));
        double mean = sum / s.Length;
        Span<float> tmp = stackalloc float[Chunk];
        double sq = 0;
        float fm = (float)mean;
        for (int i = 0; i < s.Length; i += Chunk)
        {
            int len = Math.Min(Chunk, s.Length - i);
            var t = tmp[..len];
            TensorPrimitives.Subtract(s.Slice(i, len), fm, t);
            sq += TensorPrimitives.SumOfSquares(t);
        }
        // the fp32 mean is off from the true one by d = mean - fm; correct the sum of squares for it
        double d = mean - fm;
        double var = sq / s.Length - d * d;
        if (var < 0) var = 0;
        return (mean, 1.0 / Math.Sqrt(var + eps));
    }

    public Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps)
    {
        var cx = C(x, "LayerNorm x");
        if (cx.Rank < 1) throw new ArgumentException("LayerNorm: scalar input");
        int d = cx.Shape[^1];
        int rows = d == 0 ? 0 : (int)(cx.ElementCount / d);
        var g = gamma == null ? null : CheckVec(gamma, d, "LayerNorm gamma");
        var bt = beta == null ? null : CheckVec(beta, d, "LayerNorm beta");
        var y = New((int[])cx.Shape.Clone());
        For(rows, d, r =>
        {
            var src = new ReadOnlySpan<float>(cx.Data, cx.Offset + r * d, d);
            var dst = new Span<float>(y.Data, r * d, d);
            var (mean, rstd) = MeanRstd(src, eps);
            TensorPrimitives.Subtract(src, (float)mean, dst);
            TensorPrimitives.Multiply(dst, (float)rstd, dst);
            if (g != null) TensorPrimitives.Multiply(dst, new ReadOnlySpan<float>(g.Data, g.Offset, d), dst);
            if (bt != null) TensorPrimitives.Add(dst, new ReadOnlySpan<float>(bt.Data, bt.Offset, d), dst);
        });
        return y;
    }

    // ---- activations ----------------------------------------------------------------------

    delegate void SpanKernel(ReadOnlySpan<float> x, Span<float> dst);

    CpuTensor Map(Tensor x, SpanKernel f, string what)
    {
        var cx = C(x, what);
        var y = New((int[])cx.Shape.Clone());
        int n = cx.Length;
        const int Block = 8192;
        int blocks = (n + Block - 1) / Block;
        For(blocks, Block * 4, bi =>
        {
            int s = bi * Block, len = Math.Min(n - s, Block);
            f(new ReadOnlySpan<float>(cx.Data, cx.Offset + s, len), new Span<float>(y.Data, s, len));
        });
        return y;
    }

    public Tensor Silu(Tensor x) => Map(x, Activations.Silu, "Silu x");
    public Tensor Gelu(Tensor x, bool tanhApproximation = false) =>
        Map(x, tanhApproximation ? Activations.GeluTanh : Activations.GeluErf, "Gelu x");
    public Tensor QuickGelu(Tensor x) => Map(x, Activations.QuickGelu, "QuickGelu x");

    public Tensor Geglu(Tensor x)
    {
        var cx = C(x, "Geglu x");
        if (cx.Rank < 1 || cx.Shape[^1] % 2 != 0) throw new ArgumentException($"Geglu: last dim of {Fmt(cx)} must be even");
        int two = cx.Shape[^1], d = two / 2;
        int rows = two == 0 ? 0 : (int)(cx.ElementCount / two);
        var shape = (int[])cx.Shape.Clone(); shape[^1] = d;
        var y = New(shape);
        For(rows, d * 8L, r =>
        {
            int s = cx.Offset + r * two;
            var dst = new Span<float>(y.Data, r * d, d);
            // diffusers GEGLU: hidden, gate = proj(x).chunk(2, dim=-1); hidden * gelu(gate)
            Activations.GeluErf(new ReadOnlySpan<float>(cx.Data, s + d, d), dst);
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(cx.Data, s, d), dst, dst);
        });
        return y;
    }

    public Tensor Softmax(Tensor x)
    {
        var cx = C(x, "Softmax x");
        if (cx.Rank < 1) throw new ArgumentException("Softmax: scalar input");
        int d = cx.Shape[^1];
        int rows = d == 0 ? 0 : (int)(cx.ElementCount / d);
        var y = New((int[])cx.Shape.Clone());
        For(rows, d * 4L, r => SoftmaxRow(new ReadOnlySpan<float>(cx.Data, cx.Offset + r * d, d), new Span<float>(y.Data, r * d, d)));
        return y;
    }

    /// <summary>Max-subtracted softmax. A row that is entirely -inf gives NaN, as torch.softmax does.</summary>
    static void SoftmaxRow(ReadOnlySpan<float> src, Span<float> dst)
    {
        float max = TensorPrimitives.Max(src);
        TensorPrimitives.Subtract(src, max, dst);
        TensorPrimitives.Exp(dst, dst);
        float sum = TensorPrimitives.Sum(dst);
        TensorPrimitives.Multiply(dst, 1f / sum, dst);
    }

    // ---- resampling & embeddings ------------------------------------------------------------

    public Tensor Upsample2xNearest(Tensor x)
    {
        var cx = C(x, "Upsample x");
        if (cx.Rank != 4) throw new ArgumentException($"Upsample2xNearest: x {Fmt(cx)} must be [N, C, H, W]");
        int nc = cx.Shape[0] * cx.Shape[1], h = cx.Shape[2], w = cx.Shape[3];
        var y = New(cx.Shape[0], cx.Shape[1], 2 * h, 2 * w);
        For(nc, h * w * 4L, p =>
        {
            int src = cx.Offset + p * h * w, dst = p * 4 * h * w;
            for (int iy = 0; iy < h; iy++)
            {
                int r0 = dst + 2 * iy * 2 * w;
                for (int ix = 0; ix < w; ix++)
                {
                    float val = cx.Data[src + iy * w + ix];
                    y.Data[r0 + 2 * ix] = val; y.Data[r0 + 2 * ix + 1] = val;
                }
                Array.Copy(y.Data, r0, y.Data, r0 + 2 * w, 2 * w);
            }
        });
        return y;
    }

    public Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000)
    {
        if (dim < 0) throw new ArgumentException($"TimestepEmbedding: negative dim {dim}");
        int half = dim / 2;
        var y = New(timesteps.Length, dim);
        // float32 step by step, in torch's order: exponent = (-ln(P) * arange) / (half - shift); exp; t * f; scale *
        var freqs = new float[half];
        float negLogP = (float)-Math.Log(maxPeriod);
        float denom = half - downscaleFreqShift;
        // exp/sin/cos evaluated in double and rounded once: correctly rounded fp32 on every platform
        // (torch's vectorized fp32 exp is not; it is off by 1 ulp for ~10% of the frequencies).
        for (int i = 0; i < half; i++) freqs[i] = (float)Math.Exp(negLogP * i / denom);
        for (int r = 0; r < timesteps.Length; r++)
        {
            float t = timesteps[r];
            int row = r * dim;
            for (int i = 0; i < half; i++)
            {
                float e = scale * (t * freqs[i]);
                float s = (float)Math.Sin(e), c = (float)Math.Cos(e);
                y.Data[row + i] = flipSinToCos ? c : s;
                y.Data[row + half + i] = flipSinToCos ? s : c;
            }
        }
        return y;
    }

    public Tensor Gather(Tensor table, ReadOnlySpan<int> ids)
    {
        var ct = C(table, "Gather table");
        if (ct.Rank != 2) throw new ArgumentException($"Gather: table {Fmt(ct)} must be [V, D]");
        int vocab = ct.Shape[0], d = ct.Shape[1];
        var y = New(ids.Length, d);
        for (int r = 0; r < ids.Length; r++)
        {
            int id = ids[r];
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"Gather: id {id} outside table of {vocab} rows");
            Array.Copy(ct.Data, ct.Offset + id * d, y.Data, r * d, d);
        }
        return y;
    }

    // ---- elementwise & shape --------------------------------------------------------------

    enum BinOp { Add, Sub, Mul }

    public Tensor Add(Tensor a, Tensor b) => Binary(a, b, BinOp.Add);
    public Tensor Sub(Tensor a, Tensor b) => Binary(a, b, BinOp.Sub);
    public Tensor Mul(Tensor a, Tensor b) => Binary(a, b, BinOp.Mul);

    CpuTensor Binary(Tensor a, Tensor b, BinOp op)
    {
        var ca = C(a, $"{op} a"); var cb = C(b, $"{op} b");
        int ra = ca.Rank, rb = cb.Rank;
        if (rb > ra) throw new ArgumentException($"{op}: b {Fmt(cb)} has higher rank than a {Fmt(ca)}");
        // b's shape aligned right, padded with 1s
        var bs = new int[ra];
        for (int i = 0; i < ra; i++) bs[i] = i < ra - rb ? 1 : cb.Shape[i - (ra - rb)];
        for (int i = 0; i < ra; i++)
            if (bs[i] != 1 && bs[i] != ca.Shape[i])
                throw new ArgumentException($"{op}: b {Fmt(cb)} does not broadcast to a {Fmt(ca)}");
        var y = New((int[])ca.Shape.Clone());
        int total = ca.Length;
        if (total == 0) return y;
        // Split a's shape into [outer..., inner] where inner is the longest suffix b matches exactly
        // (contiguous run) or broadcasts entirely (scalar run).
        int inner = 1, axis = ra;
        while (axis > 0 && bs[axis - 1] == ca.Shape[axis - 1]) { axis--; inner *= ca.Shape[axis]; }
        bool bInnerIsScalar = false;
        if (inner == 1)
        {
            // trailing dims where b is 1: b is a scalar over that run
            while (axis > 0 && bs[axis - 1] == 1) { axis--; inner *= ca.Shape[axis]; }
            bInnerIsScalar = true;
        }
        int outer = total / inner;
        // b's strides over a's outer dims (0 where b broadcasts)
        var bStr = new int[ra];
        int st = 1;
        for (int i = ra - 1; i >= 0; i--) { bStr[i] = bs[i] == 1 ? 0 : st; st *= bs[i]; }
        For(outer, inner, o =>
        {
            int rem = o, bOff = 0;
            for (int i = axis - 1; i >= 0; i--) { int idx = rem % ca.Shape[i]; rem /= ca.Shape[i]; bOff += idx * bStr[i]; }
            var sa = new ReadOnlySpan<float>(ca.Data, ca.Offset + o * inner, inner);
            var d = new Span<float>(y.Data, o * inner, inner);
            if (bInnerIsScalar)
            {
                float bv = cb.Data[cb.Offset + bOff];
                switch (op)
                {
                    case BinOp.Add: TensorPrimitives.Add(sa, bv, d); break;
                    case BinOp.Sub: TensorPrimitives.Subtract(sa, bv, d); break;
                    default: TensorPrimitives.Multiply(sa, bv, d); break;
                }
            }
            else
            {
                var sb = new ReadOnlySpan<float>(cb.Data, cb.Offset + bOff, inner);
                switch (op)
                {
                    case BinOp.Add: TensorPrimitives.Add(sa, sb, d); break;
                    case BinOp.Sub: TensorPrimitives.Subtract(sa, sb, d); break;
                    default: TensorPrimitives.Multiply(sa, sb, d); break;
                }
            }
        });
        return y;
    }

    public Tensor Affine(Tensor x, float alpha, float beta = 0f)
    {
        var cx = C(x, "Affine x");
        var y = New((int[])cx.Shape.Clone());
        ScaleShift(cx.ReadOnlySpan, alpha, beta, y.Span);
        return y;
    }

    public Tensor Clamp(Tensor x, float min, float max)
    {
        if (!(min <= max)) throw new ArgumentException($"clamp: min {min} is not <= max {max}");
        var cx = C(x, "Clamp x");
        var y = New((int[])cx.Shape.Clone());
        var src = cx.ReadOnlySpan;
        var dst = y.Span;
        // Math.Clamp keeps NaN (torch clamp does too)
        for (int i = 0; i < src.Length; i++) dst[i] = Math.Clamp(src[i], min, max);
        return y;
    }

    public Tensor Concat(IReadOnlyList<Tensor> parts, int axis)
    {
        if (parts.Count == 0) throw new ArgumentException("Concat: no parts");
        var cs = parts.Select((p, i) => C(p, $"Concat part {i}")).ToArray();
        int rank = cs[0].Rank;
        if (axis < 0) axis += rank;
        if (axis < 0 || axis >= rank) throw new ArgumentException($"Concat: axis out of range for rank {rank}");
        int total = 0;
        foreach (var c in cs)
        {
            if (c.Rank != rank) throw new ArgumentException($"Concat: ranks differ ({Fmt(cs[0])} vs {Fmt(c)})");
            for (int i = 0; i < rank; i++)
                if (i != axis && c.Shape[i] != cs[0].Shape[i]) throw new ArgumentException($"Concat: shapes {Fmt(cs[0])} and {Fmt(c)} differ off axis {axis}");
            total += c.Shape[axis];
        }
        var shape = (int[])cs[0].Shape.Clone(); shape[axis] = total;
        var y = New(shape);
        int outer = Prod(shape.AsSpan(0, axis)), innerUnit = Prod(shape.AsSpan(axis + 1));
        int rowLen = total * innerUnit;
        int at = 0;
        foreach (var c in cs)
        {
            int len = c.Shape[axis] * innerUnit;
            for (int o = 0; o < outer; o++) Array.Copy(c.Data, c.Offset + o * len, y.Data, o * rowLen + at, len);
            at += len;
        }
        return y;
    }

    public Tensor Slice(Tensor x, int axis, int start, int length)
    {
        var cx = C(x, "Slice x");
        if (axis < 0) axis += cx.Rank;
        if (axis < 0 || axis >= cx.Rank) throw new ArgumentException($"Slice: axis out of range for {Fmt(cx)}");
        if (start < 0 || length < 0 || start + length > cx.Shape[axis])
            throw new ArgumentException($"Slice: [{start}, {start}+{length}) outside axis {axis} of {Fmt(cx)}");
        var shape = (int[])cx.Shape.Clone(); shape[axis] = length;
        var y = New(shape);
        int outer = Prod(cx.Shape.AsSpan(0, axis)), innerUnit = Prod(cx.Shape.AsSpan(axis + 1));
        int srcRow = cx.Shape[axis] * innerUnit, len = length * innerUnit;
        for (int o = 0; o < outer; o++) Array.Copy(cx.Data, cx.Offset + o * srcRow + start * innerUnit, y.Data, o * len, len);
        return y;
    }

    public Tensor Permute(Tensor x, params int[] axes)
    {
        var cx = C(x, "Permute x");
        int r = cx.Rank;
        if (axes.Length != r) throw new ArgumentException($"Permute: {axes.Length} axes for {Fmt(cx)}");
        var seen = new bool[r];
        var ax = new int[r];
        for (int i = 0; i < r; i++)
        {
            int a = axes[i] < 0 ? axes[i] + r : axes[i];
            if (a < 0 || a >= r || seen[a]) throw new ArgumentException($"Permute: axes [{string.Join(", ", axes)}] are not a permutation of rank {r}");
            seen[a] = true; ax[i] = a;
        }
        var inStr = new int[r];
        int s = 1;
        for (int i = r - 1; i >= 0; i--) { inStr[i] = s; s *= cx.Shape[i]; }
        var shape = new int[r];
        var srcStr = new int[r];
        for (int i = 0; i < r; i++) { shape[i] = cx.Shape[ax[i]]; srcStr[i] = inStr[ax[i]]; }
        var y = New(shape);
        if (y.Length == 0) return y;
        int last = shape[r - 1], lastStr = srcStr[r - 1];
        if (lastStr != 1 && last > 1)
        {
            // The input's contiguous axis lands on output axis q: copy 2-D tiles between (q, last) so that
            // reads run along the input's rows and writes along the output's rows.
            int q = Array.IndexOf(ax, r - 1);
            var outStr = new int[r];
            int os = 1;
            for (int i = r - 1; i >= 0; i--) { outStr[i] = os; os *= shape[i]; }
            int nq = shape[q], qStr = outStr[q];
            int outer = y.Length / (nq * last);
            var xd = cx.Data; var yd = y.Data; int xo = cx.Offset;
            For(outer, (long)nq * last, o =>
            {
                int rem = o, src = xo, dst = 0;
                for (int i = r - 1; i >= 0; i--)
                {
                    if (i == q || i == r - 1) continue;
                    int idx = rem % shape[i]; rem /= shape[i];
                    src += idx * srcStr[i]; dst += idx * outStr[i];
                }
                const int Tile = 16;
                for (int q0 = 0; q0 < nq; q0 += Tile)
                {
                    int q1 = Math.Min(nq, q0 + Tile);
                    for (int l0 = 0; l0 < last; l0 += Tile)
                    {
                        int l1 = Math.Min(last, l0 + Tile);
                        for (int iq = q0; iq < q1; iq++)
                        {
                            int d = dst + iq * qStr, sBase = src + iq;
                            for (int il = l0; il < l1; il++) yd[d + il] = xd[sBase + il * lastStr];
                        }
                    }
                }
            });
            return y;
        }
        int rows = y.Length / last;
        For(rows, last, row =>
        {
            int rem = row, src = cx.Offset;
            for (int i = r - 2; i >= 0; i--) { int idx = rem % shape[i]; rem /= shape[i]; src += idx * srcStr[i]; }
            int dst = row * last;
            if (lastStr == 1) Array.Copy(cx.Data, src, y.Data, dst, last);
            else for (int j = 0; j < last; j++) y.Data[dst + j] = cx.Data[src + j * lastStr];
        });
        return y;
    }
}
