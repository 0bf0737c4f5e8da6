"""
Writes data/tokenizer_ref.bin: texts and the ids Hugging Face gives them, for
test_tokenizer.c to compare tokenizer.h against.

    python dev/tokenizer_reference.py [--vocab PATH] [--data DIR | --data-from-hub] [--out PATH]

Cases: every text of the emotion dataset ({train,validation,test}.txt, the
text being each line up to its last ';'), then a hand-written list of awkward
inputs (accents, scripts, CJK, emoji, long words, control chars, ...), then
--fuzz random strings (seeded; words of random code points from every plane,
weighted towards letters, marks and punctuation), then a few byte strings that
are not valid UTF-8. Python strings cannot hold those, so
their reference is HF on bytes.decode("utf-8", "replace"), the same choice
tokenizer.h makes (see its top comment).

Ids come from BertTokenizerFast over the vocab with do_lower_case=True,
truncation=True, max_length=512. Careful: in transformers 5.x,
BertTokenizerFast(vocab_file=...) silently ignores vocab_file and builds a
5-token vocab; the vocab must be passed as vocab=. We check the vocab size and
cross-check every case against the bare `tokenizers` BertWordPieceTokenizer.

Then sentence pairs, [CLS] a [SEP] b [SEP] with token types: the emotion texts
two by two at max_length 512, then again at max_length 3..40 (longest-first
truncation at every split of the room), the awkward inputs each with the next,
and the invalid byte strings each with an awkward input.

File format, little-endian int32 unless said:
    header: 256 int32: [0] magic 20261130, [1] version 2, [2] N cases,
            [3] max_length used (512), [4] do_lower_case (1), [5] V,
            [6] NP pair cases, rest 0
    N times: nbytes, then nbytes of text (UTF-8, or not, no terminator),
             nids, then nids int32 ids ([CLS] ... [SEP])
    NP times: max_length, nbytes and bytes of a, nbytes and bytes of b, nids,
              then nids ids and nids token types
"""

import argparse
import os
import random
import struct
import sys

from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from prepro_emotion import (SPLITS, TOKREF_MAGIC as MAGIC, TOKREF_VERSION as VERSION,  # noqa: E402
                            load_emotion_dir, load_emotion_hub)

MAX_LEN = 512

AWKWARD = [
    # empty and whitespace
    "", " ", "   ", "\t", "\n", "\r\n", " \t\n\r\v\f ", "a\tb\nc\rd\ve\ff",
    "\u00a0nbsp\u00a0", "em\u2003space", "ideographic\u3000space", "line\u2028sep", "para\u2029sep",
    "\u1680ogham", "narrow\u202fnbsp",
    # control and format chars
    "a\x01b\x02c", "del\x7fete", "c1\x85next\x9fline", "soft\u00adhyphen", "zero\u200bwidth",
    "zw\u200cnj\u200dj", "bom\ufeffinside", "rtl\u202eoverride\u202c", "word\u2060joiner",
    "replacement\ufffdchar", "private\ue000use", "\U000f0000plane15", "tag\U000e0041s",
    "nul\x00inside", "\x00", "unassigned\u0378\u0379x", "nonchar\uffff\ufffe", "new cf \u0890\u0891",
    # accents, case
    "Héllò Wörld, naïve café résumé", "ÀÉÎÕÜ àéîõü", "Ærøskøbing Œuvre Straße", "ﬁﬂ ligatures ﬀ",
    "İstanbul", "I\u0307stanbul", "ẞ großes ß", "ΣΑΣ ΟΔΥΣΣΕΥΣ σας ς", "ǅ ǈ ǋ Dž", "Ⅻ ⅻ Ⓐ ⓐ",
    "Ａｂｃ ＦＵＬＬ ｗｉｄｔｈ １２３ ！？", "e\u0301 a\u0308 o\u0302", "\u0301\u0302 starts with marks",
    "Å Å Å", "ḱṷṓn", "Ǆ ǆ", "\u1e9e", "Ω Ω", "K K",
    # scripts
    "Привет, мир! Ёлка ЁЛКА", "Γειά σου Κόσμε άέήίόύώ ΐΰ", "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם", "नमस्ते दुनिया क़ ख़ ग़", "हिन्दी में लिखा गया", "ภาษาไทย", "한국어 텍스트 각 힣",
    "日本語のテキスト、カタカナ。", "中文字符测试，你好！", "混合mixed中文and English", "𠀀𪜀𫝀𫠠𫠸𬺰 ext",
    "\U0002b81f\U0002b820\U0002b91f\U0002b920 edge", "豈更 compat 兀嗀", "\U0002f800\U0002fa1d",
    "Tiếng Việt có dấu", "Ελληνικά ἀρχαῖα ᾅ ᾯ", "ქართული", "Հայերեն", "ትግርኛ", "ᠮᠣᠩᠭᠣᠯ",
    "தமிழ் கொ கோ கௌ", "ಕನ್ನಡ ಕೋ", "മലയാളം കൊ കൗ", "বাংলা কো কৌ", "ଓଡ଼ିଆ କୋ କୌ",
    # emoji
    "I love it 😍😂🤣", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇺🇸🇬🇧 flags",
    "❤️ heart ♥ ☺", "🥰🥳🫠 newer emoji", "keycap 1️⃣ #️⃣", "👩🏻‍💻",
    # punctuation
    "...!!!???", "wait...what?!", "(nested [brackets {here}])", "a--b—c–d", "«guillemets» „quotes“",
    "'single' \"double\" `back`", "¿Qué? ¡Sí!", "§¶†‡•…‰′″", "~tilde^caret|pipe\\back",
    "@#$%&*+=<>", "®©™°±×÷", "℃ ℉ № ℡", "Ⅰ Ⅱ ①②", "‼ ⁉ ⸮ ⸘", "\u2e43\u2e4f\u2e52 newer punct",
    "\u061d\u0a76\u0c77 newer punct 2", "don't won't y'all", "it's-a me",
    # numbers, urls, mentions
    "123 456789 3.14159 1,000,000 1e-9", "0x1F600 0b1010", "call 555-123-4567",
    "https://www.example.com/path?q=1&r=two#frag", "user@example.com", "@mention #hashtag",
    "http://t.co/AbCdEf123", "C++ C# F# .NET", "$100 €50 £20 ¥1000 ₹500",
    # long words and no-match words
    "a" * 100, "a" * 101, "b" * 150 + " short", "x" * 99 + "é", "é" * 101, "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis", "qzxjkvqzxjkv", "ßßß", "ⱥⱦ",
    "word" + "\u0301" * 200, "ab" * 60, "😀" * 101,
    # grab-bag
    "i didnt feel humiliated", "I DIDNT FEEL HUMILIATED", "[CLS] [SEP] [MASK] [UNK] [PAD]",
    "a[CLS]b", "[cls] [CLS", "x [MASK]y", "[[SEP]]", "[SEP][SEP]", "é[UNK]é", "\t[PAD]\t", "[CLS ]",
    "##suffix ##", "#", "##", "un##affable", "unaffable", "Mr. O'Neil's dog-friendly café.",
    " leading and trailing ", "multiple    spaces", "tab\tseparated\tvalues",
    "the " * 600,  # truncated to 512
    ("ok, " * 300).strip(),
]

INVALID = [
    b"abc\x80def", b"\xbf", b"\xc3", b"caf\xc3", b"\xc0\xaf overlong", b"\xe0\x80\xaf overlong3",
    b"\xf0\x80\x80\xaf overlong4", b"\xff\xfe bom-ish", b"\xed\xa0\x80 surrogate", b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80 too big", b"\xf8\x88\x80\x80\x80", b"mix\xe2\x82 ok \xe2\x82\xac euro",
    b"caf\xc3\xa9 \xa9 e", b"\xf0\x9f\x98 truncated emoji \xf0\x9f\x98\x80",
]

def fuzz_texts(n, seed=1337):
    rng = random.Random(seed)
    pools = [(0x20, 0x7F), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x52F), (0x590, 0x8FF),
             (0x900, 0xDFF), (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x2BFF), (0x2E00, 0x2E7F),
             (0x3000, 0x30FF), (0x4E00, 0x4E2F), (0xA640, 0xA7FF), (0xAC00, 0xD7A3), (0xF900, 0xFFFF),
             (0x10000, 0x1FFFF), (0x20000, 0x2FFFF), (0xE0000, 0x10FFFF)]
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 30)):
            lo, hi = rng.choice(pools)
            cp = rng.randint(lo, hi)
            if not 0xD800 <= cp <= 0xDFFF:
                chars.append(chr(cp))
            if rng.random() < 0.2:
                chars.append(rng.choice(" \t\n.,'-"))
        texts.append("".join(chars))
    return texts

def emotion_texts(data_dir=None):
    """the emotion texts, train then validation then test, read as prepro reads them: from data_dir's
    text;label files, or (None) from dair-ai/emotion on the hub (or the datasets cache)"""
    data = load_emotion_dir(data_dir) if data_dir is not None else load_emotion_hub()
    return [t for split in SPLITS for t in data[split][0]]

def main():
    ap = argparse.ArgumentParser()
    # relative to the repository, as the Makefile's SHARED (../shared)
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    ap.add_argument("--vocab", default=os.path.join(repo, "..", "shared", "data", "bert-base-uncased", "vocab.txt"))
    ap.add_argument("--data", default=os.path.join(repo, "..", "shared", "data", "emotion"),
                    help="a folder with train.txt, validation.txt and test.txt (text;label lines)")
    ap.add_argument("--data-from-hub", action="store_true",
                    help="the texts of dair-ai/emotion through `datasets` instead (make setup's fetch caches them)")
    ap.add_argument("--out", default="data/tokenizer_ref.bin")
    ap.add_argument("--fuzz", type=int, default=2000, help="number of random strings")
    args = ap.parse_args()

    vocab = load_vocab(args.vocab)
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert len(tok.get_vocab()) == len(vocab), "BertTokenizerFast did not take the vocab"
    bare = BertWordPieceTokenizer(args.vocab, lowercase=True)
    bare.enable_truncation(MAX_LEN)

    cases = [t.encode("utf-8") for t in emotion_texts(None if args.data_from_hub else args.data)]
    n_emotion = len(cases)
    cases += [t.encode("utf-8") for t in AWKWARD + fuzz_texts(args.fuzz)] + INVALID
    texts = [b.decode("utf-8", "replace") for b in cases]
    all_ids = tok(texts, truncation=True, max_length=MAX_LEN)["input_ids"]
    for text, ids in zip(texts, all_ids):
        assert bare.encode(text).ids == ids, f"transformers and tokenizers disagree on {text!r}"

    emotion = cases[:n_emotion]
    awkward = [t.encode("utf-8") for t in AWKWARD]
    pairs = [(MAX_LEN, a, b) for a, b in zip(emotion[0::2], emotion[1::2])]
    pairs += [(3 + i % 38, a, b)
              for i, (a, b) in enumerate(zip(emotion[0:4000:2], emotion[1:4000:2]))]
    pairs += [(MAX_LEN, a, b) for a, b in zip(awkward, awkward[1:] + awkward[:1])]
    pairs += [(MAX_LEN, a, b) for a, b in zip(INVALID, awkward)]
    pairs += [(MAX_LEN, b, a) for a, b in zip(INVALID, awkward)]
    # lists, as prepro calls it: tok(a, "") alone encodes one text (an empty pair is falsy there)
    pair_enc = [None] * len(pairs)
    for max_len in sorted({m for m, _, _ in pairs}):
        idx = [i for i, (m, _, _) in enumerate(pairs) if m == max_len]
        ta = [pairs[i][1].decode("utf-8", "replace") for i in idx]
        tb = [pairs[i][2].decode("utf-8", "replace") for i in idx]
        e = tok(ta, tb, truncation=True, max_length=max_len)
        bare.enable_truncation(max_len)
        for k, i in enumerate(idx):
            assert bare.encode(ta[k], tb[k]).ids == e["input_ids"][k], \
                f"transformers and tokenizers disagree on {ta[k]!r}, {tb[k]!r}"
            pair_enc[i] = (e["input_ids"][k], e["token_type_ids"][k])

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "wb") as f:
        header = [0] * 256
        header[0:7] = [MAGIC, VERSION, len(cases), MAX_LEN, 1, len(vocab), len(pairs)]
        f.write(struct.pack("<256i", *header))
        for b, ids in zip(cases, all_ids):
            f.write(struct.pack("<i", len(b)) + b)
            f.write(struct.pack(f"<i{len(ids)}i", len(ids), *ids))
        for (max_len, a, b), (ids, types) in zip(pairs, pair_enc):
            f.write(struct.pack("<ii", max_len, len(a)) + a + struct.pack("<i", len(b)) + b)
            f.write(struct.pack(f"<i{2 * len(ids)}i", len(ids), *ids, *types))
    print(f"wrote {args.out}: {len(cases)} cases ({n_emotion} emotion, {len(AWKWARD)} awkward, {args.fuzz} fuzz, "
          f"{len(INVALID)} invalid UTF-8), {sum(map(len, all_ids))} ids; {len(pairs)} pairs")

if __name__ == "__main__":
    main()
