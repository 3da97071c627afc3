# Converts a tiny single-file SDXL checkpoint written by `layerfusion make-tiny --layout single-file`
# with diffusers v0.25's own convert_from_ckpt.py functions (loaded from its source at run time,
# never copied here), checks the result equals the diffusers-layout tiny checkpoint of the same seed
# (names, shapes, bytes), and writes names, shapes and SHA-256 of every converted tensor as a
# fixture the C# tests compare their single-file loader against.
# Run:
#   layerfusion make-tiny /tmp/t/d --seed 7 && layerfusion make-tiny /tmp/t/s --layout single-file --seed 7
#   PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 ldm_conversion_check.py \
#       /tmp/t/s/sdxl_tiny.safetensors /tmp/t/d tests/LayerFusion.Tests/Checkpoints/Fixtures/ldm_conversion_seed7.json
import ast, hashlib, json, re, sys, types, contextlib
import torch
from safetensors.torch import load_file

SRC = "/tmp/diffusers-0.25/src/diffusers/pipelines/stable_diffusion/convert_from_ckpt.py"
WANTED = {"shave_segments", "renew_resnet_paths", "renew_vae_resnet_paths", "renew_attention_paths",
          "renew_vae_attention_paths", "assign_to_checkpoint", "conv_attn_to_linear",
          "convert_ldm_unet_checkpoint", "convert_ldm_vae_checkpoint", "convert_ldm_clip_checkpoint",
          "convert_open_clip_checkpoint", "textenc_conversion_lst", "textenc_conversion_map",
          "textenc_transformer_conversion_lst", "protected", "textenc_pattern"}

class Capture:
    """Stands in for a transformers model: records the state dict diffusers would load."""
    def __init__(self, *a, **k):
        self.state = None
        self.text_model = types.SimpleNamespace(embeddings=types.SimpleNamespace(get_buffer=lambda n: torch.arange(77)[None]))
    def load_state_dict(self, d):
        self.state = d

class FakeConfig:
    @staticmethod
    def from_pretrained(*a, **k): return FakeConfig()

def load_conversion():
    tree = ast.parse(open(SRC).read())
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in WANTED: body.append(node)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in WANTED for t in node.targets): body.append(node)
    ns = {"re": re, "torch": torch, "nullcontext": contextlib.nullcontext, "is_accelerate_available": lambda: False,
          "logger": types.SimpleNamespace(warning=print, debug=print, info=print),
          "CLIPTextConfig": FakeConfig, "CLIPTextModel": Capture, "CLIPTextModelWithProjection": Capture}
    exec(compile(ast.Module(body=body, type_ignores=[]), SRC, "exec"), ns)
    return ns

def main(single, folder, out):
    c = load_conversion()
    ckpt = load_file(single)
    unet_cfg = json.load(open(f"{folder}/unet/config.json"))
    unet_cfg.setdefault("class_embed_type", None)
    unet_cfg.setdefault("num_class_embeds", None)
    vae_cfg = json.load(open(f"{folder}/vae/config.json"))
    converted = {
        "unet": c["convert_ldm_unet_checkpoint"](ckpt, unet_cfg),
        "vae": c["convert_ldm_vae_checkpoint"](ckpt, vae_cfg),
    }
    te = Capture(); c["convert_ldm_clip_checkpoint"](ckpt, text_encoder=te)
    converted["text_encoder"] = te.state
    te2 = c["convert_open_clip_checkpoint"](ckpt, "sdxl-bigG", prefix="conditioner.embedders.1.model.", has_projection=True)
    converted["text_encoder_2"] = te2.state
    files = {"unet": "unet/diffusion_pytorch_model.safetensors", "vae": "vae/diffusion_pytorch_model.safetensors",
             "text_encoder": "text_encoder/model.safetensors", "text_encoder_2": "text_encoder_2/model.safetensors"}
    result = {"single_file": single.split("/")[-1], "components": {}}
    for name, state in converted.items():
        state = {k: v for k, v in state.items() if k != "text_model.embeddings.position_ids"}
        ref = load_file(f"{folder}/{files[name]}")
        assert set(state) == set(ref), (name, sorted(set(state) ^ set(ref))[:10])
        for k in ref:
            assert tuple(state[k].shape) == tuple(ref[k].shape), (name, k, state[k].shape, ref[k].shape)
            assert torch.equal(state[k].contiguous(), ref[k]), (name, k)
        result["components"][name] = [[k, list(v.shape), hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()[:16]]
                                      for k, v in sorted(state.items())]
        print(name, len(state), "tensors equal to the diffusers-layout checkpoint")
    json.dump(result, open(out, "w"), separators=(",", ":"))
    # diffusers itself loads the tiny diffusers folder (configs and weights) and runs its UNet.
    import safetensors.torch  # noqa: F401  (the shim's submodule, which diffusers reaches as an attribute)
    from diffusers import UNet2DConditionModel, AutoencoderKL, EulerDiscreteScheduler
    u = UNet2DConditionModel.from_pretrained(f"{folder}/unet")
    AutoencoderKL.from_pretrained(f"{folder}/vae")
    EulerDiscreteScheduler.from_pretrained(f"{folder}/scheduler")
    cfg = u.config
    u(torch.randn(1, cfg.in_channels, 16, 16, dtype=u.dtype), 10, torch.randn(1, 5, cfg.cross_attention_dim, dtype=u.dtype),
      added_cond_kwargs={"text_embeds": torch.randn(1, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim, dtype=u.dtype),
                         "time_ids": torch.randn(1, 6, dtype=u.dtype)})
    print("diffusers loads the tiny folder and runs its UNet")

if __name__ == "__main__":
    main(*sys.argv[1:4])
