using BenchmarkDotNet.Running;

namespace LayerFusion.Perf.Cpu;

public static class Program
{
    /// <summary>`ops [...]`: the per-op table (OpTable); anything else goes to BenchmarkDotNet.</summary>
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "ops") return OpTable.Run(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
