namespace LayerFusion.Core.Imaging;

/// <summary>
/// Writes a file so that readers see either the old file or the complete new one, never a part:
/// the content goes to a temporary file in the same directory (same file system, so the final
/// rename is atomic), is flushed to disk, and is then renamed over the target.
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> writeContent)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(writeContent);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' has no directory");
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"directory '{dir}' for output '{path}' does not exist");
        // short and fixed-length: a legal output name never becomes an illegal temporary name; the
        // process id lets the CLI's next run sweep what a killed writer left (LayerFusion.Cli TempNames)
        string temp = Path.Combine(dir, $".lftmp-{Environment.ProcessId}-{Random.Shared.Next():x8}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                writeContent(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e)
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            // the OS names the temporary file; the caller knows only its own path
            if (e is IOException && e.Message.Contains(temp, StringComparison.Ordinal))
                throw new IOException(e.Message.Replace(temp, full, StringComparison.Ordinal), e);
            if (e is UnauthorizedAccessException && e.Message.Contains(temp, StringComparison.Ordinal))
                throw new UnauthorizedAccessException(e.Message.Replace(temp, full, StringComparison.Ordinal), e);
            throw;
        }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }
}
