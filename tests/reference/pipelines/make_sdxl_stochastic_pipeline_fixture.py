"""Reference for SdxlPipeline with the stochastic samplers: diffusers v0.25 StableDiffusionXLPipeline on
the tiny checkpoint with Euler ancestral and DPM++ 2M SDE Karras, every step's noise taken from our
GaussianNoise stream (seed 0, the SdxlRequest default) instead of torch's generator.

Same checkpoint, embeddings and initial noise as make_sdxl_pipeline_fixture.py (imported for its
stubs, attention patch and constants; its inputs are regenerated from the same torch seed and saved
again here). The initial noise is passed as `latents`, so prepare_latents draws nothing and the
scheduler's first randn_tensor call takes element 0 of our stream onwards, as SdxlPipeline does when
SdxlRequest.InitialNoise is given. Schedulers: XScheduler.from_config(checkpoint config, ...) as the
C# registry builds them.

Run (see /work/shared/reference/README.md):
  layerfusion make-tiny /tmp/tiny5 --seed 5
  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
      tests/reference/pipelines/make_sdxl_stochastic_pipeline_fixture.py /tmp/tiny5
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "schedulers"))

import make_sdxl_pipeline_fixture as base_fixture  # noqa: E402  (stubs transformers, patches attention)
import torch  # noqa: E402
import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm_mod  # noqa: E402
import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_mod  # noqa: E402
from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,  # noqa: E402
                       EulerDiscreteScheduler, UNet2DConditionModel)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline  # noqa: E402
from make_stochastic_fixtures import NoiseFeed, OurGaussian  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

SEED = 0


def main(folder):
    STEPS, CFG, HEIGHT, WIDTH = base_fixture.STEPS, base_fixture.CFG, base_fixture.HEIGHT, base_fixture.WIDTH
    unet = UNet2DConditionModel.from_pretrained(f"{folder}/unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(f"{folder}/vae", torch_dtype=torch.float32).eval()
    base = EulerDiscreteScheduler.from_pretrained(f"{folder}/scheduler")
    samplers = {
        "euler-a": lambda: EulerAncestralDiscreteScheduler.from_config(base.config),
        "dpmpp-2m-sde-karras": lambda: DPMSolverMultistepScheduler.from_config(
            base.config, use_karras_sigmas=True, algorithm_type="sde-dpmsolver++"),
    }
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    g = torch.Generator().manual_seed(20261123)
    seq, dim = 77, unet.config.cross_attention_dim
    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    tensors = {
        "prompt_embeds": torch.randn(1, seq, dim, generator=g),
        "pooled_prompt_embeds": torch.randn(1, pooled, generator=g),
        "negative_prompt_embeds": torch.randn(1, seq, dim, generator=g),
        "negative_pooled_prompt_embeds": torch.randn(1, pooled, generator=g),
        "noise": torch.randn(1, unet.config.in_channels, HEIGHT // vae_scale, WIDTH // vae_scale, generator=g),
    }
    saved = ea_mod.randn_tensor, dpm_mod.randn_tensor
    try:
        for sampler in samplers:
            pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
                                             unet=unet, scheduler=samplers[sampler](), force_zeros_for_empty_prompt=True,
                                             add_watermarker=False)
            pipe.set_progress_bar_config(disable=True)
            kwargs = dict(prompt_embeds=tensors["prompt_embeds"], pooled_prompt_embeds=tensors["pooled_prompt_embeds"],
                          negative_prompt_embeds=tensors["negative_prompt_embeds"],
                          negative_pooled_prompt_embeds=tensors["negative_pooled_prompt_embeds"],
                          height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, guidance_scale=CFG)
            for output_type, key in [("latent", "latents"), ("pt", "image")]:
                feed = NoiseFeed(OurGaussian(SEED))
                ea_mod.randn_tensor = dpm_mod.randn_tensor = feed
                tensors[f"{sampler}.{key}"] = pipe(latents=tensors["noise"].clone(), output_type=output_type, **kwargs).images
                assert len(feed.drawn) == STEPS, len(feed.drawn)
            print(sampler, tuple(tensors[f"{sampler}.latents"].shape))
    finally:
        ea_mod.randn_tensor, dpm_mod.randn_tensor = saved
    out = os.path.join(HERE, "sdxl_pipeline_stochastic_v0.25.safetensors")
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, out,
              metadata={"steps": str(STEPS), "cfg": str(CFG), "height": str(HEIGHT), "width": str(WIDTH), "tiny_seed": "5",
                        "noise_seed": str(SEED)})
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
