using LayerFusion.Core.Models;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Text;

static class WeightShapes
{
    /// <summary>Checks a checkpoint tensor's shape against the one the config implies, so a
    /// config/weights mismatch is one clear error (the key, expected, found) and never a crash in an
    /// op. <paramref name="scope"/> is the store's prefix, for the message.</summary>
    public static void Expect(ParameterStore weights, string scope, string name, params long[] expected)
    {
        var found = weights.ShapeOf(name);
        if (!found.AsSpan().SequenceEqual(expected))
            throw new UserInputException(
                $"{weights.Component}: weight '{scope}{name}' has shape [{string.Join(", ", found)}], the config implies [{string.Join(", ", expected)}]");
    }
}
