using System.Globalization;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Pipelines;

/// <summary>A request refused before any work because it cannot fit (or exceeds the hard size limit).</summary>
public sealed class RequestTooLargeException(string message, long estimatedBytes, long availableBytes) : UserInputException(message)
{
    public long EstimatedBytes { get; } = estimatedBytes;
    public long AvailableBytes { get; } = availableBytes;
}

/// <summary>
/// The working memory a generation needs, estimated from the configs and the size before it starts:
/// the UNet's largest live set (skip connections of every level, plus the biggest level's resnet and
/// transformer intermediates: GEGLU's 8C-wide projection), the VAE decoder's at full resolution, the
/// transparent decoder's, and the host-side outputs. The three models run one after the other, so
/// the peak is the largest of them plus the outputs. Weights are already resident and not counted.
/// It is an estimate (the factors are counted from the graphs, not measured per backend), used only
/// to refuse requests that cannot fit, with the numbers in the message.
/// </summary>
public sealed record MemoryEstimate(string What, string Backend, long UnetBytes, long VaeBytes, long TransparentBytes, long OutputBytes, long AvailableBytes)
{
    /// <summary>Largest width or height accepted at all (SDXL is trained around 1024; 8192 is 8x that per side).</summary>
    public const int MaxSide = 8192;

    public long TotalBytes => Math.Max(UnetBytes, Math.Max(VaeBytes, TransparentBytes)) + OutputBytes;

    public static MemoryEstimate ForSdxl(SdxlPipeline p, int width, int height, int images, bool guided)
    {
        ArgumentNullException.ThrowIfNull(p);
        CheckSide(width, height);
        int f = p.VaeScaleFactor;
        long unet = Unet(p, width / f, height / f, (guided ? 2 : 1) * images);
        long vae = Vae(p, width, height) * images;
        long outputs = (long)width * height * images * (3 * 4 + 3);
        return new($"a {width}x{height} image{(images > 1 ? $" x{images}" : "")}", p.Ops.Name, unet, vae, 0, outputs, Available(p.Ops, p.Vae.Ops));
    }

    public static MemoryEstimate ForTriplet(LayerFusionPipeline p, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(p);
        CheckSide(width, height);
        int f = p.VaeScaleFactor;
        long unet = Unet(p.Sdxl, width / f, height / f, TripletLayout.Rows);
        long vae = Vae(p.Sdxl, width, height);
        // UNet1024 on the image padded to its multiple: its widest level at each resolution, x4 live tensors
        var c = p.TransparentDecoder.Model.Config;
        int m = Math.Max(p.TransparentDecoder.Model.SizeMultiple, f);
        long pixels = (long)((width + m - 1) / m * m) * ((height + m - 1) / m * m);
        long widest = 0;
        for (int i = 0; i < c.BlockOutChannels.Length; i++) widest = Math.Max(widest, c.BlockOutChannels[i] * (pixels >> (2 * i)));
        long transparent = 4 * widest * Bytes(p.Sdxl.Vae.Ops);
        // host: three decoded RGB planes, alpha+RGB planes, the composite, four 8-bit images
        long outputs = (long)width * height * (3 * 3 * 4 + 4 * 4 + 3 * 4 + 4 * 4);
        return new($"a {width}x{height} triplet", p.Ops.Name, unet, vae, transparent, outputs, Available(p.Ops, p.Sdxl.Vae.Ops));
    }

    static void CheckSide(int width, int height)
    {
        if (width > MaxSide || height > MaxSide)
            throw new RequestTooLargeException($"{width}x{height} is beyond the {MaxSide}-pixel limit per side", 0, 0);
    }

    static int Bytes(IOps ops) => ops is IBackendMemory m ? m.ActivationElementBytes : 4;

    static long Available(IOps main, IOps vae)
    {
        long a = main is IBackendMemory m ? m.AvailableBytes : HostMemory.AvailableBytes();
        if (!ReferenceEquals(main, vae) && vae is IBackendMemory v) a = Math.Min(a, v.AvailableBytes);
        return a;
    }

    static long Unet(SdxlPipeline p, int lw, int lh, int batch)
    {
        var c = p.Unet.Config;
        long skips = 0, peak = 0;
        for (int i = 0; i < c.BlockOutChannels.Length; i++)
        {
            long positions = ((long)lw >> i) * (lh >> i);
            long level = c.BlockOutChannels[i] * positions;
            bool attention = c.DownBlockTypes[i].StartsWith("CrossAttn", StringComparison.Ordinal);
            skips += (c.LayersPerBlock + 1) * level;
            // resnet: input, norm, conv, residual, skip concat (~6C); transformer: q, k, v, out and
            // GEGLU's 8C projection with its 4C product (~14C more)
            peak = Math.Max(peak, level * (attention ? 20 : 6));
        }
        return batch * (skips + peak) * Bytes(p.Ops);
    }

    static long Vae(SdxlPipeline p, int width, int height)
    {
        // the last two up blocks run at full resolution with block_out_channels[1] then [0] channels;
        // x4 for input, norm, conv and residual
        var ch = p.Vae.Config.BlockOutChannels;
        long widest = 0;
        for (int i = 0; i < ch.Length; i++)
        {
            int level = Math.Max(0, i - 1);
            widest = Math.Max(widest, ch[i] * (((long)width >> level) * (height >> level)));
        }
        return 4 * widest * Bytes(p.Vae.Ops);
    }

    /// <summary>Throws <see cref="RequestTooLargeException"/> when the estimate exceeds what the backend has.</summary>
    public void Require()
    {
        if (TotalBytes <= AvailableBytes) return;
        throw new RequestTooLargeException(
            $"{What} needs about {GiB(TotalBytes)} of working memory on the {Backend} backend (UNet {GiB(UnetBytes)}, VAE decoder {GiB(VaeBytes)}" +
            (TransparentBytes > 0 ? $", transparent decoder {GiB(TransparentBytes)}" : "") + $", outputs {GiB(OutputBytes)}), " +
            $"but only {GiB(AvailableBytes)} is available; use a smaller size", TotalBytes, AvailableBytes);
    }

    static string GiB(long bytes) => (bytes / (double)(1L << 30)).ToString(bytes < 1L << 30 ? "0.00" : "0.0", CultureInfo.InvariantCulture) + " GiB";
}
