namespace LayerFusion.WeightsLoader.Tiny;

/// <summary>
/// Deterministic N(0, 1) samples (SplitMix64 + Box-Muller), independent of .NET's Random so tiny
/// checkpoints are the same bytes on every runtime. One stream per (seed, tensor name), so a
/// tensor's values do not depend on which other tensors a layout writes or in what order.
/// </summary>
public sealed class SeededNormal
{
    ulong _state;
    double? _spare;

    public SeededNormal(ulong seed) => _state = seed;

    public static SeededNormal For(long seed, string name)
    {
        ulong h = 14695981039346656037UL; // FNV-1a of the name, mixed with the seed
        foreach (char c in name) { h ^= c; h *= 1099511628211UL; }
        return new SeededNormal(h ^ ((ulong)seed * 0x9E3779B97F4A7C15UL));
    }

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in (0, 1].</summary>
    public double NextUniform() => ((NextUInt64() >> 11) + 1) * (1.0 / (1UL << 53));

    public double NextNormal()
    {
        if (_spare is double s) { _spare = null; return s; }
        double u1 = NextUniform(), u2 = NextUniform();
        double r = Math.Sqrt(-2.0 * Math.Log(u1));
        _spare = r * Math.Sin(2 * Math.PI * u2);
        return r * Math.Cos(2 * Math.PI * u2);
    }
}
