using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace LayerFusion.WeightsLoader;

/// <summary>
/// The one way every reader opens a file a user named (prompt files, configs, tokenizer files,
/// safetensors, PNGs): symbolic links are followed to the file itself, which must be a regular file
/// (a FIFO would block the open forever, a device such as /dev/zero never ends), its size is that
/// file's own size (not the link's), and reads stop at the limit even if the file grows meanwhile.
/// Every failure is a <see cref="UserInputException"/> whose message starts with <c>label</c>
/// (default: the path), e.g. <c>--prompt-file 'p.txt': 2097152 bytes, more than the 1048576 allowed</c>.
/// </summary>
public static partial class UntrustedFile
{
    /// <summary>What <see cref="Stat"/> found at a path, links followed.</summary>
    public readonly record struct Info(long Length, long ModifiedTicks, long ChangedTicks, ulong Device, ulong Inode);

    /// <summary>
    /// Checks <paramref name="path"/> (links followed) is a regular file of at most
    /// <paramref name="maxBytes"/> bytes and returns its length. Nothing is opened.
    /// </summary>
    public static long CheckRegularFile(string path, long maxBytes, string? label = null) => Stat(path, maxBytes, label).Length;

    /// <summary>
    /// Opens a regular file (links followed) of at most <paramref name="maxBytes"/> bytes for reading,
    /// sharing read and delete (an atomic writer may rename a new file over it). The caller owns the stream.
    /// </summary>
    public static FileStream OpenRead(string path, long maxBytes, string? label = null) => OpenRead(path, maxBytes, label, out _);

    /// <summary><see cref="OpenRead(string, long, string?)"/>, also returning what the opened file is (length, times, identity).</summary>
    public static FileStream OpenRead(string path, long maxBytes, string? label, out Info info)
    {
        ArgumentNullException.ThrowIfNull(path);
        label ??= path;
        // Typed before it is opened: opening a FIFO for reading blocks until a writer comes.
        var before = Stat(path, maxBytes, label);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UserInputException($"{label}: cannot open it ({e.Message})", e);
        }
        try
        {
            // What was opened is what was typed (not a FIFO swapped in between), and still within the limit.
            info = StatHandle(stream.SafeFileHandle, label);
            if (info.Device != before.Device || info.Inode != before.Inode)
                throw new UserInputException($"{label}: the file was replaced while it was being opened");
            if (info.Length > maxBytes) throw TooLarge(label, info.Length, maxBytes);
            return stream;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>All bytes of a regular file of at most <paramref name="maxBytes"/> bytes (links followed).</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, string? label = null)
    {
        label ??= path;
        if (maxBytes > Array.MaxLength) maxBytes = Array.MaxLength;
        using var stream = OpenRead(path, maxBytes, label, out var info);
        // Bounded by the limit, not by what stat said: the file may grow or shrink while it is read.
        var buffer = new byte[(int)Math.Min(info.Length, maxBytes)];
        int filled = 0;
        try
        {
            while (filled < buffer.Length)
            {
                int n = stream.Read(buffer, filled, buffer.Length - filled);
                if (n == 0) break;
                filled += n;
            }
            if (filled == buffer.Length && filled < maxBytes)
            {
                Span<byte> probe = stackalloc byte[1];
                if (stream.Read(probe) != 0)
                    throw new UserInputException($"{label}: the file grew while it was being read");
            }
        }
        catch (IOException e)
        {
            throw new UserInputException($"{label}: cannot read it ({e.Message})", e);
        }
        return filled == buffer.Length ? buffer : buffer.AsSpan(0, filled).ToArray();
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// A regular file of at most <paramref name="maxBytes"/> bytes as strict UTF-8 text (a leading BOM
    /// dropped); bytes that are not UTF-8 are an error, not U+FFFD characters.
    /// </summary>
    public static string ReadAllText(string path, long maxBytes, string? label = null)
    {
        label ??= path;
        var bytes = ReadAllBytes(path, maxBytes, label);
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith("\uFEFF"u8)) span = span[3..];
        try { return StrictUtf8.GetString(span); }
        catch (DecoderFallbackException) { throw new UserInputException($"{label}: not UTF-8 text"); }
    }

    /// <summary>
    /// The file at <paramref name="path"/>, links followed: a regular file of at most
    /// <paramref name="maxBytes"/> bytes, else a <see cref="UserInputException"/> saying what it is.
    /// </summary>
    public static Info Stat(string path, long maxBytes = long.MaxValue, string? label = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        label ??= path;
        if (path.Length == 0) throw new UserInputException($"{label}: the path is empty");
        if (path.Contains('\0')) throw new UserInputException($"{label}: the path contains a NUL character");
        Info info;
        if (Linux.Available)
        {
            int rc = Linux.statx(Linux.AT_FDCWD, path, 0, Linux.STATX_BASIC_STATS, out var sx);
            if (rc != 0) throw StatFailed(label, path, Marshal.GetLastPInvokeError());
            info = Linux.Check(sx, label);
        }
        else
        {
            info = Portable(path, label);
        }
        if (info.Length > maxBytes) throw TooLarge(label, info.Length, maxBytes);
        return info;
    }

    static Info StatHandle(SafeFileHandle handle, string label)
    {
        if (Linux.Available)
        {
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                int rc = Linux.statx((int)handle.DangerousGetHandle(), "", Linux.AT_EMPTY_PATH, Linux.STATX_BASIC_STATS, out var sx);
                if (rc != 0) throw new UserInputException($"{label}: cannot stat the opened file (errno {Marshal.GetLastPInvokeError()})");
                return Linux.Check(sx, label);
            }
            finally
            {
                if (added) handle.DangerousRelease();
            }
        }
        long length = RandomAccess.GetLength(handle);
        var modified = File.GetLastWriteTimeUtc(handle).Ticks;
        return new Info(length, modified, modified, 0, 0);
    }

    /// <summary>Current length and change times of an open file (a reader checks the file is still what it opened).</summary>
    public static Info StatOpen(SafeFileHandle handle, string label) => StatHandle(handle, label);

    static Info Portable(string path, string label)
    {
        // No file type without a native stat here; what the BCL offers: the link's final target, not a folder.
        FileSystemInfo target;
        try
        {
            var fi = new FileInfo(path);
            target = fi.LinkTarget is not null ? (fi.ResolveLinkTarget(returnFinalTarget: true) ?? fi) : fi;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UserInputException($"{label}: cannot read it ({e.Message})", e);
        }
        if (Directory.Exists(target.FullName)) throw new UserInputException($"{label}: is a folder, not a file");
        if (target is not FileInfo { Exists: true } file) throw new UserInputException($"{label}: no such file");
        return new Info(file.Length, file.LastWriteTimeUtc.Ticks, file.LastWriteTimeUtc.Ticks, 0, 0);
    }

    static bool IsLink(string path)
    {
        try { return new FileInfo(path).LinkTarget is not null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return false; }
    }

    static UserInputException TooLarge(string label, long length, long maxBytes) =>
        new($"{label}: {length} bytes, more than the {maxBytes} allowed");

    static UserInputException StatFailed(string label, string path, int errno) => errno switch
    {
        Linux.ENOENT => IsLink(path)
            ? new UserInputException($"{label}: a symbolic link to something that does not exist")
            : new UserInputException($"{label}: no such file"),
        Linux.ENOTDIR => new UserInputException($"{label}: no such file (a part of the path is not a folder)"),
        Linux.EACCES => new UserInputException($"{label}: permission denied"),
        Linux.ELOOP => new UserInputException($"{label}: too many levels of symbolic links"),
        Linux.ENAMETOOLONG => new UserInputException($"{label}: the path is too long"),
        _ => new UserInputException($"{label}: cannot stat it (errno {errno})"),
    };

    /// <summary>
    /// statx(2): the one native call here. Its struct has the same layout on every Linux architecture
    /// (unlike struct stat), so one declaration serves x64 and arm64; glibc has it since 2.28.
    /// </summary>
    static partial class Linux
    {
        /// <summary>Linux with a libc that has statx (glibc 2.28+, musl 1.2.5+); elsewhere the portable checks.</summary>
        internal static readonly bool Available = OperatingSystem.IsLinux() && Probe();

        static bool Probe()
        {
            try { return statx(AT_FDCWD, "/", 0, STATX_BASIC_STATS, out _) == 0; }
            catch (EntryPointNotFoundException) { return false; }
            catch (DllNotFoundException) { return false; }
        }

        internal const int AT_FDCWD = -100;
        internal const int AT_EMPTY_PATH = 0x1000;
        internal const uint STATX_BASIC_STATS = 0x7ff;
        internal const int ENOENT = 2, EACCES = 13, ENOTDIR = 20, ENAMETOOLONG = 36, ELOOP = 40;
        const ushort S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFBLK = 0x6000, S_IFIFO = 0x1000, S_IFSOCK = 0xC000;

        [StructLayout(LayoutKind.Sequential)]
        internal struct StatxTimestamp
        {
            public long Seconds;
            public uint Nanoseconds;
            public int Reserved;
        }

        [StructLayout(LayoutKind.Sequential, Size = 256)]
        internal struct Statx
        {
            public uint Mask;
            public uint BlockSize;
            public ulong Attributes;
            public uint Links;
            public uint Uid;
            public uint Gid;
            public ushort Mode;
            public ushort Pad1;
            public ulong Inode;
            public ulong Size;
            public ulong Blocks;
            public ulong AttributesMask;
            public StatxTimestamp Accessed;
            public StatxTimestamp Born;
            public StatxTimestamp Changed;
            public StatxTimestamp Modified;
            public uint RdevMajor;
            public uint RdevMinor;
            public uint DevMajor;
            public uint DevMinor;
        }

        [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int statx(int dirfd, string path, int flags, uint mask, out Statx buffer);

        internal static Info Check(in Statx sx, string label)
        {
            string? kind = (sx.Mode & S_IFMT) switch
            {
                S_IFREG => null,
                S_IFDIR => "is a folder, not a file",
                S_IFCHR => "is a character device, not a regular file",
                S_IFBLK => "is a block device, not a regular file",
                S_IFIFO => "is a FIFO (named pipe), not a regular file",
                S_IFSOCK => "is a socket, not a regular file",
                _ => "is not a regular file",
            };
            if (kind is not null) throw new UserInputException($"{label}: {kind}");
            if (sx.Size > long.MaxValue) throw new UserInputException($"{label}: reports an impossible size");
            static long Ticks(StatxTimestamp t) => t.Seconds * TimeSpan.TicksPerSecond + t.Nanoseconds / 100;
            ulong device = ((ulong)sx.DevMajor << 32) | sx.DevMinor;
            return new Info((long)sx.Size, Ticks(sx.Modified), Ticks(sx.Changed), device, sx.Inode);
        }
    }
}
