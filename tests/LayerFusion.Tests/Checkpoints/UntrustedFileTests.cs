using System.Diagnostics;
using System.Text;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Checkpoints;

/// <summary>The one opener every reader uses: links followed, regular files only, the target's size bounded.</summary>
public class UntrustedFileTests
{
    internal static void RequireLinux()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("FIFOs, /dev/zero and symlinks as tested here exist on Linux only");
    }

    internal static string MakeFifo(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("mkfifo", [path]) { RedirectStandardError = true })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return path;
    }

    /// <summary>Runs <paramref name="read"/> with a deadline: a FIFO that slipped through would block forever.</summary>
    internal static UserInputException RefusedPromptly(Action read)
    {
        var task = Task.Run(() => Assert.Throws<UserInputException>(read));
        Assert.True(task.Wait(TimeSpan.FromSeconds(20)), "the read blocked (FIFO or device opened)");
        return task.Result;
    }

    [Fact]
    public void RegularFileIsReadWhole()
    {
        using var tmp = new TempDir();
        var f = tmp.Sub("a.txt");
        File.WriteAllBytes(f, [0xEF, 0xBB, 0xBF, (byte)'h', (byte)'i']);
        Assert.Equal("hi", UntrustedFile.ReadAllText(f, 100));
        Assert.Equal(5, UntrustedFile.ReadAllBytes(f, 5).Length);
        Assert.Equal(5, UntrustedFile.CheckRegularFile(f, 5));
        var e = Assert.Throws<UserInputException>(() => UntrustedFile.ReadAllBytes(f, 4, "--prompt-file 'a.txt'"));
        Assert.Equal("--prompt-file 'a.txt': 5 bytes, more than the 4 allowed", e.Message);
    }

    [Fact]
    public void SizeLimitAppliesToTheLinkTargetNotTheLink()
    {
        RequireLinux();
        using var tmp = new TempDir();
        var big = tmp.Sub("big.txt");
        File.WriteAllText(big, new string('x', 2 << 20));
        var link = tmp.Sub("link.txt");
        File.CreateSymbolicLink(link, big);
        Assert.True(new FileInfo(link).Length < 1 << 20, "precondition: the link itself is small");
        var e = Assert.Throws<UserInputException>(() => UntrustedFile.ReadAllText(link, 1 << 20));
        Assert.Contains($"{2 << 20} bytes, more than the {1 << 20} allowed", e.Message);
        // And through a chain of two links, the same.
        var link2 = tmp.Sub("link2.txt");
        File.CreateSymbolicLink(link2, link);
        Assert.Throws<UserInputException>(() => UntrustedFile.OpenRead(link2, 1 << 20));
        Assert.Equal(2 << 20, UntrustedFile.ReadAllBytes(link2, 4 << 20).Length);
    }

    [Fact]
    public void DevicesAndFifosBehindLinksAreRefusedWithoutBlocking()
    {
        RequireLinux();
        using var tmp = new TempDir();
        var fifo = MakeFifo(tmp.Sub("fifo"));
        var toFifo = tmp.Sub("to-fifo.json");
        File.CreateSymbolicLink(toFifo, fifo);
        var toZero = tmp.Sub("to-zero.json");
        File.CreateSymbolicLink(toZero, "/dev/zero");

        Assert.Contains("FIFO", RefusedPromptly(() => UntrustedFile.ReadAllText(fifo, 1 << 20)).Message);
        Assert.Contains("FIFO", RefusedPromptly(() => UntrustedFile.ReadAllText(toFifo, 1 << 20)).Message);
        Assert.Contains("character device", RefusedPromptly(() => UntrustedFile.ReadAllBytes(toZero, 1 << 20)).Message);
        Assert.Contains("character device", RefusedPromptly(() => UntrustedFile.OpenRead("/dev/zero", long.MaxValue).Dispose()).Message);
    }

    [Fact]
    public void FoldersMissingFilesAndDanglingLinksSayWhatTheyAre()
    {
        RequireLinux();
        using var tmp = new TempDir();
        Assert.Equal($"{tmp.Path}: is a folder, not a file", Assert.Throws<UserInputException>(() => UntrustedFile.ReadAllText(tmp.Path, 10)).Message);
        var missing = tmp.Sub("nope");
        Assert.Equal($"{missing}: no such file", Assert.Throws<UserInputException>(() => UntrustedFile.ReadAllText(missing, 10)).Message);
        var dangling = tmp.Sub("dangling");
        File.CreateSymbolicLink(dangling, missing);
        Assert.Contains("symbolic link to something that does not exist", Assert.Throws<UserInputException>(() => UntrustedFile.Stat(dangling)).Message);
        Assert.Contains("the path is empty", Assert.Throws<UserInputException>(() => UntrustedFile.Stat("")).Message);
        Assert.Contains("NUL", Assert.Throws<UserInputException>(() => UntrustedFile.Stat("a\0b")).Message);
    }

    [Fact]
    public void TextThatIsNotUtf8IsAnError()
    {
        using var tmp = new TempDir();
        var f = tmp.Sub("latin1.txt");
        File.WriteAllBytes(f, Encoding.Latin1.GetBytes("caf\u00e9"));
        Assert.Equal($"{f}: not UTF-8 text", Assert.Throws<UserInputException>(() => UntrustedFile.ReadAllText(f, 100)).Message);
    }

    public static TheoryData<string> Readers => ["config", "json", "vocab", "merges", "png", "safetensors"];

    static void ReadWith(string reader, string path)
    {
        switch (reader)
        {
            case "config": ConfigReader.FromFile(path); break;
            case "json": ConfigReader.ReadJsonFile(path); break;
            case "vocab": ClipTokenizer.ReadVocabulary(path); break;
            case "merges": ClipTokenizer.ReadMerges(path); break;
            case "png": PngFile.Read(path); break;
            case "safetensors": SafeTensorsFile.Open(path).Dispose(); break;
            default: throw new ArgumentException(reader);
        }
    }

    [Theory]
    [MemberData(nameof(Readers))]
    public void EveryReaderRefusesDevicesFifosAndOversizedTargetsBehindLinks(string reader)
    {
        RequireLinux();
        using var tmp = new TempDir();
        var toZero = tmp.Sub("zero");
        File.CreateSymbolicLink(toZero, "/dev/zero");
        var toFifo = tmp.Sub("fifo-link");
        File.CreateSymbolicLink(toFifo, MakeFifo(tmp.Sub("fifo")));
        Assert.Contains("character device", RefusedPromptly(() => ReadWith(reader, toZero)).Message);
        Assert.Contains("FIFO", RefusedPromptly(() => ReadWith(reader, toFifo)).Message);
        Assert.Contains("is a folder", RefusedPromptly(() => ReadWith(reader, tmp.Path)).Message);
        if (reader == "safetensors") return; // no size limit of its own
        // A sparse 300 MiB file behind a link: past every reader's limit, refused before it is read.
        var big = tmp.Sub("big");
        using (var fs = File.Create(big)) fs.SetLength(300L << 20);
        var toBig = tmp.Sub("big-link");
        File.CreateSymbolicLink(toBig, big);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<UserInputException>(() => ReadWith(reader, toBig));
        Assert.Contains($"{300L << 20} bytes, more than the", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "refused before reading");
    }
}
