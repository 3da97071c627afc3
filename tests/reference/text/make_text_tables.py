"""Writes src/LayerFusion.Core/Text/TextTables.g.cs: the Unicode and HTML data CLIP's text cleanup
needs and .NET under InvariantGlobalization lacks.

Everything comes from the running Python's standard library (the reference tokenizer's own data):
- NFC: canonical decomposition mappings, canonical combining classes, and the length-2 canonical
  decompositions NFC does not recompose (composition exclusions, singletons are length 1,
  non-starter decompositions), from `unicodedata` (its Unicode version is written into the file;
  Debian's Python 3.11.2 has Unicode 14.0.0). Hangul syllables are algorithmic and not listed.
- HTML: `html.entities.html5` (the HTML5 named character references, with and without ';', as
  `html.unescape` knows them), plus the all-caps names ftfy's unescape_html also decodes: for an
  all-lowercase name ending in ';' whose upper-cased form html.unescape leaves alone, that form maps
  to the value upper-cased with Python's str.upper (so &SZLIG; is "SS").
- ftfy's fix_character_width map: U+3000 to ' ', and every U+FF01..U+FFEF whose NFKC form differs
  to that form.
- html.unescape's numeric-reference special cases (`html._invalid_charrefs`: 0x00, 0x0D and
  0x80..0x9F read as Windows-1252, its five holes kept as the C1 control; `html._invalid_codepoints`:
  references that decode to nothing). Its 0x80..0x9F part is also ftfy's fix_c1_controls
  ("sloppy" Windows-1252), which the script asserts.

Run with Debian's Python: /usr/bin/python3 tests/reference/text/make_text_tables.py
"""
import html
import html.entities
import os
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "..", "src", "LayerFusion.Core", "Text", "TextTables.g.cs")
HANGUL = range(0xAC00, 0xD7A4)


def cs_string(s):
    out = []
    for ch in s:
        o = ord(ch)
        if 0x20 <= o < 0x7F and ch not in '"\\':
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04X}")
        else:
            out.append(f"\\U{o:08X}")
    return '"' + "".join(out) + '"'


def int_rows(values, per_line=12, indent="        "):
    rows = []
    for i in range(0, len(values), per_line):
        rows.append(indent + ", ".join(f"0x{v:X}" if v >= 0 else str(v) for v in values[i:i + per_line]) + ",")
    return "\n".join(rows)


def string_rows(s, width=100, indent="        "):
    # split a long literal into concatenated pieces without cutting an escape in two
    pieces, cur = [], ""
    for ch in s:
        lit = cs_string(ch)[1:-1]
        if len(cur) + len(lit) > width:
            pieces.append(cur)
            cur = ""
        cur += lit
    if cur:
        pieces.append(cur)
    return (" +\n").join(f'{indent}"{p}"' for p in pieces)


def main():
    decomp, exclusions, ccc_ranges = [], [], []
    for cp in range(0x110000):
        if cp in HANGUL:
            continue
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            assert len(parts) in (1, 2), (hex(cp), d)
            decomp += [cp, parts[0], parts[1] if len(parts) == 2 else -1]
            if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) != chr(cp):
                exclusions.append(cp)
    start, prev, cls = None, None, 0
    for cp in range(0x110000):
        c = unicodedata.combining(chr(cp))
        if c and start is not None and c == cls and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            ccc_ranges += [start, prev, cls]
            start = None
        if c:
            start, prev, cls = cp, cp, c
    if start is not None:
        ccc_ranges += [start, prev, cls]

    entities = html.entities.html5
    assert all("\0" not in k + v and "\1" not in k + v for k, v in entities.items())
    html5 = "".join(f"{k}\0{v}\1" for k, v in sorted(entities.items()))
    upper = {}
    for name, char in entities.items():
        if name.endswith(";") and name == name.lower():
            ent = "&" + name.upper()
            if html.unescape(ent) == ent:
                upper[name.upper()] = char.upper()
    ftfy_upper = "".join(f"{k}\0{v}\1" for k, v in sorted(upper.items()))
    width = {0x3000: " "}
    for cp in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(cp))
        if alt != chr(cp):
            width[cp] = alt
    width_s = "".join(f"{chr(k)}{v}\1" for k, v in sorted(width.items()))

    charrefs = html._invalid_charrefs
    for b in range(0x80, 0xA0):
        try:
            sloppy = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            sloppy = chr(b)
        assert charrefs[b] == sloppy, hex(b)
    assert all(len(v) == 1 for v in charrefs.values())
    charref_rows = [x for k, v in sorted(charrefs.items()) for x in (k, ord(v))]
    invalid_cps = sorted(html._invalid_codepoints)

    ver = unicodedata.unidata_version
    py = ".".join(map(str, sys.version_info[:3]))
    text = f"""// <auto-generated>
// Written by tests/reference/text/make_text_tables.py from Python {py}'s unicodedata (Unicode {ver})
// and html.entities.html5. Do not edit; rerun the script.
// </auto-generated>
namespace LayerFusion.Core.Text;

internal static class TextTables
{{
    /// <summary>The Unicode version of the NFC and width data (the reference tokenizer's Python).</summary>
    public const string UnicodeVersion = "{ver}";

    /// <summary>Canonical decomposition mappings (one level): code point, first, second (-1: singleton). Hangul is algorithmic.</summary>
    public static ReadOnlySpan<int> Decompositions =>
    [
{int_rows(decomp)}
    ];

    /// <summary>Length-2 canonical decompositions that NFC does not recompose (exclusions, non-starter decompositions).</summary>
    public static ReadOnlySpan<int> CompositionExclusions =>
    [
{int_rows(exclusions)}
    ];

    /// <summary>Non-zero canonical combining classes as (first, last, class) ranges, ascending.</summary>
    public static ReadOnlySpan<int> CombiningClassRanges =>
    [
{int_rows(ccc_ranges)}
    ];

    /// <summary>html.unescape's special numeric references: number, the character it decodes to.</summary>
    public static ReadOnlySpan<int> InvalidCharrefs =>
    [
{int_rows(charref_rows)}
    ];

    /// <summary>Numeric references html.unescape drops (decodes to nothing).</summary>
    public static ReadOnlySpan<int> InvalidCodepoints =>
    [
{int_rows(invalid_cps)}
    ];

    /// <summary>HTML5 named character references: name (without '&amp;', with or without ';'), U+0000, value, U+0001.</summary>
    public const string Html5Entities =
{string_rows(html5)};

    /// <summary>The all-caps names ftfy's unescape_html adds (name with ';', U+0000, upper-cased value, U+0001).</summary>
    public const string FtfyUpperEntities =
{string_rows(ftfy_upper)};

    /// <summary>ftfy's fix_character_width: the character, its replacement, U+0001.</summary>
    public const string WidthMap =
{string_rows(width_s)};
}}
"""
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(decomp) // 3} decompositions, {len(exclusions)} exclusions, {len(ccc_ranges) // 3} ccc ranges, "
          f"{len(entities)} entities (+{len(upper)} all-caps), {len(width)} width entries; Unicode {ver}")


if __name__ == "__main__":
    main()
