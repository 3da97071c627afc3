namespace LayerFusion.WeightsLoader;

/// <summary>
/// Bad input from the user or from a file the user gave us (not a bug): the CLI prints only the
/// message, on one line, and exits with code 2. An <see cref="ArgumentException"/>, so library
/// callers catch bad arguments (and the files they name) as the .NET family they expect.
/// </summary>
public class UserInputException : ArgumentException
{
    public UserInputException(string message) : base(message) { }
    public UserInputException(string message, Exception inner) : base(message, inner) { }
}
