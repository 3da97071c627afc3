using System.Text.Json;
using System.Text.RegularExpressions;

namespace LayerFusion.Tests.Cli;

/// <summary>
/// Reads a <c>parameters</c> text the way AUTOMATIC1111's PNG Info does
/// (modules/infotext_utils.py, parse_generation_parameters): the last line is the fields if it holds
/// at least 3 "Key: value" matches of its pattern; earlier lines are the prompt until a line starting
/// "Negative prompt:", the rest the negative; quoted values are JSON-unquoted; "WxH" values split
/// into KEY-1 and KEY-2. Written here from that description (not our writer's code) so the test
/// checks our output against the reader, not against itself.
/// </summary>
internal static partial class A1111Infotext
{
    [GeneratedRegex(@"\s*(\w[\w \-/]+):\s*(""(?:\\.|[^\\""])+""|[^,]*)(?:,|$)")]
    private static partial Regex Param();

    [GeneratedRegex(@"^(\d+)x(\d+)$")]
    private static partial Regex ImageSize();

    public static Dictionary<string, string> Parse(string x)
    {
        var res = new Dictionary<string, string>();
        var all = x.Trim().Split('\n').ToList();
        var lastline = all[^1];
        var lines = all.Take(all.Count - 1).ToList();
        if (Param().Matches(lastline).Count < 3)
        {
            lines.Add(lastline);
            lastline = "";
        }
        string prompt = "", negative = "";
        bool done = false;
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.StartsWith("Negative prompt:", StringComparison.Ordinal))
            {
                done = true;
                line = line[16..].Trim();
            }
            if (done) negative += (negative == "" ? "" : "\n") + line;
            else prompt += (prompt == "" ? "" : "\n") + line;
        }
        res["Prompt"] = prompt;
        res["Negative prompt"] = negative;
        foreach (Match m in Param().Matches(lastline))
        {
            string k = m.Groups[1].Value, v = m.Groups[2].Value;
            if (v.Length > 0 && v[0] == '"' && v[^1] == '"')
                try { v = JsonSerializer.Deserialize<string>(v)!; } catch (JsonException) { }
            var size = ImageSize().Match(v);
            if (size.Success)
            {
                res[$"{k}-1"] = size.Groups[1].Value;
                res[$"{k}-2"] = size.Groups[2].Value;
            }
            else res[k] = v;
        }
        return res;
    }
}
