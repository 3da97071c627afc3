using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Tensors;
using LayerFusion.Tests.Models;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Fusion;

/// <summary>
/// The prior pass and the interaction pass on the diffusers-parity UNet fixture (unet_b: 7x5 latent,
/// attention at 4x3 and 2x2, 4 context tokens), with seeded "LayerDiffuse" offsets on every
/// attention projection of the FG stream.
/// </summary>
public sealed class LayerFusionProcessorTests : IDisposable
{
    const int Eos = 2;
    readonly ModelFixture _fx = new("unet_b");
    readonly CpuBackend _ops = new();
    readonly UNet2DConditionModel _unet;
    readonly CheckpointAttentionWeights _fg;
    readonly Tensor _sample, _ehs, _te;
    readonly float[] _t, _ids;

    public LayerFusionProcessorTests()
    {
        _unet = new UNet2DConditionModel(_fx.Store(_ops, "unet"), UNetConfig.Read(_fx.Config));
        var rng = new Random(11);
        var fgDict = new Dictionary<string, WeightTensor>(_fx.Weights);
        foreach (var (name, w) in _fx.Weights)
            if (name.Contains(".attn") && (name.Contains(".to_q.") || name.Contains(".to_k.") || name.Contains(".to_v.") || name.Contains(".to_out.0.")))
            {
                var v = w.ToFloat32();
                for (int i = 0; i < v.Length; i++) v[i] += 0.3f * (float)(rng.NextDouble() - 0.5) * (Math.Abs(v[i]) + 0.05f);
                fgDict[name] = ArrayWeightTensor.FromFloat32(name, w.Shape, v);
            }
        _fg = new CheckpointAttentionWeights(new ParameterStore(_ops, fgDict, "unet-fg"));

        var sampleShape = _fx.Shape("sample");
        var ehsShape = _fx.Shape("encoder_hidden_states");
        var teShape = _fx.Shape("text_embeds");
        _sample = Random(rng, 6, sampleShape[1], sampleShape[2], sampleShape[3]);
        _ehs = Random(rng, 6, ehsShape[1], ehsShape[2]);
        _te = Random(rng, 6, teShape[1]);
        _t = _fx.Values("timestep");
        var ids = _fx.Values("time_ids");
        _ids = Enumerable.Range(0, 6).SelectMany(_ => ids[..6]).ToArray();
    }

    public void Dispose()
    {
        _sample.Dispose();
        _ehs.Dispose();
        _te.Dispose();
        _fx.Dispose();
    }

    Tensor Random(Random rng, params int[] shape)
    {
        var v = new float[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return _ops.FromHost(v, shape);
    }

    Tensor Rows(Tensor x, int start, int count) => _ops.Slice(x, 0, start, count);

    string PriorLayer => LayerFusionOptions.DefaultPriorLayer(_unet.AttentionSites);

    StructurePriorProcessor PriorPass(bool capture = false)
    {
        var prior = new StructurePriorProcessor(PriorLayer, Eos, capture);
        int fgCond = TripletLayout.Row(TripletLayout.Foreground, true);
        using var s = Rows(_sample, fgCond, 1);
        using var e = Rows(_ehs, fgCond, 1);
        using var te = Rows(_te, fgCond, 1);
        using var _ = _unet.Forward(s, _t, e, te, _ids.AsSpan(0, 6), prior, _fg);
        return prior;
    }

    float[] Interaction(LayerFusionOptions options, IDictionary<string, LayerFusionMaps>? record = null)
    {
        var prior = PriorPass();
        var proc = new LayerFusionAttentionProcessor(_fg, options) { Record = record };
        proc.BeginStep(prior.Prior!, prior.Content, Eos);
        using var y = _unet.Forward(_sample, _t, _ehs, _te, _ids, proc);
        return _ops.ToHost(y);
    }

    /// <summary>One stream's two rows run alone through the plain UNet (FG: with the FG weights).</summary>
    float[] Separate(int stream, IAttentionWeights? weights = null, int? contextStream = null)
    {
        int row = TripletLayout.Row(stream, false);
        using var s = Rows(_sample, row, 2);
        using var e = Rows(_ehs, TripletLayout.Row(contextStream ?? stream, false), 2);
        using var te = Rows(_te, row, 2);
        using var y = _unet.Forward(s, _t, e, te, _ids.AsSpan(0, 12), attentionWeights: weights);
        return _ops.ToHost(y);
    }

    static float[] StreamOf(float[] all, int stream)
    {
        int per = all.Length / TripletLayout.Streams;
        return all[(stream * per)..((stream + 1) * per)];
    }

    [Fact]
    public void PriorPassReadsTheLastSelfAttentionAndEveryCrossAttention()
    {
        var prior = PriorPass(capture: true);
        var site = _unet.AttentionSites.Single(s => s.Path == PriorLayer);
        Assert.Equal(_unet.AttentionSites.Last(s => s.Kind == AttentionKind.Self), site);
        var p = prior.Prior!;
        Assert.Equal((4, 3), (p.Height, p.Width)); // level 1 of a 7x5 latent
        int m = p.Height * p.Width;
        // s from the streamed statistics equals PriorMath on the materialized head-mean map
        var fromMap = PriorMath.SparsityScores(prior.PriorProbabilities!, m, m);
        for (int i = 0; i < m; i++) Assert.Equal(fromMap[i], p.Sparsity[i], 1e-5 * fromMap[i]);
        Assert.True(p.Sparsity.Max() > p.Sparsity.Min() * 1.01, "a flat sparsity map makes the test vacuous");
        Assert.Equal(PriorMath.DensityPrior(p.Sparsity), p.Density);
        Assert.Equal(_unet.AttentionSites.Where(s => s.Kind == AttentionKind.Cross).Select(s => s.Path).Order(),
            prior.Content.Keys.Order());
        foreach (var c in prior.Content.Values) Assert.All(c, v => Assert.InRange(v, 0f, 1f));

        // the prior pass computes the same noise prediction as a plain FG run
        int fgCond = TripletLayout.Row(TripletLayout.Foreground, true);
        using var s = Rows(_sample, fgCond, 1);
        using var e = Rows(_ehs, fgCond, 1);
        using var te = Rows(_te, fgCond, 1);
        using var viaPrior = _unet.Forward(s, _t, e, te, _ids.AsSpan(0, 6), new StructurePriorProcessor(PriorLayer, Eos), _fg);
        using var plain = _unet.Forward(s, _t, e, te, _ids.AsSpan(0, 6), attentionWeights: _fg);
        Assert.Equal(_ops.ToHost(plain), _ops.ToHost(viaPrior));
    }

    [Fact]
    public void WithoutSharingOrBlendingEveryStreamEqualsItsSeparateRun()
    {
        var records = new Dictionary<string, LayerFusionMaps>();
        var y = Interaction(new LayerFusionOptions { Sharing = false, BlendSelfAttention = false, BlendCrossAttention = false }, records);
        ModelFixture.AssertClose(StreamOf(y, TripletLayout.Foreground), Separate(TripletLayout.Foreground, _fg), 1e-5, "FG");
        ModelFixture.AssertClose(StreamOf(y, TripletLayout.Blend), Separate(TripletLayout.Blend), 1e-5, "BLEND");
        ModelFixture.AssertClose(StreamOf(y, TripletLayout.Background), Separate(TripletLayout.Background), 1e-5, "BG");

        // unblended FG rows see exactly the prior pass's hidden states, so the live c equals the prior's
        var prior = PriorPass();
        Assert.Equal(_unet.AttentionSites.Count, records.Count);
        foreach (var site in _unet.AttentionSites.Where(s => s.Kind == AttentionKind.Cross))
        {
            var live = records[site.Path].Content;
            var fromPrior = prior.Content[site.Path];
            for (int i = 0; i < live.Length; i++) Assert.Equal(fromPrior[i], live[i], 1e-5);
        }
        // masks: soft = minmax(s' c), hard = sigmoid(d (soft - 0.5)); attn1 uses its block's attn2 prior c
        foreach (var (path, maps) in records)
        {
            Assert.Equal(PriorMath.SoftMask(maps.Density, maps.Content), maps.SoftMask);
            Assert.Equal(PriorMath.HardMask(maps.SoftMask, 10f), maps.HardMask);
            Assert.Equal(prior.Prior!.DensityAt(maps.Height, maps.Width), maps.Density);
            if (path.EndsWith(".attn1")) Assert.Equal(prior.Content[path[..^1] + "2"], maps.Content);
        }
    }

    [Fact]
    public void WithoutSharingTheBackgroundIsAPlainRunWhileBlendingActs()
    {
        var y = Interaction(new LayerFusionOptions { Sharing = false });
        ModelFixture.AssertClose(StreamOf(y, TripletLayout.Background), Separate(TripletLayout.Background), 1e-5, "BG");
        Assert.True(ModelFixture.RelErr(StreamOf(y, TripletLayout.Foreground), Separate(TripletLayout.Foreground, _fg)) > 1e-3, "blending left FG unchanged");
        Assert.True(ModelFixture.RelErr(StreamOf(y, TripletLayout.Blend), Separate(TripletLayout.Blend)) > 1e-3, "blending left BLEND unchanged");
    }

    [Fact]
    public void SharingAndExclusionChangeOnlyTheBackgroundAndCrossSharingReadsTheBackgroundPrompt()
    {
        var shared = Interaction(new LayerFusionOptions { BlendSelfAttention = false, BlendCrossAttention = false });
        var noExclusion = Interaction(new LayerFusionOptions { BlendSelfAttention = false, BlendCrossAttention = false, Exclusion = false });
        var plainBg = Separate(TripletLayout.Background);
        Assert.True(ModelFixture.RelErr(StreamOf(shared, TripletLayout.Background), plainBg) > 1e-3, "sharing had no effect on BG");
        Assert.True(ModelFixture.RelErr(StreamOf(shared, TripletLayout.Background), StreamOf(noExclusion, TripletLayout.Background)) > 1e-4,
            "exclusion had no effect on BG");
        ModelFixture.AssertClose(StreamOf(shared, TripletLayout.Foreground), Separate(TripletLayout.Foreground, _fg), 1e-5, "FG");
        // sharing is one-directional for self-attention; in cross-attention BLEND reads p_BG (Alg. 3)
        ModelFixture.AssertClose(StreamOf(shared, TripletLayout.Blend), Separate(TripletLayout.Blend, contextStream: TripletLayout.Background), 1e-5, "BLEND");
    }

    [Fact]
    public void ExcludedBlendKeysAreInvisibleToBackgroundQueries()
    {
        var rng = new Random(5);
        int t = 6, heads = 2, inner = 8;
        using var q = Random(rng, 2, t, inner);
        using var kBg = Random(rng, 2, t, inner);
        using var vBg = Random(rng, 2, t, inner);
        using var kBl = Random(rng, 2, t, inner);
        using var vBl = Random(rng, 2, t, inner);
        using var kAll = _ops.Concat([kBg, kBl], 1);
        using var vAll = _ops.Concat([vBg, vBl], 1);
        using var allOut = LayerFusionAttentionProcessor.ExclusionBias(_ops, Enumerable.Repeat(0.9f, t).ToArray(), t);
        using var excluded = _ops.Attention(q, kAll, vAll, heads, allOut);
        using var plain = _ops.Attention(q, kBg, vBg, heads);
        ModelFixture.AssertClose(_ops.ToHost(excluded), _ops.ToHost(plain), 1e-6, "all BLEND keys excluded");
        using var noneOut = LayerFusionAttentionProcessor.ExclusionBias(_ops, Enumerable.Repeat(0.4f, t).ToArray(), t);
        using var kept = _ops.Attention(q, kAll, vAll, heads, noneOut);
        using var unbiased = _ops.Attention(q, kAll, vAll, heads);
        Assert.Equal(_ops.ToHost(unbiased), _ops.ToHost(kept));
        Assert.True(ModelFixture.RelErr(_ops.ToHost(kept), _ops.ToHost(plain)) > 1e-3);
    }

    [Fact]
    public void BlendEquationsMatchPriorMathAndTheirIdentities()
    {
        var rng = new Random(9);
        int b = 2, t = 5, c = 7;
        using var fg = Random(rng, b, t, c);
        using var bl = Random(rng, b, t, c);
        float[] fgH = _ops.ToHost(fg), blH = _ops.ToHost(bl);
        float[] Mask(Func<int, float> f) => Enumerable.Range(0, t).Select(f).ToArray();
        var soft = Mask(_ => (float)rng.NextDouble());
        var hard = Mask(_ => (float)rng.NextDouble());

        var (f2, b2) = LayerFusionAttentionProcessor.Blend(_ops, fg, bl, soft, hard);
        float[] ef = (float[])fgH.Clone(), eb = (float[])blH.Clone();
        for (int r = 0; r < b; r++)
            PriorMath.BlendInPlace(ef.AsSpan(r * t * c, t * c), eb.AsSpan(r * t * c, t * c), soft, hard, c);
        ModelFixture.AssertClose(_ops.ToHost(f2), ef, 1e-6, "Eq. 2");
        ModelFixture.AssertClose(_ops.ToHost(b2), eb, 1e-6, "Eq. 1");
        f2.Dispose(); b2.Dispose();

        var zero = Mask(_ => 0f);
        var one = Mask(_ => 1f);
        // mask_soft = 0 leaves BLEND unchanged; mask_hard = 0 leaves FG unchanged
        var (f0, b0) = LayerFusionAttentionProcessor.Blend(_ops, fg, bl, zero, zero);
        Assert.Equal(blH, _ops.ToHost(b0));
        Assert.Equal(fgH, _ops.ToHost(f0));
        var (f1, b1) = LayerFusionAttentionProcessor.Blend(_ops, fg, bl, soft, zero);
        Assert.Equal(fgH, _ops.ToHost(f1));
        // mask_soft = 1 makes BLEND the FG output (and FG stays FG whatever mask_hard is)
        var (fOne, bOne) = LayerFusionAttentionProcessor.Blend(_ops, fg, bl, one, hard);
        Assert.Equal(fgH, _ops.ToHost(bOne));
        ModelFixture.AssertClose(_ops.ToHost(fOne), fgH, 1e-6, "FG with BLEND = FG");
        foreach (var x in new[] { f0, b0, f1, b1, fOne, bOne }) x.Dispose();
    }

    [Fact]
    public void OptionsResolveThePriorLayerFromTheModel()
    {
        var sdxl = new UNet2DConditionModel(new ParameterStore(_ops, new Dictionary<string, WeightTensor>(), "unet"), new UNetConfig());
        Assert.Equal(LayerFusionOptions.PaperPriorLayer, LayerFusionOptions.DefaultPriorLayer(sdxl.AttentionSites));
        Assert.Equal(_unet.AttentionSites.Last(s => s.Kind == AttentionKind.Self).Path, new LayerFusionOptions().ResolvePriorLayer(_unet.AttentionSites).Path);
        Assert.Throws<UserInputException>(() => new LayerFusionOptions { PriorLayer = "mid_block.attentions.0.transformer_blocks.0.attn2" }.ResolvePriorLayer(_unet.AttentionSites));
        Assert.Throws<UserInputException>(() => new LayerFusionOptions { D = 0 }.Validate());
        Assert.Equal("a cat, a park", new LayerFusionOptions().BlendPromptFor("a cat", "a park"));
    }
}
