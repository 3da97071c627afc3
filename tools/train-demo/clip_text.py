"""SDXL prompt conditioning from a diffusers folder's tokenizer(_2)/ and text_encoder(_2)/ in torch,
so the UNet trains on exactly what the engine feeds it: prompt_embeds = [te1 hidden_states[-2],
te2 hidden_states[-2]] (last axis), pooled = te2 text_embeds. The tokenizer is CLIP's byte-level
BPE (lower-cased, whitespace collapsed, BOS + tokens + EOS, truncated/padded to model_max_length
with the folder's pad token). Checked against `layerfusion run text-encode` (check_parity.py)."""
import json
import os
import re

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class Tokenizer:
    def __init__(self, folder):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")[1:]
        self.ranks = {tuple(l.split()): i for i, l in enumerate(x for x in lines if x)}
        with open(os.path.join(folder, "special_tokens_map.json"), encoding="utf-8") as f:
            special = json.load(f)
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
            self.max_length = json.load(f)["model_max_length"]
        self.bos = self.vocab[special["bos_token"]]
        self.eos = self.vocab[special["eos_token"]]
        self.pad = self.vocab[special["pad_token"]]
        self.byte_map = bytes_to_unicode()
        self.pattern = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

    def bpe(self, word):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(pairs)
            if rank == 1 << 30:
                break
            a, b = [k for k, v in self.ranks.items() if v == rank][0]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def __call__(self, text):
        if not text.isascii():
            raise ValueError("the demo tokenizer handles ASCII prompts only")
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for tok in self.pattern.findall(text):
            word = "".join(self.byte_map[b] for b in tok.encode("utf-8"))
            ids.extend(self.vocab[p] for p in self.bpe(word))
        ids = [self.bos] + ids[: self.max_length - 2] + [self.eos]
        return ids + [self.pad] * (self.max_length - len(ids))


class ClipText(torch.nn.Module):
    """transformers' CLIPTextModel(WithProjection) forward on its state-dict keys."""

    def __init__(self, folder):
        super().__init__()
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        self.w = {k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}

    def forward(self, ids):
        c, w = self.cfg, self.w
        ids = torch.tensor(ids, dtype=torch.long)[None]
        t = ids.shape[1]
        h = F.embedding(ids, w["text_model.embeddings.token_embedding.weight"]) + w["text_model.embeddings.position_embedding.weight"][:t]
        heads, width = c["num_attention_heads"], c["hidden_size"]
        mask = torch.full((t, t), float("-inf")).triu(1)
        states = [h]
        for i in range(c["num_hidden_layers"]):
            p = f"text_model.encoder.layers.{i}."
            x = F.layer_norm(h, (width,), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], c["layer_norm_eps"])
            q, k, v = (F.linear(x, w[p + f"self_attn.{n}_proj.weight"], w[p + f"self_attn.{n}_proj.bias"]).view(1, t, heads, -1).transpose(1, 2) for n in "qkv")
            a = ((q @ k.transpose(-1, -2)) * (width // heads) ** -0.5 + mask).softmax(-1) @ v
            h = h + F.linear(a.transpose(1, 2).reshape(1, t, width), w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
            x = F.layer_norm(h, (width,), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], c["layer_norm_eps"])
            x = F.linear(x, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])
            x = x * torch.sigmoid(1.702 * x) if c["hidden_act"] == "quick_gelu" else F.gelu(x)
            h = h + F.linear(x, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
            states.append(h)
        last = F.layer_norm(h, (width,), w["text_model.final_layer_norm.weight"], w["text_model.final_layer_norm.bias"], c["layer_norm_eps"])
        # eos_token_id 2 is transformers' legacy marker: pool at the argmax id (the EOS, highest in vocab)
        pos = ids.argmax(-1) if c["eos_token_id"] == 2 else (ids == c["eos_token_id"]).int().argmax(-1)
        pooled = last[torch.arange(1), pos]
        if "text_projection.weight" in w:
            pooled = F.linear(pooled, w["text_projection.weight"])
        return states[-2][0], pooled[0]


class Conditioner:
    """Prompt -> (prompt_embeds [77, 64], pooled [32]); "" -> zeros (force_zeros_for_empty_prompt)."""

    def __init__(self, folder):
        self.tok1, self.tok2 = Tokenizer(os.path.join(folder, "tokenizer")), Tokenizer(os.path.join(folder, "tokenizer_2"))
        self.te1, self.te2 = ClipText(os.path.join(folder, "text_encoder")), ClipText(os.path.join(folder, "text_encoder_2"))

    @torch.no_grad()
    def __call__(self, prompt):
        h1, _ = self.te1(self.tok1(prompt))
        h2, pooled = self.te2(self.tok2(prompt))
        emb = torch.cat([h1, h2], -1)
        if prompt == "":
            return torch.zeros_like(emb), torch.zeros_like(pooled)
        return emb, pooled
