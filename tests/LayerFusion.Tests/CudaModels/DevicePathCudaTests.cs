using LayerFusion.Core.Fusion;
using LayerFusion.Core.Schedulers;
using LayerFusion.Tests.Fusion;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// The engine's device-resident step on the CUDA backend pair (fp16 UNet with CudaOps' prior ops, fp32
/// VAE) against the host reference path on the CPU backend, per ablation switch, on the tiny
/// checkpoint: final latents within the whole-pipeline fp16 bound of CudaModelParityTests (5e-2, max
/// relative). Without a GPU this runs on the emulated device (tests/cuda-standin) and its numbers are
/// emulated results, not GPU results; the switches are a subset there to bound the emulator's time
/// (the CPU equivalence tests cover every switch at 1e-5).
/// </summary>
[Collection("cuda")]
public class DevicePathCudaTests(CudaModelFixture fx) : IClassFixture<CudaModelFixture>
{
    const double Pipeline = 5e-2;

    public static TheoryData<string> Switches => new() { "no-exclusion", "blend-none", "blend-own-prompt", "prior-layer", "dpmpp-2m-karras" };

    [Theory]
    [MemberData(nameof(Switches))]
    public void DevicePathOnCudaMatchesTheHostReferenceOnTheCpu(string ablation)
    {
        var (main, _) = fx.Gpu();
        var cpuPipe = fx.CpuPipeline();
        var opt = ablation switch
        {
            "no-exclusion" => new LayerFusionOptions { Exclusion = false },
            "blend-none" => new LayerFusionOptions { BlendSelfAttention = false, BlendCrossAttention = false },
            "blend-own-prompt" => new LayerFusionOptions { BlendCrossReadsBackgroundPrompt = false },
            "prior-layer" => new LayerFusionOptions { PriorLayer = cpuPipe.Unet.AttentionSites.First(s => s.Kind == Core.Models.Blocks.AttentionKind.Self).Path },
            _ => new LayerFusionOptions(),
        };
        var request = new LayerFusionRequest
        {
            Foreground = "a red apple",
            Background = "a wooden table",
            Steps = 2,
            GuidanceScale = 5f,
            Seed = 3,
            Width = 32,
            Height = 24,
            Sampler = ablation == "dpmpp-2m-karras" ? Samplers.DpmPP2MKarras : Samplers.Euler,
            Options = opt with { TransparentAugment = false },
        };
        cpuPipe.StepPath = LayerFusionStepPath.HostReference;
        cpuPipe.Generate(request, cancellationToken: TestContext.Current.CancellationToken);
        var host = cpuPipe.LastLatents!;
        var gpuPipe = fx.GpuPipeline();
        gpuPipe.StepPath = LayerFusionStepPath.Device;
        gpuPipe.Generate(request, cancellationToken: TestContext.Current.CancellationToken);
        var dev = gpuPipe.LastLatents!;
        for (int s = 0; s < TripletLayout.Streams; s++)
            ModelParity.Check($"layerfusion device step ({ablation}): stream {s} latents", main.Name,
                ModelParity.MaxRelError(dev[s], host[s], $"stream {s}"), Pipeline, "device path on CUDA vs host reference on the CPU");
    }
}
