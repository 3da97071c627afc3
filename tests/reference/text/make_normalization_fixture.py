"""Reference data for CLIP's text cleanup (tests/LayerFusion.Tests/Text/TextNormalizationTests.cs):
writes normalization_v1.json with
- `clip`: prompts -> the text openai CLIP's SimpleTokenizer hands to BPE
  (whitespace_clean(basic_clean(text)).lower(), i.e. ftfy.fix_text, html.unescape twice, strip,
  whitespace runs to one space, lower) and SimpleTokenizer.encode's ids (the real BPE file);
- `ftfy`: the same prompts -> ftfy.fix_text alone; `ftfy_fuzz`: random strings over pieces that
  exercise every fix -> ftfy.fix_text (kept where fix_encoding, which we do not implement, has no effect);
- `html`: strings -> one html.unescape pass (named, prefix and numeric references, generated
  around the edge cases plus random ones);
- `nfc`: strings -> unicodedata.normalize("NFC") (every canonical decomposition's NFD form, the
  characters NFC replaces, random base + combining-mark sequences, Hangul jamo runs).
Every string is stored as its UTF-16 code units, so lone surrogates survive JSON.

Real ftfy is used, not a stub: rspeer/python-ftfy v6.3.1 (pure Python; its only dependency,
wcwidth, serves display helpers fix_text never calls and is stubbed). openai CLIP's
clip/simple_tokenizer.py and ftfy are not committed; unpack them first:
  git --git-dir=<python-ftfy git dir> archive v6.3.1 ftfy | tar -x -C /tmp/ftfy-6.3.1
  git --git-dir=<openai CLIP git dir> archive HEAD clip/simple_tokenizer.py | tar -x -C /tmp/openai-clip
  FTFY=/tmp/ftfy-6.3.1 OPENAI_CLIP=/tmp/openai-clip/clip /usr/bin/python3 tests/reference/text/make_normalization_fixture.py
(Debian's Python 3.11.2: unicodedata is Unicode 14.0.0, the version of src/LayerFusion.Core/Text/TextTables.g.cs.)
"""
import html
import html.entities
import json
import os
import random
import sys
import types
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
FTFY = os.environ.get("FTFY", "/tmp/ftfy-6.3.1")
CLIP_DIR = os.environ.get("OPENAI_CLIP", "/tmp/openai-clip/clip")
BPE = os.environ.get("CLIP_BPE", "/work/shared/reference/clip/bpe_simple_vocab_16e6.txt.gz")

_wcwidth = types.ModuleType("wcwidth")
_wcwidth.wcwidth = lambda c: 1
_wcwidth.wcswidth = lambda s: len(s)
sys.modules["wcwidth"] = _wcwidth
sys.path.insert(0, FTFY)
sys.path.insert(0, CLIP_DIR)
import ftfy  # noqa: E402
from simple_tokenizer import SimpleTokenizer, basic_clean, whitespace_clean  # noqa: E402

assert ftfy.__version__ == "6.3.1", ftfy.__version__

PROMPTS = [
    # issue 12.11's held-out prompts: Windows-1252 references, invalid references, controls, NFC
    "a fish &#150; a bird &#151; a cat &#133; &#128; &#153;",
    "invalid &#0; &#x110000; &#xD800; &#99999999999999999999; references",
    "vertical\u000btab and a bom\ufeffinside a prompt",
    "\ufeffleading bom and trailing one\ufeff",
    "cafe\u0301 cre\u0300me bru\u0302le\u0301e, nai\u0308ve",
    "e\u0301\u0323 a\u0323\u0301 a\u0301\u0323 o\u031b\u0300 canonical order",
    "decomposed hangul \u1112\u1161\u11ab\u1100\u116e\u11a8 and \ud55c + \u11ab",
    "ohm \u2126 angstrom \u212b kelvin \u212a and \u0958 \u0344",
    # html: HTML5 names, all-caps names, prefix names, repeated escaping, '<' switching ftfy's off
    "&check; &hellip; &NTILDE; &szlig; &SZLIG; &bigstar; &dollar;",
    "rock &amp;amp;amp; roll &amp;#150; &amp;lt;3",
    "<b>bold</b> &amp;amp;amp; tags",
    "first &amp;amp;amp;\nsecond <i> &amp;amp;amp;\nthird &amp;amp;amp;",
    "&lt;not a tag&gt; &amp;amp; x",
    "&notit; &amp &ampx &lt3 &copy2024 &#x41 &#65x",
    "&nbsp;non-breaking&nbsp;spaces&nbsp;",
    "&quot;&#39;&apos; &#8220;curly&#8221; &lsquo;single&rsquo;",
    "&#x1F431; cat and &#128049; and &#X1f436;",
    "&CounterClockwiseContourIntegral; &ThisNameIsNotAnEntityAtAllButLong; &;",
    # controls, C1, terminal escapes, line breaks
    "\x1b[1;31mred\x1b[0m text \x1b[m",
    "a\x00b\x07c\x7fd\u206ae\ufff9f\ufffcg",
    "raw c1: \x93smart\x94 \x96 dash \x85 \x80",
    "line\r\nbreaks\rand\u2028separators\u2029here\u0085too",
    "lone \ud800 surrogate and \udc00 another",
    # widths, ligatures, quotes
    "\uff76\uff9e\uff9d\uff80\uff9e\uff91 halfwidth katakana, \uff8a\uff9f\uff9d",
    "\uff21\uff22\uff23\uffe5\uffe0 \uffa1\uffa4 fullwidth and halfwidth hangul",
    "\u0133sselmeer \u01c6ungla \ufb05 \ufb00 \u0149 \u01c4",
    "it\u2019s \u201cquoted\u201d \u2018single\u2019 \u02bcmodifier",
    "soft\u00adhyphen zero\u200bwidth joiner\u200dx",
    # plain text stays what it was
    "a photo of a cat, highly detailed, 8k",
]


def units(s):
    b = s.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(b[i:i + 2], "little") for i in range(0, len(b), 2)]


def html_cases(rng):
    fixed = ["&amp", "&amp;", "&ampx", "&AMP;", "&notit;", "&notin;", "&not;", "&no", "&#", "&#;", "&#x;", "&#X41",
             "&#65", "&#065;", "&#1114111;", "&#1114112;", "&#9999999999999999999999;", "&#xD800;", "&#xdfff;", "&#0;",
             "&#13;", "&#128;", "&#x81;", "&#x8D;", "&#159;", "&#160;", "&#1;", "&#9;", "&#11;", "&#12;", "&#127;",
             "&#xFFFE;", "&#x10FFFF;", "&#xFDD0;", "&#x1F600;", "&;", "& amp;", "&&amp;", "&amp;&lt;&gt;",
             "&\U0001d400;", "&a\U0001d400b;", "&" + "x" * 33 + ";", "&" + "a" * 32, "&lt\tx", "&lt\n", "&ltx;",
             "&CounterClockwiseContourIntegral;", "&NotNestedGreaterGreater;", "&nGt;", "&fjlig;", "&acE;"]
    names = sorted(html.entities.html5)
    junk = ["", ";", "x", "1", " ", "&", "#", "q;", "\u00e9"]
    out = list(fixed)
    for _ in range(300):
        out.append("&" + rng.choice(names) + rng.choice(junk) + rng.choice(["", "&" + rng.choice(names)]))
    for _ in range(100):
        n = rng.choice([rng.randrange(0, 0x100), rng.randrange(0, 0x110000), rng.randrange(0xD700, 0xE000)])
        out.append(rng.choice(["&#%d" % n, "&#x%x" % n, "&#X%X;" % n, "&#%d;" % n]) + rng.choice(junk))
    return [(s, html.unescape(s)) for s in out]


def nfc_cases(rng):
    out = []
    decomposable = [cp for cp in range(0x110000) if unicodedata.decomposition(chr(cp))[:1] not in ("", "<")]
    for cp in decomposable:
        out.append(unicodedata.normalize("NFD", chr(cp)))
        if unicodedata.normalize("NFC", chr(cp)) != chr(cp):
            out.append(chr(cp))
    marks = [cp for cp in range(0x300, 0x370)] + [0x1DC0, 0x1DC4, 0x20D0, 0x20E3, 0x302A, 0x0591, 0x05B0, 0x0654,
                                                  0x093C, 0x094D, 0x0E38, 0x0F71, 0x0F72, 0x0F80, 0x1D165, 0x1D16D]
    bases = [ord(c) for c in "aeiouAEIOUnNcCsSyYwWzZ"] + [0x3B1, 0x3B7, 0x3C9, 0x415, 0x438, 0x5D0, 0x627, 0x915, 0x1100,
                                                      0x0B47, 0x0BC6, 0x0CC6, 0x0D46, 0x1025, 0x3046, 0x30AB]
    for _ in range(1500):
        s = [rng.choice(bases)] + [rng.choice(marks) for _ in range(rng.randrange(1, 5))]
        if rng.random() < 0.3:
            s.append(rng.choice([0x0B3E, 0x0BBE, 0x0CD5, 0x0D3E, 0x102E, 0x3099, 0x309A]))
        out.append("".join(map(chr, s)))
    for _ in range(300):
        n = rng.randrange(1, 7)
        s = [rng.choice([rng.randrange(0x1100, 0x1113), rng.randrange(0x1161, 0x1176), rng.randrange(0x11A7, 0x11C3),
                         rng.randrange(0xAC00, 0xD7A4), 0x0301]) for _ in range(n)]
        out.append("".join(map(chr, s)))
    return [(s, unicodedata.normalize("NFC", s)) for s in out]


FUZZ_PIECES = ["a", "B", "e", " ", "\n", "\r", "&", ";", "#", "amp;", "lt;", "<", "x41", "150", "&#150;", "&#x9d;",
               "&amp;", "&nbsp;", "&#0;", "&NTILDE;", "&szlig;", "&SZLIG;", "\x0b", "\ufeff", "\x96", "\x85", "\x81",
               "\u0301", "\u0323", "\u1100", "\u1161", "\u11a8", "\uff76", "\uff9e", "\uffa1", "\ufb01", "\ufb05",
               "\u0133", "\u2019", "\u201c", "\u02bc", "\u2028", "\x1b[1m", "\x1b[", "\x00", "\x7f", "\ud800",
               "\udc00", "\ud83d\udc31", "\u206a", "\ufffc", "\u00df", "\u3000", "\uff21"]


def ftfy_fuzz(rng):
    """Random strings over pieces that hit every fix; kept only where fix_encoding (the mojibake
    repair we do not implement) changes nothing, so what remains is what FtfyFixes must match."""
    out = []
    while len(out) < 600:
        s = "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randrange(1, 12)))
        fixed = ftfy.fix_text(s)
        if ftfy.fix_text(s, fix_encoding=False) == fixed:
            out.append((s, fixed))
    return out


def main():
    tok = SimpleTokenizer(BPE)
    clip = []
    for p in PROMPTS:
        cleaned = whitespace_clean(basic_clean(p)).lower()
        clip.append(dict(prompt=units(p), ftfy=units(ftfy.fix_text(p)), cleaned=units(cleaned), bpe_ids=tok.encode(p)))
    rng = random.Random(1211)
    doc = dict(
        source="openai/CLIP simple_tokenizer.py with ftfy 6.3.1; Python %s html.unescape; unicodedata %s"
               % (".".join(map(str, sys.version_info[:3])), unicodedata.unidata_version),
        unicode_version=unicodedata.unidata_version,
        clip=clip,
        ftfy_fuzz=[dict(input=units(a), output=units(b)) for a, b in ftfy_fuzz(rng)],
        html=[dict(input=units(a), output=units(b)) for a, b in html_cases(rng)],
        nfc=[dict(input=units(a), output=units(b)) for a, b in nfc_cases(rng)],
    )
    out = os.path.join(HERE, "normalization_v1.json")
    with open(out, "w", encoding="ascii") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {out}: {len(clip)} prompts, {len(doc['ftfy_fuzz'])} ftfy fuzz, {len(doc['html'])} html, {len(doc['nfc'])} nfc cases ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
