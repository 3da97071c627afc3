using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Models.Unet;

/// <summary>
/// diffusers v0.25 UNet2DConditionModel as SDXL configures it: positional timestep embedding
/// (time_proj -> time_embedding), optional text_time add-embedding, conv_in, down blocks, the
/// cross-attention mid block, up blocks with skip connections, conv_norm_out + SiLU + conv_out.
/// Every dimension comes from <see cref="UNetConfig"/>; every attention goes through an
/// <see cref="IAttentionProcessor"/> with projections from an <see cref="IAttentionWeights"/>.
/// </summary>
public sealed class UNet2DConditionModel
{
    readonly ParameterStore _p;
    readonly object[] _down;
    readonly UNetMidBlock2DCrossAttn _mid;
    readonly UpBlockBase[] _up;
    readonly TimestepEmbedding _timeEmbedding;
    readonly TimestepEmbedding? _addEmbedding;
    readonly float _eps;

    public UNet2DConditionModel(ParameterStore p, UNetConfig config, IAttentionWeights? attentionWeights = null)
    {
        _p = p;
        Config = config;
        var c = config;
        string comp = p.Component;
        Nn.RequireSilu(c.ActFn, comp);
        int n = c.Levels;
        if (c.DownBlockTypes.Length != n || c.UpBlockTypes.Length != n || c.NumAttentionHeads.Length != n || c.TransformerLayersPerBlock.Length != n)
            throw new UserInputException($"{comp}: per-level config lists must all have {n} entries");
        if (c.MidBlockType != "UNetMidBlock2DCrossAttn")
            throw new UserInputException($"{comp}: mid_block_type '{c.MidBlockType}' is not supported (only UNetMidBlock2DCrossAttn)");
        if (c.AdditionEmbedType is not (null or "text_time"))
            throw new UserInputException($"{comp}: addition_embed_type '{c.AdditionEmbedType}' is not supported (only text_time or none)");
        if (c.ConvInKernel % 2 == 0 || c.ConvOutKernel % 2 == 0)
            throw new UserInputException($"{comp}: conv_in_kernel / conv_out_kernel must be odd");
        _eps = (float)c.NormEps;
        int temb = c.TimeEmbedDim;
        int[] ch = c.BlockOutChannels;

        _timeEmbedding = new TimestepEmbedding(p.Scope("time_embedding"), ch[0], temb, c.TimestepPostAct);
        if (c.AdditionEmbedType == "text_time")
            _addEmbedding = new TimestepEmbedding(p.Scope("add_embedding"), c.ProjectionClassEmbeddingsInputDim, temb);

        _down = new object[n];
        int output = ch[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = ch[i];
            bool final = i == n - 1;
            var s = p.Scope($"down_blocks.{i}");
            _down[i] = c.DownBlockTypes[i] switch
            {
                "DownBlock2D" => new DownBlock2D(s, input, output, temb, c.LayersPerBlock, !final, _eps, c.NormNumGroups, c.DownsamplePadding),
                "CrossAttnDownBlock2D" => new CrossAttnDownBlock2D(s, input, output, temb, c.LayersPerBlock, c.TransformerLayersPerBlock[i],
                    c.NumAttentionHeads[i], c.CrossAttentionDim, !final, _eps, c.NormNumGroups, c.DownsamplePadding, c.UseLinearProjection, i),
                var t => throw new UserInputException($"{comp}: down block type '{t}' is not supported"),
            };
        }

        _mid = new UNetMidBlock2DCrossAttn(p.Scope("mid_block"), ch[n - 1], temb, c.TransformerLayersPerBlock[n - 1],
            c.NumAttentionHeads[n - 1], c.CrossAttentionDim, _eps, c.NormNumGroups, c.UseLinearProjection, (float)c.MidBlockScaleFactor, n - 1);

        _up = new UpBlockBase[n];
        var rev = ch.Reverse().ToArray();
        var revHeads = c.NumAttentionHeads.Reverse().ToArray();
        var revLayers = c.TransformerLayersPerBlock.Reverse().ToArray();
        output = rev[0];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = rev[i];
            int input = rev[Math.Min(i + 1, n - 1)];
            bool final = i == n - 1;
            var s = p.Scope($"up_blocks.{i}");
            _up[i] = c.UpBlockTypes[i] switch
            {
                "UpBlock2D" => new UpBlock2D(s, input, output, prev, temb, c.LayersPerBlock + 1, !final, _eps, c.NormNumGroups),
                "CrossAttnUpBlock2D" => new CrossAttnUpBlock2D(s, input, output, prev, temb, c.LayersPerBlock + 1, revLayers[i], revHeads[i],
                    c.CrossAttentionDim, !final, _eps, c.NormNumGroups, c.UseLinearProjection, n - 1 - i),
                var t => throw new UserInputException($"{comp}: up block type '{t}' is not supported"),
            };
        }

        var sites = new List<AttentionSite>();
        IEnumerable<Transformer2DModel> transformers = _down.OfType<CrossAttnDownBlock2D>().SelectMany(b => b.Attentions)
            .Concat(_mid.Attentions)
            .Concat(_up.OfType<CrossAttnUpBlock2D>().SelectMany(b => b.Attentions));
        foreach (var t in transformers)
            foreach (var b in t.Blocks)
            {
                sites.Add(b.Attn1.Site);
                sites.Add(b.Attn2.Site);
            }
        AttentionSites = sites;
        AttentionWeights = attentionWeights ?? new CheckpointAttentionWeights(p);
    }

    public UNetConfig Config { get; }

    /// <summary>
    /// Reads a diffusers UNet2DConditionModel config.json: <see cref="UNetConfig.Read"/>, which also
    /// refuses every field asking for a variant this graph does not implement (the SDXL defaults are accepted).
    /// </summary>
    public static UNetConfig ReadConfig(ConfigReader r) => UNetConfig.Read(r);

    /// <summary>Every attention layer in execution order (down, mid, up; attn1 then attn2 per transformer block).</summary>
    public IReadOnlyList<AttentionSite> AttentionSites { get; }

    /// <summary>The processor used when a call names none (default: plain SDPA).</summary>
    public IAttentionProcessor Processor { get; set; } = SdpaAttentionProcessor.Instance;

    /// <summary>Where attention projections come from when a call names none (default: this checkpoint).</summary>
    public IAttentionWeights AttentionWeights { get; set; }

    /// <summary>
    /// One UNet evaluation (diffusers forward). <paramref name="sample"/> [B, in_channels, h, w] is the
    /// scheduler-scaled latent; <paramref name="timesteps"/> has 1 (broadcast) or B entries;
    /// <paramref name="encoderHiddenStates"/> [B, S, cross_attention_dim]; with text_time,
    /// <paramref name="textEmbeds"/> [B, D] (pooled) and <paramref name="timeIds"/> B*k values (row-major [B, k]).
    /// Returns the model output [B, out_channels, h, w].
    /// </summary>
    public Tensor Forward(Tensor sample, ReadOnlySpan<float> timesteps, Tensor encoderHiddenStates, Tensor? textEmbeds = null,
        ReadOnlySpan<float> timeIds = default, IAttentionProcessor? processor = null, IAttentionWeights? attentionWeights = null) =>
        Run(sample, timesteps, encoderHiddenStates, textEmbeds, timeIds, processor, attentionWeights, null)!;

    /// <summary>
    /// <see cref="Forward(Tensor, ReadOnlySpan{float}, Tensor, Tensor?, ReadOnlySpan{float}, IAttentionProcessor?, IAttentionWeights?)"/> for its attention side effects only (LayerFusion's prior pass): the blocks
    /// run in order until <paramref name="done"/> is true after a block (checked after every down
    /// block, the mid block and every up block), then the rest of the graph is skipped. Returns
    /// whether it stopped early; the model output, if it was reached, is discarded.
    /// </summary>
    public bool ForwardUntil(Func<bool> done, Tensor sample, ReadOnlySpan<float> timesteps, Tensor encoderHiddenStates, Tensor? textEmbeds = null,
        ReadOnlySpan<float> timeIds = default, IAttentionProcessor? processor = null, IAttentionWeights? attentionWeights = null)
    {
        ArgumentNullException.ThrowIfNull(done);
        var y = Run(sample, timesteps, encoderHiddenStates, textEmbeds, timeIds, processor, attentionWeights, done);
        y?.Dispose();
        return y is null;
    }

    /// <summary>
    /// <see cref="Forward(Tensor, ReadOnlySpan{float}, Tensor, Tensor?, ReadOnlySpan{float}, IAttentionProcessor?, IAttentionWeights?)"/>
    /// with the timestep (one for the whole batch) and the time ids read on the backend from a denoising
    /// loop's step table, so the call uploads nothing.
    /// </summary>
    public Tensor Forward(Tensor sample, UNetStepTime time, Tensor encoderHiddenStates, Tensor? textEmbeds = null,
        IAttentionProcessor? processor = null, IAttentionWeights? attentionWeights = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        return Run(sample, default, encoderHiddenStates, textEmbeds, default, processor, attentionWeights, null, time)!;
    }

    /// <summary><see cref="ForwardUntil(Func{bool}, Tensor, ReadOnlySpan{float}, Tensor, Tensor?, ReadOnlySpan{float}, IAttentionProcessor?, IAttentionWeights?)"/>
    /// with the step table's timestep and time ids.</summary>
    public bool ForwardUntil(Func<bool> done, Tensor sample, UNetStepTime time, Tensor encoderHiddenStates, Tensor? textEmbeds = null,
        IAttentionProcessor? processor = null, IAttentionWeights? attentionWeights = null)
    {
        ArgumentNullException.ThrowIfNull(done);
        ArgumentNullException.ThrowIfNull(time);
        var y = Run(sample, default, encoderHiddenStates, textEmbeds, default, processor, attentionWeights, done, time);
        y?.Dispose();
        return y is null;
    }

    Tensor? Run(Tensor sample, ReadOnlySpan<float> timesteps, Tensor encoderHiddenStates, Tensor? textEmbeds,
        ReadOnlySpan<float> timeIds, IAttentionProcessor? processor, IAttentionWeights? attentionWeights, Func<bool>? done,
        UNetStepTime? stepTime = null)
    {
        var c = Config;
        var ops = sample.Ops;
        var comp = _p.Component;
        if (sample.Rank != 4 || sample.Dim(1) != c.InChannels)
            throw new UserInputException($"{comp}: sample must be [B, {c.InChannels}, H, W], got {ShapeUtil.Format(sample.Shape)}");
        int b = sample.Dim(0);
        if (encoderHiddenStates.Rank != 3 || encoderHiddenStates.Dim(0) != b || encoderHiddenStates.Dim(2) != c.CrossAttentionDim)
            throw new UserInputException($"{comp}: encoder_hidden_states must be [{b}, S, {c.CrossAttentionDim}], got {ShapeUtil.Format(encoderHiddenStates.Shape)}");
        var rt = new AttentionRuntime(processor ?? Processor, attentionWeights ?? AttentionWeights);

        // time_proj + time_embedding
        Tensor emb;
        if (stepTime is { } st)
            using (var tProj = ops.TimestepEmbedding(st.Timestep, 1, b, c.BlockOutChannels[0], c.FlipSinToCos, c.FreqShift))
                emb = _timeEmbedding.Forward(tProj);
        else
        {
            float[] ts = timesteps.Length == b ? timesteps.ToArray()
                : timesteps.Length == 1 ? Enumerable.Repeat(timesteps[0], b).ToArray()
                : throw new UserInputException($"{comp}: {timesteps.Length} timesteps for a batch of {b}");
            using var tProj = ops.TimestepEmbedding(ts, c.BlockOutChannels[0], c.FlipSinToCos, c.FreqShift);
            emb = _timeEmbedding.Forward(tProj);
        }
        int timeIdCount = stepTime?.TimeIdCount ?? timeIds.Length;
        if (_addEmbedding is not null)
        {
            if (textEmbeds is null || textEmbeds.Rank != 2 || textEmbeds.Dim(0) != b)
                throw new UserInputException($"{comp}: addition_embed_type text_time needs text_embeds [{b}, D]");
            if (timeIdCount == 0 || timeIdCount % b != 0)
                throw new UserInputException($"{comp}: addition_embed_type text_time needs time_ids [{b}, k], got {timeIdCount} values");
            int k = timeIdCount / b;
            int total = textEmbeds.Dim(1) + k * c.AdditionTimeEmbedDim;
            if (total != c.ProjectionClassEmbeddingsInputDim)
                throw new UserInputException($"{comp}: text_embeds ({textEmbeds.Dim(1)}) + {k} time ids x {c.AdditionTimeEmbedDim} = {total}, " +
                    $"but projection_class_embeddings_input_dim is {c.ProjectionClassEmbeddingsInputDim}");
            using var timeProj = stepTime is { TimeIds: { } ids }
                ? ops.TimestepEmbedding(ids, timeIdCount, 1, c.AdditionTimeEmbedDim, c.FlipSinToCos, c.FreqShift)
                : ops.TimestepEmbedding(timeIds, c.AdditionTimeEmbedDim, c.FlipSinToCos, c.FreqShift);
            using var addEmbeds = ops.Concat([textEmbeds, timeProj.Reshape(b, k * c.AdditionTimeEmbedDim)], 1);
            using var aug = _addEmbedding.Forward(addEmbeds);
            using var old = emb;
            emb = ops.Add(old, aug);
        }
        if (c.TimeEmbeddingActFn is { } act)
        {
            using var raw = emb;
            emb = Nn.Activation(raw, act);
        }
        // every ResnetBlock2D applies SiLU to temb before its projection
        Tensor tembSilu;
        using (emb) tembSilu = ops.Silu(emb);
        using var tembLifetime = tembSilu;

        Tensor convIn;
        if (c.CenterInputSample)
            using (var centered = ops.Affine(sample, 2f, -1f))
                convIn = Nn.Conv2d(_p, "conv_in", centered, c.InChannels, c.BlockOutChannels[0], c.ConvInKernel, 1, (c.ConvInKernel - 1) / 2);
        else
            convIn = Nn.Conv2d(_p, "conv_in", sample, c.InChannels, c.BlockOutChannels[0], c.ConvInKernel, 1, (c.ConvInKernel - 1) / 2);
        var skips = new List<Tensor> { convIn };
        try
        {
            var h = skips[0];
            foreach (var block in _down)
            {
                var (hidden, states) = block switch
                {
                    DownBlock2D d => d.Forward(h, tembSilu),
                    CrossAttnDownBlock2D d => d.Forward(h, tembSilu, encoderHiddenStates, rt),
                    _ => throw new InvalidOperationException(),
                };
                skips.AddRange(states);
                h = hidden;
                // h is the last skip: the finally below frees it
                if (done?.Invoke() == true) return null;
            }

            h = _mid.Forward(h, tembSilu, encoderHiddenStates, rt);
            if (done?.Invoke() == true)
            {
                h.Dispose();
                return null;
            }
            for (int i = 0; i < _up.Length; i++)
            {
                var block = _up[i];
                int m = block.NumResnets;
                var res = skips.GetRange(skips.Count - m, m);
                skips.RemoveRange(skips.Count - m, m);
                (int, int)? upsampleSize = i < _up.Length - 1 && skips.Count > 0 ? (skips[^1].Dim(2), skips[^1].Dim(3)) : null;
                var next = block switch
                {
                    UpBlock2D u => u.Forward(h, res, tembSilu, upsampleSize),
                    CrossAttnUpBlock2D u => u.Forward(h, res, tembSilu, encoderHiddenStates, upsampleSize, rt),
                    _ => throw new InvalidOperationException(),
                };
                h.Dispose();
                foreach (var r in res) r.Dispose();
                h = next;
                if (done?.Invoke() == true)
                {
                    h.Dispose();
                    return null;
                }
            }

            using (h)
            using (var normed = Nn.GroupNorm(_p, "conv_norm_out", h, c.NormNumGroups, c.BlockOutChannels[0], _eps, silu: true))
                return Nn.Conv2d(_p, "conv_out", normed, c.BlockOutChannels[0], c.OutChannels, c.ConvOutKernel, 1, (c.ConvOutKernel - 1) / 2);
        }
        finally
        {
            foreach (var s in skips) s.Dispose();
        }
    }
}

/// <summary>
/// Where a UNet call inside a denoising loop reads its timestep and SDXL's time ids: a
/// <see cref="StepScalars"/> table on the backend (the timestep a per-step column, the time ids
/// <paramref name="TimeIdCount"/> constants from <paramref name="TimeIds"/>; null without text_time).
/// </summary>
public sealed record UNetStepTime(StepScalar Timestep, StepScalar? TimeIds, int TimeIdCount);
