using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// The checkpoint used when a command gets no --model: a tiny SDXL-shaped checkpoint with seeded
/// random weights (and its LayerDiffuse files), written on first use under
/// $LAYERFUSION_HOME/tiny-sdxl (default ~/.cache/layerfusion, or $XDG_CACHE_HOME/layerfusion).
/// It shows the whole path working in seconds; its images are noise-like by construction.
/// </summary>
internal static class BuiltInModel
{
    public const string HomeVariable = "LAYERFUSION_HOME";
    public const string FolderName = "tiny-sdxl";
    /// <summary>Weights seed of the built-in checkpoint (make-tiny's default).</summary>
    public const int Seed = 0;

    public static string Home()
    {
        var home = Environment.GetEnvironmentVariable(HomeVariable);
        if (!string.IsNullOrWhiteSpace(home))
        {
            string full;
            try { full = Path.GetFullPath(home); }
            catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
            {
                throw new UserInputException($"{HomeVariable}='{home}' is not a usable folder path ({e.Message}); fix it or pass --model");
            }
            if (File.Exists(full)) throw new UserInputException($"{HomeVariable}='{home}' is a file, not a folder; point it at a folder or pass --model");
            return full;
        }
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg)) return Path.Combine(xdg, "layerfusion");
        var user = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (string.IsNullOrEmpty(user))
            throw new UserInputException($"no --model given and no home folder for the built-in tiny checkpoint; set {HomeVariable} or pass --model DIR");
        return Path.Combine(user, ".cache", "layerfusion");
    }

    /// <summary>A path under the home folder, saying where that folder came from.</summary>
    static string Where(string path) =>
        string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(HomeVariable)) ? $"'{path}' (set {HomeVariable} to use another folder)" : $"'{path}' ({HomeVariable})";

    /// <summary>The tiny transparent decoder with its latent injected at the tiny VAE's scale (so `generate` can decode it).</summary>
    public static WeightsLoader.Configs.TransparentDecoderConfig TinyDecoderFor(TinyConfigs configs) =>
        LayerDiffuseTiny.TinyDecoderConfig with { LatentInjectLevel = int.Log2(1 << (configs.VaeConfig.BlockOutChannels.Length - 1)) };

    /// <summary>
    /// <paramref name="model"/> itself when given; otherwise the built-in checkpoint's folder, written
    /// first if absent (into a temporary sibling folder, then renamed, so a half-written folder is never
    /// seen). Says on <paramref name="stderr"/>, in one line, that the built-in checkpoint is used.
    /// </summary>
    public static string Resolve(string? model, TextWriter stderr)
    {
        if (!string.IsNullOrEmpty(model)) return model;
        var home = Home();
        var dir = Path.Combine(home, FolderName);
        if (File.Exists(Path.Combine(dir, "model_index.json")))
        {
            stderr.WriteLine($"note: no --model given: using the built-in tiny checkpoint (random weights) at {dir}");
            return dir;
        }
        var interrupts = Shared.Interrupts.Current;
        try
        {
            Directory.CreateDirectory(home);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"no --model given, and the built-in tiny checkpoint cannot be written to {Where(home)}: {CliErrors.OneLine(e)}");
        }
        TempNames.SweepStale(home);
        interrupts.Watch(home);
        var temp = Path.Combine(home, TempNames.New());
        try
        {
            var configs = TinyCheckpoint.DefaultConfigs();
            TinyCheckpoint.Write(temp, CheckpointLayout.DiffusersFolder, Seed, DType.F16, configs);
            interrupts.Token.ThrowIfCancellationRequested();
            LayerDiffuseTiny.WriteAll(temp, configs.UnetConfig, Seed, DType.F16, decoder: TinyDecoderFor(configs));
            interrupts.Token.ThrowIfCancellationRequested();
            try
            {
                Directory.Move(temp, dir);
            }
            catch (IOException) when (File.Exists(Path.Combine(dir, "model_index.json")))
            {
                // another process finished first; its folder is as good as ours
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"no --model given, and the built-in tiny checkpoint cannot be written to {Where(dir)}: {TempNames.Scrub(e.Message, temp, dir)}");
        }
        finally
        {
            if (Directory.Exists(temp))
                try { Directory.Delete(temp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        stderr.WriteLine($"note: no --model given: wrote the built-in tiny checkpoint (random weights) to {dir} and using it");
        return dir;
    }
}
