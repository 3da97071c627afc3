using System.Diagnostics;
using System.Text.Json.Nodes;
using LayerFusion.Cli;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Cuda.Bench;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.Tests.Cuda;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;
using CpuBackend = LayerFusion.Cpu.CpuOps;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.UNetBench;

/// <summary>What of the SDXL UNet benchmark can be checked without a GPU: FLOP count, random checkpoint, JSON merge, CLI errors, and the diffusers parity plumbing on a tiny config.</summary>
public class UNetBenchHostTests
{
    static UNetBenchResult Sample(double? triplet = 3.2) =>
        new("Test GPU (sm_90)", 1024, 1024, 6.8e12, 700, 20, 36, 40, 41, triplet, 30, 20.5, 12, 10);

    [Fact]
    public void Full_size_unet_costs_about_6_8_tflop_per_image_at_1024()
    {
        var (total, byKind) = UNetFlops.PerImage(RandomSdxlCheckpoint.FullSizeConfigs().UnetConfig, 128, 128);
        Assert.InRange(total / 1e12, 6.5, 7.1); // DESIGN.md §6
        Assert.True(byKind["conv"] > 0 && byKind["linear"] > 0 && byKind["attention"] > 0);
        // FLOPs scale with the latent area (attention quadratically): a quarter of the pixels costs less than a third
        var (small, _) = UNetFlops.PerImage(RandomSdxlCheckpoint.FullSizeConfigs().UnetConfig, 64, 64);
        Assert.InRange(small / total, 0.2, 0.3);
    }

    [Fact]
    public void Rates_follow_from_times_and_flops()
    {
        var r = Sample();
        Assert.Equal(6.8e12 / 20e-3 / 1e12, r.UnetEvalTflops, 6);
        Assert.Equal(2 * 6.8e12 / 40e-3 / 1e12, r.GuidedStepTflops, 6);
        Assert.Equal(r.GuidedStepTflops / 700, r.FractionOfPeak, 9);
    }

    [Fact]
    public void Merge_keeps_the_attention_measures_replaces_its_own_and_clears_not_measured()
    {
        var attention = PriorAttentionBenchmarks.ToResultsJson("Test GPU (sm_90)", 90, "13.0", new DateTime(2026, 11, 23, 12, 0, 0, DateTimeKind.Utc),
            [new AttentionBenchResult(PriorAttentionBenchmarks.TcPlain, "b2 m1024 n1024 h20 d64", 2, 1024, 1024, 20, 64, 0.2, 0.19, 2, 1 << 20)]);
        var date = new DateTime(2026, 11, 24, 8, 0, 0, DateTimeKind.Utc);
        var once = UNetBenchmarks.MergeResultsJson(attention, Sample(), date, 90);
        var twice = JsonNode.Parse(UNetBenchmarks.MergeResultsJson(once, Sample() with { GuidedStepMs = 25 }, date, 90))!;
        var measures = twice["measures"]!.AsArray().Select(m => m!).ToList();
        Assert.Contains(measures, m => (string?)m["name"] == "attention_ms");
        Assert.Single(measures, m => (string?)m["name"] == "guided_step_ms");
        Assert.Equal(2, measures.Count(m => (string?)m["name"] == "peak_memory_gib")); // the attention kernel's and the UNet's, by shape
        double V(string name) => (double)measures.Single(m => (string?)m["name"] == name && (string?)m["shape"] == "sdxl unet 1024x1024")["value"]!;
        Assert.Equal(25, V("guided_step_ms"));
        Assert.Equal(3.2, V("triplet_e2e_s"));
        Assert.Equal(20.5, V("peak_memory_gib"), 6);
        Assert.All(measures, m => Assert.False(string.IsNullOrEmpty((string?)m["unit"])));
        Assert.Equal("s", (string?)measures.Single(m => (string?)m["name"] == "triplet_e2e_s")["unit"]);
        Assert.Equal("GiB", (string?)measures.Single(m => (string?)m["name"] == "peak_memory_gib" && (string?)m["shape"] == "sdxl unet 1024x1024")["unit"]);
        var pending = twice["not_measured"]!.AsArray().Select(n => (string?)n).ToList();
        Assert.DoesNotContain("guided_step_ms", pending);
        Assert.DoesNotContain("triplet_e2e_s", pending);
        Assert.Contains("pytorch_unet_side_by_side", pending);
        Assert.Equal("2026-11-24T08:00:00Z", (string?)twice["date"]);
        Assert.Equal("Test GPU (sm_90)", (string?)twice["device"]);

        // no triplet run: its name stays pending and no value is invented
        var noTriplet = JsonNode.Parse(UNetBenchmarks.MergeResultsJson(attention, Sample(triplet: null), date))!;
        Assert.DoesNotContain(noTriplet["measures"]!.AsArray(), m => (string?)m!["name"] == "triplet_e2e_s");
        Assert.Contains("triplet_e2e_s", noTriplet["not_measured"]!.AsArray().Select(n => (string?)n));
        // a fresh file
        Assert.NotNull(JsonNode.Parse(UNetBenchmarks.MergeResultsJson(null, Sample(), date))!["measures"]);
        Assert.Throws<UserInputException>(() => UNetBenchmarks.MergeResultsJson("{not json", Sample(), date));
    }


    [Fact]
    public void Markdown_names_each_measure_and_says_what_was_not_measured()
    {
        var md = UNetBenchmarks.ToMarkdown(Sample(triplet: null));
        foreach (var name in new[] { "unet_eval_ms", "guided_step_ms", "triplet_e2e_s", "peak_memory_gib" }) Assert.Contains(name, md);
        Assert.Contains("not measured", md);
        Assert.Contains("40.00 ms", md);
        Assert.Contains("3.20 s", UNetBenchmarks.ToMarkdown(Sample()));
    }

    [Fact]
    public void Parity_inputs_are_seeded_nonzero_and_sized_from_the_config()
    {
        var cfg = RandomSdxlCheckpoint.FullSizeConfigs().UnetConfig;
        var a = UNetBenchmarks.ParityInputs(cfg, 16, 12, seed: 3);
        var b = UNetBenchmarks.ParityInputs(cfg, 16, 12, seed: 3);
        Assert.Equal(a.Sample, b.Sample);
        Assert.Equal(4 * 16 * 12, a.Sample.Length);
        Assert.Equal(77 * 2048, a.EncoderHiddenStates.Length);
        Assert.Equal(1280, a.TextEmbeds.Length); // 2816 - 6 * 256
        Assert.Equal(new float[] { 128, 96, 0, 0, 128, 96 }, a.TimeIds);
        Assert.DoesNotContain(0f, a.Sample);
        Assert.NotEqual(a.Sample, UNetBenchmarks.ParityInputs(cfg, 16, 12, seed: 4).Sample);
    }

    [Fact]
    public void Bench_unet_without_a_device_fails_in_one_line_before_writing_weights()
    {
        if (LayerFusion.Tests.Cuda.EmulatedCuda.RanWithoutTheStandIns("LayerFusion.Tests.UNetBench.UNetBenchHostTests", nameof(Bench_unet_without_a_device_fails_in_one_line_before_writing_weights))) return;
        using (var device = CudaDevice.TryOpen(out _))
            if (device is not null) Assert.Skip("a CUDA device is present here: the no-device path cannot be exercised (UNetBenchmarkRun covers the device path)");
        using var tmp = new TempDir();
        var weights = tmp.Sub("weights");
        var results = Path.Combine(tmp.Path, "results.json");
        var e = new StringWriter();
        int code = Program.Run(["bench", "--unet", "--weights", weights, "--out", results], new StringWriter(), e);
        Assert.Equal(2, code);
        var err = e.ToString().Trim();
        Assert.StartsWith("error: layerfusion bench needs a CUDA GPU:", err);
        Assert.Single(err.Split('\n'));
        Assert.False(Directory.Exists(weights));
        Assert.False(File.Exists(results));
    }

    [Fact]
    public void Random_checkpoint_matches_the_tiny_writer_loads_as_a_triplet_and_is_reused()
    {
        using var tmp = new TempDir();
        var configs = TinyCheckpoint.DefaultConfigs();
        var decoder = LayerDiffuseTiny.TinyDecoderConfig with { LatentInjectLevel = int.Log2(1 << (configs.VaeConfig.BlockOutChannels.Length - 1)) };
        var dir = tmp.Sub("random");
        var files = RandomSdxlCheckpoint.Write(dir, configs, 11, decoder);
        // same configs and seed: the same tensors TinyCheckpoint.Write draws (in parallel here)
        var reference = tmp.Sub("tiny");
        TinyCheckpoint.Write(reference, CheckpointLayout.DiffusersFolder, 11, DType.F16, configs);
        foreach (var c in new[] { "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder_2/model.safetensors" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(reference, c)), File.ReadAllBytes(Path.Combine(dir, c)));

        using var lf = LayerFusionPipeline.Load(new CpuBackend(), dir, new LayerDiffuseFiles(files.Attention, files.TransparentDecoder), cancellationToken: TestContext.Current.CancellationToken);
        var result = lf.Generate(new LayerFusionRequest { Foreground = "a red apple", Background = "a table", Steps = 1, Width = 64, Height = 64, Seed = 3 }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(64, result.Foreground.Width);
        // the LayerDiffuse offsets really change the FG attention weights (nonzero, about a tenth of the weight scale)
        var offsets = RandomSdxlCheckpoint.AttentionOffsets(configs.UnetConfig, 11);
        Assert.NotEmpty(offsets);
        Assert.All(offsets, t => Assert.Contains(t.ToFloat32(), v => v != 0));

        var stamp = File.GetLastWriteTimeUtc(Path.Combine(dir, "unet", "diffusion_pytorch_model.safetensors"));
        RandomSdxlCheckpoint.Write(dir, configs, 11, decoder);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(dir, "unet", "diffusion_pytorch_model.safetensors")));
    }

    /// <summary>
    /// perf/torch_unet_bench.py's parity plumbing end to end on the CPU: our CPU engine evaluates the
    /// tiny UNet on the harness's seeded inputs, the parity case is written as the device harness
    /// writes it, and the script (diffusers v0.25 with torch on the CPU, --tiny) must find our
    /// output within fp32 error of diffusers' on the same weights; its triplet and merge paths run too.
    /// </summary>
    [Fact]
    public async Task Torch_script_finds_our_cpu_output_equal_to_diffusers_on_a_tiny_config()
    {
        var (python, pythonPath) = Requires.Diffusers();
        using var tmp = new TempDir();
        var configs = TinyCheckpoint.DefaultConfigs();
        var decoder = LayerDiffuseTiny.TinyDecoderConfig with { LatentInjectLevel = int.Log2(1 << (configs.VaeConfig.BlockOutChannels.Length - 1)) };
        var dir = tmp.Sub("random");
        RandomSdxlCheckpoint.Write(dir, configs, 13, decoder);

        var ops = new CpuBackend();
        using var ckpt = Checkpoint.Open(dir);
        var unet = new UNet2DConditionModel(new ParameterStore(ops, ckpt.Unet.Weights, "unet"), ckpt.Unet.Config);
        int lh = 8, lw = 8;
        var inputs = UNetBenchmarks.ParityInputs(unet.Config, lh, lw, seed: 20261123);
        var ours = UNetBenchmarks.Evaluate(ops, unet, inputs, lh, lw);
        var parity = Path.Combine(tmp.Path, "parity.safetensors");
        UNetBenchmarks.WriteParityCase(parity, inputs, ours, unet.Config, lh, lw, backend: "cpu-f32");
        var results = Path.Combine(tmp.Path, "results.json");
        File.WriteAllText(results, UNetBenchmarks.MergeResultsJson(null, Sample() with { Height = 64, Width = 64 }, DateTime.UtcNow));
        var outJson = Path.Combine(tmp.Path, "torch_unet.json");

        var psi = new ProcessStartInfo(python, [Path.Combine(NvrtcCompileTests.RepoRoot(), "perf", "torch_unet_bench.py"), "--tiny",
            "--weights", dir, "--parity", parity, "--out", outJson, "--merge", results])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["PYTHONPATH"] = pythonPath;
        using var p = Process.Start(psi)!;
        var ct = TestContext.Current.CancellationToken;
        var stderr = p.StandardError.ReadToEndAsync(ct);
        var stdout = await p.StandardOutput.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        var log = stdout + await stderr;
        Assert.True(p.ExitCode == 0, log);
        var json = JsonNode.Parse(File.ReadAllText(outJson))!;
        double err = (double)json["measures"]!["parity_ours_vs_torch_fp32_max_rel_error"]!;
        TestContext.Current.SendDiagnosticMessage($"tiny UNet, our CPU engine vs diffusers fp32: max rel. error {err:E3}\n{log}");
        Assert.InRange(err, 0, 1e-4);
        Assert.True((double)json["measures"]!["triplet_three_unets_s"]! > 0);
        var merged = JsonNode.Parse(File.ReadAllText(results))!["measures"]!.AsArray().Select(m => (string?)m!["name"]).ToList();
        Assert.Contains("unet_parity_max_rel_error", merged);
        Assert.Contains("torch_guided_step_ms", merged);
        Assert.Contains("triplet_speedup_vs_three_unets", merged);
        Assert.Contains("guided_step_ms", merged);
    }
}
