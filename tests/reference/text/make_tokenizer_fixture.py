"""Reference CLIP token ids for the tokenizer parity test (tests/LayerFusion.Tests/Text).

Runs openai/CLIP's clip/simple_tokenizer.py (not committed: point OPENAI_CLIP at a checkout's
`clip/` folder) on the real BPE file (the copy committed with the tests,
tests/LayerFusion.Tests/Text/Data/bpe_simple_vocab_16e6.txt.gz, MIT) and writes tokenizer_ids.json: per prompt the raw BPE ids (SimpleTokenizer.encode) and
the 77-id sequences a diffusers SDXL pipeline feeds its two encoders
([BOS] + ids[:75] + [EOS] + padding; tokenizer pads with <|endoftext|>, tokenizer_2 with "!").

ftfy is not installed here, so ftfy.fix_text is stubbed as the identity. For ASCII prompts that is
exact. For the unicode prompts the expected ids are those of the prompt text after the ftfy fixes
our tokenizer implements (see FTFY_FIXED below: written out by hand from ftfy's documented rules,
uncurl_quotes, fullwidth ASCII from fix_character_width, fix_latin_ligatures) -- so those entries check BPE and
pre-tokenization on unicode exactly, and the ftfy subset only as far as the hand-written fixes go.

Run: OPENAI_CLIP=/tmp/openai-clip/clip /usr/bin/python3 make_tokenizer_fixture.py
"""
import json
import os
import sys
import types
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP_DIR = os.environ.get("OPENAI_CLIP", "/tmp/openai-clip/clip")
BPE = os.environ.get("CLIP_BPE", os.path.join(HERE, "../../LayerFusion.Tests/Text/Data/bpe_simple_vocab_16e6.txt.gz"))

ftfy = types.ModuleType("ftfy")
ftfy.fix_text = lambda text: text  # see module docstring
sys.modules["ftfy"] = ftfy
sys.path.insert(0, CLIP_DIR)
from simple_tokenizer import SimpleTokenizer  # noqa: E402

BOS, EOS, BANG = 49406, 49407, 0
CONTEXT = 77

PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "an astronaut riding a horse on mars, highly detailed, 8k, trending on artstation",
    "Hello, world!!! How's it going?",
    "don't won't I'm you're they've we'll he'd it's",
    "DON'T SHOUT, IT'S RUDE",
    "   lots   of\tspaces \n and\n\nnewlines   ",
    "numbers 1234567890 and 3.14159 and -42 and 1,000,000",
    "1girl, solo, long hair, looking at viewer, smile, (masterpiece:1.2), [best quality]",
    "email me at someone@example.com or visit https://example.org/path?q=1&r=2",
    "rock &amp; roll &lt;3 &quot;quoted&quot; &#39;single&#39; &amp;amp;",
    "C++ and C# and F#; x^2 + y^2 = z^2 ... ?!?! ~~~ ___ --- ***",
    "snake_case and camelCase and kebab-case and ALLCAPS",
    "a dog's bone, the cats' toys, rock'n'roll",
    "an ice-cold glass of lemonade; ultra-realistic; 35mm; f/1.8",
    "café crème brûlée à la mode, naïve façade",
    "Ångström Œuvre Ñandú ÉCOLE",
    "über straße grüße",
    "东京的夜景 霓虹灯",
    "日本語のテキスト と English mixed",
    "한국어 문장입니다",
    "Привет, мир! Москва",
    "γειά σου κόσμε",
    "a cute cat 🐱 with a red hat 🎩 and sparkles ✨✨",
    "emoji family 👨‍👩‍👧 and flag 🇫🇷",
    "price: 5€ or $5 or ¥500 — em dash – en dash … ellipsis",
    "",
    "!",
    "<|startoftext|>explicit special tokens<|endoftext|>",
    "x" * 5,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "ΚΌΣΜΟΣ ΣΑΣ, ΟΔΟΣ",
    "math letters \U0001d400\U0001d401 and digits \U0001d7cf\U0001d7d0 and \U00020000",
    "tabs\tand\u00a0nbsp\u2003em space",
    ("a very long prompt that goes on and on, " * 12).strip(),
]

# Unicode prompts whose ftfy-fixed text differs from the input: input -> text after the fixes our
# tokenizer implements (curly quotes uncurled, fullwidth ASCII narrowed, Latin ligatures split).
# ftfy's NFC step is not implemented (every prompt here is NFC already; asserted below).
FTFY_FIXED = {
    "it\u2019s a \u201cquoted\u201d word": "it's a \"quoted\" word",
    "\uff28\uff45\uff4c\uff4c\uff4f\uff01 fullwidth\u3000space": "Hello! fullwidth space",
    "\u4e1c\u4eac\u7684\u591c\u666f\uff0c\u9713\u8679\u706f": "\u4e1c\u4eac\u7684\u591c\u666f,\u9713\u8679\u706f",
    "\ufb01ne \ufb02owers": "fine flowers",
}


def full(ids, pad):
    body = ids[: CONTEXT - 2]
    seq = [BOS] + body + [EOS]
    return seq + [pad] * (CONTEXT - len(seq)), len(ids) > CONTEXT - 2


def main():
    tok = SimpleTokenizer(BPE)
    cases = []
    for prompt, text in [(p, p) for p in PROMPTS] + list(FTFY_FIXED.items()):
        assert unicodedata.normalize("NFC", text) == text, text
        ids = tok.encode(text)
        seq1, truncated = full(ids, EOS)
        seq2, _ = full(ids, BANG)
        cases.append({"prompt": prompt, "bpe_ids": ids, "tokenizer": seq1, "tokenizer_2": seq2,
                      "truncated": truncated, "ftfy_fixed_by_hand": prompt != text})
    out = os.path.join(HERE, "tokenizer_ids.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write('{"source": "openai/CLIP simple_tokenizer.py, ftfy stubbed (see make_tokenizer_fixture.py)",\n"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=True, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
