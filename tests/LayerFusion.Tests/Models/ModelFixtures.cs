using System.Runtime.CompilerServices;
using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Models;

/// <summary>
/// The diffusers v0.25 parity fixtures of tests/reference/models/make_fixtures.py: per model a
/// directory with config.json, diffusion_pytorch_model.safetensors (seeded random weights) and
/// io.safetensors (inputs and the reference output, fp32).
/// Error metric: rel = max_i |y_i - ref_i| / max_i |ref_i| over the whole output.
/// </summary>
internal sealed class ModelFixture : IDisposable
{
    readonly SafeTensorsFile _weights, _io;

    public ModelFixture(string name)
    {
        Dir = Path.Combine(Root(), name);
        _weights = SafeTensorsFile.Open(Path.Combine(Dir, "diffusion_pytorch_model.safetensors"));
        _io = SafeTensorsFile.Open(Path.Combine(Dir, "io.safetensors"));
    }

    public string Dir { get; }
    public IReadOnlyDictionary<string, WeightTensor> Weights => _weights.ByName;
    public ConfigReader Config => ConfigReader.FromFile(Path.Combine(Dir, "config.json"));

    public ParameterStore Store(IOps ops, string component) => new(ops, Weights, component);

    public float[] Values(string name) => _io[name].ToFloat32();
    public int[] Shape(string name) => _io[name].ShapeInt32;
    public Tensor Input(IOps ops, string name) => ops.FromHost(Values(name), Shape(name));

    public void Dispose()
    {
        _weights.Dispose();
        _io.Dispose();
    }

    static string Root([CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", "reference", "models", "fixtures"));

    public const double Tol = 1e-4;

    public static double RelErr(float[] y, float[] reference)
    {
        Assert.Equal(reference.Length, y.Length);
        double maxRef = 0, maxDiff = 0;
        for (int i = 0; i < y.Length; i++)
        {
            Assert.False(float.IsNaN(y[i]), $"NaN at {i}");
            maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs(y[i] - (double)reference[i]));
        }
        Assert.True(maxRef > 0, "reference is all zeros: the test would be vacuous");
        return maxDiff / maxRef;
    }

    public static void AssertClose(float[] y, float[] reference, double tol = Tol, string what = "output")
    {
        double rel = RelErr(y, reference);
        TestContext.Current.TestOutputHelper?.WriteLine($"{what}: relative error {rel:E3}");
        Assert.True(rel < tol, $"{what}: relative error {rel:E3} >= {tol:E1}");
    }
}
