using System.Runtime.CompilerServices;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader.SafeTensors;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Pipelines;

/// <summary>
/// SdxlPipeline.Generate against diffusers v0.25 StableDiffusionXLPipeline.__call__ on the same tiny
/// checkpoint (make-tiny seed 5), given the same prompt embeddings and initial noise
/// (tests/reference/pipelines/make_sdxl_pipeline_fixture.py): final latents and decoded images.
/// </summary>
public sealed class DiffusersPipelineParityTests(TinySdxl tiny) : IClassFixture<TinySdxl>
{
    static string FixturePath([CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", "reference", "pipelines", "sdxl_pipeline_v0.25.safetensors"));

    static string StochasticFixturePath([CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", "reference", "pipelines", "sdxl_pipeline_stochastic_v0.25.safetensors"));

    static double RelErr(float[] got, float[] expected)
    {
        Assert.Equal(expected.Length, got.Length);
        double maxRef = 0, maxDiff = 0;
        for (int i = 0; i < got.Length; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs((double)got[i] - expected[i]));
        }
        Assert.True(maxRef > 0);
        return maxDiff / maxRef;
    }

    [Theory]
    [InlineData("euler", true)]
    [InlineData("euler", false)]
    [InlineData("dpmpp-2m-karras", true)]
    [InlineData("ddim", true)]
    public void GenerateMatchesDiffusers(string sampler, bool withNegative)
    {
        using var fx = SafeTensorsFile.Open(FixturePath());
        Assert.Equal("5", fx.Metadata["tiny_seed"]);
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend()); // TinySdxl.Default is make-tiny --seed 5
        var ops = pipeline.Ops;
        var t = (string name) => fx[name];
        var up = (string name) => ops.FromHost(fx[name].ToFloat32(), fx[name].ShapeInt32);
        var positive = new SdxlPromptEmbeddings(up("prompt_embeds"), up("pooled_prompt_embeds"));
        var negative = withNegative
            ? new SdxlPromptEmbeddings(up("negative_prompt_embeds"), up("negative_pooled_prompt_embeds"))
            : new SdxlPromptEmbeddings(ops.Zeros(positive.PromptEmbeds.Shape), ops.Zeros(positive.PooledPromptEmbeds.Shape));
        using var encoding = new SdxlTextEncoding(positive, negative, []);
        var request = new SdxlRequest
        {
            Prompt = "(embeddings given)",
            Width = int.Parse(fx.Metadata["width"]),
            Height = int.Parse(fx.Metadata["height"]),
            Steps = int.Parse(fx.Metadata["steps"]),
            GuidanceScale = float.Parse(fx.Metadata["cfg"], System.Globalization.CultureInfo.InvariantCulture),
            Sampler = sampler,
            InitialNoise = t("noise").ToFloat32(),
        };
        var result = pipeline.Generate(request, encoding, null, TestContext.Current.CancellationToken);

        string name = $"{sampler}.{(withNegative ? "negative" : "zeros")}";
        Assert.Equal(fx[$"{name}.latents"].ShapeInt32, result.LatentShape);
        double latentErr = RelErr(result.Latents, fx[$"{name}.latents"].ToFloat32());
        Assert.True(latentErr < 1e-4, $"latents: relative error {latentErr:E2}");

        // the decoded image in [0, 1], and the 8-bit postprocess within one level of it
        using var decoded = pipeline.DecodeLatents(result.Latents, 1, result.LatentShape[2], result.LatentShape[3]);
        var unit = ops.ToHost(decoded).Select(v => Math.Clamp(v / 2f + 0.5f, 0f, 1f)).ToArray();
        var refImage = fx[$"{name}.image"].ToFloat32();
        double imageErr = RelErr(unit, refImage);
        Assert.True(imageErr < 1e-4, $"image: relative error {imageErr:E2}");
        var expected8 = ImageConvert.FromUnitNchw(refImage, 0, 3, request.Height!.Value, request.Width!.Value);
        var got8 = result.Images[0];
        Assert.Equal(expected8.Pixels.Length, got8.Pixels.Length);
        int maxLevel = expected8.Pixels.Zip(got8.Pixels, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(maxLevel <= 1, $"8-bit image differs by {maxLevel} levels");
    }

    /// <summary>
    /// Euler ancestral and DPM++ 2M SDE Karras through the whole pipeline, diffusers' randn_tensor fed
    /// GaussianNoise(seed 0) (tests/reference/pipelines/make_sdxl_stochastic_pipeline_fixture.py): with the
    /// initial noise given, the step noise is the seed's stream from its start, as diffusers' generator.
    /// </summary>
    [Theory]
    [InlineData("euler-a")]
    [InlineData("dpmpp-2m-sde-karras")]
    public void StochasticSamplersMatchDiffusersFedOurNoise(string sampler)
    {
        using var fx = SafeTensorsFile.Open(StochasticFixturePath());
        Assert.Equal("5", fx.Metadata["tiny_seed"]);
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var ops = pipeline.Ops;
        var up = (string name) => ops.FromHost(fx[name].ToFloat32(), fx[name].ShapeInt32);
        using var encoding = new SdxlTextEncoding(
            new SdxlPromptEmbeddings(up("prompt_embeds"), up("pooled_prompt_embeds")),
            new SdxlPromptEmbeddings(up("negative_prompt_embeds"), up("negative_pooled_prompt_embeds")), []);
        var request = new SdxlRequest
        {
            Prompt = "(embeddings given)",
            Width = int.Parse(fx.Metadata["width"]),
            Height = int.Parse(fx.Metadata["height"]),
            Steps = int.Parse(fx.Metadata["steps"]),
            GuidanceScale = float.Parse(fx.Metadata["cfg"], System.Globalization.CultureInfo.InvariantCulture),
            Seed = ulong.Parse(fx.Metadata["noise_seed"]),
            Sampler = sampler,
            InitialNoise = fx["noise"].ToFloat32(),
        };
        var result = pipeline.Generate(request, encoding, null, TestContext.Current.CancellationToken);
        Assert.Equal(sampler, result.Sampler);
        double latentErr = RelErr(result.Latents, fx[$"{sampler}.latents"].ToFloat32());
        Assert.True(latentErr < 1e-4, $"latents: relative error {latentErr:E2}");
        using var decoded = pipeline.DecodeLatents(result.Latents, 1, result.LatentShape[2], result.LatentShape[3]);
        var unit = ops.ToHost(decoded).Select(v => Math.Clamp(v / 2f + 0.5f, 0f, 1f)).ToArray();
        double imageErr = RelErr(unit, fx[$"{sampler}.image"].ToFloat32());
        Assert.True(imageErr < 1e-4, $"image: relative error {imageErr:E2}");

        // the noise really entered: another seed's step noise moves the result well beyond that bound
        var other = pipeline.Generate(request with { Seed = 1 }, encoding, null, TestContext.Current.CancellationToken);
        Assert.True(RelErr(other.Latents, fx[$"{sampler}.latents"].ToFloat32()) > 1e-2, "the seed did not change the step noise");
    }
}
