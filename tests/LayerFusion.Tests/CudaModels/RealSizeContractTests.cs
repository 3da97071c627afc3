using System.IO.Compression;
using System.Text.Json.Nodes;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.Cuda.Bench;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.Models;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// The REAL-size graphs (SDXL UNet at 1024x1024 with a CFG batch of 2, the SDXL VAE decoder, the
/// released transparent decoder) built from diffusers' layouts and run shape-only through
/// <see cref="CudaContractOps"/>: every call they make is one CudaOps accepts (attention head dims
/// within the kernel's shared memory on sm_90, matmul batches equal, broadcasts into the left
/// operand, index maps of rank &lt;= 8). The tiny checkpoint cannot show this: its head dims differ.
/// </summary>
public class RealSizeContractTests
{
    static (ConfigReader Config, Dictionary<string, WeightTensor> Weights) Layout(string name) => RealLayoutTests.Layout(name);

    static CudaContractOps Ops(StorageType t) => new(new ShapeOps(), t, roundStorage: false);

    static void AssertCalled(CudaContractOps ops, params string[] expected)
    {
        foreach (var op in expected) Assert.Contains(op, ops.Called);
    }

    [Fact]
    public void Sdxl_unet_at_1024_with_cfg_stays_in_the_cuda_contract()
    {
        var (config, weights) = Layout("sdxl_unet");
        var ops = Ops(StorageType.F16);
        var unet = new UNet2DConditionModel(new ParameterStore(ops, weights, "unet"), UNet2DConditionModel.ReadConfig(config));
        using var sample = ops.Zeros(2, 4, 128, 128);
        using var ehs = ops.Zeros(2, 77, 2048);
        using var te = ops.Zeros(2, 1280);
        using var y = unet.Forward(sample, [999f], ehs, te, new float[12]);
        Assert.Equal(new[] { 2, 4, 128, 128 }, y.Shape);
        AssertCalled(ops, "Attention", "Conv2d", "Linear", "GroupNorm", "LayerNorm", "Geglu", "TimestepEmbedding");
    }

    [Fact]
    public void Sdxl_vae_decoder_at_1024_stays_in_the_cuda_contract()
    {
        var (config, weights) = Layout("sdxl_vae");
        var ops = Ops(StorageType.F32);
        var vae = new AutoencoderKL(new ParameterStore(ops, weights, "vae"), AutoencoderKL.ReadConfig(config));
        using var z = ops.Zeros(1, 4, 128, 128);
        using var y = vae.Decode(z);
        Assert.Equal(new[] { 1, 3, 1024, 1024 }, y.Shape);
        AssertCalled(ops, "Attention", "Conv2d", "GroupNorm", "Upsample2xNearest");
    }

    [Fact]
    public void Released_transparent_decoder_at_1024_stays_in_the_cuda_contract()
    {
        var (config, weights) = Layout("transparent_decoder");
        var ops = Ops(StorageType.F32);
        var model = new UNet1024(new ParameterStore(ops, weights, "transparent_decoder"), TransparentDecoderConfig.Read(config));
        using var pixel = ops.Zeros(1, 3, 1024, 1024);
        using var latent = ops.Zeros(1, 4, 128, 128);
        using var y = model.Forward(pixel, latent);
        Assert.Equal(new[] { 1, 4, 1024, 1024 }, y.Shape);
        AssertCalled(ops, "Attention", "Conv2d", "GroupNorm");
    }
}
