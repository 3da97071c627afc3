namespace LayerFusion.Core.Schedulers;

/// <summary>
/// Where a stochastic sampler (Euler ancestral, DPM++ SDE) takes its per-step standard-normal noise:
/// the role diffusers gives the <c>generator</c> passed to <c>scheduler.step</c>. Each step draws
/// exactly as many values as the sample holds, in row-major order, as randn_tensor(sample.shape) does.
/// </summary>
public interface INoiseSource
{
    /// <summary>Fills <paramref name="destination"/> with the next values of the stream.</summary>
    void Fill(Span<float> destination);
}

/// <summary>
/// Seeded standard-normal noise for initial latents. Not torch's generator (its Mersenne Twister +
/// Box-Muller layout on CPU and Philox on CUDA cannot be reproduced bit for bit here; see
/// docs/decisions.md): a counter-based SplitMix64 stream, so element k of stream (seed, stream) is a
/// pure function of (seed, stream, k) and does not depend on how the buffer is filled. Pairs of 53-bit
/// uniforms go through Box-Muller in float64 and are rounded to float32. The pipelines draw the
/// initial latents first and then, for stochastic samplers, each step's noise from the same stream,
/// as diffusers passes one generator to prepare_latents and to every scheduler.step.
/// </summary>
public sealed class GaussianNoise : INoiseSource
{
    private readonly ulong _key;
    private ulong _position;

    /// <param name="seed">The user's seed.</param>
    /// <param name="stream">Independent sub-streams for the same seed (e.g. the FG/BLEND/BG latents).</param>
    public GaussianNoise(ulong seed, ulong stream = 0)
    {
        _key = Mix(seed ^ 0x9E3779B97F4A7C15UL) ^ Mix(stream + 0xD1B54A32D192ED03UL);
    }

    /// <summary>Elements drawn so far.</summary>
    public ulong Position => _position;

    /// <summary>Fills <paramref name="destination"/> with the next values of the stream.</summary>
    public void Fill(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = At(_position + (ulong)i);
        _position += (ulong)destination.Length;
    }

    public float[] Next(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var r = new float[count];
        Fill(r);
        return r;
    }

    /// <summary>Element <paramref name="index"/> of this stream.</summary>
    public float At(ulong index)
    {
        ulong pair = index >> 1;
        double u1 = Uniform(2 * pair), u2 = Uniform(2 * pair + 1);
        double radius = Math.Sqrt(-2.0 * Math.Log(u1));
        double angle = 2.0 * Math.PI * u2;
        return (float)(radius * ((index & 1) == 0 ? Math.Cos(angle) : Math.Sin(angle)));
    }

    /// <summary>A uniform in (0, 1]: never 0, so the log is finite.</summary>
    private double Uniform(ulong counter) => ((Mix(_key + counter * 0x9E3779B97F4A7C15UL) >> 11) + 1) * (1.0 / (1UL << 53));

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
