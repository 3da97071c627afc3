using BenchmarkDotNet.Running;

namespace LayerFusion.Perf.Cpu;

public static class Program
{
    /// <summary>`ops [...]`: the per-op table (OpTable); `unet-write`/`unet-run`: our half of perf/cpu-side-by-side.sh; anything else goes to BenchmarkDotNet.</summary>
    public static int Main(string[] args)
    {
        try
        {
            if (args.Length > 0 && args[0] == "ops") return OpTable.Run(args[1..]);
            if (args.Length > 0 && args[0] == "unet-write") return UNetSideBySide.Write(args[1..]);
            if (args.Length > 0 && args[0] == "unet-run") return UNetSideBySide.Run(args[1..]);
            if (args.Length > 0 && args[0] == "unet-mem") return UNetMemoryProbe.Run(args[1..]);
        }
        catch (LayerFusion.WeightsLoader.UserInputException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
