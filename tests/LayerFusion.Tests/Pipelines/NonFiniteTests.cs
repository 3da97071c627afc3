using LayerFusion.Core.Fusion;
using LayerFusion.Core.Pipelines;
using LayerFusion.Tests.Fusion;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.SafeTensors;
using LayerFusion.WeightsLoader.Tiny;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Pipelines;

/// <summary>NaN/Inf weights end in an error naming the component whose output went bad, not a black image and exit 0.</summary>
public class NonFiniteTests
{
    /// <summary>A tiny diffusers folder whose <paramref name="component"/> tensor <paramref name="tensor"/> holds <paramref name="value"/> everywhere.</summary>
    static string Poisoned(TempDir tmp, string component, string tensor, float value)
    {
        string dir = tmp.Sub("tiny");
        TinyCheckpoint.Write(dir, CheckpointLayout.DiffusersFolder, 4, DType.F32);
        string file = Path.Combine(dir, component, component.StartsWith("text_encoder", StringComparison.Ordinal) ? "model.safetensors" : "diffusion_pytorch_model.safetensors");
        List<WeightTensor> tensors;
        IReadOnlyDictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(file))
        {
            Assert.True(f.Contains(tensor), $"{component} has no '{tensor}'");
            meta = new Dictionary<string, string>(f.Metadata);
            tensors = f.Tensors.Select(t => t.Name == tensor
                ? ArrayWeightTensor.FromFloat32(t.Name, t.Shape, Enumerable.Repeat(value, (int)t.ElementCount).ToArray())
                : (WeightTensor)new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray())).ToList();
        }
        SafeTensorsWriter.Write(file, tensors, meta);
        return dir;
    }

    [Theory]
    [InlineData("unet", "conv_in.weight", float.NaN, "unet")]
    [InlineData("unet", "conv_out.bias", float.PositiveInfinity, "unet")]
    [InlineData("vae", "decoder.conv_out.bias", float.NaN, "vae")]
    [InlineData("text_encoder", "text_model.embeddings.position_embedding.weight", float.NaN, "text encoders")]
    [InlineData("text_encoder_2", "text_model.final_layer_norm.bias", float.NaN, "text encoder 2")] // only the pooled output reads it
    public void NonFiniteWeightsAreNamedByTheComponentTheyBreak(string component, string tensor, float value, string blamed)
    {
        using var tmp = new TempDir();
        using var pipe = SdxlPipeline.Open(Poisoned(tmp, component, tensor, value), new CpuBackend());
        var e = Assert.Throws<NonFiniteOutputException>(() => pipe.Generate(new SdxlRequest { Prompt = "a fox", Steps = 2, Width = 48, Height = 40 },
            null, TestContext.Current.CancellationToken));
        Assert.Equal(blamed, e.Component);
        Assert.StartsWith($"the {blamed} produced non-finite values", e.Message);
        Assert.IsAssignableFrom<UserInputException>(e); // the CLI's one-line error, exit 2
    }

    [Fact]
    public void ANonFiniteTransparentDecoderIsNamed()
    {
        using var model = new TinyLayerFusionModel();
        string file = model.Files.TransparentDecoder;
        List<WeightTensor> tensors;
        IReadOnlyDictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(file))
        {
            meta = new Dictionary<string, string>(f.Metadata);
            tensors = f.Tensors.Select(t => t.Name == "conv_out.bias"
                ? ArrayWeightTensor.FromFloat32(t.Name, t.Shape, Enumerable.Repeat(float.NaN, (int)t.ElementCount).ToArray(), t.DType)
                : (WeightTensor)new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray())).ToList();
        }
        SafeTensorsWriter.Write(file, tensors, meta);
        using var pipe = LayerFusionPipeline.Load(new CpuBackend(), model.Dir, new LayerDiffuseFiles(model.Files.DenseAttention, file),
            cancellationToken: TestContext.Current.CancellationToken);
        var e = Assert.Throws<NonFiniteOutputException>(() => pipe.Generate(
            new LayerFusionRequest { Foreground = "a cup", Background = "a desk", Steps = 1, Width = 32, Height = 24 }, null, TestContext.Current.CancellationToken));
        Assert.Equal("transparent decoder", e.Component);
    }

    [Fact]
    public void FiniteValuesPassAndTheFirstBadOneIsReported()
    {
        FiniteCheck.Require([1f, -2f, float.MaxValue, float.MinValue], "unet", "here");
        var e = Assert.Throws<NonFiniteOutputException>(() => FiniteCheck.Require([1f, float.NegativeInfinity, float.NaN], "vae", "in x"));
        Assert.Contains("2 of 3 are NaN or infinity, first -∞ at index 1", e.Message.Replace("-Infinity", "-∞"));
    }
}
