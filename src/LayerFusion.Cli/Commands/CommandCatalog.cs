using System.CommandLine;

namespace LayerFusion.Cli.Commands;

/// <summary>Every subcommand of `layerfusion`; each lives in its own file in this folder.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return MakeTinyCommand.Create();
        yield return InspectCommand.Create();
        yield return SdxlCommand.Create();
        yield return RunCommand.Create();
        yield return GenerateCommand.Create();
        yield return ComposeCommand.Create();
        yield return BenchCommand.Create();
    }
}
