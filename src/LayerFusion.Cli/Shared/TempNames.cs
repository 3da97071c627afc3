using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// The names of our temporary files and folders, and the sweep that removes those a killed run left.
/// Names are short and fixed-length (".lftmp-PID-XXXXXXXX" plus a short suffix), so a temporary
/// beside a legal output name never exceeds the file-name limit, and they carry the writer's process
/// id, so a later run can tell litter (its writer is gone) from a write in progress.
/// </summary>
internal static partial class TempNames
{
    public const string Prefix = ".lftmp-";

    public static string New(string suffix = "") =>
        $"{Prefix}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{Random.Shared.Next():x8}{suffix}";

    // ours; and the names earlier versions used (AtomicFolder's ".NAME.partial-GUID", the built-in
    // model's ".tiny-sdxl.PID.GUID.tmp", AtomicFile's ".NAME.PID.GUID.tmp")
    [GeneratedRegex(@"^\.lftmp-(\d+)-[0-9a-f]{8}")]
    private static partial Regex Ours();

    [GeneratedRegex(@"^\..+\.(\d+)\.[0-9a-f]{32}\.tmp$")]
    private static partial Regex LegacyWithPid();

    [GeneratedRegex(@"^\..+\.(partial|replaced)-[0-9a-f]{32}$")]
    private static partial Regex LegacyWithoutPid();

    /// <summary>Legacy litter without a process id is only removed when it is this old.</summary>
    static readonly TimeSpan LegacyAge = TimeSpan.FromHours(1);

    /// <summary>Removes temporaries of our naming in <paramref name="dir"/> whose writer is no longer running.</summary>
    /// <returns>How many entries were removed.</returns>
    public static int SweepStale(string? dir)
    {
        if (string.IsNullOrEmpty(dir) || !Directory.Exists(dir)) return 0;
        int removed = 0;
        IEnumerable<string> entries;
        try { entries = Directory.EnumerateFileSystemEntries(dir, ".*").ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        foreach (var entry in entries)
        {
            var name = Path.GetFileName(entry);
            bool stale;
            var m = Ours().Match(name);
            if (!m.Success) m = LegacyWithPid().Match(name);
            if (m.Success) stale = !IsRunning(m.Groups[1].Value);
            else if (LegacyWithoutPid().IsMatch(name)) stale = DateTime.UtcNow - Directory.GetLastWriteTimeUtc(entry) > LegacyAge;
            else continue;
            if (stale && Delete(entry)) removed++;
        }
        return removed;
    }

    /// <summary>Removes this process's own temporaries in <paramref name="dir"/> (on an interrupt).</summary>
    public static void DeleteOwn(string dir)
    {
        if (!Directory.Exists(dir)) return;
        var own = $"{Prefix}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-";
        try
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(dir, own + "*")) Delete(entry);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    static bool IsRunning(string pidText)
    {
        if (!int.TryParse(pidText, CultureInfo.InvariantCulture, out var pid)) return false;
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    static bool Delete(string entry)
    {
        try
        {
            if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
            else File.Delete(entry);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>An OS message that names a temporary path, with the user's path put in its place.</summary>
    public static string Scrub(string message, string temp, string user) =>
        CliErrors.OneLine(message.Replace(temp, user, StringComparison.Ordinal));
}
