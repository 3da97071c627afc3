using LayerFusion.Core.Models.Blocks;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Models;

/// <summary>diffusers' Transformer2DModel alone (2 layers, linear and conv projections) on a 1e-3-scale
/// input with a small GroupNorm affine, so its GroupNorm eps 1e-6 and the LayerNorms' eps 1e-5 are
/// observable: a 10x wrong eps moves these outputs by more than 50% (checked in python).</summary>
public class BlockParityTests
{
    [Theory]
    [InlineData("t_lin", true)]
    [InlineData("t_conv", false)]
    public void Transformer2DModelMatchesDiffusers(string tag, bool linear)
    {
        using var fx = new ModelFixture("blocks");
        var ops = new CpuBackend();
        var store = fx.Store(ops, "blocks").Scope(tag);
        var t = new Transformer2DModel(store, heads: 2, headDim: 4, inChannels: 8, numLayers: 2, crossAttentionDim: 6, groups: 4,
            useLinearProjection: linear, level: 0);
        using var x = fx.Input(ops, "x");
        using var ehs = fx.Input(ops, "encoder_hidden_states");
        using var y = t.Forward(x, ehs, new AttentionRuntime(SdpaAttentionProcessor.Instance, new CheckpointAttentionWeights(fx.Store(ops, "blocks"))));
        ModelFixture.AssertClose(ops.ToHost(y), fx.Values($"out_{tag}"));
    }
}
