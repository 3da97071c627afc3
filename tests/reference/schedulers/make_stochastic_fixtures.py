"""Produces tests/reference/schedulers/stochastic_v0.25.json: what diffusers v0.25.0 computes for the
stochastic samplers (Euler ancestral, DPM++ 2M SDE with and without Karras sigmas) when fed exactly
the noise our engine feeds them.

Run (see /work/shared/reference/README.md):
  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
      tests/reference/schedulers/make_stochastic_fixtures.py

Noise contract (src/LayerFusion.Core/Schedulers/GaussianNoise.cs): one stream GaussianNoise(seed, 0)
gives the initial latent (times init_noise_sigma), then every scheduler.step draws the next
numel(sample) values, row-major, the last step included. `our_gaussian` below is a port of that
generator; diffusers' randn_tensor is replaced, in the two scheduler modules only, by a function that
hands out those values, so diffusers' own step code consumes our noise. Model outputs are torch
randn (any fixed numbers do). Per case the file holds what make_scheduler_fixtures.py writes plus the
seed and the per-step noise. Values are float32 written as the shortest decimal that round-trips.
"""
import json
import math
import os

import numpy as np
import torch
import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm_mod
import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_mod
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z):
    z = (z + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class OurGaussian:
    """GaussianNoise(seed, stream): element k is a pure function of (seed, stream, k)."""

    def __init__(self, seed, stream=0):
        self.key = _mix(seed ^ GOLDEN) ^ _mix((stream + 0xD1B54A32D192ED03) & M64)
        self.position = 0

    def _uniform(self, counter):
        return ((_mix((self.key + counter * GOLDEN) & M64) >> 11) + 1) * (1.0 / (1 << 53))

    def at(self, index):
        pair = index >> 1
        u1, u2 = self._uniform(2 * pair), self._uniform(2 * pair + 1)
        radius = math.sqrt(-2.0 * math.log(u1))
        angle = 2.0 * math.pi * u2
        return np.float32(radius * (math.cos(angle) if index & 1 == 0 else math.sin(angle)))

    def next(self, count):
        r = np.array([self.at(self.position + i) for i in range(count)], dtype=np.float32)
        self.position += count
        return r


SDXL = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="leading",
    steps_offset=1,
    set_alpha_to_one=False,
    clip_sample=False,
    interpolation_type="linear",
    use_karras_sigmas=False,
)

# two images: the step noise is one draw over the whole batch, row-major, as randn_tensor(shape)
SAMPLE_SHAPE = (2, 4, 2, 2)


def f32list(t):
    a = np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
    return [float(repr_f32(v)) for v in a.reshape(-1)]


def repr_f32(v):
    return np.format_float_positional(np.float32(v), unique=True, trim="-") if np.isfinite(v) else str(v)


def make(sampler, cfg):
    common = dict(num_train_timesteps=cfg["num_train_timesteps"], beta_start=cfg["beta_start"], beta_end=cfg["beta_end"],
                  beta_schedule=cfg["beta_schedule"], prediction_type=cfg["prediction_type"],
                  timestep_spacing=cfg["timestep_spacing"], steps_offset=cfg["steps_offset"])
    if sampler == "euler_a":
        # v0.25's EulerAncestral has no use_karras_sigmas / interpolation_type: from_config drops them
        return EulerAncestralDiscreteScheduler(**common)
    if sampler == "dpmpp_2m_sde":
        return DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2, solver_type="midpoint",
                                           lower_order_final=True, use_karras_sigmas=cfg["use_karras_sigmas"], **common)
    raise ValueError(sampler)


class NoiseFeed:
    """Stands in for randn_tensor: hands out our stream's next values in the requested shape."""

    def __init__(self, source):
        self.source = source
        self.drawn = []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert dtype in (None, torch.float32), dtype
        n = int(np.prod(shape))
        values = self.source.next(n)
        self.drawn.append(values)
        return torch.from_numpy(values.copy()).reshape(shape)


def run_case(sampler, cfg, steps, seed):
    s = make(sampler, cfg)
    s.set_timesteps(steps)
    case = dict(sampler=sampler, config=cfg, steps=steps, seed=seed)
    case["timesteps"] = [float(t) for t in s.timesteps.to(torch.float64).numpy()]
    case["sigmas"] = f32list(s.sigmas)
    case["init_noise_sigma"] = float(repr_f32(float(s.init_noise_sigma)))

    source = OurGaussian(seed)
    n = int(np.prod(SAMPLE_SHAPE))
    unit = torch.from_numpy(source.next(n)).reshape(SAMPLE_SHAPE)
    latent = unit * s.init_noise_sigma  # prepare_latents: randn * init_noise_sigma
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(SAMPLE_SHAPE, generator=g, dtype=torch.float32) for _ in s.timesteps]
    feed = NoiseFeed(source)
    saved = ea_mod.randn_tensor, dpm_mod.randn_tensor
    ea_mod.randn_tensor = dpm_mod.randn_tensor = feed
    try:
        scaled, after = [], []
        x = latent
        for i, t in enumerate(s.timesteps):
            xin = s.scale_model_input(x, t)
            scaled.append(f32list(xin))
            x = s.step(outs[i], t, x).prev_sample
            after.append(f32list(x))
    finally:
        ea_mod.randn_tensor, dpm_mod.randn_tensor = saved
    assert len(feed.drawn) == steps, (len(feed.drawn), steps)
    case["shape"] = list(SAMPLE_SHAPE)
    case["unit_noise"] = f32list(unit)
    case["initial_sample"] = f32list(latent)
    case["model_outputs"] = [f32list(o) for o in outs]
    case["step_noise"] = [f32list(z) for z in feed.drawn]
    case["scaled_inputs"] = scaled
    case["samples_after_step"] = after
    return case


def main():
    variants = []
    for spacing, offset in [("leading", 1), ("linspace", 0), ("trailing", 0)]:
        variants.append(("euler_a", dict(SDXL, timestep_spacing=spacing, steps_offset=offset)))
        variants.append(("dpmpp_2m_sde", dict(SDXL, timestep_spacing=spacing, steps_offset=offset)))
    # LayerDiffuse's DPM++ 2M SDE Karras from the SDXL config, and v-prediction variants
    variants.append(("dpmpp_2m_sde", dict(SDXL, use_karras_sigmas=True)))
    variants.append(("dpmpp_2m_sde", dict(SDXL, use_karras_sigmas=True, prediction_type="v_prediction")))
    variants.append(("euler_a", dict(SDXL, prediction_type="v_prediction")))
    # a checkpoint config asking for Karras: Euler ancestral ignores it, as from_config does
    variants.append(("euler_a", dict(SDXL, use_karras_sigmas=True)))
    cases = []
    seed = 4242
    for sampler, cfg in variants:
        for n in [1, 4, 14, 20, 30]:
            cases.append(run_case(sampler, cfg, n, seed))
            seed += 1
    golden = OurGaussian(42).next(4)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stochastic_v0.25.json")
    with open(out, "w") as f:
        json.dump(dict(diffusers="0.25.0", torch=torch.__version__, noise_seed42=f32list(golden), cases=cases), f,
                  separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {out} ({os.path.getsize(out)} bytes); seed 42 noise {golden.tolist()}")


if __name__ == "__main__":
    main()
