using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.WeightsLoader.LayerDiffuse;

/// <summary>One parameter of the transparent decoder: diffusers state-dict name and shape.</summary>
public sealed record ParameterSpec(string Name, long[] Shape);

/// <summary>
/// Parameter names and shapes of LayerDiffuse's transparent decoder (UNet1024) for a config: the
/// module tree diffusers v0.25's blocks build (checked against them by
/// tests/reference/transparent_decoder_schema.py). Layout: conv_in; latent_conv_in (1x1, added to
/// the input of down block <see cref="TransparentDecoderConfig.LatentInjectLevel"/>); 4 DownBlock2D
/// + 3 AttnDownBlock2D (layers_per_block resnets, a conv downsampler except on the last level);
/// UNetMidBlock2D (resnet, attention, resnet); 3 AttnUpBlock2D + 4 UpBlock2D (layers_per_block + 1
/// resnets, a conv upsampler except on the last level); conv_norm_out; conv_out. No time embedding.
/// </summary>
public static class TransparentDecoderSchema
{
    /// <summary>Which of the 7 levels carry attention (UNet1024: the three innermost).</summary>
    public static bool HasAttention(TransparentDecoderConfig c, int downLevel) => downLevel >= c.BlockOutChannels.Length - 3;

    public static IReadOnlyList<ParameterSpec> Enumerate(TransparentDecoderConfig c)
    {
        var boc = c.BlockOutChannels;
        int n = boc.Length;
        var list = new List<ParameterSpec>();
        Conv(list, "conv_in", c.InChannels, boc[0], 3);
        Conv(list, "latent_conv_in", c.LatentChannels, boc[Math.Max(c.LatentInjectLevel - 1, 0)], 1);

        int outCh = boc[0];
        for (int i = 0; i < n; i++)
        {
            int inCh = outCh;
            outCh = boc[i];
            string prefix = $"down_blocks.{i}";
            for (int j = 0; j < c.LayersPerBlock; j++)
            {
                if (HasAttention(c, i)) Attention(list, $"{prefix}.attentions.{j}", outCh);
                Resnet(list, $"{prefix}.resnets.{j}", j == 0 ? inCh : outCh, outCh);
            }
            if (i != n - 1) Conv(list, $"{prefix}.downsamplers.0.conv", outCh, outCh, 3);
        }

        Attention(list, "mid_block.attentions.0", boc[n - 1]);
        Resnet(list, "mid_block.resnets.0", boc[n - 1], boc[n - 1]);
        Resnet(list, "mid_block.resnets.1", boc[n - 1], boc[n - 1]);

        var rev = boc.Reverse().ToArray();
        outCh = rev[0];
        for (int i = 0; i < n; i++)
        {
            int prevOut = outCh;
            outCh = rev[i];
            int inCh = rev[Math.Min(i + 1, n - 1)];
            string prefix = $"up_blocks.{i}";
            bool attention = HasAttention(c, n - 1 - i);
            int layers = c.LayersPerBlock + 1;
            for (int j = 0; j < layers; j++)
            {
                if (attention) Attention(list, $"{prefix}.attentions.{j}", outCh);
                // diffusers up blocks: resnet j sees the previous output (or its own) concatenated with one skip
                int skip = j == layers - 1 ? inCh : outCh;
                int resIn = j == 0 ? prevOut : outCh;
                Resnet(list, $"{prefix}.resnets.{j}", resIn + skip, outCh);
            }
            if (i != n - 1) Conv(list, $"{prefix}.upsamplers.0.conv", outCh, outCh, 3);
        }

        Norm(list, "conv_norm_out", boc[0]);
        Conv(list, "conv_out", boc[0], c.OutChannels, 3);
        return list;
    }

    static void Conv(List<ParameterSpec> l, string name, int inCh, int outCh, int k)
    {
        l.Add(new($"{name}.weight", [outCh, inCh, k, k]));
        l.Add(new($"{name}.bias", [outCh]));
    }

    static void Linear(List<ParameterSpec> l, string name, int inF, int outF)
    {
        l.Add(new($"{name}.weight", [outF, inF]));
        l.Add(new($"{name}.bias", [outF]));
    }

    static void Norm(List<ParameterSpec> l, string name, int ch)
    {
        l.Add(new($"{name}.weight", [ch]));
        l.Add(new($"{name}.bias", [ch]));
    }

    static void Resnet(List<ParameterSpec> l, string name, int inCh, int outCh)
    {
        Norm(l, $"{name}.norm1", inCh);
        Conv(l, $"{name}.conv1", inCh, outCh, 3);
        Norm(l, $"{name}.norm2", outCh);
        Conv(l, $"{name}.conv2", outCh, outCh, 3);
        if (inCh != outCh) Conv(l, $"{name}.conv_shortcut", inCh, outCh, 1);
    }

    static void Attention(List<ParameterSpec> l, string name, int ch)
    {
        Norm(l, $"{name}.group_norm", ch);
        Linear(l, $"{name}.to_q", ch, ch);
        Linear(l, $"{name}.to_k", ch, ch);
        Linear(l, $"{name}.to_v", ch, ch);
        Linear(l, $"{name}.to_out.0", ch, ch);
    }

    /// <summary>Config rules the schema relies on (beyond what <see cref="TransparentDecoderConfig.Read"/> checks).</summary>
    public static void Validate(TransparentDecoderConfig c, string source)
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new UserInputException($"{source}: transparent decoder config: {what}");
        }
        Require(c.BlockOutChannels.Length == 7, $"block_out_channels must have 7 entries, found {c.BlockOutChannels.Length}");
        Require(c.LatentInjectLevel < c.BlockOutChannels.Length, $"latent_inject_level {c.LatentInjectLevel} must be below {c.BlockOutChannels.Length}");
        foreach (var ch in c.BlockOutChannels)
        {
            Require(ch >= 1 && ch % c.NormNumGroups == 0, $"block_out_channels entry {ch} must be divisible by norm_num_groups {c.NormNumGroups}");
        }
        for (int i = 0; i < c.BlockOutChannels.Length; i++)
            if (HasAttention(c, i))
                Require(c.BlockOutChannels[i] % c.AttentionHeadDim == 0, $"attention_head_dim {c.AttentionHeadDim} must divide block_out_channels[{i}] ({c.BlockOutChannels[i]})");
    }
}
