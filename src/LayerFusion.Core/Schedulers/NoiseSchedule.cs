using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// The training noise schedule shared by every sampler (betas, alphas_cumprod, sigmas), and the
/// numpy/torch helpers diffusers v0.25 builds its inference schedules with. diffusers computes the
/// tables in float32 torch and then mixes numpy float64 in; we repeat the same precisions and orders
/// so timesteps come out identical and sigmas equal to the last float32 bit or so.
/// </summary>
public sealed class NoiseSchedule
{
    public int NumTrainTimesteps { get; }
    /// <summary>float32, as torch holds them.</summary>
    public float[] Betas { get; }
    /// <summary>float32 cumulative product of (1 - beta).</summary>
    public float[] AlphasCumprod { get; }
    /// <summary>float32 ((1 - a) / a) ** 0.5, ascending in t (index = training timestep).</summary>
    public float[] Sigmas { get; }
    /// <summary>float32 log of <see cref="Sigmas"/> (numpy.log of a float32 array).</summary>
    public float[] LogSigmas { get; }

    public NoiseSchedule(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int n = config.NumTrainTimesteps;
        if (n < 2) throw new UserInputException($"scheduler config: num_train_timesteps must be at least 2, got {n}");
        NumTrainTimesteps = n;
        // diffusers: `if trained_betas is not None: self.betas = torch.tensor(trained_betas, dtype=torch.float32)`,
        // whatever beta_schedule says. The timestep grid still spans num_train_timesteps, so the list must match it.
        if (config.TrainedBetas is { } trained && trained.Length != n)
            throw new UserInputException($"scheduler config: trained_betas has {trained.Length} entries, num_train_timesteps is {n}; they must agree");
        Betas = config.TrainedBetas is { } given ? Array.ConvertAll(given, b => (float)b) : config.BetaSchedule switch
        {
            "linear" => TorchLinspaceF32(config.BetaStart, config.BetaEnd, n),
            "scaled_linear" => Square(TorchLinspaceF32(Math.Sqrt(config.BetaStart), Math.Sqrt(config.BetaEnd), n)),
            "squaredcos_cap_v2" => CosineBetas(n),
            _ => throw new UserInputException(
                $"scheduler config: beta_schedule '{config.BetaSchedule}' is not supported (linear, scaled_linear, squaredcos_cap_v2)"),
        };
        foreach (var b in Betas)
            if (!(b > 0f && b < 1f))
                throw new UserInputException(config.TrainedBetas is null
                    ? $"scheduler config: betas must lie in (0, 1); beta_start={config.BetaStart}, beta_end={config.BetaEnd}"
                    : "scheduler config: trained_betas must lie in (0, 1) (as float32)");

        // torch.cumprod on CPU accumulates float in double and stores each prefix as float.
        AlphasCumprod = new float[n];
        double acc = 1.0;
        for (int i = 0; i < n; i++)
        {
            float alpha = 1f - Betas[i];
            acc *= alpha;
            AlphasCumprod[i] = (float)acc;
        }
        Sigmas = new float[n];
        LogSigmas = new float[n];
        for (int i = 0; i < n; i++)
        {
            float a = AlphasCumprod[i];
            Sigmas[i] = MathF.Sqrt((1f - a) / a);
            LogSigmas[i] = (float)Math.Log(Sigmas[i]);
        }
    }

    /// <summary>
    /// torch.linspace(start, end, steps, dtype=float32) as Debian's torch 1.13 CPU kernel computes it
    /// (AVX2 build: 8-float vectors, processed in pairs, the tail element by element). Each vector
    /// starts at start + step*i (first half) or end - step*(steps-1-i) (second half) and continues
    /// with base + j*step. GCC contracts these into FMAs except, as measured, the eighth lane. This
    /// reproduces torch's betas bit for bit for the linear and scaled_linear schedules (checked by
    /// the scheduler tests); an ulp off would be harmless but bit-exact tables keep sigmas exact.
    /// </summary>
    internal static float[] TorchLinspaceF32(double start, double end, int steps)
    {
        var r = new float[steps];
        if (steps == 1) { r[0] = (float)start; return r; }
        float s = (float)start, e = (float)end;
        float step = (e - s) / (steps - 1);
        int halfway = steps / 2;
        const int vec = 8;
        int idx = 0;
        for (; idx <= steps - 2 * vec; idx += 2 * vec)
        {
            for (int v = idx; v < idx + 2 * vec; v += vec)
            {
                float b = Base(v);
                r[v] = b;
                for (int j = 1; j < vec; j++) r[v + j] = j == vec - 1 ? b + j * step : MathF.FusedMultiplyAdd(j, step, b);
            }
        }
        for (; idx < steps; idx++) r[idx] = Base(idx);
        return r;

        float Base(int i) => i < halfway ? MathF.FusedMultiplyAdd(step, i, s) : MathF.FusedMultiplyAdd(-step, steps - i - 1, e);
    }

    private static float[] Square(float[] x)
    {
        for (int i = 0; i < x.Length; i++) x[i] *= x[i];
        return x;
    }

    private static float[] CosineBetas(int n)
    {
        static double AlphaBar(double t) { double c = Math.Cos((t + 0.008) / 1.008 * Math.PI / 2); return c * c; }
        var b = new float[n];
        for (int i = 0; i < n; i++)
            b[i] = (float)Math.Min(1 - AlphaBar((i + 1) / (double)n) / AlphaBar(i / (double)n), 0.999);
        return b;
    }

    /// <summary>numpy.linspace(start, stop, num) in float64 (endpoint included).</summary>
    internal static double[] NumpyLinspace(double start, double stop, int num)
    {
        var r = new double[num];
        if (num == 1) { r[0] = start; return r; }
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) r[i] = i * step + start;
        r[num - 1] = stop;
        return r;
    }

    /// <summary>
    /// numpy.arange(start, stop, step) for a float step: numpy stores start and start + step, then
    /// fills element i with start + i * (second - first), so the effective step is re-rounded.
    /// </summary>
    internal static double[] NumpyArange(double start, double stop, double step)
    {
        double lenD = Math.Ceiling((stop - start) / step);
        if (!(lenD > 0)) return [];
        if (lenD > 10_000_000) throw new ArgumentOutOfRangeException(nameof(step), "arange too long");
        var r = new double[(int)lenD];
        r[0] = start;
        if (r.Length == 1) return r;
        r[1] = start + step;
        double delta = r[1] - r[0];
        for (int i = 2; i < r.Length; i++) r[i] = start + i * delta;
        return r;
    }

    /// <summary>numpy.interp(x, arange(len(fp)), fp) with float64 result.</summary>
    internal static double InterpAtIndex(double x, float[] fp)
    {
        if (double.IsNaN(x)) return double.NaN;
        if (x <= 0) return fp[0];
        int last = fp.Length - 1;
        if (x >= last) return fp[last];
        int j = (int)Math.Floor(x);
        if (j == x) return fp[j];
        double slope = ((double)fp[j + 1] - fp[j]) / 1.0;
        return slope * (x - j) + fp[j];
    }

    /// <summary>
    /// diffusers' _sigma_to_t: piecewise-linear inverse of log sigma over the training timesteps.
    /// The float32/float64 mix is numpy's: log_sigmas is float32, the query float64.
    /// </summary>
    internal double SigmaToT(double sigma)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        var ls = LogSigmas;
        // cumsum(dists >= 0).argmax(): the last index whose log sigma is <= the query, 0 when none
        int lowIdx = 0;
        for (int i = 0; i < ls.Length; i++)
            if (logSigma - ls[i] >= 0) lowIdx = i;
        lowIdx = Math.Min(lowIdx, ls.Length - 2);
        int highIdx = lowIdx + 1;
        float low = ls[lowIdx], high = ls[highIdx];
        float denom = low - high; // float32 - float32 stays float32 in numpy
        double w = (low - logSigma) / denom;
        w = Math.Clamp(w, 0.0, 1.0);
        return (1 - w) * lowIdx + w * highIdx;
    }

    /// <summary>Karras et al. (2022) sigmas, rho = 7, from sigma_max down to sigma_min (float64).</summary>
    internal static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int n)
    {
        const double rho = 7.0;
        var ramp = NumpyLinspace(0, 1, n);
        double minInvRho = Math.Pow(sigmaMin, 1 / rho);
        double maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        var s = new double[n];
        for (int i = 0; i < n; i++) s[i] = Math.Pow(maxInvRho + ramp[i] * (minInvRho - maxInvRho), rho);
        return s;
    }

    /// <summary>Round half to even, as numpy's round.</summary>
    internal static double NpRound(double x) => Math.Round(x, MidpointRounding.ToEven);

    /// <summary>
    /// The integer timesteps for a "leading", "linspace" or "trailing" spacing as the schedulers
    /// write them out (Euler and DDIM share this; DPM-Solver has its own n + 1 variant).
    /// </summary>
    internal static double[] SpacedTimesteps(string spacing, int numTrain, int n, int stepsOffset, bool roundLinspace)
    {
        var t = new double[n];
        switch (spacing)
        {
            case "linspace":
            {
                var l = NumpyLinspace(0, numTrain - 1, n);
                for (int i = 0; i < n; i++)
                {
                    double v = l[n - 1 - i];
                    t[i] = roundLinspace ? NpRound(v) : (float)v;
                }
                break;
            }
            case "leading":
            {
                int ratio = numTrain / n;
                for (int i = 0; i < n; i++) t[i] = (double)(n - 1 - i) * ratio + stepsOffset;
                break;
            }
            case "trailing":
            {
                var a = NumpyArange(numTrain, 0, -(numTrain / (double)n));
                if (a.Length != n) throw new InvalidOperationException($"trailing spacing produced {a.Length} steps for {n}");
                for (int i = 0; i < n; i++) t[i] = NpRound(a[i]) - 1;
                break;
            }
            default:
                throw new UserInputException($"scheduler config: timestep_spacing '{spacing}' is not supported (leading, linspace, trailing)");
        }
        return t;
    }

    internal static void ValidateSteps(int n, int numTrain)
    {
        if (n < 1) throw new UserInputException($"the number of inference steps must be at least 1, got {n}");
        if (n > numTrain)
            throw new UserInputException($"the number of inference steps ({n}) cannot exceed num_train_timesteps ({numTrain})");
    }
}
