using System.Buffers.Binary;
using System.CommandLine;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion run COMPONENT --model DIR --inputs IN.safetensors --out OUT.safetensors`: one forward
/// pass of a single component on given tensors, for parity checks against other implementations.
/// Tensor names (inputs any float dtype unless said; outputs F32):
/// <list type="bullet">
/// <item>unet: sample [B, C, h, w] (scheduler-scaled), timestep ([], [1] or [B]; float or integer),
///   encoder_hidden_states [B, S, cross_attention_dim], text_embeds [B, P] and time_ids [B, k] (SDXL's
///   text_time) -> out_sample [B, out_channels, h, w].</item>
/// <item>vae-decode: latent [B, latent_channels, h, w], UNSCALED (already divided by scaling_factor,
///   as vae.decode takes it) -> out_sample [B, 3, H, W] in about [-1, 1].</item>
/// <item>text-encode: input_ids [B, T] (I32/I64) through text_encoder -> hidden_states (hidden_states[-2]),
///   pooler_output; input_ids_2 through text_encoder_2 -> hidden_states_2, pooler_output_2, text_embeds_2.
///   Or metadata "prompt" (optional "negative_prompt", "prompt_2", "negative_prompt_2"): diffusers'
///   encode_prompt -> prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
///   negative_pooled_prompt_embeds, plus the token ids input_ids / input_ids_2 (I64 [1, T]).</item>
/// <item>transparent-decode (LayerDiffuse decoder from --layerdiffuse, default the --model folder):
///   pixel [B, 3, H, W] (VAE output mapped to [0, 1]), latent [B, 4, H/8, W/8] (unscaled) ->
///   out_sample [B, 4, H, W] = alpha, R, G, B clipped to [0, 1]; 8-pass median unless --single-pass.</item>
/// </list>
/// </summary>
internal static class RunCommand
{
    public static readonly string[] Components = ["unet", "vae-decode", "text-encode", "transparent-decode"];

    public static Command Create()
    {
        var component = new Argument<string>("COMPONENT") { Description = string.Join(" | ", Components) };
        var model = new Option<string?>("--model", "-m") { Description = "SDXL checkpoint (diffusers folder or single file); for transparent-decode, the folder holding the LayerDiffuse files unless --layerdiffuse is given." };
        var layerDiffuse = new Option<string?>("--layerdiffuse") { Description = "transparent-decode: the transparent decoder file, or a folder holding ld_diffusers_sdxl_vae_transparent_decoder.safetensors." };
        var inputs = new Option<string>("--inputs") { Description = "Input tensors (.safetensors), named as above.", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Output tensors (.safetensors, written atomically).", Required = true };
        var singlePass = new Option<bool>("--single-pass") { Description = "transparent-decode: one pass instead of LayerDiffuse's 8-way flip/rotation median." };
        var backend = new Option<string?>("--backend") { Description = "cpu or cuda (default: cuda when a device is usable, else cpu, said once on stderr)." };
        var command = new Command("run", "Run one model component on tensors from a safetensors file (reference runs for parity checks). " +
            "Tensors: unet: sample, timestep, encoder_hidden_states, text_embeds, time_ids -> out_sample; " +
            "vae-decode: latent (unscaled) -> out_sample; " +
            "text-encode: input_ids and/or input_ids_2 -> hidden_states(_2), pooler_output(_2), text_embeds_2, " +
            "or metadata prompt [negative_prompt] -> prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds, negative_pooled_prompt_embeds; " +
            "transparent-decode: pixel ([0,1]), latent (unscaled) -> out_sample (alpha, R, G, B).")
        {
            component, model, layerDiffuse, inputs, output, singlePass, backend,
        };
        command.SetAction(parse =>
        {
            var which = parse.GetRequiredValue(component).Trim().ToLowerInvariant();
            if (!Components.Contains(which))
                throw new UserInputException($"unknown component '{which}' (one of: {string.Join(", ", Components)})");
            var inPath = Shared.InputPaths.ExistingFile("--inputs", parse.GetRequiredValue(inputs), "a .safetensors file of input tensors");
            var outPath = parse.GetRequiredValue(output);
            Shared.OutputPaths.CheckFile(outPath, ".safetensors");
            var modelPath = which == "transparent-decode" ? parse.GetValue(model) : Shared.InputPaths.Model(parse.GetValue(model));
            var ldPath = parse.GetValue(layerDiffuse);
            if (which != "transparent-decode" && string.IsNullOrEmpty(modelPath))
                throw new UserInputException($"run {which}: --model is required");
            if (which == "transparent-decode" && string.IsNullOrEmpty(modelPath) && string.IsNullOrEmpty(ldPath))
                throw new UserInputException("run transparent-decode: --layerdiffuse (or --model with the LayerDiffuse files) is required");
            var backends = BackendFactory.CreatePair(parse.GetValue(backend), parse.InvocationConfiguration.Error);
            // decoders run where the VAE runs (fp32 on a GPU: SDXL's VAE overflows in fp16)
            var ops = which is "vae-decode" or "transparent-decode" ? backends.Vae : backends.Main;

            using var input = SafeTensorsFile.Open(inPath);
            var results = which switch
            {
                "unet" => RunUnet(ops, modelPath!, input),
                "vae-decode" => RunVaeDecode(ops, modelPath!, input),
                "text-encode" => RunTextEncode(ops, modelPath!, input),
                _ => RunTransparentDecode(ops, ldPath ?? modelPath!, input, !parse.GetValue(singlePass)),
            };
            SafeTensorsWriter.Write(outPath, results, new Dictionary<string, string>
            {
                ["layerfusion.run"] = which,
                ["backend"] = ops.Name,
            });
            parse.InvocationConfiguration.Output.WriteLine(
                $"wrote {outPath}: {string.Join(", ", results.Select(r => $"{r.Name} [{string.Join(", ", r.Shape)}]"))}");
            return 0;
        });
        return command;
    }

    // ---- components -------------------------------------------------------------------------------

    internal static List<WeightTensor> RunUnet(IOps ops, string modelPath, SafeTensorsFile input)
    {
        using var ckpt = Checkpoint.Open(modelPath);
        var sampleTensor = Require(input, "sample");
        CheckShape(sampleTensor, 4);
        RunSizes.CheckUnet(sampleTensor.Shape, ckpt.Unet.Config);
        var unet = new UNet2DConditionModel(new ParameterStore(ops, ckpt.Unet.Weights, ckpt.Unet.Name), ckpt.Unet.Config);
        using var sample = Upload(ops, sampleTensor, rank: 4);
        int b = sample.Dim(0);
        var timestepTensor = Require(input, "timestep");
        if (timestepTensor.Shape.Length > 1) throw Bad(input, "timestep", "must be a scalar, [1] or [B]");
        var timesteps = ReadFloats(timestepTensor);
        if (timesteps.Length != 1 && timesteps.Length != b) throw Bad(input, "timestep", $"has {timesteps.Length} values; the batch is {b}");
        using var context = Upload(ops, Require(input, "encoder_hidden_states"), rank: 3);
        Tensor? textEmbeds = null;
        float[] timeIds = [];
        try
        {
            if (input.Contains("text_embeds")) textEmbeds = Upload(ops, input["text_embeds"], rank: 2);
            if (input.Contains("time_ids"))
            {
                var t = input["time_ids"];
                if (t.Shape.Length != 2 || t.Shape[0] != b) throw Bad(input, "time_ids", $"must be [{b}, k]");
                timeIds = ReadFloats(t);
            }
            using var result = unet.Forward(sample, timesteps, context, textEmbeds, timeIds);
            return [Download(ops, "out_sample", result)];
        }
        finally
        {
            textEmbeds?.Dispose();
        }
    }

    internal static List<WeightTensor> RunVaeDecode(IOps ops, string modelPath, SafeTensorsFile input)
    {
        using var ckpt = Checkpoint.Open(modelPath);
        var latentTensor = Require(input, "latent");
        CheckShape(latentTensor, 4);
        RunSizes.CheckDecoder("vae-decode", latentTensor.Shape, 1 << (ckpt.Vae.Config.BlockOutChannels.Length - 1), ckpt.Vae.Config.BlockOutChannels.Max());
        var vae = new AutoencoderKL(new ParameterStore(ops, ckpt.Vae.Weights, ckpt.Vae.Name), ckpt.Vae.Config);
        using var latent = Upload(ops, latentTensor, rank: 4);
        using var result = vae.Decode(latent);
        return [Download(ops, "out_sample", result)];
    }

    internal static List<WeightTensor> RunTextEncode(IOps ops, string modelPath, SafeTensorsFile input)
    {
        using var ckpt = Checkpoint.Open(modelPath);
        var results = new List<WeightTensor>();
        bool any = false;
        foreach (var (idsName, component, suffix) in new[] { ("input_ids", ckpt.TextEncoder, ""), ("input_ids_2", ckpt.TextEncoder2, "_2") })
        {
            if (!input.Contains(idsName)) continue;
            any = true;
            var idsTensor = input[idsName];
            if (idsTensor.Shape.Length != 2 || idsTensor.Shape[0] < 1 || idsTensor.Shape[1] < 1)
                throw Bad(input, idsName, $"must be [B, T] token ids with B, T >= 1, has shape [{string.Join(", ", idsTensor.Shape)}]");
            if (idsTensor.Shape[1] > component.Config.MaxPositionEmbeddings)
                throw Bad(input, idsName, $"has {idsTensor.Shape[1]} tokens per row; the text encoder takes at most {component.Config.MaxPositionEmbeddings}");
            if (idsTensor.Shape[0] > 4096) throw Bad(input, idsName, $"has a batch of {idsTensor.Shape[0]}; at most 4096 rows per run");
            var ids = ReadInts(input, idsTensor);
            var encoder = new ClipTextModel(component.Config, new ParameterStore(ops, component.Weights, component.Name));
            using var o = encoder.Forward(ids, checked((int)idsTensor.Shape[0]));
            results.Add(Download(ops, "hidden_states" + suffix, o.HiddenStates));
            results.Add(Download(ops, "pooler_output" + suffix, o.Pooled!));
            if (o.TextEmbeds is not null) results.Add(Download(ops, "text_embeds" + suffix, o.TextEmbeds));
        }
        if (input.Metadata.TryGetValue("prompt", out var prompt))
        {
            any = true;
            using var pipeline = SdxlPipeline.Load(ckpt, ops, new SdxlPipelineOptions { PreloadWeights = false });
            string? Meta(string key) => input.Metadata.TryGetValue(key, out var v) ? v : null;
            string? prompt2 = Meta("prompt_2");
            using var enc = pipeline.EncodePrompt(prompt, Meta("negative_prompt"), prompt2, Meta("negative_prompt_2"));
            results.Add(Download(ops, "prompt_embeds", enc.Positive.PromptEmbeds));
            results.Add(Download(ops, "pooled_prompt_embeds", enc.Positive.PooledPromptEmbeds));
            results.Add(Download(ops, "negative_prompt_embeds", enc.Negative.PromptEmbeds));
            results.Add(Download(ops, "negative_pooled_prompt_embeds", enc.Negative.PooledPromptEmbeds));
            results.Add(IdsTensor("input_ids", pipeline.Text.Tokenizer.Tokenize(prompt).Ids));
            results.Add(IdsTensor("input_ids_2", pipeline.Text.Tokenizer2.Tokenize(string.IsNullOrEmpty(prompt2) ? prompt : prompt2).Ids));
        }
        if (!any)
            throw new UserInputException($"{input.Path}: text-encode needs tensor input_ids and/or input_ids_2 ([B, T] integers), or metadata \"prompt\"");
        return results;
    }

    internal static List<WeightTensor> RunTransparentDecode(IOps ops, string layerDiffusePath, SafeTensorsFile input, bool augment)
    {
        string file = layerDiffusePath;
        if (Directory.Exists(layerDiffusePath))
        {
            file = Path.Combine(layerDiffusePath, LayerDiffuseTiny.TransparentDecoderFileName);
            if (!File.Exists(file))
                throw new UserInputException($"'{layerDiffusePath}' has no {LayerDiffuseTiny.TransparentDecoderFileName} (the LayerDiffuse transparent decoder)");
        }
        else if (!File.Exists(file)) throw new UserInputException($"'{layerDiffusePath}': no such file or folder");
        using var decoderFile = TransparentDecoderFile.Load(file);
        var decoder = new TransparentVaeDecoder(new UNet1024(new ParameterStore(ops, decoderFile.Tensors, "transparent_decoder"), decoderFile.Config));
        var pixelTensor = Require(input, "pixel");
        var latentTensor = Require(input, "latent");
        CheckShape(pixelTensor, 4);
        CheckShape(latentTensor, 4);
        RunSizes.CheckDecoder("transparent-decode", latentTensor.Shape, 1, decoderFile.Config.BlockOutChannels.Max(), pixels: pixelTensor.Shape);
        using var pixel = Upload(ops, pixelTensor, rank: 4);
        using var latent = Upload(ops, latentTensor, rank: 4);
        using var result = decoder.Decode(pixel, latent, augment);
        return [Download(ops, "out_sample", result)];
    }

    // ---- tensor plumbing ---------------------------------------------------------------------------

    static WeightTensor Require(SafeTensorsFile file, string name) => file.Contains(name) ? file[name]
        : throw new UserInputException($"{file.Path}: input tensor '{name}' is missing (has: {(file.Tensors.Count == 0 ? "none" : string.Join(", ", file.Tensors.Select(t => t.Name)))})");

    static UserInputException Bad(SafeTensorsFile file, string name, string why) => new($"{file.Path}: input tensor '{name}' {why}");

    /// <summary>Rank and sizes checked before any work: every dimension at least 1, the whole within one array.</summary>
    static void CheckShape(WeightTensor t, int rank)
    {
        if (t.Shape.Length != rank)
            throw new UserInputException($"input tensor '{t.Name}' must have rank {rank}, has shape [{string.Join(", ", t.Shape)}]");
        if (t.Shape.Any(d => d < 1))
            throw new UserInputException($"input tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}]; every dimension must be at least 1");
        if (t.ElementCount > Array.MaxLength)
            throw new UserInputException($"input tensor '{t.Name}' has {t.ElementCount} values, more than one run can hold ({Array.MaxLength})");
    }

    static Tensor Upload(IOps ops, WeightTensor t, int rank)
    {
        CheckShape(t, rank);
        if (!DTypes.IsFloat(t.DType)) throw new UserInputException($"input tensor '{t.Name}' has dtype {t.DType}; a float dtype is needed");
        return ops.FromHost(t.ToFloat32(), t.ShapeInt32);
    }

    static WeightTensor Download(IOps ops, string name, Tensor t) =>
        ArrayWeightTensor.FromFloat32(name, t.Shape.Select(d => (long)d).ToArray(), ops.ToHost(t));

    static WeightTensor IdsTensor(string name, int[] ids)
    {
        var bytes = new byte[ids.Length * 8];
        for (int i = 0; i < ids.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8 * i), ids[i]);
        return new ArrayWeightTensor(name, DType.I64, [1, ids.Length], bytes);
    }

    /// <summary>Float or integer values as float32 (timesteps, time ids).</summary>
    static float[] ReadFloats(WeightTensor t)
    {
        if (DTypes.IsFloat(t.DType)) return t.ToFloat32();
        var ints = ReadIntegers(t) ?? throw new UserInputException($"input tensor '{t.Name}' has dtype {t.DType}; a number type is needed");
        return ints.Select(v => (float)v).ToArray();
    }

    static int[] ReadInts(SafeTensorsFile file, WeightTensor t)
    {
        var values = ReadIntegers(t) ?? throw Bad(file, t.Name, $"has dtype {t.DType}; token ids must be I32 or I64");
        return values.Select(v => v is < int.MinValue or > int.MaxValue ? throw Bad(file, t.Name, $"holds {v}, not a token id") : (int)v).ToArray();
    }

    static long[]? ReadIntegers(WeightTensor t)
    {
        var bytes = t.Bytes;
        int n = checked((int)t.ElementCount);
        var r = new long[n];
        switch (t.DType)
        {
            case DType.I64:
                for (int i = 0; i < n; i++) r[i] = BinaryPrimitives.ReadInt64LittleEndian(bytes.Slice(8 * i));
                return r;
            case DType.I32:
                for (int i = 0; i < n; i++) r[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.Slice(4 * i));
                return r;
            case DType.I16:
                for (int i = 0; i < n; i++) r[i] = BinaryPrimitives.ReadInt16LittleEndian(bytes.Slice(2 * i));
                return r;
            case DType.U8:
                for (int i = 0; i < n; i++) r[i] = bytes[i];
                return r;
            default:
                return null;
        }
    }
}
