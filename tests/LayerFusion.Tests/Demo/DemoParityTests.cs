using LayerFusion.Tests.Cli;
using LayerFusion.Tests.Schedulers;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Demo;

/// <summary>
/// The shipped demo model runs in the engine as in the torch code that trained it: `layerfusion run`
/// on tests/reference/demo's inputs against the outputs torch (diffusers v0.25 classes) gave on the
/// same fp16 files (written by tools/train-demo/check_parity.py --fixture). Measured relative error
/// max|diff| / max|ref| on the shipped files: ~1e-6 (UNet, text), ~5e-6 (VAE decode); bound 1e-4.
/// </summary>
public sealed class DemoParityTests
{
    const double Tolerance = 1e-4;

    [Theory]
    [InlineData("unet", "out_sample")]
    [InlineData("vae-decode", "out_sample")]
    [InlineData("transparent-decode", "out_sample")]
    [InlineData("text-encode", "prompt_embeds")]
    [InlineData("text-encode", "pooled_prompt_embeds")]
    public void EngineMatchesTorchOnTheShippedDemoWeights(string component, string output)
    {
        string inputs = SchedulerFixtures.FindRepoFile($"tests/reference/demo/{component}.inputs.safetensors");
        string expected = SchedulerFixtures.FindRepoFile($"tests/reference/demo/{component}.expected.safetensors");
        string dir = Path.Combine(Path.GetTempPath(), "lf-demo-parity-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string outPath = Path.Combine(dir, "out.safetensors");
            var args = new List<string> { "run", component, "--model", DemoRuns.ModelDir(), "--inputs", inputs, "--out", outPath, "--backend", "cpu" };
            if (component == "transparent-decode") args.Add("--single-pass");
            var r = SdxlCliTests.Run([.. args]);
            Assert.True(r.Code == 0, r.Err);
            using var got = SafeTensorsFile.Open(outPath);
            using var want = SafeTensorsFile.Open(expected);
            var g = got.Tensors.Single(t => t.Name == output);
            var w = want.Tensors.Single(t => t.Name == output);
            Assert.Equal(w.Shape, g.Shape);
            float[] gv = g.ToFloat32(), wv = w.ToFloat32();
            double maxRef = wv.Max(v => Math.Abs((double)v)), maxDiff = 0;
            for (int i = 0; i < wv.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs((double)gv[i] - wv[i]));
            Assert.True(maxRef > 0, "reference is all zeros");
            Assert.True(maxDiff / maxRef <= Tolerance, $"{component}/{output}: max|diff|/max|ref| = {maxDiff / maxRef:E2}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
