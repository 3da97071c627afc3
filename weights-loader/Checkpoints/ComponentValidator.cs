namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>The checks every component passes, whatever the layout: exactly the schema's names, shapes as the config says.</summary>
internal static class ComponentValidator
{
    const int NamesShown = 5;

    public static string Shape(long[] s) => "[" + string.Join(", ", s) + "]";

    /// <summary>One error for all missing and unexpected names (both counts, first names of each).</summary>
    public static void CheckNames(string component, string source, IEnumerable<string> missing, IEnumerable<string> unexpected)
    {
        var m = missing.ToList();
        var u = unexpected.ToList();
        if (m.Count == 0 && u.Count == 0) return;
        static string First(List<string> names) => names.Count == 0 ? "none"
            : string.Join(", ", names.Take(NamesShown)) + (names.Count > NamesShown ? $", ... ({names.Count - NamesShown} more)" : "");
        throw new UserInputException(
            $"{component} ({source}): {m.Count} missing and {u.Count} unexpected tensors for its config; missing: {First(m)}; unexpected: {First(u)}");
    }

    public static UserInputException ShapeError(string component, string source, string key, long[] expected, long[] found)
        => new($"{component} ({source}): tensor '{key}' has shape {Shape(found)}, the config needs {Shape(expected)}");

    /// <summary>
    /// Validates tensors by diffusers name against the schema; tolerated extra names (known buffers)
    /// are dropped. Returns the dictionary in schema order.
    /// </summary>
    public static IReadOnlyDictionary<string, WeightTensor> Check(string component, string source, IReadOnlyList<ParamSpec> schema,
        IReadOnlyDictionary<string, WeightTensor> found, Func<string, bool> tolerated)
    {
        var expected = new HashSet<string>(schema.Select(p => p.Name), StringComparer.Ordinal);
        CheckNames(component, source,
            schema.Where(p => !found.ContainsKey(p.Name)).Select(p => p.Name),
            found.Keys.Where(k => !expected.Contains(k) && !tolerated(k)).Order(StringComparer.Ordinal));
        var result = new Dictionary<string, WeightTensor>(schema.Count, StringComparer.Ordinal);
        foreach (var p in schema)
        {
            var t = found[p.Name];
            if (!t.Shape.SequenceEqual(p.Shape)) throw ShapeError(component, source, p.Name, p.Shape, t.Shape);
            if (!DTypes.IsFloat(t.DType))
                throw new UserInputException($"{component} ({source}): tensor '{p.Name}' has dtype {t.DType}; weights must be F16, BF16, F32 or F64");
            result.Add(p.Name, t.Name == p.Name ? t : ArrayWeightTensor.Rename(t, p.Name));
        }
        return result;
    }
}
