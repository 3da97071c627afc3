using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Pipelines;

/// <summary>Tiny checkpoints written once per test class: make-tiny's default (VAE factor 2) and one with
/// an SDXL-like 4-level VAE (factor 8), so 72x56 gives SDXL's odd 9x7 latent.</summary>
public sealed class TinySdxl : IDisposable
{
    public TinySdxl()
    {
        Root = Path.Combine(Path.GetTempPath(), "lf-pipe-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
        var configs = TinyCheckpoint.DefaultConfigs();
        TinyCheckpoint.Write(Default, CheckpointLayout.DiffusersFolder, 5, DType.F16, configs);
        LayerDiffuseTiny.WriteAll(Default, configs.UnetConfig, 5, DType.F16);
        TinyCheckpoint.Write(Factor8, CheckpointLayout.DiffusersFolder, 6, DType.F16, Factor8Configs());
    }

    public string Root { get; }
    public string Default => Path.Combine(Root, "tiny");
    public string Factor8 => Path.Combine(Root, "tiny-vae8");

    public static TinyConfigs Factor8Configs()
    {
        var c = TinyCheckpoint.DefaultConfigs();
        c.Vae["block_out_channels"] = new JsonArray(16, 16, 32, 32);
        c.Vae["down_block_types"] = new JsonArray("DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D");
        c.Vae["up_block_types"] = new JsonArray("UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D");
        c.Vae["norm_num_groups"] = 8;
        return c;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
