namespace LayerFusion.WeightsLoader.Tiny;

/// <summary>
/// Fills a folder so that an interrupted or failed write never leaves a half-written one at its
/// path: everything is written into a hidden sibling folder first, which is then renamed into place.
/// </summary>
public static class AtomicFolder
{
    /// <summary>
    /// Runs <paramref name="fill"/> on a fresh temporary folder beside <paramref name="dir"/>, then
    /// moves the result into place. When <paramref name="dir"/> does not exist that is one rename
    /// of the whole folder. When it already exists, each top-level entry written
    /// is renamed over its namesake (entries <paramref name="fill"/> did not write are left alone),
    /// so every entry is whole, old or new. If <paramref name="fill"/> throws, the temporary folder
    /// is removed and <paramref name="dir"/> is untouched. File-system failures are
    /// <see cref="UserInputException"/>s naming <paramref name="what"/> and the folder.
    /// </summary>
    public static void Write(string dir, Action<string> fill, string what = "write")
    {
        ArgumentNullException.ThrowIfNull(dir);
        ArgumentNullException.ThrowIfNull(fill);
        string full;
        try { full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UserInputException($"{what}: '{dir}' is not a usable folder path: {e.Message}", e);
        }
        if (File.Exists(full)) throw new UserInputException($"{what}: '{dir}' is a file, not a folder");
        string parent = Path.GetDirectoryName(full) ?? throw new UserInputException($"{what}: cannot write into the root folder '{full}'");
        string name = Path.GetFileName(full);

        string temp = Path.Combine(parent, TempName());
        try
        {
            Directory.CreateDirectory(parent);
            Directory.CreateDirectory(temp);
        }
        catch (Exception e) when ((e is IOException or UnauthorizedAccessException) && Directory.Exists(full))
        {
            // The folder exists but its parent is not writable: stage inside it instead.
            temp = Path.Combine(full, TempName());
            Io(what, full, () => Directory.CreateDirectory(temp));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserInputException($"{what}: cannot write '{full}': {e.Message}", e);
        }
        try
        {
            Io(what, full, () => fill(temp), temp);
            Io(what, full, () => Publish(temp, full, name), temp);
        }
        finally
        {
            TryDelete(temp);
        }
    }

    /// <summary>Short and fixed-length (a long folder name stays legal), with the writer's process id so the
    /// CLI's next run can sweep what a killed writer left (".lftmp-PID-XXXXXXXX", LayerFusion.Cli TempNames).</summary>
    public static string TempName() => $".lftmp-{Environment.ProcessId}-{Random.Shared.Next():x8}";

    static void Publish(string temp, string full, string name)
    {
        // An existing folder is never removed and recreated (it may be someone's working directory).
        if (!Directory.Exists(full))
        {
            try
            {
                Directory.Move(temp, full);
                return;
            }
            catch (IOException) when (Directory.Exists(full)) { /* created meanwhile: merged below */ }
        }

        string old = Path.Combine(Path.GetDirectoryName(temp)!, TempName());
        Directory.CreateDirectory(old);
        try
        {
            // Sorted so the order of replacements (and any error) does not depend on the file system.
            foreach (var entry in Directory.EnumerateFileSystemEntries(temp).Order(StringComparer.Ordinal))
            {
                string entryName = Path.GetFileName(entry);
                string target = Path.Combine(full, entryName);
                bool isDir = Directory.Exists(entry);
                if (isDir)
                {
                    if (File.Exists(target)) File.Move(target, Path.Combine(old, entryName));
                    else if (Directory.Exists(target)) Directory.Move(target, Path.Combine(old, entryName));
                    Directory.Move(entry, target);
                }
                else
                {
                    if (Directory.Exists(target)) Directory.Move(target, Path.Combine(old, entryName));
                    File.Move(entry, target, overwrite: true);
                }
            }
        }
        finally
        {
            TryDelete(old);
        }
    }

    static void Io(string what, string dir, Action action, string? temp = null)
    {
        try { action(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // the OS names our temporary folder; the user knows only their own
            var message = temp is null ? e.Message : e.Message.Replace(temp, dir, StringComparison.Ordinal);
            throw new UserInputException($"{what}: cannot write '{dir}': {message}", e);
        }
    }

    static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
