using System.CommandLine;
using LayerFusion.Cli.Commands;

namespace LayerFusion.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Entry point shared by Main and the in-process CLI tests.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("LayerFusion.Native: layered text-to-image (transparent foreground, background, blend).");
        foreach (var command in CommandCatalog.All()) root.Subcommands.Add(command);
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        try
        {
            return root.Parse(args).Invoke(config);
        }
        catch (Exception e) when (CliErrors.IsUserFacing(e))
        {
            stderr.WriteLine($"error: {CliErrors.OneLine(e)}");
            return 2;
        }
    }
}
