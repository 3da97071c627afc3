namespace LayerFusion.WeightsLoader;

/// <summary>
/// Bad input from the user or from a file the user gave us (not a bug): the CLI prints only the
/// message, on one line, and exits with code 2.
/// </summary>
public class UserInputException : Exception
{
    public UserInputException(string message) : base(message) { }
    public UserInputException(string message, Exception inner) : base(message, inner) { }
}
