using System.Runtime.CompilerServices;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Checkpoints;

/// <summary>A temporary folder, removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lf-ckpt-" + Guid.NewGuid().ToString("N")));
    public string Path { get; }
    public string Sub(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

internal static class Fixtures
{
    public static string Dir([CallerFilePath] string source = "") => Path.Combine(Path.GetDirectoryName(source)!, "Fixtures");
    public static string Read(string name) => File.ReadAllText(Path.Combine(Dir(), name));

    public static string WriteTiny(TempDir tmp, string name, CheckpointLayout layout, int seed, DType dtype = DType.F16)
    {
        string dir = tmp.Sub(name);
        TinyCheckpoint.Write(dir, layout, seed, dtype);
        return dir;
    }
}
