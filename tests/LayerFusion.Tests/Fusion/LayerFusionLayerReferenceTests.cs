using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;
using LayerFusion.Tests.Models;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Fusion;

/// <summary>
/// One attention layer of the interaction pass against a float64 transcription of Alg. 3 with our
/// DESIGN decisions (masks, Eq. 1/2 after to_out, one-directional sharing with exclusion, BLEND
/// cross-attention on p_BG), on random inputs and weights (with biases) and a non-square grid.
/// </summary>
public class LayerFusionLayerReferenceTests
{
    const int Heads = 2, HeadDim = 3, Inner = Heads * HeadDim, QueryDim = 5, ContextDim = 4, H = 3, W = 4, T = H * W, S = 5, Eos = 3;
    const string Block = "down_blocks.1.attentions.0.transformer_blocks.0";

    readonly CpuBackend _ops = new();
    readonly Random _rng = new(21);

    double[] Rand(int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => scale * (_rng.NextDouble() * 2 - 1)).ToArray();
    Tensor T_(double[] v, params int[] shape) => _ops.FromHost(v.Select(x => (float)x).ToArray(), shape);

    sealed record Proj(double[] Q, double[] Qb, double[] K, double[] Kb, double[] V, double[] Vb, double[] O, double[] Ob, int In, int Ctx);

    Proj RandomProj(int ctx) => new(Rand(Inner * QueryDim, 0.8), Rand(Inner, 0.2), Rand(Inner * ctx, 0.8), Rand(Inner, 0.2),
        Rand(Inner * ctx, 0.8), Rand(Inner, 0.2), Rand(QueryDim * Inner, 0.8), Rand(QueryDim, 0.2), QueryDim, ctx);

    AttentionProjections Upload(Proj p) => new(T_(p.Q, Inner, QueryDim), T_(p.Qb, Inner), T_(p.K, Inner, p.Ctx), T_(p.Kb, Inner),
        T_(p.V, Inner, p.Ctx), T_(p.Vb, Inner), T_(p.O, QueryDim, Inner), T_(p.Ob, QueryDim));

    sealed class Fixed(AttentionProjections p) : IAttentionWeights
    {
        public AttentionProjections For(AttentionSite site) => p;
    }

    static double[][] Linear(double[][] x, double[] w, double[] b, int inDim)
    {
        int outDim = b.Length;
        return x.Select(row => Enumerable.Range(0, outDim).Select(o =>
        {
            double s = b[o];
            for (int i = 0; i < inDim; i++) s += w[o * inDim + i] * row[i];
            return s;
        }).ToArray()).ToArray();
    }

    /// <summary>softmax(q k^T / sqrt(d) + bias) v per head; also the head-mean probabilities.</summary>
    static (double[][] Out, double[][] MeanP) Attend(double[][] q, double[][] k, double[][] v, bool[]? masked = null)
    {
        int m = q.Length, n = k.Length;
        var o = Enumerable.Range(0, m).Select(_ => new double[Inner]).ToArray();
        var mean = Enumerable.Range(0, m).Select(_ => new double[n]).ToArray();
        for (int h = 0; h < Heads; h++)
            for (int i = 0; i < m; i++)
            {
                var sc = new double[n];
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int c = 0; c < HeadDim; c++) s += q[i][h * HeadDim + c] * k[j][h * HeadDim + c];
                    sc[j] = masked != null && masked[j] ? double.NegativeInfinity : s / Math.Sqrt(HeadDim);
                }
                double max = sc.Max(), z = 0;
                for (int j = 0; j < n; j++) z += sc[j] = Math.Exp(sc[j] - max);
                for (int j = 0; j < n; j++)
                {
                    double p = sc[j] / z;
                    mean[i][j] += p / Heads;
                    for (int c = 0; c < HeadDim; c++) o[i][h * HeadDim + c] += p * v[j][h * HeadDim + c];
                }
            }
        return (o, mean);
    }

    static double[][] Layer(Proj p, double[][] hidden, double[][] kv, bool[]? masked = null, double[][]? extraKv = null)
    {
        var q = Linear(hidden, p.Q, p.Qb, p.In);
        var k = Linear(kv, p.K, p.Kb, p.Ctx);
        var v = Linear(kv, p.V, p.Vb, p.Ctx);
        if (extraKv != null)
        {
            k = [.. k, .. Linear(extraKv, p.K, p.Kb, p.Ctx)];
            v = [.. v, .. Linear(extraKv, p.V, p.Vb, p.Ctx)];
        }
        return Linear(Attend(q, k, v, masked).Out, p.O, p.Ob, Inner);
    }

    static double[][] Rows(double[] flat, int row, int tokens, int dim) =>
        Enumerable.Range(0, tokens).Select(t => flat.AsSpan((row * tokens + t) * dim, dim).ToArray()).ToArray();

    [Theory]
    [InlineData(AttentionKind.Self, true, true)]
    [InlineData(AttentionKind.Self, true, false)]
    [InlineData(AttentionKind.Self, false, false)]
    [InlineData(AttentionKind.Cross, true, true)]
    [InlineData(AttentionKind.Cross, false, false)]
    [InlineData(AttentionKind.Cross, true, true, false)]
    public void OneLayerMatchesAFloat64TranscriptionOfAlgorithm3(AttentionKind kind, bool sharing, bool exclusion, bool blendReadsBg = true)
    {
        bool cross = kind == AttentionKind.Cross;
        int ctxDim = cross ? ContextDim : QueryDim;
        var site = new AttentionSite($"{Block}.{(cross ? "attn2" : "attn1")}", kind, Heads, HeadDim, QueryDim, ctxDim, 1);
        Proj basis = RandomProj(ctxDim), fgP = RandomProj(ctxDim);
        var hidden = Rand(TripletLayout.Rows * T * QueryDim, 1.5);
        var context = cross ? Rand(TripletLayout.Rows * S * ContextDim, 1.5) : null;
        // structure prior on a 2x3 grid, resized to the 3x4 layer; the prior pass's c for attn1
        var prior = new StructurePrior(new float[6], Rand(6).Select(x => (float)(0.5 + 0.5 * x)).ToArray(), 2, 3);
        var priorC = Rand(T).Select(x => (float)(0.3 + 0.25 * x)).ToArray();
        var options = new LayerFusionOptions { Sharing = sharing, Exclusion = exclusion, D = 7f, BlendCrossReadsBackgroundPrompt = blendReadsBg };

        var proc = new LayerFusionAttentionProcessor(new Fixed(Upload(fgP)), options);
        proc.BeginStep(prior, new Dictionary<string, float[]> { [$"{Block}.attn2"] = priorC }, Eos);
        using var hT = T_(hidden, TripletLayout.Rows, T, QueryDim);
        using var cT = context is null ? null : T_(context, TripletLayout.Rows, S, ContextDim);
        using var got = proc.Process(new AttentionCall { Site = site, Hidden = hT, Context = cT, Height = H, Width = W, Weights = Upload(basis) });

        // ---- float64 reference ----
        double[][] Hid(int stream, bool cond) => Rows(hidden, TripletLayout.Row(stream, cond), T, QueryDim);
        double[][] Ctx(int stream, bool cond) => Rows(context!, TripletLayout.Row(stream, cond), S, ContextDim);
        double[] c;
        if (cross)
        {
            var q = Linear(Hid(TripletLayout.Foreground, true), fgP.Q, fgP.Qb, QueryDim);
            var kk = Linear(Ctx(TripletLayout.Foreground, true), fgP.K, fgP.Kb, ContextDim);
            var mean = Attend(q, kk, kk).MeanP;
            c = mean.Select(r => r[Eos]).ToArray();
        }
        else c = priorC.Select(x => (double)x).ToArray();
        var density = PriorMath.ResizeBilinear(prior.Density, 2, 3, H, W);
        var prod = Enumerable.Range(0, T).Select(i => density[i] * c[i]).ToArray();
        double lo = prod.Min(), hi = prod.Max();
        var soft = prod.Select(x => (x - lo) / (hi - lo)).ToArray();
        var hard = soft.Select(x => 1 / (1 + Math.Exp(-7 * (x - 0.5)))).ToArray();
        Assert.Contains(hard, x => x > 0.5);
        Assert.Contains(hard, x => x < 0.5);

        var expected = new List<double>();
        foreach (bool cond in new[] { false, true })
        {
            var fgOut = Layer(fgP, Hid(TripletLayout.Foreground, cond), cross ? Ctx(TripletLayout.Foreground, cond) : Hid(TripletLayout.Foreground, cond));
            var blOut = Layer(basis, Hid(TripletLayout.Blend, cond),
                cross ? Ctx(sharing && blendReadsBg ? TripletLayout.Background : TripletLayout.Blend, cond) : Hid(TripletLayout.Blend, cond));
            for (int t = 0; t < T; t++)
                for (int ch = 0; ch < QueryDim; ch++)
                {
                    double blended = fgOut[t][ch] * soft[t] + blOut[t][ch] * (1 - soft[t]);
                    fgOut[t][ch] = blended * hard[t] + fgOut[t][ch] * (1 - hard[t]);
                    blOut[t][ch] = blended;
                }
            // stash per branch; rows are assembled in layout order below
            _branches[cond ? 1 : 0] = (fgOut, blOut, BgOut(cond));
        }
        double[][] BgOut(bool cond)
        {
            if (cross) return Layer(basis, Hid(TripletLayout.Background, cond), Ctx(TripletLayout.Background, cond));
            if (!sharing) return Layer(basis, Hid(TripletLayout.Background, cond), Hid(TripletLayout.Background, cond));
            var masked = Enumerable.Range(0, 2 * T).Select(j => exclusion && j >= T && hard[j - T] > 0.5).ToArray();
            return Layer(basis, Hid(TripletLayout.Background, cond), Hid(TripletLayout.Background, cond), masked, Hid(TripletLayout.Blend, cond));
        }
        foreach (int stream in new[] { TripletLayout.Foreground, TripletLayout.Blend, TripletLayout.Background })
            foreach (int b in new[] { 0, 1 })
            {
                var (f, bl, bg) = _branches[b];
                var rows = stream == TripletLayout.Foreground ? f : stream == TripletLayout.Blend ? bl : bg;
                foreach (var r in rows) expected.AddRange(r);
            }
        ModelFixture.AssertClose(_ops.ToHost(got), expected.Select(x => (float)x).ToArray(), 2e-5, $"{kind} sharing={sharing} exclusion={exclusion}");
    }

    readonly (double[][] Fg, double[][] Blend, double[][] Bg)[] _branches = new (double[][], double[][], double[][])[2];
}
