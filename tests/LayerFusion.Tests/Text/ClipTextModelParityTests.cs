using System.Runtime.InteropServices;
using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Text;

/// <summary>
/// Two tiny CLIP text encoders (quick_gelu without projection, legacy argmax pooling; gelu with
/// projection, first-EOS pooling) against openai/CLIP's text transformer run in float64 on the same
/// weights (tests/reference/text/make_text_encoder_fixtures.py).
/// </summary>
public sealed class ClipTextModelParityTests
{
    const double Tolerance = 1e-4;

    // (LayerFusion.Tests.CpuOps, the op tests' namespace, shadows the type's short name here.)
    internal static IOps NewOps() => new global::LayerFusion.Cpu.CpuOps();

    public static TheoryData<string> Configs => new() { "vitl_like", "bigg_like" };

    /// <summary>max |actual - expected| over max |expected|: relative to the tensor's scale, so
    /// near-zero entries do not dominate.</summary>
    static double RelativeError(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.False(float.IsNaN(actual[i]) || float.IsInfinity(actual[i]), $"non-finite value at {i}");
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        Assert.True(maxRef > 0.1, "reference tensor is degenerate");
        return maxDiff / maxRef;
    }

    static void AssertClose(string what, Tensor actual, WeightTensor expected)
    {
        Assert.Equal(expected.ShapeInt32, actual.Shape);
        var err = RelativeError(actual.Ops.ToHost(actual), expected.ToFloat32());
        TestContext.Current.SendDiagnosticMessage($"{what}: relative error {err:E2}");
        Assert.True(err < Tolerance, $"{what}: relative error {err:E3} >= {Tolerance:E0}");
    }

    sealed class Loaded(ClipTextConfig config, ClipTextModel model, SafeTensorsFile weights, SafeTensorsFile reference, int[] ids, int batch)
        : IDisposable
    {
        public ClipTextConfig Config => config;
        public ClipTextModel Model => model;
        public SafeTensorsFile Reference => reference;
        public int[] Ids => ids;
        public int Batch => batch;

        public void Dispose()
        {
            weights.Dispose();
            reference.Dispose();
        }
    }

    static Loaded Load(string name, IOps ops)
    {
        var dir = TextTestFiles.Fixture(name);
        var config = ClipTextConfig.Read(ConfigReader.FromFile(Path.Combine(dir, "config.json")));
        var weights = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        var reference = SafeTensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        var idsTensor = reference["input_ids"];
        Assert.Equal(DType.I32, idsTensor.DType);
        var ids = MemoryMarshal.Cast<byte, int>(idsTensor.Bytes).ToArray();
        var model = new ClipTextModel(config, new ParameterStore(ops, weights.ByName, "text_encoder"));
        return new Loaded(config, model, weights, reference, ids, (int)idsTensor.Shape[0]);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void MatchesOpenAiClipReference(string name)
    {
        using var f = Load(name, NewOps());
        using var output = f.Model.Forward(f.Ids, f.Batch);
        AssertClose("hidden_states[-2]", output.HiddenStates, f.Reference["hidden_penultimate"]);
        AssertClose("pooled", output.Pooled!, f.Reference["pooled"]);
        if (f.Config.WithProjection)
            AssertClose("text_embeds", output.TextEmbeds!, f.Reference["text_embeds"]);
        else
            Assert.Null(output.TextEmbeds);
        Assert.Equal(f.Reference.Contains("text_embeds"), f.Config.WithProjection);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void WithoutPooled_GivesTheSameHiddenStates(string name)
    {
        using var f = Load(name, NewOps());
        using var output = f.Model.Forward(f.Ids, f.Batch, withPooled: false);
        Assert.Null(output.Pooled);
        Assert.Null(output.TextEmbeds);
        AssertClose("hidden_states[-2]", output.HiddenStates, f.Reference["hidden_penultimate"]);
    }

    [Fact]
    public void Configs_ExerciseBothPoolingRules()
    {
        using var legacy = Load("vitl_like", NewOps());
        using var modern = Load("bigg_like", NewOps());
        Assert.Equal(2, legacy.Config.EosTokenId);
        Assert.Equal("quick_gelu", legacy.Config.HiddenAct);
        Assert.Equal("gelu", modern.Config.HiddenAct);
        Assert.NotEqual(2, modern.Config.EosTokenId);
        int t = modern.Ids.Length / modern.Batch;
        var first = modern.Model.EosPositions(modern.Ids, modern.Batch, t);
        // the argmax rule would pick another row here, so the fixture tells the two rules apart
        for (int b = 0; b < modern.Batch; b++)
        {
            var row = modern.Ids.AsSpan(b * t, t);
            int argmax = 0;
            for (int i = 1; i < t; i++) if (row[i] > row[argmax]) argmax = i;
            Assert.NotEqual(argmax, first[b]);
            Assert.Equal(modern.Config.EosTokenId, row[first[b]]);
        }
    }

    [Fact]
    public void ShapeMismatch_NamesTheKey()
    {
        var dir = TextTestFiles.Fixture("vitl_like");
        var config = ClipTextConfig.Read(ConfigReader.FromFile(Path.Combine(dir, "config.json"))) with { IntermediateSize = 96 };
        using var weights = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        var e = Assert.Throws<UserInputException>(() => new ClipTextModel(config, new ParameterStore(NewOps(), weights.ByName, "text_encoder")));
        Assert.Contains("text_model.encoder.layers.0.mlp.fc1.weight", e.Message);
        Assert.Contains("[128, 32]", e.Message);
        Assert.Contains("[96, 32]", e.Message);
    }

    [Fact]
    public void ClipSkipOutOfRange_IsAUserError()
    {
        using var f = Load("vitl_like", NewOps());
        Assert.Throws<UserInputException>(() => f.Model.Forward(f.Ids, f.Batch, clipSkip: f.Config.NumHiddenLayers));
        var bad = (int[])f.Ids.Clone();
        bad[3] = f.Config.VocabSize;
        Assert.Throws<UserInputException>(() => f.Model.Forward(bad, f.Batch));
    }
}
