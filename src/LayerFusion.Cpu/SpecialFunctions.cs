namespace LayerFusion.Cpu;

/// <summary>
/// Special functions MathF lacks. erfc uses the Chebyshev fit of Numerical Recipes (erfcc), whose
/// fractional error is below 1.2e-7 everywhere — relative, also in the far tail — so
/// x * 0.5 * erfc(-x / sqrt 2) gives GELU with relative error near fp32 rounding for every x,
/// without the cancellation 1 + erf(x) suffers for negative x.
/// </summary>
internal static class SpecialFunctions
{
    public static double Erfc(double x)
    {
        double z = Math.Abs(x);
        double t = 1.0 / (1.0 + 0.5 * z);
        double ans = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
            t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? ans : 2.0 - ans;
    }

    public static double Erf(double x) => 1.0 - Erfc(x);

    const double InvSqrt2 = 0.70710678118654752440;

    /// <summary>Exact (erf) GELU: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2).</summary>
    public static float GeluErf(float x) => (float)(0.5 * x * Erfc(-x * InvSqrt2));
}
