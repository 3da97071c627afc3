namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Plain float64 references of the op semantics (torch / diffusers v0.25), written for clarity,
/// not speed: the oracle the GPU kernels are checked against.
/// </summary>
internal static class Reference64
{
    public static double[] Linear(float[] x, int rows, int inF, float[] w, int outF, float[]? b)
    {
        var y = new double[rows * outF];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outF; o++)
            {
                double s = b?[o] ?? 0;
                for (int i = 0; i < inF; i++) s += (double)x[r * inF + i] * w[o * inF + i];
                y[r * outF + o] = s;
            }
        return y;
    }

    public static double[] MatMul(float[] a, float[] b, int batch, int m, int k, int n, bool transposeB, double alpha)
    {
        var y = new double[batch * m * n];
        for (int t = 0; t < batch; t++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                        s += (double)a[(t * m + i) * k + p] * (transposeB ? b[(t * n + j) * k + p] : b[(t * k + p) * n + j]);
                    y[(t * m + i) * n + j] = alpha * s;
                }
        return y;
    }

    public static double[] Conv2d(float[] x, int n, int c, int h, int w, float[] wt, int o, int kh, int kw, float[]? bias,
        int stride, int pad, out int ho, out int wo)
    {
        ho = (h + 2 * pad - kh) / stride + 1;
        wo = (w + 2 * pad - kw) / stride + 1;
        var y = new double[n * o * ho * wo];
        for (int b = 0; b < n; b++)
            for (int oc = 0; oc < o; oc++)
                for (int oy = 0; oy < ho; oy++)
                    for (int ox = 0; ox < wo; ox++)
                    {
                        double s = bias?[oc] ?? 0;
                        for (int ic = 0; ic < c; ic++)
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++)
                                {
                                    int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    s += (double)x[((b * c + ic) * h + iy) * w + ix] * wt[((oc * c + ic) * kh + ky) * kw + kx];
                                }
                        y[((b * o + oc) * ho + oy) * wo + ox] = s;
                    }
        return y;
    }

    public static double[] GroupNorm(float[] x, int n, int c, int spatial, int groups, float[]? gamma, float[]? beta, double eps, bool silu)
    {
        var y = new double[x.Length];
        int cpg = c / groups;
        for (int b = 0; b < n; b++)
            for (int g = 0; g < groups; g++)
            {
                int start = (b * c + g * cpg) * spatial, count = cpg * spatial;
                double mean = 0, var = 0;
                for (int i = 0; i < count; i++) mean += x[start + i];
                mean /= count;
                for (int i = 0; i < count; i++) var += (x[start + i] - mean) * (x[start + i] - mean);
                var /= count;
                double rstd = 1 / Math.Sqrt(var + eps);
                for (int i = 0; i < count; i++)
                {
                    int ch = g * cpg + i / spatial;
                    double v = (x[start + i] - mean) * rstd;
                    if (gamma is not null) v *= gamma[ch];
                    if (beta is not null) v += beta[ch];
                    y[start + i] = silu ? Silu(v) : v;
                }
            }
        return y;
    }

    public static double[] LayerNorm(float[] x, int d, float[]? gamma, float[]? beta, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / d; r++)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < d; i++) mean += x[r * d + i];
            mean /= d;
            for (int i = 0; i < d; i++) var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
            var /= d;
            for (int i = 0; i < d; i++)
                y[r * d + i] = (x[r * d + i] - mean) / Math.Sqrt(var + eps) * (gamma?[i] ?? 1) + (beta?[i] ?? 0);
        }
        return y;
    }

    public static double Silu(double v) => v / (1 + Math.Exp(-v));
    public static double GeluErf(double v) => 0.5 * v * (1 + Erf(v / Math.Sqrt(2)));
    public static double GeluTanh(double v) => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
    public static double QuickGelu(double v) => v / (1 + Math.Exp(-1.702 * v));

    /// <summary>erf to ~1e-14: Taylor series below 3, the erfc continued fraction above.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 3)
        {
            double sum = 0, term = ax;
            for (int n = 0; n < 200; n++)
            {
                double t = term / (2 * n + 1);
                sum += t;
                if (Math.Abs(t) < 1e-17 * Math.Abs(sum)) break;
                term *= -ax * ax / (n + 1);
            }
            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }
        double f = ax;
        for (int k = 120; k >= 1; k--) f = ax + k / 2.0 / f;
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        return Math.Sign(x) * (1 - erfc);
    }

    public static double[] Geglu(float[] x, int d)
    {
        int rows = x.Length / (2 * d);
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < d; i++)
                y[r * d + i] = x[r * 2 * d + i] * GeluErf(x[r * 2 * d + d + i]);
        return y;
    }

    public static double[] Softmax(float[] x, int d)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / d; r++)
        {
            double m = double.NegativeInfinity, s = 0;
            for (int i = 0; i < d; i++) m = Math.Max(m, x[r * d + i]);
            for (int i = 0; i < d; i++) s += Math.Exp(x[r * d + i] - m);
            for (int i = 0; i < d; i++) y[r * d + i] = Math.Exp(x[r * d + i] - m) / s;
        }
        return y;
    }

    public static double[] Attention(float[] q, float[] k, float[] v, int b, int m, int n, int heads, int d, float[]? keyBias, bool causal)
    {
        int c = heads * d;
        var y = new double[b * m * c];
        var s = new double[n];
        double scale = 1 / Math.Sqrt(d);
        for (int bi = 0; bi < b; bi++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < m; i++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < n; j++)
                    {
                        double dot = 0;
                        for (int t = 0; t < d; t++) dot += (double)q[(bi * m + i) * c + h * d + t] * k[(bi * n + j) * c + h * d + t];
                        s[j] = dot * scale + (keyBias?[bi * n + j] ?? 0);
                        if (causal && j > i) s[j] = double.NegativeInfinity;
                        max = Math.Max(max, s[j]);
                    }
                    if (double.IsNegativeInfinity(max)) continue;  // every key masked: zeros
                    double sum = 0;
                    for (int j = 0; j < n; j++) sum += s[j] = Math.Exp(s[j] - max);
                    for (int t = 0; t < d; t++)
                    {
                        double acc = 0;
                        for (int j = 0; j < n; j++) acc += s[j] * v[(bi * n + j) * c + h * d + t];
                        y[(bi * m + i) * c + h * d + t] = acc / sum;
                    }
                }
        return y;
    }

    public static double[] Upsample2x(float[] x, int planes, int h, int w)
    {
        var y = new double[planes * 4 * h * w];
        for (int p = 0; p < planes; p++)
            for (int yy = 0; yy < 2 * h; yy++)
                for (int xx = 0; xx < 2 * w; xx++)
                    y[(p * 2 * h + yy) * 2 * w + xx] = x[(p * h + yy / 2) * w + xx / 2];
        return y;
    }

    /// <summary>diffusers get_timestep_embedding (computed in float64 here).</summary>
    public static double[] TimestepEmbedding(float[] t, int dim, bool flip, double shift, double scale, int maxPeriod)
    {
        int half = dim / 2;
        var y = new double[t.Length * dim];
        for (int r = 0; r < t.Length; r++)
            for (int i = 0; i < half; i++)
            {
                double arg = scale * t[r] * Math.Exp(-Math.Log(maxPeriod) * i / (half - shift));
                double sin = Math.Sin(arg), cos = Math.Cos(arg);
                y[r * dim + i] = flip ? cos : sin;
                y[r * dim + half + i] = flip ? sin : cos;
            }
        return y;
    }

    public static double[] Broadcast(float[] a, int[] aShape, float[] b, int[] bShape, Func<double, double, double> op)
    {
        var y = new double[a.Length];
        var idx = new int[aShape.Length];
        for (int i = 0; i < a.Length; i++)
        {
            int r = i;
            for (int d = aShape.Length - 1; d >= 0; d--) { idx[d] = r % aShape[d]; r /= aShape[d]; }
            int off = 0;
            for (int d = 0; d < bShape.Length; d++)
            {
                int ad = d + aShape.Length - bShape.Length;
                off = off * bShape[d] + (bShape[d] == 1 ? 0 : idx[ad]);
            }
            y[i] = op(a[i], b[off]);
        }
        return y;
    }

    public static double[] Permute(float[] x, int[] shape, int[] axes)
    {
        var outShape = axes.Select(a => shape[a]).ToArray();
        var y = new double[x.Length];
        var idx = new int[shape.Length];
        var src = new int[shape.Length];
        for (int i = 0; i < x.Length; i++)
        {
            int r = i;
            for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = r % outShape[d]; r /= outShape[d]; }
            for (int d = 0; d < shape.Length; d++) src[axes[d]] = idx[d];
            int off = 0;
            for (int d = 0; d < shape.Length; d++) off = off * shape[d] + src[d];
            y[i] = x[off];
        }
        return y;
    }
}
