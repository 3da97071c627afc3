using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>One parameter a model built from a config owns: its diffusers/transformers name and shape.</summary>
public sealed record ParamSpec(string Name, long[] Shape)
{
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}

/// <summary>Collects parameter specs with the naming helpers torch modules imply.</summary>
internal sealed class SchemaBuilder
{
    readonly List<ParamSpec> _list = [];
    public IReadOnlyList<ParamSpec> Result => _list;

    public void Add(string name, params long[] shape) => _list.Add(new ParamSpec(name, shape));

    public void Linear(string prefix, long outF, long inF, bool bias = true)
    {
        Add(prefix + ".weight", outF, inF);
        if (bias) Add(prefix + ".bias", outF);
    }

    public void Conv(string prefix, long outC, long inC, long k)
    {
        Add(prefix + ".weight", outC, inC, k, k);
        Add(prefix + ".bias", outC);
    }

    /// <summary>GroupNorm or LayerNorm: affine weight and bias.</summary>
    public void Norm(string prefix, long c)
    {
        Add(prefix + ".weight", c);
        Add(prefix + ".bias", c);
    }
}

/// <summary>
/// The exact parameter list of diffusers v0.25 UNet2DConditionModel for a config (the block types
/// SDXL uses). Checked against the real library by tests/reference/diffusers_schema.py.
/// </summary>
public static class UNetSchema
{
    public static IReadOnlyList<ParamSpec> Parameters(UNetConfig c)
    {
        var b = new SchemaBuilder();
        int n = c.Levels;
        int c0 = c.BlockOutChannels[0];
        int ted = c.TimeEmbedDim;
        b.Conv("conv_in", c0, c.InChannels, c.ConvInKernel);
        b.Linear("time_embedding.linear_1", ted, c0);
        b.Linear("time_embedding.linear_2", ted, ted);
        if (c.AdditionEmbedType == "text_time")
        {
            b.Linear("add_embedding.linear_1", ted, c.ProjectionClassEmbeddingsInputDim);
            b.Linear("add_embedding.linear_2", ted, ted);
        }
        else if (c.AdditionEmbedType is not null)
            throw new UserInputException($"unet: addition_embed_type '{c.AdditionEmbedType}' is not supported (text_time or none)");

        int output = c0;
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = c.BlockOutChannels[i];
            bool cross = IsCrossAttn(c.DownBlockTypes[i], "down_block_types", "CrossAttnDownBlock2D", "DownBlock2D");
            for (int j = 0; j < c.LayersPerBlock; j++)
            {
                Resnet(b, $"down_blocks.{i}.resnets.{j}", j == 0 ? input : output, output, ted);
                if (cross) Transformer(b, $"down_blocks.{i}.attentions.{j}", output, c.TransformerLayersPerBlock[i], c);
            }
            if (i < n - 1) b.Conv($"down_blocks.{i}.downsamplers.0.conv", output, output, 3);
        }

        int cl = c.BlockOutChannels[n - 1];
        if (c.MidBlockType != "UNetMidBlock2DCrossAttn")
            throw new UserInputException($"unet: mid_block_type '{c.MidBlockType}' is not supported (UNetMidBlock2DCrossAttn)");
        Resnet(b, "mid_block.resnets.0", cl, cl, ted);
        Transformer(b, "mid_block.attentions.0", cl, c.TransformerLayersPerBlock[n - 1], c);
        Resnet(b, "mid_block.resnets.1", cl, cl, ted);

        var rev = c.BlockOutChannels.Reverse().ToArray();
        var revDepth = c.TransformerLayersPerBlock.Reverse().ToArray();
        output = rev[0];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = rev[i];
            int input = rev[Math.Min(i + 1, n - 1)];
            bool cross = IsCrossAttn(c.UpBlockTypes[i], "up_block_types", "CrossAttnUpBlock2D", "UpBlock2D");
            int layers = c.LayersPerBlock + 1;
            for (int j = 0; j < layers; j++)
            {
                int skip = j == layers - 1 ? input : output;
                int resIn = j == 0 ? prev : output;
                Resnet(b, $"up_blocks.{i}.resnets.{j}", resIn + skip, output, ted);
                if (cross) Transformer(b, $"up_blocks.{i}.attentions.{j}", output, revDepth[i], c);
            }
            if (i < n - 1) b.Conv($"up_blocks.{i}.upsamplers.0.conv", output, output, 3);
        }

        b.Norm("conv_norm_out", c0);
        b.Conv("conv_out", c.OutChannels, c0, c.ConvOutKernel);
        return b.Result;
    }

    static bool IsCrossAttn(string type, string field, string cross, string plain)
        => type == cross ? true : type == plain ? false
            : throw new UserInputException($"unet: {field} entry '{type}' is not supported ({cross} or {plain})");

    /// <summary>ResnetBlock2D (with time embedding projection; shortcut when channels change).</summary>
    internal static void Resnet(SchemaBuilder b, string p, int inC, int outC, int? temb)
    {
        b.Norm(p + ".norm1", inC);
        b.Conv(p + ".conv1", outC, inC, 3);
        if (temb is int t) b.Linear(p + ".time_emb_proj", outC, t);
        b.Norm(p + ".norm2", outC);
        b.Conv(p + ".conv2", outC, outC, 3);
        if (inC != outC) b.Conv(p + ".conv_shortcut", outC, inC, 1);
    }

    /// <summary>Transformer2DModel with BasicTransformerBlocks (self-attn, cross-attn, GEGLU feed-forward).</summary>
    static void Transformer(SchemaBuilder b, string p, int ch, int depth, UNetConfig c)
    {
        b.Norm(p + ".norm", ch);
        if (c.UseLinearProjection) b.Linear(p + ".proj_in", ch, ch); else b.Conv(p + ".proj_in", ch, ch, 1);
        int inner = 4 * ch;
        for (int k = 0; k < depth; k++)
        {
            string t = $"{p}.transformer_blocks.{k}";
            b.Norm(t + ".norm1", ch);
            Attention(b, t + ".attn1", ch, ch);
            b.Norm(t + ".norm2", ch);
            Attention(b, t + ".attn2", ch, c.CrossAttentionDim);
            b.Norm(t + ".norm3", ch);
            b.Linear(t + ".ff.net.0.proj", 2 * inner, ch);
            b.Linear(t + ".ff.net.2", ch, inner);
        }
        if (c.UseLinearProjection) b.Linear(p + ".proj_out", ch, ch); else b.Conv(p + ".proj_out", ch, ch, 1);
    }

    static void Attention(SchemaBuilder b, string p, int ch, int kvDim)
    {
        b.Linear(p + ".to_q", ch, ch, bias: false);
        b.Linear(p + ".to_k", ch, kvDim, bias: false);
        b.Linear(p + ".to_v", ch, kvDim, bias: false);
        b.Linear(p + ".to_out.0", ch, ch);
    }
}

/// <summary>The exact parameter list of diffusers v0.25 AutoencoderKL (encoder and decoder).</summary>
public static class AutoencoderKLSchema
{
    public static IReadOnlyList<ParamSpec> Parameters(AutoencoderKLConfig c)
    {
        var b = new SchemaBuilder();
        int n = c.BlockOutChannels.Length;
        int lat = c.LatentChannels;
        int cl = c.BlockOutChannels[n - 1];

        b.Conv("encoder.conv_in", c.BlockOutChannels[0], c.InChannels, 3);
        int output = c.BlockOutChannels[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = c.BlockOutChannels[i];
            for (int j = 0; j < c.LayersPerBlock; j++)
                UNetSchema.Resnet(b, $"encoder.down_blocks.{i}.resnets.{j}", j == 0 ? input : output, output, null);
            if (i < n - 1) b.Conv($"encoder.down_blocks.{i}.downsamplers.0.conv", output, output, 3);
        }
        Mid(b, "encoder.mid_block", cl);
        b.Norm("encoder.conv_norm_out", cl);
        b.Conv("encoder.conv_out", 2 * lat, cl, 3);

        b.Conv("decoder.conv_in", cl, lat, 3);
        Mid(b, "decoder.mid_block", cl);
        var rev = c.BlockOutChannels.Reverse().ToArray();
        output = rev[0];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = rev[i];
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
                UNetSchema.Resnet(b, $"decoder.up_blocks.{i}.resnets.{j}", j == 0 ? prev : output, output, null);
            if (i < n - 1) b.Conv($"decoder.up_blocks.{i}.upsamplers.0.conv", output, output, 3);
        }
        b.Norm("decoder.conv_norm_out", c.BlockOutChannels[0]);
        b.Conv("decoder.conv_out", c.OutChannels, c.BlockOutChannels[0], 3);

        b.Conv("quant_conv", 2 * lat, 2 * lat, 1);
        b.Conv("post_quant_conv", lat, lat, 1);
        return b.Result;
    }

    /// <summary>UNetMidBlock2D: resnet, single-head attention (v0.25 names), resnet.</summary>
    static void Mid(SchemaBuilder b, string p, int ch)
    {
        UNetSchema.Resnet(b, p + ".resnets.0", ch, ch, null);
        b.Norm(p + ".attentions.0.group_norm", ch);
        b.Linear(p + ".attentions.0.to_q", ch, ch);
        b.Linear(p + ".attentions.0.to_k", ch, ch);
        b.Linear(p + ".attentions.0.to_v", ch, ch);
        b.Linear(p + ".attentions.0.to_out.0", ch, ch);
        UNetSchema.Resnet(b, p + ".resnets.1", ch, ch, null);
    }
}

/// <summary>transformers CLIPTextModel / CLIPTextModelWithProjection parameters.</summary>
public static class ClipTextSchema
{
    /// <summary>A buffer some files carry (older transformers saved it); tolerated, never required.</summary>
    public const string PositionIdsBuffer = "text_model.embeddings.position_ids";

    public static IReadOnlyList<ParamSpec> Parameters(ClipTextConfig c)
    {
        var b = new SchemaBuilder();
        int h = c.HiddenSize;
        b.Add("text_model.embeddings.token_embedding.weight", c.VocabSize, h);
        b.Add("text_model.embeddings.position_embedding.weight", c.MaxPositionEmbeddings, h);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"text_model.encoder.layers.{l}";
            b.Linear(p + ".self_attn.k_proj", h, h);
            b.Linear(p + ".self_attn.v_proj", h, h);
            b.Linear(p + ".self_attn.q_proj", h, h);
            b.Linear(p + ".self_attn.out_proj", h, h);
            b.Norm(p + ".layer_norm1", h);
            b.Linear(p + ".mlp.fc1", c.IntermediateSize, h);
            b.Linear(p + ".mlp.fc2", h, c.IntermediateSize);
            b.Norm(p + ".layer_norm2", h);
        }
        b.Norm("text_model.final_layer_norm", h);
        if (c.WithProjection) b.Linear("text_projection", c.ProjectionDim, h, bias: false);
        return b.Result;
    }
}
