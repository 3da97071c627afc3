using System.Diagnostics;
using LayerFusion.Cli;
using LayerFusion.Cli.Shared;
using LayerFusion.Tests.Checkpoints;

namespace LayerFusion.Tests.Cli;

/// <summary>Issue 13 item 7 and issue 12 item 5: signals cancel and clean up; stale temporaries are swept; the progress line.</summary>
public sealed class InterruptTests : IDisposable
{
    readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    static string Cli => Path.Combine(AppContext.BaseDirectory, "layerfusion.dll");

    [Fact]
    public void ACancelledMakeTinyPublishesNothingAndLeavesNoTemporaries()
    {
        var interrupts = new Interrupts();
        interrupts.Signal(130); // as if Ctrl+C came while writing: observed before the rename
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(["make-tiny", _tmp.Sub("t")], o, e, interrupts);
        Assert.Equal(130, code);
        Assert.Contains("interrupted", e.ToString());
        Assert.Empty(Directory.GetFileSystemEntries(_tmp.Path));
    }

    [Fact]
    public void TheNextRunSweepsStaleTemporariesOfOurNamingOnly()
    {
        string dir = _tmp.Sub("sweep");
        Directory.CreateDirectory(dir);
        // pids above the kernel's pid_max are never running
        string[] stale = [".lftmp-999999999-0123abcd", ".tiny-sdxl.999999998.0123456789abcdef0123456789abcdef.tmp", ".lftmp-999999997-deadbeef.tmp"];
        Directory.CreateDirectory(Path.Combine(dir, stale[0]));
        File.WriteAllText(Path.Combine(dir, stale[0], "unet.safetensors"), "half");
        Directory.CreateDirectory(Path.Combine(dir, stale[1]));
        File.WriteAllText(Path.Combine(dir, stale[2]), "x");
        string live = $".lftmp-{Environment.ProcessId}-00000001";
        Directory.CreateDirectory(Path.Combine(dir, live));
        string oldPartial = Path.Combine(dir, ".tiny.partial-0123456789abcdef0123456789abcdef");
        Directory.CreateDirectory(oldPartial);
        Directory.SetLastWriteTimeUtc(oldPartial, DateTime.UtcNow.AddHours(-3));
        string freshPartial = Path.Combine(dir, ".tiny.partial-fedcba9876543210fedcba9876543210");
        Directory.CreateDirectory(freshPartial);
        Directory.CreateDirectory(Path.Combine(dir, ".git"));
        File.WriteAllText(Path.Combine(dir, ".hidden-user-file"), "keep");

        var r = SdxlCliTests.Run("make-tiny", Path.Combine(dir, "m"));
        Assert.True(r.Code == 0, r.Err);
        var left = Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal([".git", ".hidden-user-file", live, Path.GetFileName(freshPartial), "m"], left);
    }

    static Process Start(params string[] args)
    {
        // A test host started as a background job of a non-interactive shell (`.ci/run &`) ignores SIGINT,
        // and a child inherits that: coreutils' env restores the default so the CLI sees Ctrl+C.
        var psi = new ProcessStartInfo(SigIntIgnored() ? "env" : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (psi.FileName == "env") { psi.ArgumentList.Add("--default-signal=INT"); psi.ArgumentList.Add("dotnet"); }
        psi.ArgumentList.Add(Cli);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    /// <summary>Whether this process ignores SIGINT (bit 1 of /proc/self/status's SigIgn mask).</summary>
    static bool SigIntIgnored()
    {
        var line = File.Exists("/proc/self/status") ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal)) : null;
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 0x2) != 0;
    }

    static void Kill(int pid, string signal)
    {
        using var k = Process.Start("kill", $"-{signal} {pid}");
        k.WaitForExit();
    }

    [Theory]
    [InlineData("TERM", 143)]
    [InlineData("INT", 130)]
    public async Task ASignalDuringGenerationExitsWithItsCodeAndLeavesNothing(string signal, int expected)
    {
        string model = _tmp.Sub("m");
        Assert.Equal(0, SdxlCliTests.Run("make-tiny", model).Code);
        string outDir = _tmp.Sub("o");
        using var p = Start("generate", "-m", model, "--fg", "a", "--bg", "b", "--steps", "900", "-W", "64", "-H", "64", "--backend", "cpu", "-o", outDir);
        var err = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        // wait until the run is under way (the output folder exists once the checks passed), then a moment more
        var clock = Stopwatch.StartNew();
        while (!Directory.Exists(outDir) && clock.Elapsed < TimeSpan.FromSeconds(60) && !p.HasExited) Thread.Sleep(50);
        Thread.Sleep(1500);
        Assert.False(p.HasExited, "the run ended before the signal: " + (p.HasExited ? await err : ""));
        Kill(p.Id, signal);
        Assert.True(p.WaitForExit(30_000), "no exit within 30 s of the signal");
        Assert.Equal(expected, p.ExitCode);
        var text = await err;
        Assert.Contains(expected == 130 ? "interrupted" : "terminated", text);
        Assert.DoesNotContain("   at ", text);
        Assert.Empty(Directory.GetFileSystemEntries(outDir));
    }

    [Fact]
    public void TheStepLineHasBarStepRateAndEta()
    {
        Assert.Equal("denoising [########----------------] 10/30  2.00 it/s  ETA 0:10",
            ProgressLine.Render("denoising", 10, 30, 0.5, 0.5));
        Assert.Equal("denoising [########################] 30/30  4.00 s/it", ProgressLine.Render("denoising", 30, 30, 4, 4));
        Assert.Equal("1:01:40", ProgressLine.Duration(3700));
    }

    [Fact]
    public void PhasesAreClosedWithTheirTimeAndAnInterruptClosesTheLineWithAMessage()
    {
        var t = TimeSpan.Zero;
        var w = new StringWriter();
        var line = new ProgressLine(w, enabled: true, clock: () => t);
        line.Begin("loading model");
        t += TimeSpan.FromSeconds(2);
        line.Step("denoising", 1, 4);
        t += TimeSpan.FromSeconds(0.5);
        line.Step("denoising", 2, 4);
        line.Interrupt("interrupted (Ctrl+C), cleaning up");
        var s = w.ToString();
        Assert.Contains("loading model: done in 2.0 s\n", s.Replace("\r", "\n"));
        Assert.Contains("2/4  2.00 it/s", s);
        var last = s.Split('\r')[^1];
        Assert.EndsWith(Environment.NewLine, last);
        Assert.Equal("denoising: interrupted (Ctrl+C), cleaning up", last.TrimEnd()); // padded over the longer step line
        // quiet when not a terminal
        var quiet = new StringWriter();
        var off = new ProgressLine(quiet, enabled: false);
        off.Begin("loading model");
        off.Step("denoising", 1, 2);
        off.Interrupt("x");
        Assert.Equal("", quiet.ToString());
    }

    [Fact]
    public void TheCpuFallbackNoteIsOneShortLine()
    {
        var note = LayerFusion.Cli.Shared.BackendFactory.CpuFallbackNote(
            "CUDA backend unavailable: the NVIDIA driver library (libcuda.so.1) was not found (tried libcuda.so.1, libcuda.so, /usr/local/cuda/lib64/libcuda.so.1). Install the driver.\nMore text");
        Assert.DoesNotContain('\n', note);
        Assert.True(note.Length < 120, note);
        Assert.StartsWith("note: using the CPU backend (", note);
    }
}
