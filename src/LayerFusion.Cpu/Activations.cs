using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace LayerFusion.Cpu;

/// <summary>
/// Vectorized activation kernels over spans (dst may alias src). Each is written in a form free of
/// cancellation so its relative error stays near fp32 rounding for every input, including the tails.
/// </summary>
internal static class Activations
{
    const int Chunk = 256;

    /// <summary>x * sigmoid(k x): SiLU (k = 1), quick-GELU (k = 1.702), tanh-GELU's core.</summary>
    static void TimesSigmoid(ReadOnlySpan<float> x, float k, Span<float> dst)
    {
        Span<float> tmp = stackalloc float[Chunk];
        for (int i = 0; i < x.Length; i += Chunk)
        {
            int len = Math.Min(Chunk, x.Length - i);
            var xs = x.Slice(i, len); var t = tmp[..len];
            if (k != 1f) TensorPrimitives.Multiply(xs, k, t); else xs.CopyTo(t);
            TensorPrimitives.Sigmoid(t, t);
            TensorPrimitives.Multiply(xs, t, dst.Slice(i, len));
        }
    }

    public static void Silu(ReadOnlySpan<float> x, Span<float> dst) => TimesSigmoid(x, 1f, dst);

    public static void QuickGelu(ReadOnlySpan<float> x, Span<float> dst) => TimesSigmoid(x, 1.702f, dst);

    /// <summary>torch approximate="tanh": 0.5 x (1 + tanh u), u = sqrt(2/pi)(x + 0.044715 x^3), computed as
    /// x * sigmoid(2u) (the same function) to avoid the cancellation of 1 + tanh u for negative u.</summary>
    public static void GeluTanh(ReadOnlySpan<float> x, Span<float> dst)
    {
        const float TwoSqrt2OverPi = 2f * 0.7978845608028654f;
        Span<float> tmp = stackalloc float[Chunk];
        for (int i = 0; i < x.Length; i += Chunk)
        {
            int len = Math.Min(Chunk, x.Length - i);
            var xs = x.Slice(i, len); var t = tmp[..len];
            TensorPrimitives.Multiply(xs, xs, t);                 // x^2
            TensorPrimitives.Multiply(t, 0.044715f, t);
            TensorPrimitives.Add(t, 1f, t);                       // 1 + 0.044715 x^2
            TensorPrimitives.Multiply(t, xs, t);                  // x + 0.044715 x^3
            TensorPrimitives.Multiply(t, TwoSqrt2OverPi, t);      // 2u
            TensorPrimitives.Sigmoid(t, t);
            TensorPrimitives.Multiply(xs, t, dst.Slice(i, len));
        }
    }

    const double InvSqrt2 = 0.70710678118654752440;

    /// <summary>Exact GELU 0.5 x erfc(-x / sqrt 2), erfc from SpecialFunctions' Chebyshev fit, 4 doubles a vector.</summary>
    public static unsafe void GeluErf(ReadOnlySpan<float> x, Span<float> dst)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            fixed (float* xp = x, dp = dst)
            {
                for (; i + 8 <= x.Length; i += 8)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(xp + i));
                    Vector256.Narrow(GeluErf(lo), GeluErf(hi)).Store(dp + i);
                }
            }
        }
        for (; i < x.Length; i++) dst[i] = SpecialFunctions.GeluErf(x[i]);
    }

    static Vector256<double> GeluErf(Vector256<double> x)
    {
        var arg = x * -InvSqrt2;
        var z = Vector256.Abs(arg);
        var t = Vector256<double>.One / (Vector256<double>.One + z * 0.5);
        var p = t * 0.17087277 + Vector256.Create(-0.82215223);
        p = p * t + Vector256.Create(1.48851587);
        p = p * t + Vector256.Create(-1.13520398);
        p = p * t + Vector256.Create(0.27886807);
        p = p * t + Vector256.Create(-0.18628806);
        p = p * t + Vector256.Create(0.09678418);
        p = p * t + Vector256.Create(0.37409196);
        p = p * t + Vector256.Create(1.00002368);
        p = p * t + Vector256.Create(-1.26551223);
        var ans = t * Vector256.Exp(p - z * z);
        var erfc = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(arg, Vector256<double>.Zero), ans, Vector256.Create(2.0) - ans);
        return x * 0.5 * erfc;
    }
}
