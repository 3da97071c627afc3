"""Produces tests/reference/schedulers/schedulers_v0.25.json: what diffusers v0.25.0 computes for the
samplers LayerFusion offers, for the C# scheduler tests.

Run (see /work/shared/reference/README.md):
  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
      tests/reference/schedulers/make_scheduler_fixtures.py

For every case the file holds: the config (as our SchedulerConfig sees it plus the sampler name), the
step count, timesteps, sigmas (where the scheduler has them), init_noise_sigma, and a full denoising
run: an initial latent (seeded Gaussian, already multiplied by init_noise_sigma as the pipelines do)
and one fixed model output per step, with the scaled model input and the sample after every step.
Values are float32 written as the shortest decimal that round-trips (exact after a float cast).
"""
import json
import os

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

# scheduler/scheduler_config.json of stabilityai/stable-diffusion-xl-base-1.0
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

SAMPLE_SHAPE = (1, 4, 2, 2)
STEP_COUNTS = [1, 4, 20, 30, 50]


def f32list(t):
    a = np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
    return [float(repr_f32(v)) for v in a.reshape(-1)]


def repr_f32(v):
    # shortest decimal that parses back to the same float32
    return np.format_float_positional(np.float32(v), unique=True, trim="-") if np.isfinite(v) else str(v)


def make(sampler, cfg):
    kw = {k: v for k, v in cfg.items()}
    if sampler == "euler":
        return EulerDiscreteScheduler(
            num_train_timesteps=kw["num_train_timesteps"], beta_start=kw["beta_start"], beta_end=kw["beta_end"],
            beta_schedule=kw["beta_schedule"], prediction_type=kw["prediction_type"],
            interpolation_type=kw["interpolation_type"], use_karras_sigmas=kw["use_karras_sigmas"],
            timestep_spacing=kw["timestep_spacing"], steps_offset=kw["steps_offset"])
    if sampler == "dpmpp_2m":
        # what LayerDiffuse's SDXL reference does: DPMSolverMultistepScheduler.from_config(sdxl, ...)
        return DPMSolverMultistepScheduler(
            num_train_timesteps=kw["num_train_timesteps"], beta_start=kw["beta_start"], beta_end=kw["beta_end"],
            beta_schedule=kw["beta_schedule"], prediction_type=kw["prediction_type"],
            algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
            use_karras_sigmas=kw["use_karras_sigmas"], timestep_spacing=kw["timestep_spacing"],
            steps_offset=kw["steps_offset"])
    if sampler == "ddim":
        return DDIMScheduler(
            num_train_timesteps=kw["num_train_timesteps"], beta_start=kw["beta_start"], beta_end=kw["beta_end"],
            beta_schedule=kw["beta_schedule"], prediction_type=kw["prediction_type"],
            clip_sample=kw["clip_sample"], set_alpha_to_one=kw["set_alpha_to_one"],
            timestep_spacing=kw["timestep_spacing"], steps_offset=kw["steps_offset"])
    raise ValueError(sampler)


def run_case(sampler, cfg, steps, seed):
    s = make(sampler, cfg)
    s.set_timesteps(steps)
    case = dict(sampler=sampler, config=cfg, steps=steps)
    case["timesteps"] = [float(t) for t in s.timesteps.to(torch.float64).numpy()]
    if hasattr(s, "sigmas") and sampler != "ddim":
        case["sigmas"] = f32list(s.sigmas)
    ins = s.init_noise_sigma
    case["init_noise_sigma"] = float(repr_f32(float(ins)))

    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(SAMPLE_SHAPE, generator=g, dtype=torch.float32) * s.init_noise_sigma
    outs = [torch.randn(SAMPLE_SHAPE, generator=g, dtype=torch.float32) for _ in s.timesteps]
    case["shape"] = list(SAMPLE_SHAPE)
    case["initial_sample"] = f32list(latent)
    case["model_outputs"] = [f32list(o) for o in outs]
    scaled, after = [], []
    x = latent
    for i, t in enumerate(s.timesteps):
        xin = s.scale_model_input(x, t)
        scaled.append(f32list(xin))
        x = s.step(outs[i], t, x).prev_sample
        after.append(f32list(x))
    case["scaled_inputs"] = scaled
    case["samples_after_step"] = after
    return case


def main():
    cases = []
    seed = 1234
    variants = []
    for spacing, offset in [("leading", 1), ("linspace", 0), ("trailing", 0), ("leading", 0)]:
        variants.append(("euler", dict(SDXL, timestep_spacing=spacing, steps_offset=offset)))
        variants.append(("ddim", dict(SDXL, timestep_spacing=spacing, steps_offset=offset)))
        variants.append(("dpmpp_2m", dict(SDXL, timestep_spacing=spacing, steps_offset=offset)))
    # the named samplers: DPM++ 2M Karras from the SDXL config, Euler with Karras sigmas and log-linear
    variants.append(("dpmpp_2m", dict(SDXL, use_karras_sigmas=True)))
    variants.append(("euler", dict(SDXL, use_karras_sigmas=True)))
    variants.append(("euler", dict(SDXL, interpolation_type="log_linear", timestep_spacing="linspace", steps_offset=0)))
    # other prediction types and a set_alpha_to_one DDIM (SD 1.x style)
    variants.append(("euler", dict(SDXL, prediction_type="v_prediction")))
    variants.append(("dpmpp_2m", dict(SDXL, use_karras_sigmas=True, prediction_type="v_prediction")))
    variants.append(("ddim", dict(SDXL, prediction_type="v_prediction", set_alpha_to_one=True)))
    variants.append(("ddim", dict(SDXL, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)))
    for sampler, cfg in variants:
        for n in STEP_COUNTS:
            cases.append(run_case(sampler, cfg, n, seed))
            seed += 1
    tables = []
    for sched, b0, b1 in [("scaled_linear", 0.00085, 0.012), ("linear", 0.0001, 0.02)]:
        d = DDIMScheduler(num_train_timesteps=1000, beta_start=b0, beta_end=b1, beta_schedule=sched)
        tables.append(dict(beta_schedule=sched, beta_start=b0, beta_end=b1, num_train_timesteps=1000,
                           betas=f32list(d.betas), alphas_cumprod=f32list(d.alphas_cumprod)))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedulers_v0.25.json")
    with open(out, "w") as f:
        json.dump(dict(diffusers="0.25.0", torch=torch.__version__, cases=cases, tables=tables), f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
