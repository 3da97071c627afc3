using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli;

/// <summary>Which exceptions are the user's input being wrong (one clear line, exit 2) rather than our bug.</summary>
internal static class CliErrors
{
    public static bool IsUserFacing(Exception e) => e is UserInputException or FileNotFoundException
        or DirectoryNotFoundException or UnauthorizedAccessException or IOException;

    public static string OneLine(Exception e) => OneLine(e.Message);

    public static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
