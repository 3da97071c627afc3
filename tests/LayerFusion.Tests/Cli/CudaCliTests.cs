using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Cuda;
using LayerFusion.Tests.Pipelines;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Cli;

/// <summary>
/// `--backend cuda` runs of sdxl, generate and run on the tiny checkpoint, against the same command
/// on the CPU backend. Where no GPU exists they run on the emulated device (tests/cuda-standin):
/// the CLI's backend choice, kernel loading, arena and every op a pipeline needs, not GPU speed.
/// fp16 storage across several steps drifts from the fp32 CPU run, hence the pixel bounds.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public sealed class CudaCliTests(TinySdxl tiny) : IClassFixture<TinySdxl>
{
    string P(string name) => Path.Combine(tiny.Root, "cuda-cli-" + name);

    static void RequireDevice()
    {
        using var ops = LayerFusion.Cuda.CudaOps.TryCreate(LayerFusion.Cuda.Runtime.StorageType.F16, out var reason);
        // CI provides the emulated device (LAYERFUSION_REQUIRE_CUDA=1): a missing one fails there
        LayerFusion.Tests.TestSupport.Requires.Device(ops is not null, reason ?? "");
        EmulatedCuda.NoteTestRuns();
    }

    static double MeanAbsDiff(Image8 a, Image8 b)
    {
        Assert.Equal((a.Width, a.Height, a.Channels), (b.Width, b.Height, b.Channels));
        double s = 0;
        for (int i = 0; i < a.Pixels.Length; i++) s += Math.Abs(a.Pixels[i] - b.Pixels[i]);
        return s / a.Pixels.Length;
    }

    [Fact]
    public void Emulated_sdxl_on_cuda_matches_the_cpu_image()
    {
        RequireDevice();
        string[] args = ["sdxl", "--model", tiny.Default, "--prompt", "a lighthouse", "--steps", "2", "--seed", "5", "--width", "72", "--height", "56"];
        var gpu = SdxlCliTests.RunExactly([.. args, "--backend", "cuda", "--out", P("gpu.png")]);
        Assert.True(gpu.Code == 0, gpu.Err);
        var cpu = SdxlCliTests.RunExactly([.. args, "--backend", "cpu", "--out", P("cpu.png")]);
        Assert.True(cpu.Code == 0, cpu.Err);
        var g = PngFile.Read(P("gpu.png"));
        Assert.Equal((72, 56, 3), (g.Width, g.Height, g.Channels));
        Assert.Contains(g.Pixels, p => p != g.Pixels[0]);
        Assert.True(MeanAbsDiff(g, PngFile.Read(P("cpu.png"))) < 4, "cuda and cpu images differ by more than 4/255 on average");
    }

    [Fact]
    public void Emulated_no_cuda_graph_runs_op_by_op_with_the_same_bytes()
    {
        RequireDevice();
        string[] args = ["sdxl", "--model", tiny.Default, "--prompt", "a lighthouse", "--steps", "3", "--seed", "5", "--width", "40",
            "--height", "24", "--backend", "cuda"];
        var graph = SdxlCliTests.RunExactly([.. args, "--out", P("graph.png")]);
        Assert.True(graph.Code == 0, graph.Err);
        Assert.Contains("cuda graph: 2 of 3 steps", graph.Out);
        var plain = SdxlCliTests.RunExactly([.. args, "--no-cuda-graph", "--out", P("plain.png")]);
        Assert.True(plain.Code == 0, plain.Err);
        Assert.DoesNotContain("cuda graph", plain.Out);
        Assert.Equal(File.ReadAllBytes(P("plain.png")), File.ReadAllBytes(P("graph.png")));

        string model = P("gen-model");
        if (!Directory.Exists(model)) Assert.Equal(0, SdxlCliTests.RunExactly("make-tiny", model, "--seed", "1").Code);
        string[] gen = ["generate", "--model", model, "--fg", "a glass bottle", "--bg", "a beach", "--steps", "2", "--seed", "9",
            "--width", "32", "--height", "24", "--no-augment", "--backend", "cuda"];
        var g = SdxlCliTests.RunExactly([.. gen, "--out", P("gen-graph")]);
        Assert.True(g.Code == 0, g.Err);
        Assert.Contains("cuda graph: 1 of 2 steps", g.Out);
        var p = SdxlCliTests.RunExactly([.. gen, "--no-cuda-graph", "--out", P("gen-plain")]);
        Assert.True(p.Code == 0, p.Err);
        Assert.DoesNotContain("cuda graph", p.Out);
        foreach (var name in LayerFusionOutputs.ImageNames)
            Assert.Equal(PngFile.Read(Path.Combine(P("gen-plain"), "00000-9", name)).Pixels, PngFile.Read(Path.Combine(P("gen-graph"), "00000-9", name)).Pixels);
    }

    [Fact]
    public void Emulated_generate_on_cuda_writes_the_triplet_close_to_the_cpu_one()
    {
        RequireDevice();
        string model = P("gen-model");  // make-tiny's checkpoint: its VAE and LayerDiffuse files agree on the latent scale
        if (!Directory.Exists(model)) Assert.Equal(0, SdxlCliTests.RunExactly("make-tiny", model, "--seed", "1").Code);
        string[] args = ["generate", "--model", model, "--fg", "a glass bottle", "--bg", "a beach", "--steps", "1", "--cfg", "3",
            "--seed", "9", "--width", "72", "--height", "56", "--no-augment"];
        var gpu = SdxlCliTests.RunExactly([.. args, "--backend", "cuda", "--out", P("gen-gpu")]);
        Assert.True(gpu.Code == 0, gpu.Err);
        var cpu = SdxlCliTests.RunExactly([.. args, "--backend", "cpu", "--out", P("gen-cpu")]);
        Assert.True(cpu.Code == 0, cpu.Err);
        foreach (var name in LayerFusionOutputs.ImageNames)
        {
            // each run's triplet lands in its own NNNNN-SEED folder under --out
            var g = PngFile.Read(Path.Combine(P("gen-gpu"), "00000-9", name));
            Assert.Equal((72, 56), (g.Width, g.Height));
            double d = MeanAbsDiff(g, PngFile.Read(Path.Combine(P("gen-cpu"), "00000-9", name)));
            Assert.True(d < 6, $"{name}: cuda and cpu differ by {d:F2}/255 on average");
        }
    }

    [Fact]
    public void Emulated_run_unet_on_cuda_matches_the_cpu_run()
    {
        RequireDevice();
        static WeightTensor F32(string name, long[] shape, ulong seed)
        {
            var n = (int)shape.Aggregate(1L, (a, b) => a * b);
            return ArrayWeightTensor.FromFloat32(name, shape, new LayerFusion.Core.Schedulers.GaussianNoise(seed).Next(n));
        }
        WeightTensor[] inputs =
        [
            F32("sample", [2, 4, 6, 5], 1),
            ArrayWeightTensor.FromFloat32("timestep", [], [421f]),
            F32("encoder_hidden_states", [2, 77, 64], 2),
            F32("text_embeds", [2, 32], 3),
            ArrayWeightTensor.FromFloat32("time_ids", [2, 6], [48, 40, 0, 0, 48, 40, 48, 40, 0, 0, 48, 40]),
        ];
        SafeTensorsWriter.Write(P("unet_in.safetensors"), inputs);
        float[] Out(string backend)
        {
            var r = SdxlCliTests.RunExactly("run", "unet", "--model", tiny.Default, "--inputs", P("unet_in.safetensors"),
                "--backend", backend, "--out", P($"unet_{backend}.safetensors"));
            Assert.True(r.Code == 0, r.Err);
            using var f = SafeTensorsFile.Open(P($"unet_{backend}.safetensors"));
            return f.Tensors.Single(t => t.Name == "out_sample").ToFloat32();
        }
        var g = Out("cuda");
        var c = Out("cpu");
        double num = 0, den = 0;
        for (int i = 0; i < c.Length; i++) { num += (g[i] - c[i]) * (double)(g[i] - c[i]); den += c[i] * (double)c[i]; }
        Assert.True(Math.Sqrt(num / den) < 2e-2, $"relative error {Math.Sqrt(num / den):E2}");
    }
}
