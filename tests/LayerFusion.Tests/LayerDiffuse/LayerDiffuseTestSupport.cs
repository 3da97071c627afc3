using System.Runtime.CompilerServices;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.LayerDiffuse;

sealed class TempDir : IDisposable
{
    public TempDir() => Path = Directory.CreateTempSubdirectory("lf-ld-").FullName;
    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

static class LayerDiffuseTestSupport
{
    /// <summary>A small SDXL-shaped UNet config: plain first level, two cross-attention levels, varied depths.</summary>
    public static UNetConfig TinyUNet(int layersPerBlock = 2) => new()
    {
        BlockOutChannels = [16, 32, 48],
        LayersPerBlock = layersPerBlock,
        NormNumGroups = 8,
        CrossAttentionDim = 24,
        TransformerLayersPerBlock = [1, 1, 2],
        NumAttentionHeads = [2, 4, 6],
        AdditionTimeEmbedDim = 8,
        ProjectionClassEmbeddingsInputDim = 24 + 6 * 8,
    };

    public static string FixtureDir([CallerFilePath] string here = "")
    {
        string? fromSource = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(here) ?? "", "Fixtures");
        if (Directory.Exists(fromSource)) return fromSource;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = System.IO.Path.Combine(d.FullName, "tests", "LayerFusion.Tests", "LayerDiffuse", "Fixtures");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("LayerDiffuse fixtures not found");
    }
}
