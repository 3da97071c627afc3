using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Text;
using CpuBackend = LayerFusion.Cpu.CpuOps;
using LayerFusion.Tests.Pipelines;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Cli;

/// <summary>`layerfusion run X` equals calling the component directly on the same tensors.</summary>
public sealed class RunCliTests(TinySdxl tiny) : IClassFixture<TinySdxl>
{
    static WeightTensor F32(string name, long[] shape, ulong seed, float scale = 1f)
    {
        var n = (int)shape.Aggregate(1L, (a, b) => a * b);
        var v = new GaussianNoise(seed).Next(n);
        for (int i = 0; i < n; i++) v[i] *= scale;
        return ArrayWeightTensor.FromFloat32(name, shape, v);
    }

    static WeightTensor I64(string name, long[] shape, long[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(8 * i), values[i]);
        return new ArrayWeightTensor(name, DType.I64, shape, bytes);
    }

    string P(string name) => Path.Combine(tiny.Root, name);

    static Dictionary<string, float[]> ReadOutputs(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.Tensors.Where(t => DTypes.IsFloat(t.DType)).ToDictionary(t => t.Name, t => t.ToFloat32());
    }

    [Fact]
    public void UnetRunEqualsCallingTheModelDirectly()
    {
        WeightTensor[] inputs =
        [
            F32("sample", [2, 4, 6, 5], 1),
            ArrayWeightTensor.FromFloat32("timestep", [], [421f]),
            F32("encoder_hidden_states", [2, 77, 64], 2),
            F32("text_embeds", [2, 32], 3),
            ArrayWeightTensor.FromFloat32("time_ids", [2, 6], [48, 40, 0, 0, 48, 40, 48, 40, 0, 0, 48, 40]),
        ];
        SafeTensorsWriter.Write(P("unet_in.safetensors"), inputs);
        var r = SdxlCliTests.Run("run", "unet", "--model", tiny.Default, "--inputs", P("unet_in.safetensors"), "--out", P("unet_out.safetensors"));
        Assert.True(r.Code == 0, r.Err);
        var got = ReadOutputs(P("unet_out.safetensors"));

        var ops = new CpuBackend();
        using var ckpt = Checkpoint.Open(tiny.Default);
        var unet = new UNet2DConditionModel(new ParameterStore(ops, ckpt.Unet.Weights, "unet"), ckpt.Unet.Config);
        using var x = ops.FromHost(inputs[0].ToFloat32(), 2, 4, 6, 5);
        using var ctx = ops.FromHost(inputs[2].ToFloat32(), 2, 77, 64);
        using var te = ops.FromHost(inputs[3].ToFloat32(), 2, 32);
        using var y = unet.Forward(x, [421f], ctx, te, inputs[4].ToFloat32());
        var expected = ops.ToHost(y);
        Assert.Contains(expected, v => v != 0);
        Assert.Equal(expected, got["out_sample"]);

        // integer timesteps, one per row, are read too
        inputs[1] = I64("timestep", [2], [421, 421]);
        SafeTensorsWriter.Write(P("unet_in2.safetensors"), inputs);
        Assert.Equal(0, SdxlCliTests.Run("run", "unet", "--model", tiny.Default, "--inputs", P("unet_in2.safetensors"), "--out", P("unet_out2.safetensors")).Code);
        Assert.Equal(expected, ReadOutputs(P("unet_out2.safetensors"))["out_sample"]);
    }

    [Fact]
    public void VaeDecodeRunEqualsTheDecoder()
    {
        var latent = F32("latent", [1, 4, 5, 6], 7, 3f);
        SafeTensorsWriter.Write(P("vae_in.safetensors"), [latent]);
        var r = SdxlCliTests.Run("run", "vae-decode", "--model", tiny.Default, "--inputs", P("vae_in.safetensors"), "--out", P("vae_out.safetensors"));
        Assert.True(r.Code == 0, r.Err);
        var ops = new CpuBackend();
        using var ckpt = Checkpoint.Open(tiny.Default);
        var vae = new AutoencoderKL(new ParameterStore(ops, ckpt.Vae.Weights, "vae"), ckpt.Vae.Config);
        using var z = ops.FromHost(latent.ToFloat32(), 1, 4, 5, 6);
        using var y = vae.Decode(z);
        Assert.Equal(ops.ToHost(y), ReadOutputs(P("vae_out.safetensors"))["out_sample"]);
    }

    [Fact]
    public void TextEncodeRunsIdsThroughEachEncoderAndPromptsThroughEncodePrompt()
    {
        var ops = new CpuBackend();
        using var pipeline = SdxlPipeline.Open(tiny.Default, ops);
        var ids = pipeline.Text.Tokenizer.Tokenize("a small boat").Ids;
        var ids2 = pipeline.Text.Tokenizer2.Tokenize("a small boat").Ids;
        SafeTensorsWriter.Write(P("te_in.safetensors"),
            [I64("input_ids", [1, ids.Length], ids.Select(i => (long)i).ToArray()), I64("input_ids_2", [1, ids2.Length], ids2.Select(i => (long)i).ToArray())],
            new Dictionary<string, string> { ["prompt"] = "a small boat", ["negative_prompt"] = "rain" });
        var r = SdxlCliTests.Run("run", "text-encode", "--model", tiny.Default, "--inputs", P("te_in.safetensors"), "--out", P("te_out.safetensors"));
        Assert.True(r.Code == 0, r.Err);
        var got = ReadOutputs(P("te_out.safetensors"));

        using (var o = pipeline.Text.TextEncoder.Forward(ids, 1))
        {
            Assert.Equal(ops.ToHost(o.HiddenStates), got["hidden_states"]);
            Assert.Equal(ops.ToHost(o.Pooled!), got["pooler_output"]);
        }
        using (var o = pipeline.Text.TextEncoder2.Forward(ids2, 1))
        {
            Assert.Equal(ops.ToHost(o.HiddenStates), got["hidden_states_2"]);
            Assert.Equal(ops.ToHost(o.TextEmbeds!), got["text_embeds_2"]);
        }
        using var enc = pipeline.EncodePrompt("a small boat", "rain");
        Assert.Equal(ops.ToHost(enc.Positive.PromptEmbeds), got["prompt_embeds"]);
        Assert.Equal(ops.ToHost(enc.Positive.PooledPromptEmbeds), got["pooled_prompt_embeds"]);
        Assert.Equal(ops.ToHost(enc.Negative.PromptEmbeds), got["negative_prompt_embeds"]);
        Assert.Equal(ops.ToHost(enc.Negative.PooledPromptEmbeds), got["negative_pooled_prompt_embeds"]);
        Assert.Contains(got["negative_prompt_embeds"], v => v != 0); // "rain" is encoded, not zeroed
    }

    [Fact]
    public void TransparentDecodeRunEqualsTheDecoder()
    {
        var pixel = F32("pixel", [1, 3, 64, 64], 8, 0.2f);
        var px = pixel.ToFloat32().Select(v => Math.Clamp(v + 0.5f, 0f, 1f)).ToArray();
        pixel = ArrayWeightTensor.FromFloat32("pixel", [1, 3, 64, 64], px);
        var latent = F32("latent", [1, 4, 8, 8], 9);
        SafeTensorsWriter.Write(P("td_in.safetensors"), [pixel, latent]);
        var r = SdxlCliTests.Run("run", "transparent-decode", "--layerdiffuse", tiny.Default, "--single-pass",
            "--inputs", P("td_in.safetensors"), "--out", P("td_out.safetensors"));
        Assert.True(r.Code == 0, r.Err);
        var ops = new CpuBackend();
        using var file = TransparentDecoderFile.Load(Path.Combine(tiny.Default, LayerDiffuseTiny.TransparentDecoderFileName));
        var decoder = new TransparentVaeDecoder(new UNet1024(new ParameterStore(ops, file.Tensors, "transparent_decoder"), file.Config));
        using var p = ops.FromHost(px, 1, 3, 64, 64);
        using var l = ops.FromHost(latent.ToFloat32(), 1, 4, 8, 8);
        using var y = decoder.Decode(p, l, augment: false);
        Assert.Equal(ops.ToHost(y), ReadOutputs(P("td_out.safetensors"))["out_sample"]);
    }

    [Fact]
    public void RunErrorsAreOneLineExitTwo()
    {
        SafeTensorsWriter.Write(P("empty_in.safetensors"), [F32("other", [2], 1)]);
        var cases = new[]
        {
            new[] { "run", "unet", "--model", tiny.Default, "--inputs", P("empty_in.safetensors"), "--out", P("x.safetensors") },
            ["run", "text-encode", "--model", tiny.Default, "--inputs", P("empty_in.safetensors"), "--out", P("x.safetensors")],
            ["run", "decoder", "--model", tiny.Default, "--inputs", P("empty_in.safetensors"), "--out", P("x.safetensors")],
            ["run", "unet", "--inputs", P("empty_in.safetensors"), "--out", P("x.safetensors")],
            ["run", "vae-decode", "--model", tiny.Default, "--inputs", P("missing.safetensors"), "--out", P("x.safetensors")],
        };
        foreach (var args in cases)
        {
            var r = SdxlCliTests.Run(args);
            Assert.True(r.Code == 2, $"{string.Join(' ', args)} -> {r.Code}: {r.Err}");
            Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.False(File.Exists(P("x.safetensors")));
        }
    }
}
