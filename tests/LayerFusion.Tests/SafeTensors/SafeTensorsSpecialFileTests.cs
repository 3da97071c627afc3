using System.Diagnostics;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.SafeTensors;

/// <summary>Paths that are not regular files: opening or reading a FIFO blocks forever unless refused first.</summary>
public class SafeTensorsSpecialFileTests
{
    internal static string MakeFifo(string path)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "FIFOs need a Unix file system");
        using var p = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return path;
    }

    /// <summary>Runs <paramref name="open"/> off the test thread so a regression fails instead of hanging the run (not a timing assertion: the bound is minutes).</summary>
    internal static async Task<T> NoHang<T>(Func<T> open) => await Task.Run(open).WaitAsync(TimeSpan.FromMinutes(2));

    [Fact]
    public async Task FifoIsRefusedNotOpened()
    {
        using var dir = new TempDir();
        string fifo = MakeFifo(dir.File("pipe.safetensors"));
        var e = await NoHang(() => Assert.Throws<UserInputException>(() => SafeTensorsFile.Open(fifo)));
        Assert.Equal($"safetensors file '{fifo}': is a FIFO (named pipe), not a regular file", e.Message);
        // behind a symbolic link (whose own size is not 0), the same
        string link = dir.File("link.safetensors");
        File.CreateSymbolicLink(link, fifo);
        e = await NoHang(() => Assert.Throws<UserInputException>(() => SafeTensorsFile.Open(link)));
        Assert.Contains("FIFO", e.Message);
    }

    [Fact]
    public async Task FifoConfigIsRefusedNotRead()
    {
        using var dir = new TempDir();
        string fifo = MakeFifo(dir.File("pipe"));
        string config = dir.File("config.json");
        File.CreateSymbolicLink(config, fifo);
        foreach (var path in new[] { fifo, config })
        {
            var e = await NoHang(() => Assert.Throws<UserInputException>(() => ConfigReader.FromFile(path)));
            Assert.Equal($"{path}: is a FIFO (named pipe), not a regular file", e.Message);
        }
    }

    [Fact]
    public void DeviceFileIsRefused()
    {
        Assert.SkipUnless(File.Exists("/dev/zero"), "no /dev/zero");
        Assert.Contains("character device", Assert.Throws<UserInputException>(() => SafeTensorsFile.Open("/dev/zero")).Message);
        using var dir = new TempDir();
        string link = dir.File("zero.safetensors");
        File.CreateSymbolicLink(link, "/dev/zero");
        Assert.Contains("character device", Assert.Throws<UserInputException>(() => SafeTensorsFile.Open(link)).Message);
    }
}
