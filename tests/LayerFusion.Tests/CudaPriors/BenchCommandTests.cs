using LayerFusion.Cli;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Tests.CudaPriors;

/// <summary>`layerfusion bench` without a GPU: one clear line on stderr, exit code 2, no results file.</summary>
public class BenchCommandTests
{
    [Fact]
    public void Bench_without_a_device_fails_with_the_reason_and_writes_nothing()
    {
        if (LayerFusion.Tests.Cuda.EmulatedCuda.RanWithoutTheStandIns("LayerFusion.Tests.CudaPriors.BenchCommandTests", nameof(Bench_without_a_device_fails_with_the_reason_and_writes_nothing))) return;
        using (var device = CudaDevice.TryOpen(out _))
            if (device is not null) Assert.Skip("a CUDA device is present here: the no-device path cannot be exercised (PriorBenchmarkRun covers the device path)");
        var path = Path.Combine(Path.GetTempPath(), $"lf-bench-{Guid.NewGuid():N}.json");
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(["bench", "--out", path], o, e);
        Assert.Equal(2, code);
        var err = e.ToString().Trim();
        Assert.StartsWith("error: layerfusion bench needs a CUDA GPU:", err);
        Assert.Single(err.Split('\n'));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Bench_refuses_the_emulated_device()
    {
        using (var device = CudaDevice.TryOpen(out var reason))
        {
            LayerFusion.Tests.TestSupport.Requires.Device(device is not null, reason);
            if (!device.Name.Contains("emulated", StringComparison.OrdinalIgnoreCase))
                Assert.Skip($"'{device.Name}' is a real device: there is no emulated device to refuse");
        }
        var path = Path.Combine(Path.GetTempPath(), $"lf-bench-{Guid.NewGuid():N}.json");
        var e = new StringWriter();
        Assert.Equal(2, Program.Run(["bench", "--out", path], new StringWriter(), e));
        Assert.Contains("is an emulated device, whose timings would be CPU timings", e.ToString());
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Bench_refuses_too_few_repeats()
    {
        var e = new StringWriter();
        Assert.Equal(2, Program.Run(["bench", "--repeats", "1"], new StringWriter(), e));
        Assert.Contains("--repeats must be at least 3", e.ToString());
    }
}
