using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli;

/// <summary>Which exceptions are the user's input being wrong (one clear line, exit 2) rather than our bug.</summary>
internal static class CliErrors
{
    // ArgumentException: the library's argument checks (bad values that got past the CLI's own checks
    // are still the input's); ArgumentNullException is always a bug of ours.
    public static bool IsUserFacing(Exception e) => e is UserInputException or FileNotFoundException
        or DirectoryNotFoundException or UnauthorizedAccessException or IOException
        || e is ArgumentException and not ArgumentNullException;

    public static string OneLine(Exception e) => OneLine(e.Message);

    public static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
