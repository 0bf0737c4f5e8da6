"""
Generates unicode_tables.h: the per-character Unicode tables that tokenizer.h
needs to reproduce the Hugging Face BERT normalizer and pre-tokenizer.

    python dev/gen_unicode_tables.py            # writes unicode_tables.h

This is not a general Unicode library. It answers exactly five questions per
code point, the ones the BERT pipeline asks:

    removed     does clean_text drop it (NUL, U+FFFD, "control" chars)
    whitespace  does clean_text turn it into ' ' (and the pre-tokenizer split on it)
    punct       does the pre-tokenizer isolate it as punctuation
    strip       what does strip_accents make of it (NFD, then drop category Mn)
    lower       what does lowercase make of it (may be several chars)

(CJK ranges are 8 constants, written by hand in tokenizer.h.)

Where the answers come from. The ids must equal those of the `tokenizers`
library (Rust), which is what BertTokenizerFast runs. Its tables do NOT match
Python's unicodedata (Python 3.11 ships Unicode 14.0.0):
  - `is_control` uses the `unicode_categories` crate's `is_other`, which holds
    Cc, Cf, Co, Cs but no Cn: unassigned code points are kept, not removed
    (~830k code points differ), and its Cf table is older than Unicode 14.
  - whitespace is Rust's `char::is_whitespace`, which includes U+2028/U+2029
    (Python's BasicTokenizer only takes category Zs).
  - Mn (strip_accents) and P* (punctuation) come from that same older crate,
    so marks and punctuation added in recent Unicode versions are not seen.
  - lowercase is Rust std `char::to_lowercase`, a newer Unicode (16) than
    Python 3.11's, so it knows some letters Python calls unassigned.
So we compute every property twice: once from unicodedata the way the Python
BasicTokenizer defines it, once by asking the installed `tokenizers` library
about each code point alone, print how they differ, and write the `tokenizers`
answers. The per-character probe is exact because every BERT normalizer step
maps characters one by one; the one exception, canonical reordering of
combining marks inside NFD, is not modelled (see tokenizer.h).
Hangul syllables are decomposed by formula in tokenizer.h, so they are checked
here but left out of the strip table.
"""

import argparse
import sys
import unicodedata

import tokenizers
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

MAX_CP = 0x110000
HANGUL_S0, HANGUL_SN = 0xAC00, 11172

def py_properties(cp):
    """Python BasicTokenizer's view (transformers' tokenization_bert.py)."""
    c = chr(cp)
    cat = unicodedata.category(c)
    removed = cp == 0 or cp == 0xFFFD or (c not in "\t\n\r" and cat.startswith("C"))
    whitespace = c in " \t\n\r" or cat == "Zs"
    punct = (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
             or cat.startswith("P"))
    strip = "".join(x for x in unicodedata.normalize("NFD", c) if unicodedata.category(x) != "Mn")
    lower = c.lower()
    return removed, whitespace, punct, strip, lower

def hangul_decompose(cp):
    s = cp - HANGUL_S0
    out = [0x1100 + s // 588, 0x1161 + (s % 588) // 28]
    if s % 28:
        out.append(0x11A7 + s % 28)
    return "".join(map(chr, out))

def to_ranges(cps):
    """sorted code points -> [(lo, hi)] inclusive"""
    out = []
    for cp in cps:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out

def to_delta_ranges(pairs):
    """sorted (cp, mapped_cp) -> [(lo, hi, stride, lo_to)]: every stride-th cp in
    [lo, hi] maps to cp - lo + lo_to. Stride 2 catches the alternating Upper/lower
    blocks (Latin Extended-A and friends). Rows are disjoint and sorted."""
    out = []
    for cp, m in pairs:
        d = m - cp
        if out:
            lo, hi, stride, delta = out[-1]
            if delta == d and lo == hi and cp - hi in (1, 2):
                out[-1] = [lo, cp, cp - hi, d]
                continue
            if delta == d and cp - hi == stride:
                out[-1][1] = cp
                continue
        out.append([cp, cp, 1, d])
    return out

def emit_ranges(f, name, ranges, comment):
    f.write(f"// {comment}\n")
    f.write(f"static const uint32_t {name}[][2] = {{ // {len(ranges)} ranges\n")
    for i in range(0, len(ranges), 6):
        f.write("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}}}," for lo, hi in ranges[i:i + 6]) + "\n")
    f.write("};\n\n")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="unicode_tables.h")
    args = ap.parse_args()

    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pre = BertPreTokenizer()

    removed, whitespace, punct, strip_map, lower_map = [], [], [], [], []
    diffs = {k: [] for k in ("removed", "whitespace", "punct", "strip", "lower")}
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # surrogates: not chars in Rust, invalid in UTF-8; tokenizer.h never sees them
        c = chr(cp)
        r_clean = clean.normalize_str(c)
        r_removed = r_clean == ""
        r_white = r_clean == " "
        # "a?a" splits into 3 pieces iff ? is isolated punctuation (2 if whitespace)
        r_punct = len(pre.pre_tokenize_str("a" + c + "a")) == 3
        r_strip = strip.normalize_str(c)
        r_lower = lower.normalize_str(c)
        p_removed, p_white, p_punct, p_strip, p_lower = py_properties(cp)
        for k, r, p in (("removed", r_removed, p_removed), ("whitespace", r_white, p_white),
                        ("punct", r_punct, p_punct), ("strip", r_strip, p_strip),
                        ("lower", r_lower, p_lower)):
            if r != p:
                diffs[k].append(cp)
        if r_removed:
            removed.append(cp)
        if r_white:
            whitespace.append(cp)
        if r_punct:
            punct.append(cp)
        if HANGUL_S0 <= cp < HANGUL_S0 + HANGUL_SN:
            assert r_strip == hangul_decompose(cp), hex(cp)
        elif r_strip != c:
            strip_map.append((cp, r_strip))
        if r_lower != c:
            lower_map.append((cp, r_lower))

    print(f"unicodedata {unicodedata.unidata_version} vs tokenizers {tokenizers.__version__}, "
          "code points where they differ (tables follow tokenizers):", file=sys.stderr)
    for k, v in diffs.items():
        cats = {}
        for cp in v:
            cat = unicodedata.category(chr(cp))
            cats[cat] = cats.get(cat, 0) + 1
        print(f"  {k:10s} {len(v):7d}  by Python category {cats}  e.g. {[hex(x) for x in v[:6]]}",
              file=sys.stderr)

    # strip: dropped marks as ranges; one-char results as (cp, cp2) pairs (their
    # deltas rarely repeat, so delta ranges would be bigger);
    # the rare multi-char results in a small table padded to STRIP_MAX with 0
    strip_drop = [cp for cp, s in strip_map if s == ""]
    strip_one = [(cp, ord(s)) for cp, s in strip_map if len(s) == 1]
    strip_multi = [(cp, s) for cp, s in strip_map if len(s) > 1]
    strip_max = max(len(s) for _, s in strip_multi)
    lower_one = [(cp, ord(s)) for cp, s in lower_map if len(s) == 1]
    lower_multi = [(cp, s) for cp, s in lower_map if len(s) > 1]
    lower_max = max(len(s) for _, s in lower_multi)

    r_removed, r_white, r_punct = to_ranges(removed), to_ranges(whitespace), to_ranges(punct)
    r_drop = to_ranges(strip_drop)
    d_lower = to_delta_ranges(lower_one)
    nbytes = (8 * (len(r_removed) + len(r_white) + len(r_punct) + len(r_drop))
              + 8 * len(strip_one) + 16 * len(d_lower)
              + 4 * (1 + strip_max) * len(strip_multi) + 4 * (1 + lower_max) * len(lower_multi))

    with open(args.out, "w") as f:
        f.write("// unicode_tables.h: GENERATED by dev/gen_unicode_tables.py, do not edit.\n")
        f.write("// Regenerate with: python dev/gen_unicode_tables.py\n")
        f.write(f"// Source: per-code-point behaviour of Hugging Face tokenizers {tokenizers.__version__}\n")
        f.write(f"// (BertNormalizer, BertPreTokenizer), compared against Python unicodedata\n")
        f.write(f"// {unicodedata.unidata_version}; see the generator for why they differ.\n")
        f.write(f"// Used only by tokenizer.h. All ranges are inclusive and sorted. {nbytes} bytes.\n\n")
        f.write("#pragma once\n#include <stdint.h>\n\n")
        emit_ranges(f, "UNI_REMOVED", r_removed,
                    "clean_text drops these: NUL, U+FFFD, Cc/Cf/Co except \\t \\n \\r")
        emit_ranges(f, "UNI_WHITESPACE", r_white,
                    "clean_text maps these to ' ', the pre-tokenizer splits on them")
        emit_ranges(f, "UNI_PUNCT", r_punct,
                    "the pre-tokenizer isolates these: ASCII punctuation and Unicode P*")
        emit_ranges(f, "UNI_STRIP_DROP", r_drop,
                    "strip_accents drops these (category Mn, no decomposition)")
        f.write("// strip_accents maps cp to one other char (NFD minus Mn)\n")
        f.write(f"static const uint32_t UNI_STRIP_ONE[][2] = {{ // {len(strip_one)} pairs: cp, result\n")
        for i in range(0, len(strip_one), 6):
            f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in strip_one[i:i + 6]) + "\n")
        f.write("};\n\n")
        for name, rows, comment in (
                ("UNI_LOWER_ONE", d_lower, "lowercase maps cp to cp - lo + lo_to, for cp = lo, lo+stride, ..., hi"),):
            f.write(f"// {comment}\n")
            f.write(f"static const uint32_t {name}[][4] = {{ // {len(rows)} rows: lo, hi, stride, lo_to\n")
            for i in range(0, len(rows), 4):
                f.write("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}, {st}, 0x{lo + d:X}}}," for lo, hi, st, d in rows[i:i + 4]) + "\n")
            f.write("};\n\n")
        for name, nmax, rows, comment in (
                ("UNI_STRIP_MULTI", strip_max, strip_multi, "strip_accents maps cp to several chars (0-padded)"),
                ("UNI_LOWER_MULTI", lower_max, lower_multi, "lowercase maps cp to several chars (0-padded)")):
            f.write(f"#define {name}_MAX {nmax}\n")
            f.write(f"// {comment}\n")
            f.write(f"static const uint32_t {name}[][1 + {name}_MAX] = {{ // {len(rows)} rows\n")
            for cp, s in rows:
                outs = [ord(x) for x in s] + [0] * (nmax - len(s))
                f.write(f"    {{0x{cp:X}, " + ", ".join(f"0x{x:X}" for x in outs) + "},\n")
            f.write("};\n\n")

    print(f"wrote {args.out}: removed {len(r_removed)}, whitespace {len(r_white)}, punct {len(r_punct)}, "
          f"strip drop {len(r_drop)} ranges; strip one {len(strip_one)} pairs, lower one {len(d_lower)} rows; "
          f"strip multi {len(strip_multi)}, lower multi {len(lower_multi)}; {nbytes} bytes", file=sys.stderr)

if __name__ == "__main__":
    main()
