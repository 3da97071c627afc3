using System.CommandLine;
using LayerFusion.Cli.Commands;
using LayerFusion.Cli.Shared;

namespace LayerFusion.Cli;

public static class Program
{
    /// <summary>Exit code of a failure that is our bug, not the input's (one line too; the trace with LAYERFUSION_DEBUG=1).</summary>
    public const int InternalErrorExitCode = 70;

    public static int Main(string[] args)
    {
        using var interrupts = Interrupts.Install(Console.Error);
        try
        {
            return Run(args, Console.Out, Console.Error, interrupts);
        }
        finally
        {
            interrupts.Completed();
        }
    }

    /// <summary>Entry point shared by Main and the in-process CLI tests.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, stdout, stderr, null);

    internal static int Run(string[] args, TextWriter stdout, TextWriter stderr, Interrupts? interrupts)
    {
        Interrupts.Use(interrupts);
        var root = new RootCommand("LayerFusion.Native: layered text-to-image (transparent foreground, background, blend).");
        foreach (var command in CommandCatalog.All()) root.Subcommands.Add(command);
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
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
        catch (OperationCanceledException) when (Interrupts.Current.ExitCode is { } code)
        {
            stderr.WriteLine(code == 130 ? "error: interrupted (Ctrl+C); nothing was written" : "error: terminated; nothing was written");
            return code;
        }
        catch (Exception e) when (CliErrors.IsUserFacing(e))
        {
            stderr.WriteLine($"error: {CliErrors.OneLine(e)}");
            return 2;
        }
        catch (Exception e) when (e is OutOfMemoryException or InsufficientMemoryException)
        {
            stderr.WriteLine("error: out of memory: the request needs more memory than this machine has (try a smaller size or batch)");
            return 2;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("LAYERFUSION_DEBUG") != "1")
        {
            stderr.WriteLine($"error: internal error ({e.GetType().Name}): {CliErrors.OneLine(e)} (a bug: please report it; LAYERFUSION_DEBUG=1 shows the stack trace)");
            return InternalErrorExitCode;
        }
        finally
        {
            Interrupts.Use(null);
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
