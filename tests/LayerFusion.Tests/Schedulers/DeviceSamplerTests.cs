using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Schedulers;

/// <summary>
/// Every sampler's device form (<see cref="DeviceSampler"/>: coefficients in the step table, the step as
/// backend ops) against its host scheduler, the reference, over whole schedules with model outputs that
/// depend on the sample, for every prediction type the host accepts.
/// </summary>
public sealed class DeviceSamplerTests
{
    static SchedulerConfig Config(string prediction, bool clip = false) =>
        SchedulerConfig.Read(ConfigReader.FromText("{}", "scheduler")) with { PredictionType = prediction, ClipSample = clip };

    public static TheoryData<string, string, bool> Cases()
    {
        var d = new TheoryData<string, string, bool>();
        foreach (var name in Samplers.Names)
            foreach (var p in new[] { "epsilon", "v_prediction", "sample", "original_sample" })
            {
                // only what the host scheduler accepts
                try { Samplers.Create(name, Config(p)); }
                catch (UserInputException) { continue; }
                d.Add(name, p, false);
                if (name == Samplers.Ddim) d.Add(name, p, true);
            }
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void DeviceStepsMatchTheHostScheduler(string sampler, string prediction, bool clipSample)
    {
        const int steps = 7, n = 2 * 4 * 5 * 3;
        int[] shape = [2, 4, 5, 3];
        var config = Config(prediction, clipSample);
        var host = Samplers.Create(sampler, config);
        var devHost = Samplers.Create(sampler, config);
        host.SetTimesteps(steps);
        devHost.SetTimesteps(steps);
        using var device = DeviceSampler.TryCreate(devHost, config);
        Assert.NotNull(device);

        var rng = new Random(HashCode.Combine(sampler, prediction, clipSample) & 0xffff);
        var x0 = Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * 2 * host.InitNoiseSigma)).ToArray();
        var bias = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        // a model output that depends on its input (as a UNet's does) and exceeds clip_sample's range
        float[] Model(float[] input, int step) =>
            input.Select((v, i) => 1.7f * MathF.Tanh(0.3f * v + 0.1f * step) + bias[i]).ToArray();

        var noiseHost = new GaussianNoise(77);
        var xh = (float[])x0.Clone();
        for (int i = 0; i < steps; i++)
        {
            var m = Model(host.ScaleModelInput(xh, i), i);
            host.Step(m, i, xh, xh, noiseHost);
        }

        var ops = new CpuBackend();
        int columns = device!.Columns;
        var rows = new float[steps * columns];
        device.WriteColumns(rows, columns, 0);
        using var table = ops.CreateStepScalars(rows, steps, columns, []);
        device.Bind(ops, table, 0, shape, new GaussianNoise(77));
        var x = ops.FromHost(x0, shape);
        for (int i = 0; i < steps; i++)
        {
            using var scaled = device.ScaleModelInput(x, i);
            using var m = ops.FromHost(Model(ops.ToHost(scaled), i), shape);
            var next = device.Step(m, i, x);
            x.Dispose();
            x = next;
            ops.AdvanceStep(table);
        }
        var xd = ops.ToHost(x);
        x.Dispose();

        double num = 0, den = 0;
        for (int i = 0; i < n; i++) { num += Math.Pow(xd[i] - xh[i], 2); den += (double)xh[i] * xh[i]; }
        double e = Math.Sqrt(num / den);
        Assert.True(e <= 1e-5, $"{sampler} ({prediction}, clip_sample {clipSample}): device vs host latents differ by {e:E2} (relative L2)");
        // the stochastic samplers drew the same amount of noise as the host did
        Assert.Equal(device.NeedsNoise, host.IsStochastic);
        if (clipSample)
        {
            // the clamp acted: without it the result differs
            var unclipped = Samplers.Create(sampler, Config(prediction));
            unclipped.SetTimesteps(steps);
            var xu = (float[])x0.Clone();
            for (int i = 0; i < steps; i++) unclipped.Step(Model(unclipped.ScaleModelInput(xu, i), i), i, xu, xu, null);
            Assert.NotEqual(xu, xh);
        }
    }
}
