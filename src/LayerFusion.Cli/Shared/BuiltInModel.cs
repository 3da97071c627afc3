using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// The checkpoint used when a command gets no --model: the demo model trained by tools/train-demo
/// (SDXL + LayerDiffuse architecture and file layouts at toy size, coloured shapes over textured
/// backgrounds, 64x64), shipped in models/demo and copied beside the executable at build and into
/// the dotnet-tool package. It is loaded by the same code as a real checkpoint. `make-tiny` still
/// writes the random tiny checkpoints the unit tests use.
/// </summary>
internal static class BuiltInModel
{
    /// <summary>Where the build puts models/demo, relative to the executable's folder.</summary>
    public static string Folder() => Path.Combine(AppContext.BaseDirectory, "models", "demo");

    /// <summary>
    /// <paramref name="model"/> itself when given; otherwise the shipped demo model's folder, saying so
    /// on <paramref name="stderr"/> in one line.
    /// </summary>
    public static string Resolve(string? model, TextWriter stderr)
    {
        if (!string.IsNullOrEmpty(model)) return model;
        var dir = Folder();
        if (!File.Exists(Path.Combine(dir, "model_index.json")))
            throw new UserInputException($"no --model given, and the built-in demo model is missing from '{dir}' (this build or install is incomplete: rebuild or reinstall layerfusion, or pass --model DIR)");
        stderr.WriteLine($"note: no --model given: using the built-in demo model (coloured shapes over backgrounds, 64x64; tools/train-demo) at {dir}");
        return dir;
    }
}
