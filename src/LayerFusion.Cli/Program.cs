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
            var parsed = root.Parse(args);
            // Command-line mistakes are bad input like any other: one line naming the problem, exit 2
            // (System.CommandLine would print the whole help and exit 1).
            if (parsed.Errors.Count > 0)
            {
                var messages = string.Join("; ", parsed.Errors.Select(e => CliErrors.OneLine(e.Message).TrimEnd('.')).Distinct());
                stderr.WriteLine($"error: {messages} (see 'layerfusion {CommandPath(parsed)} --help')");
                return 2;
            }
            return parsed.Invoke(config);
        }
        catch (Exception e) when (CliErrors.IsUserFacing(e))
        {
            stderr.WriteLine($"error: {CliErrors.OneLine(e)}");
            return 2;
        }
    }

    static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var r = parsed.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            if (r.Command is not RootCommand) names.Insert(0, r.Command.Name);
        return string.Join(' ', names).Trim();
    }
}
