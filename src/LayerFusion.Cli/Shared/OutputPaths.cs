using System.Globalization;
using System.Text.RegularExpressions;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// Where results go, checked before any work: --out names something writable, nothing earlier is
/// overwritten by surprise, and a set of files appears as a whole or not at all.
/// </summary>
internal static partial class OutputPaths
{
    /// <summary>A file output (sdxl, compose, run): a file name in an existing, writable folder.</summary>
    public static string CheckFile(string? path, string extension, string option = "--out")
    {
        if (string.IsNullOrWhiteSpace(path)) throw new UserInputException($"{option} must name a {extension} file, got an empty name");
        string full = FullPath(path, option);
        if (Directory.Exists(full)) throw new UserInputException($"{option} '{path}' is a folder; give a {extension} file name");
        var dir = Path.GetDirectoryName(full) ?? throw new UserInputException($"{option} '{path}' has no folder");
        if (File.Exists(dir)) throw new UserInputException($"{option} '{path}': '{dir}' is a file, not a folder");
        if (!Directory.Exists(dir)) throw new UserInputException($"{option} '{path}': folder '{dir}' does not exist");
        ProbeWritable(dir, path, option);
        return full;
    }

    /// <summary>A folder output (generate): created if absent, must be writable.</summary>
    public static string CheckFolder(string? path, string option = "--out")
    {
        if (string.IsNullOrWhiteSpace(path)) throw new UserInputException($"{option} must name a folder, got an empty name");
        string full = FullPath(path, option);
        if (File.Exists(full)) throw new UserInputException($"{option} '{path}' is a file, not a folder");
        try { Directory.CreateDirectory(full); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"{option} '{path}': cannot create the folder: {TempNames.Scrub(e.Message, full, path)}");
        }
        ProbeWritable(full, path, option);
        return full;
    }

    static string FullPath(string path, string option)
    {
        if (path.Contains('\0')) throw new UserInputException($"{option} contains a NUL character");
        try { return Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UserInputException($"{option} '{path}' is not a usable path: {e.Message}");
        }
    }

    /// <summary>Creates and removes a temporary file of our own naming in <paramref name="dir"/>.</summary>
    public static void ProbeWritable(string dir, string userPath, string option = "--out")
    {
        string probe = Path.Combine(dir, TempNames.New(".probe"));
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"{option} '{userPath}': cannot write in '{dir}': {TempNames.Scrub(e.Message, probe, dir)}");
        }
        finally
        {
            try { File.Delete(probe); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>The k-th (1-based) of <paramref name="count"/> file names: the first keeps the name, then
    /// NAME_2.png, NAME_3.png ... (stable-diffusion.cpp's scheme).</summary>
    public static string Numbered(string path, int k, int count)
    {
        if (count == 1 || k == 1) return path;
        var dir = Path.GetDirectoryName(path) ?? "";
        return Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(path)}_{k.ToString(CultureInfo.InvariantCulture)}{Path.GetExtension(path)}");
    }

    /// <summary>Refuses to replace an existing file unless asked to.</summary>
    public static void CheckNotThere(IEnumerable<string> paths, bool overwrite, string option = "--out")
    {
        if (overwrite) return;
        foreach (var p in paths)
            if (File.Exists(p) || Directory.Exists(p))
                throw new UserInputException($"{option}: '{p}' already exists; pass --overwrite to replace it, or choose another name");
    }

    [GeneratedRegex(@"^(\d{5})-")]
    private static partial Regex RunFolder();

    /// <summary>
    /// Moves the finished folder <paramref name="temp"/> (inside <paramref name="outDir"/>) to the next
    /// free "NNNNN-SEED" name there, as A1111 numbers its outputs. A rename of a folder onto an
    /// existing, non-empty one fails, so two runs into one folder can never mix their files.
    /// </summary>
    public static string PublishRun(string temp, string outDir, string userOut, ulong seed)
    {
        int next = NextNumber(outDir);
        for (int attempt = 0; attempt < 1000; attempt++, next++)
        {
            string target = Path.Combine(outDir, $"{next.ToString("D5", CultureInfo.InvariantCulture)}-{seed.ToString(CultureInfo.InvariantCulture)}");
            if (Directory.Exists(target) || File.Exists(target)) continue;
            try
            {
                Directory.Move(temp, target);
                return target;
            }
            catch (IOException) when (Directory.Exists(target) || File.Exists(target))
            {
                // another run took this number meanwhile: the next one
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UserInputException($"--out '{userOut}': cannot move the results into place: {TempNames.Scrub(e.Message, temp, target)}");
            }
        }
        throw new UserInputException($"--out '{userOut}': no free run number");
    }

    static int NextNumber(string outDir)
    {
        int max = -1;
        foreach (var entry in Directory.EnumerateFileSystemEntries(outDir))
        {
            var m = RunFolder().Match(Path.GetFileName(entry));
            if (m.Success && int.TryParse(m.Groups[1].Value, CultureInfo.InvariantCulture, out var n)) max = Math.Max(max, n);
        }
        return max + 1;
    }
}
