using BenchmarkDotNet.Running;

namespace LayerFusion.Perf.Cpu;

public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
