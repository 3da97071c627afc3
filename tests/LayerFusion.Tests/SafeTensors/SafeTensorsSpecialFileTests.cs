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
    public async Task FifoIsTooSmallNotAHang()
    {
        using var dir = new TempDir();
        string fifo = MakeFifo(dir.File("pipe.safetensors"));
        var e = await NoHang(() => Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(fifo)));
        Assert.Equal(SafeTensorsRule.FileTooSmall, e.Rule);
        Assert.Contains(fifo, e.Message);
    }

    [Fact]
    public async Task FifoConfigIsRefusedNotRead()
    {
        using var dir = new TempDir();
        string fifo = MakeFifo(dir.File("config.json"));
        var e = await NoHang(() => Assert.Throws<UserInputException>(() => ConfigReader.FromFile(fifo)));
        Assert.Contains("empty (or not a regular file)", e.Message);
    }

    [Fact]
    public void DeviceFileIsTooSmall()
    {
        Assert.SkipUnless(File.Exists("/dev/zero"), "no /dev/zero");
        Assert.Equal(SafeTensorsRule.FileTooSmall, Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open("/dev/zero")).Rule);
    }
}
