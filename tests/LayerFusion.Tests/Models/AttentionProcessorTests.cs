using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Models;

/// <summary>The UNet's attention plug-in points: processors see every layer with its identity, and
/// per-stream projection weights can be swapped in per batch row without forking the graph.</summary>
public class AttentionProcessorTests
{
    sealed record Seen(string Path, AttentionKind Kind, int Height, int Width, int Tokens, int Batch, int? ContextTokens);

    sealed class RecordingProcessor : IAttentionProcessor
    {
        public List<Seen> Calls { get; } = new();

        public Tensor Process(AttentionCall call)
        {
            Calls.Add(new Seen(call.Site.Path, call.Site.Kind, call.Height, call.Width, call.Hidden.Dim(1), call.Batch, call.Context?.Dim(1)));
            return SdpaAttentionProcessor.Instance.Process(call);
        }
    }

    /// <summary>Rows [0, split) use <see cref="Fg"/>'s projections, the rest the call's: how the foreground
    /// stream runs with LayerDiffuse weights inside one batched UNet call.</summary>
    sealed class RowSplitProcessor(IAttentionWeights fg, int split) : IAttentionProcessor
    {
        public IAttentionWeights Fg => fg;

        public Tensor Process(AttentionCall call)
        {
            var ops = call.Ops;
            int b = call.Batch;
            Tensor Part(int start, int len, AttentionProjections w)
            {
                using var hidden = ops.Slice(call.Hidden, 0, start, len);
                using var context = call.Context is null ? null : ops.Slice(call.Context, 0, start, len);
                return SdpaAttentionProcessor.Instance.Process(new AttentionCall
                {
                    Site = call.Site, Hidden = hidden, Context = context, Height = call.Height, Width = call.Width, Weights = w,
                });
            }
            using var a = Part(0, split, fg.For(call.Site));
            using var r = Part(split, b - split, call.Weights);
            return ops.Concat([a, r], 0);
        }
    }

    [Fact]
    public void EveryAttentionGoesThroughTheProcessorWithItsIdentity()
    {
        using var fx = new ModelFixture("unet_b");
        var ops = new CpuBackend();
        var unet = new UNet2DConditionModel(fx.Store(ops, "unet"), UNetConfig.Read(fx.Config));
        using var sample = fx.Input(ops, "sample");
        using var ehs = fx.Input(ops, "encoder_hidden_states");
        using var te = fx.Input(ops, "text_embeds");
        var rec = new RecordingProcessor();
        using var viaRecorder = unet.Forward(sample, fx.Values("timestep"), ehs, te, fx.Values("time_ids"), rec);
        using var plain = unet.Forward(sample, fx.Values("timestep"), ehs, te, fx.Values("time_ids"));

        Assert.Equal(unet.AttentionSites.Select(s => s.Path), rec.Calls.Select(c => c.Path));
        Assert.Equal(rec.Calls.Count, rec.Calls.Select(c => c.Path).Distinct().Count());
        // latent 7x5 -> level 1 4x3 -> level 2 2x2 (stride-2 convs round up)
        var sizes = new[] { (7, 5), (4, 3), (2, 2) };
        foreach (var (call, site) in rec.Calls.Zip(unet.AttentionSites))
        {
            Assert.Equal(site.Kind, call.Kind);
            Assert.Equal(sizes[site.Level], (call.Height, call.Width));
            Assert.Equal(call.Height * call.Width, call.Tokens);
            Assert.Equal(2, call.Batch);
            Assert.Equal(site.Kind == AttentionKind.Cross ? 4 : null, call.ContextTokens);
            Assert.EndsWith(site.Kind == AttentionKind.Self ? ".attn1" : ".attn2", site.Path);
        }
        Assert.Contains("mid_block.attentions.0.transformer_blocks.1.attn2", rec.Calls.Select(c => c.Path));
        Assert.Equal(ops.ToHost(plain), ops.ToHost(viaRecorder));
    }

    [Fact]
    public void SdxlSitesIncludeThePriorLayerAsTheLastSelfAttention()
    {
        // construction reads no weights, so the real SDXL layout can be listed from its config alone
        var unet = new UNet2DConditionModel(new ParameterStore(new CpuBackend(), new Dictionary<string, WeightTensor>(), "unet"), new UNetConfig());
        Assert.Equal(140, unet.AttentionSites.Count); // 70 transformer blocks x (attn1, attn2)
        var last = unet.AttentionSites.Last(s => s.Kind == AttentionKind.Self);
        Assert.Equal("up_blocks.1.attentions.2.transformer_blocks.1.attn1", last.Path);
        Assert.Equal((10, 64, 640, 640, 1), (last.Heads, last.HeadDim, last.QueryDim, last.ContextDim, last.Level));
        var cross = unet.AttentionSites.First(s => s.Kind == AttentionKind.Cross);
        Assert.Equal(("down_blocks.1.attentions.0.transformer_blocks.0.attn2", 2048), (cross.Path, cross.ContextDim));
    }

    [Fact]
    public void StreamSpecificWeightsPerBatchRowEqualSeparateRuns()
    {
        using var fx = new ModelFixture("unet_a");
        var ops = new CpuBackend();
        var config = UNetConfig.Read(fx.Config);
        var unet = new UNet2DConditionModel(fx.Store(ops, "unet"), config);

        // "foreground" weights: every attention projection offset by a seeded dW (as LayerDiffuse merges W + dW)
        var rng = new Random(7);
        var fgDict = new Dictionary<string, WeightTensor>(fx.Weights);
        foreach (var (name, w) in fx.Weights)
            if (name.Contains(".attn") && (name.Contains(".to_q.") || name.Contains(".to_k.") || name.Contains(".to_v.") || name.Contains(".to_out.0.")))
            {
                var v = w.ToFloat32();
                for (int i = 0; i < v.Length; i++) v[i] += 0.3f * (float)(rng.NextDouble() - 0.5) * (Math.Abs(v[i]) + 0.05f);
                fgDict[name] = ArrayWeightTensor.FromFloat32(name, w.Shape, v);
            }
        var fg = new CheckpointAttentionWeights(new ParameterStore(ops, fgDict, "unet-fg"));

        using var sample = fx.Input(ops, "sample");
        using var ehs = fx.Input(ops, "encoder_hidden_states");
        using var te = fx.Input(ops, "text_embeds");
        var t = fx.Values("timestep");
        var ids = fx.Values("time_ids");
        using var batched = unet.Forward(sample, t, ehs, te, ids, new RowSplitProcessor(fg, 1));

        Tensor Row(Tensor x, int i) => ops.Slice(x, 0, i, 1);
        using var s0 = Row(sample, 0); using var e0 = Row(ehs, 0); using var t0 = Row(te, 0);
        using var s1 = Row(sample, 1); using var e1 = Row(ehs, 1); using var t1 = Row(te, 1);
        using var fgAlone = unet.Forward(s0, t, e0, t0, ids.AsSpan(0, 6), attentionWeights: fg);
        using var baseAlone = unet.Forward(s1, t, e1, t1, ids.AsSpan(6, 6));
        using var row0Base = unet.Forward(s0, t, e0, t0, ids.AsSpan(0, 6));

        var got = ops.ToHost(batched);
        int half = got.Length / 2;
        ModelFixture.AssertClose(got[..half], ops.ToHost(fgAlone), 1e-5, "fg row");
        ModelFixture.AssertClose(got[half..], ops.ToHost(baseAlone), 1e-5, "base row");
        Assert.True(ModelFixture.RelErr(ops.ToHost(fgAlone), ops.ToHost(row0Base)) > 1e-2, "the foreground weights made no difference");
        // the base row is the reference's second row: the split did not disturb shared weights
        ModelFixture.AssertClose(got[half..], fx.Values("out")[half..], what: "base row vs diffusers");

        // the model-level default lookup is the same hook as the per-call one
        unet.AttentionWeights = fg;
        using var viaProperty = unet.Forward(s0, t, e0, t0, ids.AsSpan(0, 6));
        Assert.Equal(ops.ToHost(fgAlone), ops.ToHost(viaProperty));
    }
}
