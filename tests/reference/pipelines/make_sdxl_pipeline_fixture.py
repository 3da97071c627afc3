"""Reference for SdxlPipeline: diffusers v0.25 StableDiffusionXLPipeline.__call__ on the tiny checkpoint.

The tiny diffusers folder is `layerfusion make-tiny DIR --seed 5` (f16 weights; both sides compute in
float32). transformers is not installed here, so the text encoders are left out and the pipeline gets
seeded random prompt_embeds / pooled_prompt_embeds (its own arguments for precomputed embeddings); a
stub `transformers` module only satisfies imports. The initial noise is passed as `latents` (torch's
generator is not reproducible from C#), so the pipeline still multiplies it by init_noise_sigma.
Cases: euler with an explicit negative, euler with no negative (force_zeros_for_empty_prompt),
dpmpp-2m-karras and ddim. Saved: inputs, final latents (output_type="latent") and the decoded image
(output_type="pt", i.e. (x / 2 + 0.5).clamp(0, 1)).

Run (see /work/shared/reference/README.md):
  layerfusion make-tiny /tmp/tiny5 --seed 5
  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 make_sdxl_pipeline_fixture.py /tmp/tiny5
"""
import importlib.machinery
import os
import sys
import types

import torch


def _stub(name):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def attr(a):
        if a.startswith("__"):
            raise AttributeError(a)
        return a.lower() if a.isupper() else type(a, (), {})

    m.__getattr__ = attr
    sys.modules[name] = m
    return m


_t = _stub("transformers")
_t.__version__ = "4.36.0"
_t.__path__ = []
_t.utils = _stub("transformers.utils")
import diffusers.utils.import_utils as _iu  # noqa: E402

_iu._transformers_available = True
_iu._transformers_version = "4.36.0"

import safetensors.torch  # noqa: E402,F401  (the shim's submodule)
from safetensors.torch import save_file  # noqa: E402
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import Attention  # noqa: E402
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline  # noqa: E402

torch.set_grad_enabled(False)


def _attention_scores(self, query, key, attention_mask=None):
    """get_attention_scores without torch.empty + baddbmm(beta=0), whose uninitialized buffer leaks
    NaN on this torch build (see tests/reference/models/make_fixtures.py). Same math."""
    scores = torch.bmm(query, key.transpose(-1, -2)) * self.scale
    if attention_mask is not None:
        scores = scores + attention_mask
    return scores.softmax(dim=-1)


Attention.get_attention_scores = _attention_scores

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS, CFG, HEIGHT, WIDTH = 3, 5.0, 40, 48


def main(folder):
    unet = UNet2DConditionModel.from_pretrained(f"{folder}/unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(f"{folder}/vae", torch_dtype=torch.float32).eval()
    base = EulerDiscreteScheduler.from_pretrained(f"{folder}/scheduler")
    samplers = {
        "euler": lambda: EulerDiscreteScheduler.from_config(base.config),
        "dpmpp-2m-karras": lambda: DPMSolverMultistepScheduler.from_config(base.config, use_karras_sigmas=True, algorithm_type="dpmsolver++"),
        "ddim": lambda: DDIMScheduler.from_config(base.config),
    }
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    g = torch.Generator().manual_seed(20261123)
    seq, dim, pooled = 77, unet.config.cross_attention_dim, unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    tensors = {
        "prompt_embeds": torch.randn(1, seq, dim, generator=g),
        "pooled_prompt_embeds": torch.randn(1, pooled, generator=g),
        "negative_prompt_embeds": torch.randn(1, seq, dim, generator=g),
        "negative_pooled_prompt_embeds": torch.randn(1, pooled, generator=g),
        "noise": torch.randn(1, unet.config.in_channels, HEIGHT // vae_scale, WIDTH // vae_scale, generator=g),
    }
    cases = [("euler", True), ("euler", False), ("dpmpp-2m-karras", True), ("ddim", True)]
    for sampler, with_negative in cases:
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
                                         unet=unet, scheduler=samplers[sampler](), force_zeros_for_empty_prompt=True,
                                         add_watermarker=False)
        pipe.set_progress_bar_config(disable=True)
        kwargs = dict(prompt_embeds=tensors["prompt_embeds"], pooled_prompt_embeds=tensors["pooled_prompt_embeds"],
                      height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, guidance_scale=CFG)
        if with_negative:
            kwargs.update(negative_prompt_embeds=tensors["negative_prompt_embeds"],
                          negative_pooled_prompt_embeds=tensors["negative_pooled_prompt_embeds"])
        name = f"{sampler}.{'negative' if with_negative else 'zeros'}"
        tensors[f"{name}.latents"] = pipe(latents=tensors["noise"].clone(), output_type="latent", **kwargs).images
        tensors[f"{name}.image"] = pipe(latents=tensors["noise"].clone(), output_type="pt", **kwargs).images
        print(name, tuple(tensors[f"{name}.latents"].shape), tuple(tensors[f"{name}.image"].shape))
    out = os.path.join(HERE, "sdxl_pipeline_v0.25.safetensors")
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, out,
              metadata={"steps": str(STEPS), "cfg": str(CFG), "height": str(HEIGHT), "width": str(WIDTH), "tiny_seed": "5"})
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
