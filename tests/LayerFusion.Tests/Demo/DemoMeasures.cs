using LayerFusion.Core.Imaging;

namespace LayerFusion.Tests.Demo;

/// <summary>
/// Image measures of the method on the demo world (tools/train-demo/world.py): its palette, colour
/// classification, alpha masks, IoU. Colours are the world's FG colours in [0, 1].
/// </summary>
internal static class DemoMeasures
{
    public static readonly IReadOnlyDictionary<string, (double R, double G, double B)> Palette = new Dictionary<string, (double, double, double)>
    {
        ["red"] = (0.86, 0.12, 0.12), ["green"] = (0.15, 0.75, 0.20), ["blue"] = (0.12, 0.28, 0.90), ["yellow"] = (0.95, 0.85, 0.10),
        ["orange"] = (0.98, 0.52, 0.08), ["purple"] = (0.58, 0.18, 0.80), ["pink"] = (0.98, 0.50, 0.72), ["white"] = (0.97, 0.97, 0.97),
    };

    /// <summary>A pixel "is" a palette colour when that colour is its nearest and within this RGB distance.</summary>
    public const double ColourRadius = 0.25;

    static (double, double, double) Px(Image8 im, int i) =>
        (im.Pixels[i * im.Channels] / 255.0, im.Pixels[i * im.Channels + 1] / 255.0, im.Pixels[i * im.Channels + 2] / 255.0);

    static double Dist((double R, double G, double B) a, (double R, double G, double B) b) =>
        Math.Sqrt((a.R - b.R) * (a.R - b.R) + (a.G - b.G) * (a.G - b.G) + (a.B - b.B) * (a.B - b.B));

    public static string Nearest((double, double, double) rgb) => Palette.MinBy(kv => Dist(kv.Value, rgb)).Key;

    /// <summary>Pixels classified as <paramref name="colour"/> (nearest palette entry and within <see cref="ColourRadius"/>).</summary>
    public static bool[] ColourMask(Image8 im, string colour)
    {
        var target = Palette[colour];
        var m = new bool[im.Width * im.Height];
        for (int i = 0; i < m.Length; i++)
        {
            var p = Px(im, i);
            m[i] = Dist(p, target) <= ColourRadius && Nearest(p) == colour;
        }
        return m;
    }

    public static bool[] AlphaMask(Image8 rgba, double threshold = 0.5)
    {
        var m = new bool[rgba.Width * rgba.Height];
        for (int i = 0; i < m.Length; i++) m[i] = rgba.Pixels[i * 4 + 3] / 255.0 > threshold;
        return m;
    }

    public static double Fraction(bool[] m) => m.Count(x => x) / (double)m.Length;

    public static double IoU(bool[] a, bool[] b)
    {
        int inter = 0, union = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] && b[i]) inter++;
            if (a[i] || b[i]) union++;
        }
        return union == 0 ? 0 : inter / (double)union;
    }

    /// <summary>Share of the mask's pixels in its largest 4-connected component (1 = one object).</summary>
    public static double LargestComponentShare(bool[] m, int w, int h)
    {
        int total = m.Count(x => x);
        if (total == 0) return 0;
        var seen = new bool[m.Length];
        int best = 0;
        var stack = new Stack<int>();
        for (int s = 0; s < m.Length; s++)
        {
            if (!m[s] || seen[s]) continue;
            int size = 0;
            stack.Push(s);
            seen[s] = true;
            while (stack.Count > 0)
            {
                int i = stack.Pop();
                size++;
                int x = i % w, y = i / w;
                foreach (var (nx, ny) in new[] { (x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1) })
                {
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    int j = ny * w + nx;
                    if (m[j] && !seen[j]) { seen[j] = true; stack.Push(j); }
                }
            }
            best = Math.Max(best, size);
        }
        return best / (double)total;
    }

    /// <summary>Mean straight colour of the FG where alpha &gt; 0.5, as its nearest palette name (null: empty alpha).</summary>
    public static string? ForegroundColour(Image8 rgba)
    {
        double r = 0, g = 0, b = 0;
        int n = 0;
        for (int i = 0; i < rgba.Width * rgba.Height; i++)
        {
            if (rgba.Pixels[i * 4 + 3] / 255.0 <= 0.5) continue;
            var p = Px(rgba, i);
            r += p.Item1; g += p.Item2; b += p.Item3;
            n++;
        }
        return n == 0 ? null : Nearest((r / n, g / n, b / n));
    }

    /// <summary>A full-resolution mask averaged onto an [h, w] grid (area), thresholded at 0.5.</summary>
    public static bool[] Downsample(bool[] m, int w, int h, int gw, int gh)
    {
        var result = new bool[gw * gh];
        int fx = w / gw, fy = h / gh;
        for (int gy = 0; gy < gh; gy++)
            for (int gx = 0; gx < gw; gx++)
            {
                int c = 0;
                for (int y = gy * fy; y < (gy + 1) * fy; y++)
                    for (int x = gx * fx; x < (gx + 1) * fx; x++)
                        if (m[y * w + x]) c++;
                result[gy * gw + gx] = c * 2 > fx * fy;
            }
        return result;
    }

    /// <summary>Mean of 1 - |2m - 1| over a [0, 1] map: 0 for a binary mask, 1 for all 0.5.</summary>
    public static double Softness(float[] map) => map.Average(v => 1.0 - Math.Abs(2.0 * v - 1.0));

    /// <summary>Coefficient of variation (std / mean) of a map; 0 for a uniform one.</summary>
    public static double Variation(float[] map)
    {
        double mean = map.Average(v => (double)v);
        double var = map.Average(v => (v - mean) * (v - mean));
        return mean == 0 ? 0 : Math.Sqrt(var) / Math.Abs(mean);
    }
}
