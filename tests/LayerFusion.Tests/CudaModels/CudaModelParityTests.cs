using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// Issue 5's model-level GPU checks: the UNet, the VAE decoder, both text encoders and the
/// transparent decoder of the tiny checkpoint, one SdxlPipeline generation and one LayerFusion
/// triplet, each run on the CPU backend and on the CUDA backend (as the CLI builds it) from the same
/// inputs, compared by max relative error (max |gpu - cpu| / max |cpu|).
/// Bounds: fp16 components (text encoders, UNet) 1e-2, the issue's bound for whole blocks; fp32
/// components (VAE, transparent decoder) 1e-3 (fp32 storage and FP32 compute, but a different
/// summation order through a whole network); whole pipelines 5e-2 on latents and on 8-bit pixels
/// (several fp16 UNet calls under CFG compound the per-call error, and pixels add rounding).
/// Without a GPU they run on the emulated device (EmulatedCuda); without either every test reports
/// as skipped with the reason; never as passed.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class CudaModelParityTests(CudaModelFixture fx) : ModelParityTests<CudaModelFixture>(fx);

/// <summary>
/// The same checks on <see cref="CudaContractOps"/> (CPU compute, CudaOps' argument contract, fp16
/// storage rounding), so that on machines without a GPU the graphs are still shown to call only what
/// the CUDA backend accepts, and the bounds above are shown to leave room over fp16 storage alone.
/// </summary>
public class CudaContractModelTests(CudaContractFixture fx) : ModelParityTests<CudaContractFixture>(fx);

public abstract class ModelParityTests<TFixture>(TFixture fx) : IClassFixture<TFixture> where TFixture : ModelPairFixture
{
    const double Fp16Block = 1e-2, Fp32Model = 1e-3, Pipeline = 5e-2;

    static float[] Rand(Random rng, int n, double scale = 1, double offset = 0)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(offset + (rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    [Fact]
    public void Both_text_encoders_match_the_cpu()
    {
        var (main, _) = fx.Gpu();
        var cpu = fx.CpuPipeline().Text;
        var gpu = fx.GpuPipeline().Text;
        foreach (var (name, tokenizer, cpuModel, gpuModel) in new[]
                 {
                     ("text_encoder", cpu.Tokenizer, cpu.TextEncoder, gpu.TextEncoder),
                     ("text_encoder_2", cpu.Tokenizer2, cpu.TextEncoder2, gpu.TextEncoder2),
                 })
        {
            // a batch of 2 (prompt and negative) as encode_prompt runs them
            var ids = tokenizer.Tokenize("a red apple on a wooden table, studio light").Ids
                .Concat(tokenizer.Tokenize("blurry, low quality").Ids).ToArray();
            using var c = cpuModel.Forward(ids, 2);
            using var g = gpuModel.Forward(ids, 2);
            Assert.Equal(c.HiddenStates.Shape, g.HiddenStates.Shape);
            ModelParity.Compare($"{name} hidden_states[-2]", main.Name, main.ToHost(g.HiddenStates), fx.Cpu.ToHost(c.HiddenStates), Fp16Block);
            var cPooled = c.TextEmbeds ?? c.Pooled;
            var gPooled = g.TextEmbeds ?? g.Pooled;
            Assert.True(cPooled is not null && gPooled is not null, $"{name}: no pooled output");
            ModelParity.Compare($"{name} pooled{(c.TextEmbeds is null ? "" : " (projected)")}", main.Name,
                main.ToHost(gPooled), fx.Cpu.ToHost(cPooled), Fp16Block);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Unet_with_a_cfg_batch_of_2_matches_the_cpu(bool layerDiffuseWeights)
    {
        var (main, _) = fx.Gpu();
        var cpuPipe = fx.CpuPipeline();
        var gpuPipe = fx.GpuPipeline();
        var cfg = cpuPipe.Unet.Config;
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        int lh = 9, lw = 7;  // odd latent: the down/up path pads and crops
        using var encoding = cpuPipe.Sdxl.EncodePrompt("a red apple", "a blurry photo");
        using var cond = cpuPipe.Sdxl.CreateConditioning(encoding, 1, lh * cpuPipe.VaeScaleFactor, lw * cpuPipe.VaeScaleFactor, guided: true);
        Assert.Equal(2, cond.Batch);
        var sample = Rand(rng, 2 * cfg.InChannels * lh * lw);
        float timestep = 501f;

        float[] Run(IOps ops, LayerFusionPipeline pipe, WeightsChoice choice)
        {
            using var x = ops.FromHost(sample, 2, cfg.InChannels, lh, lw);
            using var ehs = ops.FromHost(fx.Cpu.ToHost(cond.EncoderHiddenStates), cond.EncoderHiddenStates.Shape);
            using var te = ops.FromHost(fx.Cpu.ToHost(cond.TextEmbeds), cond.TextEmbeds.Shape);
            using var y = pipe.Unet.Forward(x, [timestep], ehs, te, cond.TimeIds,
                attentionWeights: choice == WeightsChoice.Foreground ? pipe.ForegroundWeights : null);
            return ops.ToHost(y);
        }

        var choice = layerDiffuseWeights ? WeightsChoice.Foreground : WeightsChoice.Base;
        var c = Run(fx.Cpu, cpuPipe, choice);
        var g = Run(main, gpuPipe, choice);
        ModelParity.Compare(layerDiffuseWeights ? "unet (LayerDiffuse attention)" : "unet", main.Name, g, c, Fp16Block,
            $"batch 2, latent {lh}x{lw}, t {timestep}, seed {seed}");
    }

    enum WeightsChoice { Base, Foreground }

    [Fact]
    public void Vae_decode_on_the_fp32_instance_matches_the_cpu()
    {
        var (_, vae) = fx.Gpu();
        var cpuPipe = fx.CpuPipeline();
        var gpuPipe = fx.GpuPipeline();
        Assert.Same(vae, gpuPipe.Vae.Ops);
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        int c = cpuPipe.Sdxl.LatentChannels, lh = 9, lw = 7;
        var z = Rand(rng, 2 * c * lh * lw, 3);
        using var zc = fx.Cpu.FromHost(z, 2, c, lh, lw);
        using var zg = vae.FromHost(z, 2, c, lh, lw);
        using var yc = cpuPipe.Vae.Decode(zc);
        using var yg = gpuPipe.Vae.Decode(zg);
        Assert.Equal(yc.Shape, yg.Shape);
        ModelParity.Compare("vae decode", vae.Name, vae.ToHost(yg), fx.Cpu.ToHost(yc), Fp32Model, $"latent 2x{c}x{lh}x{lw}, seed {seed}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Transparent_decoder_matches_the_cpu(bool augment)
    {
        var (_, vae) = fx.Gpu();
        var cpuDec = fx.CpuPipeline().TransparentDecoder;
        var gpuDec = fx.GpuPipeline().TransparentDecoder;
        var cfg = cpuDec.Model.Config;
        int f = 1 << cfg.LatentInjectLevel;
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        // a size that is not a multiple of the decoder's: exercises the edge-replicate padding
        int lh = 9, lw = 7, h = lh * f, w = lw * f;
        var pixel = Rand(rng, cfg.InChannels * h * w, 0.5, 0.5);
        var latent = Rand(rng, cfg.LatentChannels * lh * lw, 2);

        float[] Run(IOps ops, TransparentVaeDecoder dec)
        {
            using var p = ops.FromHost(pixel, 1, cfg.InChannels, h, w);
            using var l = ops.FromHost(latent, 1, cfg.LatentChannels, lh, lw);
            using var y = dec.Decode(p, l, augment);
            return ops.ToHost(y);
        }

        ModelParity.Compare(augment ? "transparent decoder (8-pass median)" : "transparent decoder", vae.Name,
            Run(vae, gpuDec), Run(fx.Cpu, cpuDec), Fp32Model, $"{h}x{w}, seed {seed}");
    }

    [Fact]
    public void Sdxl_generation_matches_the_cpu()
    {
        var (main, vae) = fx.Gpu();
        var request = new SdxlRequest
        {
            Prompt = "a lighthouse on a cliff at dusk",
            NegativePrompt = "blurry",
            Steps = 3,
            GuidanceScale = 5f,
            Seed = 1234,
            Width = 72,
            Height = 56,
            Sampler = Samplers.Euler,
        };
        var c = fx.CpuPipeline().Sdxl.Generate(request, cancellationToken: TestContext.Current.CancellationToken);
        var g = fx.GpuPipeline().Sdxl.Generate(request, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(c.LatentShape, g.LatentShape);
        string storage = $"{main.Name} + {vae.Name} VAE";
        ModelParity.Compare("sdxl pipeline: final latents", storage, g.Latents, c.Latents, Pipeline, "72x56, 3 Euler steps, CFG 5");
        Assert.Equal(c.Images.Count, g.Images.Count);
        for (int i = 0; i < c.Images.Count; i++)
            ComparePixels($"sdxl pipeline: image {i}", storage, g.Images[i], c.Images[i]);
    }

    [Fact]
    public void LayerFusion_triplet_matches_the_cpu()
    {
        var (main, vae) = fx.Gpu();
        var request = new LayerFusionRequest
        {
            Foreground = "a red apple",
            Background = "a wooden table",
            Steps = 2,
            GuidanceScale = 5f,
            Seed = 42,
            Width = 72,
            Height = 56,
            Sampler = Samplers.Euler,
            DumpPriors = true,
            Options = new LayerFusionOptions { TransparentAugment = false },
        };
        var c = fx.CpuPipeline().Generate(request, cancellationToken: TestContext.Current.CancellationToken);
        var g = fx.GpuPipeline().Generate(request, cancellationToken: TestContext.Current.CancellationToken);
        string storage = $"{main.Name} + {vae.Name} VAE";
        ComparePixels("layerfusion: foreground RGBA", storage, g.Foreground, c.Foreground);
        ComparePixels("layerfusion: background", storage, g.Background, c.Background);
        ComparePixels("layerfusion: blend", storage, g.Blend, c.Blend);
        ComparePixels("layerfusion: alpha composite", storage, g.AlphaComposite, c.AlphaComposite);
        Assert.True(c.Priors is not null && g.Priors is not null, "DumpPriors gave no dump");
        Assert.Equal(c.Priors.Step, g.Priors.Step);
        ModelParity.Compare("layerfusion: structure prior s (sparsity)", storage, g.Priors.Structure.Sparsity, c.Priors.Structure.Sparsity, Pipeline,
            $"step {c.Priors.Step}");
        ModelParity.Compare("layerfusion: structure prior s' (density)", storage, g.Priors.Structure.Density, c.Priors.Structure.Density, Pipeline,
            $"step {c.Priors.Step}");
    }

    static void ComparePixels(string what, string storage, Image8 gpu, Image8 cpu)
    {
        Assert.Equal((cpu.Width, cpu.Height, cpu.Channels), (gpu.Width, gpu.Height, gpu.Channels));
        var g = ModelParity.Pixels(gpu.Pixels);
        var c = ModelParity.Pixels(cpu.Pixels);
        double mean = 0;
        for (int i = 0; i < g.Length; i++) mean += Math.Abs(g[i] - c[i]);
        mean /= Math.Max(g.Length, 1);
        ModelParity.Compare(what, storage, g, c, Pipeline, $"{cpu.Width}x{cpu.Height}x{cpu.Channels}, mean |diff| {mean:F2} levels");
    }
}
