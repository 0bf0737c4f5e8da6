/*
tokenizer.h: BERT WordPiece tokenizer, header-only, giving exactly the ids of
Hugging Face's BertTokenizerFast (the Rust `tokenizers` library: BertNormalizer,
BertPreTokenizer, WordPiece, then [CLS] ... [SEP]) for one sentence or a pair.

    Tokenizer tok;
    tokenizer_init(&tok, "vocab.txt", 1);           // 1 = uncased model
    int n = tokenizer_encode(&tok, text, ids, 512);  // [CLS] ... [SEP], n <= 512
    n = tokenizer_encode_pair(&tok, a, b, ids, types, 512); // [CLS] a [SEP] b [SEP], types 1 on b
    tokenizer_free(&tok);

A pair is truncated longest first, as HF's truncation=True: pieces come off the
longer text until both fit, or each keeps half of the room when both are long.

What it is not: no offsets, no padding, no decoding, no user-added tokens. Like
HF, the five special tokens written literally in the text ("[CLS]", "[SEP]",
"[UNK]", "[PAD]", "[MASK]", exact and case-sensitive) are matched in the raw
text first and become their ids.

The pipeline, in the order `tokenizers` runs it (normalizers/bert.rs):
  1. clean_text: drop NUL, U+FFFD and control chars; whitespace -> ' '
  2. handle_chinese_chars: ' ' around each CJK ideograph
  3. strip_accents (only when lower-casing): NFD, then drop category Mn
  4. lowercase: Rust char::to_lowercase, one char at a time (so 'Σ' is always 'σ')
  5. pre-tokenize: split on whitespace, each punctuation char is its own word
  6. WordPiece: greedy longest match, "##" for continuations; a word of more
     than 100 chars, or one that cannot be covered, becomes [UNK]
The per-character tables come from dev/gen_unicode_tables.py (unicode_tables.h).

Two deliberate edges:
  - Input is bytes. Invalid UTF-8 (stray continuation bytes, truncated or
    overlong sequences, surrogates, > U+10FFFF, 0xFE/0xFF) decodes to U+FFFD, one
    per maximal invalid subpart as Python's bytes.decode("utf-8", "replace")
    does. Step 1 then removes U+FFFD, so the result equals Hugging Face on the
    decoded-with-replace string. tokenizer_encode stops at the first NUL;
    tokenizer_encode_bytes takes a length and drops NULs inside, as HF does.
  - Step 3's NFD also reorders runs of combining marks by combining class. We
    skip that: it only moves marks that survive step 3 (not Mn, e.g. U+1D165..
    U+1D172), and no bert-base-uncased token holds any combining mark, so a word
    with one is [UNK] in either order. The ids cannot differ for that vocab.

Needs <stb/stb_ds.h>; define STB_DS_IMPLEMENTATION in exactly one .c file
(train_bert.c or test_tokenizer.c), never here.
*/
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <stb/stb_ds.h>
#include "unicode_tables.h"

#define TOKENIZER_MAX_WORD_CHARS 100 // HF WordPiece max_input_chars_per_word

// ----------------------------------------------------------------------------
// Unicode lookups (binary search over the generated tables)

// index of the last row whose first entry is <= cp, or -1
static int uni_find_row_(const uint32_t* table, int rows, int row_len, uint32_t cp) {
    int lo = 0, hi = rows - 1, found = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (table[(size_t)mid * (size_t)row_len] <= cp) { found = mid; lo = mid + 1; }
        else { hi = mid - 1; }
    }
    return found;
}

#define UNI_ROWS_(table) ((int)(sizeof(table) / sizeof(table[0])))
#define UNI_ROW_LEN_(table) ((int)(sizeof(table[0]) / sizeof(uint32_t)))

static int uni_in_ranges_(const uint32_t (*ranges)[2], int rows, uint32_t cp) {
    int i = uni_find_row_(&ranges[0][0], rows, 2, cp);
    return i >= 0 && cp <= ranges[i][1];
}

static int uni_is_removed(uint32_t cp) { return uni_in_ranges_(UNI_REMOVED, UNI_ROWS_(UNI_REMOVED), cp); }
static int uni_is_whitespace(uint32_t cp) { return uni_in_ranges_(UNI_WHITESPACE, UNI_ROWS_(UNI_WHITESPACE), cp); }
static int uni_is_punct(uint32_t cp) { return uni_in_ranges_(UNI_PUNCT, UNI_ROWS_(UNI_PUNCT), cp); }

// the CJK blocks of tokenizers' is_chinese_char. Note 0x2B920, where Python's
// BasicTokenizer has 0x2B820: U+2B820..U+2B91F are not split out by the fast tokenizer.
static int uni_is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// strip_accents for one char: NFD, minus Mn. Appends 0..3 chars to *out.
static void uni_strip_accents(uint32_t** out, uint32_t cp) {
    if (cp >= 0xAC00 && cp < 0xAC00 + 11172) { // Hangul syllable -> 2 or 3 jamo, by formula
        uint32_t s = cp - 0xAC00;
        arrput(*out, 0x1100 + s / 588);
        arrput(*out, 0x1161 + (s % 588) / 28);
        if (s % 28) { arrput(*out, 0x11A7 + s % 28); }
        return;
    }
    if (uni_in_ranges_(UNI_STRIP_DROP, UNI_ROWS_(UNI_STRIP_DROP), cp)) { return; }
    int i = uni_find_row_(&UNI_STRIP_ONE[0][0], UNI_ROWS_(UNI_STRIP_ONE), 2, cp);
    if (i >= 0 && UNI_STRIP_ONE[i][0] == cp) { arrput(*out, UNI_STRIP_ONE[i][1]); return; }
    i = uni_find_row_(&UNI_STRIP_MULTI[0][0], UNI_ROWS_(UNI_STRIP_MULTI), UNI_ROW_LEN_(UNI_STRIP_MULTI), cp);
    if (i >= 0 && UNI_STRIP_MULTI[i][0] == cp) {
        for (int j = 1; j <= UNI_STRIP_MULTI_MAX && UNI_STRIP_MULTI[i][j] != 0; j++) {
            arrput(*out, UNI_STRIP_MULTI[i][j]);
        }
        return;
    }
    arrput(*out, cp);
}

// Rust char::to_lowercase for one char: appends 1..2 chars to *out.
static void uni_lowercase(uint32_t** out, uint32_t cp) {
    if (cp < 0x80) { arrput(*out, (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp); return; } // fast path
    int i = uni_find_row_(&UNI_LOWER_ONE[0][0], UNI_ROWS_(UNI_LOWER_ONE), 4, cp);
    if (i >= 0 && cp <= UNI_LOWER_ONE[i][1] && (cp - UNI_LOWER_ONE[i][0]) % UNI_LOWER_ONE[i][2] == 0) {
        arrput(*out, cp - UNI_LOWER_ONE[i][0] + UNI_LOWER_ONE[i][3]);
        return;
    }
    i = uni_find_row_(&UNI_LOWER_MULTI[0][0], UNI_ROWS_(UNI_LOWER_MULTI), UNI_ROW_LEN_(UNI_LOWER_MULTI), cp);
    if (i >= 0 && UNI_LOWER_MULTI[i][0] == cp) {
        for (int j = 1; j <= UNI_LOWER_MULTI_MAX && UNI_LOWER_MULTI[i][j] != 0; j++) {
            arrput(*out, UNI_LOWER_MULTI[i][j]);
        }
        return;
    }
    arrput(*out, cp);
}

// ----------------------------------------------------------------------------
// UTF-8

// Decodes one char from s[0..n), n >= 1. Returns the bytes consumed (>= 1) and
// sets *cp; an invalid maximal subpart gives U+FFFD (Unicode 3.9 / WHATWG / Python).
static int utf8_decode(const unsigned char* s, size_t n, uint32_t* cp) {
    unsigned char b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    int len; uint32_t c; unsigned char lo = 0x80, hi = 0xBF; // allowed range of the 2nd byte
    if (b >= 0xC2 && b <= 0xDF) { len = 2; c = b & 0x1F; }
    else if (b >= 0xE0 && b <= 0xEF) {
        len = 3; c = b & 0x0F;
        if (b == 0xE0) { lo = 0xA0; }      // overlong
        if (b == 0xED) { hi = 0x9F; }      // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4; c = b & 0x07;
        if (b == 0xF0) { lo = 0x90; }      // overlong
        if (b == 0xF4) { hi = 0x8F; }      // > U+10FFFF
    } else { *cp = 0xFFFD; return 1; }     // continuation byte, 0xC0, 0xC1, 0xF5..0xFF
    for (int i = 1; i < len; i++) {
        unsigned char lo_i = (i == 1) ? lo : 0x80, hi_i = (i == 1) ? hi : 0xBF;
        if ((size_t)i >= n || s[i] < lo_i || s[i] > hi_i) { *cp = 0xFFFD; return i; }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
}

static void utf8_append(char** out, uint32_t cp) {
    if (cp < 0x80) { arrput(*out, (char)cp); }
    else if (cp < 0x800) { arrput(*out, (char)(0xC0 | (cp >> 6))); arrput(*out, (char)(0x80 | (cp & 0x3F))); }
    else if (cp < 0x10000) {
        arrput(*out, (char)(0xE0 | (cp >> 12)));
        arrput(*out, (char)(0x80 | ((cp >> 6) & 0x3F)));
        arrput(*out, (char)(0x80 | (cp & 0x3F)));
    } else {
        arrput(*out, (char)(0xF0 | (cp >> 18)));
        arrput(*out, (char)(0x80 | ((cp >> 12) & 0x3F)));
        arrput(*out, (char)(0x80 | ((cp >> 6) & 0x3F)));
        arrput(*out, (char)(0x80 | (cp & 0x3F)));
    }
}

// ----------------------------------------------------------------------------
// Tokenizer

typedef struct {
    char* key;  // points into Tokenizer.file_text
    int value;  // token id
} VocabEntry;

typedef struct {
    VocabEntry* vocab;  // stb_ds string hash map: token -> id
    char** tokens;      // (V,) stb_ds array: id -> token, pointing into file_text
    char* file_text;    // the vocab file, '\n' replaced by '\0'
    int V;              // vocabulary size
    int do_lower_case;  // 1: strip accents and lower-case (uncased models)
    int cls_id, sep_id, unk_id, pad_id;
    const char* specials[5]; // special tokens matched literally in the text, all start with '['
    int special_ids[5];
    int n_specials;
    // scratch, stb_ds arrays reused by every encode call
    uint32_t* chars;    // normalized text, code points
    uint32_t* tmp;      // strip_accents output for one char
    char* word;         // one word, UTF-8
    int* word_offs;     // (chars in word + 1,) byte offset of each char in word
    char* key;          // candidate piece, "##" + substring, NUL-terminated
    int* word_ids;      // pieces of the current word
    int* ids;           // pieces of the whole text
    int* first_ids;     // pieces of a pair's first text
} Tokenizer;

static void tokenizer_fail_(const char* path, const char* msg, const char* detail) {
    fprintf(stderr, "Error: vocab file %s: %s%s\n", path, msg, detail ? detail : "");
    fprintf(stderr, "---> HINT: expected a BERT vocab.txt, one token per line, line index = id\n");
    exit(EXIT_FAILURE);
}

static int tokenizer_special_(Tokenizer* t, const char* path, const char* token) {
    ptrdiff_t i = shgeti(t->vocab, token);
    if (i < 0) { tokenizer_fail_(path, "missing special token ", token); }
    return t->vocab[i].value;
}

void tokenizer_init(Tokenizer* t, const char* vocab_path, int do_lower_case) {
    memset(t, 0, sizeof(*t));
    t->do_lower_case = do_lower_case;
    // O_NONBLOCK: open() on a FIFO would wait for a writer for ever; it is refused below, and cleared for reading
    int fd = open(vocab_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { tokenizer_fail_(vocab_path, "cannot open", NULL); }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        tokenizer_fail_(vocab_path, "is not a regular file", NULL);
    }
    FILE* f = fcntl(fd, F_SETFL, 0) == 0 ? fdopen(fd, "rb") : NULL;
    if (f == NULL) { tokenizer_fail_(vocab_path, "cannot open", NULL); }
    if (fseek(f, 0, SEEK_END) != 0) { tokenizer_fail_(vocab_path, "cannot seek", NULL); }
    long size = ftell(f);
    if (size < 0) { tokenizer_fail_(vocab_path, "cannot tell size", NULL); }
    if (size == 0) { tokenizer_fail_(vocab_path, "file is empty", NULL); }
    rewind(f);
    t->file_text = (char*)malloc((size_t)size + 1);
    if (t->file_text == NULL) { tokenizer_fail_(vocab_path, "out of memory", NULL); }
    if (fread(t->file_text, 1, (size_t)size, f) != (size_t)size) { tokenizer_fail_(vocab_path, "short read", NULL); }
    fclose(f);
    t->file_text[size] = '\0';

    // one token per line, like transformers' load_vocab (rstrip "\n"); we also drop a "\r"
    char* line = t->file_text;
    char* end = t->file_text + size;
    while (line < end) {
        char* nl = (char*)memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL) { nl = end; }
        *nl = '\0';
        if (nl > line && nl[-1] == '\r') { nl[-1] = '\0'; }
        if (shgeti(t->vocab, line) >= 0) {
            char detail[128];
            snprintf(detail, sizeof(detail), "'%.64s' on line %d", line, t->V + 1);
            tokenizer_fail_(vocab_path, "duplicate token ", detail);
        }
        shput(t->vocab, line, t->V);
        arrput(t->tokens, line);
        t->V++;
        line = nl + 1;
    }
    t->cls_id = tokenizer_special_(t, vocab_path, "[CLS]");
    t->sep_id = tokenizer_special_(t, vocab_path, "[SEP]");
    t->unk_id = tokenizer_special_(t, vocab_path, "[UNK]");
    t->pad_id = tokenizer_special_(t, vocab_path, "[PAD]");
    static const char* specials[5] = {"[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"}; // [MASK] may be absent
    for (int i = 0; i < 5; i++) {
        ptrdiff_t k = shgeti(t->vocab, specials[i]);
        if (k >= 0) {
            t->specials[t->n_specials] = specials[i];
            t->special_ids[t->n_specials] = t->vocab[k].value;
            t->n_specials++;
        }
    }
}

void tokenizer_free(Tokenizer* t) {
    shfree(t->vocab);
    arrfree(t->tokens);
    free(t->file_text);
    arrfree(t->chars);
    arrfree(t->tmp);
    arrfree(t->word);
    arrfree(t->word_offs);
    arrfree(t->key);
    arrfree(t->word_ids);
    arrfree(t->ids);
    arrfree(t->first_ids);
    memset(t, 0, sizeof(*t));
}

// Steps 1-4: bytes -> normalized code points in t->chars.
static void tokenizer_normalize_(Tokenizer* t, const char* text, size_t n) {
    arrsetlen(t->chars, 0);
    const unsigned char* s = (const unsigned char*)text;
    size_t pos = 0;
    while (pos < n) {
        uint32_t cp;
        pos += (size_t)utf8_decode(s + pos, n - pos, &cp);
        if (uni_is_removed(cp)) { continue; }                        // 1. clean_text
        if (uni_is_whitespace(cp)) { arrput(t->chars, ' '); continue; }
        int cjk = uni_is_cjk(cp);
        if (cjk) { arrput(t->chars, ' '); }                           // 2. chinese chars
        if (t->do_lower_case) {
            arrsetlen(t->tmp, 0);
            uni_strip_accents(&t->tmp, cp);                          // 3. strip accents
            for (int i = 0; i < (int)arrlen(t->tmp); i++) {
                uni_lowercase(&t->chars, t->tmp[i]);                 // 4. lowercase
            }
        } else {
            arrput(t->chars, cp);
        }
        if (cjk) { arrput(t->chars, ' '); }
    }
}

// Step 6 for the word t->chars[start..end): appends its piece ids to t->ids.
static void tokenizer_wordpiece_(Tokenizer* t, int start, int end) {
    int nc = end - start;
    if (nc > TOKENIZER_MAX_WORD_CHARS) { arrput(t->ids, t->unk_id); return; }
    arrsetlen(t->word, 0);
    arrsetlen(t->word_offs, 0);
    for (int i = start; i < end; i++) {
        arrput(t->word_offs, (int)arrlen(t->word));
        utf8_append(&t->word, t->chars[i]);
    }
    arrput(t->word_offs, (int)arrlen(t->word));
    arrsetlen(t->word_ids, 0);
    int a = 0;
    while (a < nc) {
        int b = nc, id = -1;
        for (; b > a; b--) { // longest match first
            arrsetlen(t->key, 0);
            if (a > 0) { arrput(t->key, '#'); arrput(t->key, '#'); }
            for (int k = t->word_offs[a]; k < t->word_offs[b]; k++) { arrput(t->key, t->word[k]); }
            arrput(t->key, '\0');
            ptrdiff_t i = shgeti(t->vocab, t->key);
            if (i >= 0) { id = t->vocab[i].value; break; }
        }
        if (id < 0) { arrput(t->ids, t->unk_id); return; } // no piece fits: the whole word is [UNK]
        arrput(t->word_ids, id);
        a = b;
    }
    for (int i = 0; i < (int)arrlen(t->word_ids); i++) { arrput(t->ids, t->word_ids[i]); }
}

// Steps 1-6 for a piece of text with no special token in it: appends to t->ids.
static void tokenizer_encode_segment_(Tokenizer* t, const char* text, size_t n) {
    tokenizer_normalize_(t, text, n);
    int nchars = (int)arrlen(t->chars);
    int word_start = 0;
    for (int i = 0; i <= nchars; i++) { // 5. pre-tokenize; i == nchars flushes the last word
        int ws = (i == nchars) || uni_is_whitespace(t->chars[i]);
        int punct = !ws && uni_is_punct(t->chars[i]);
        if (ws || punct) {
            if (i > word_start) { tokenizer_wordpiece_(t, word_start, i); }
            if (punct) { tokenizer_wordpiece_(t, i, i + 1); }
            word_start = i + 1;
        }
    }
}

// The pieces of n bytes of UTF-8 text, no [CLS] or [SEP] around them, into t->ids; returns their
// count.
static int tokenizer_pieces_(Tokenizer* t, const char* text, size_t n) {
    arrsetlen(t->ids, 0);
    // split the raw text at literal special tokens (HF's added-token pass, before
    // normalization). None is a prefix of another, so the first match is the match.
    size_t seg_start = 0;
    for (size_t pos = 0; pos < n; pos++) {
        if (text[pos] != '[') { continue; }
        for (int k = 0; k < t->n_specials; k++) {
            size_t len = strlen(t->specials[k]);
            if (len <= n - pos && memcmp(text + pos, t->specials[k], len) == 0) {
                tokenizer_encode_segment_(t, text + seg_start, pos - seg_start);
                arrput(t->ids, t->special_ids[k]);
                pos += len - 1;
                seg_start = pos + 1;
                break;
            }
        }
    }
    tokenizer_encode_segment_(t, text + seg_start, n - seg_start);
    return (int)arrlen(t->ids);
}

// Encodes n bytes of UTF-8 text into ids: [CLS] pieces [SEP], keeping the first
// max_len - 2 pieces when there are more (HF truncation=True, max_length=max_len).
// Returns the number of ids written (2..max_len).
int tokenizer_encode_bytes(Tokenizer* t, const char* text, size_t n, int* ids, int max_len) {
    if (max_len < 2) {
        fprintf(stderr, "Error: tokenizer_encode: max_len %d leaves no room for [CLS] and [SEP]\n",
                max_len);
        exit(EXIT_FAILURE);
    }
    int npieces = tokenizer_pieces_(t, text, n);
    if (npieces > max_len - 2) { npieces = max_len - 2; }
    ids[0] = t->cls_id;
    if (npieces > 0) { memcpy(ids + 1, t->ids, (size_t)npieces * sizeof(int)); }
    ids[npieces + 1] = t->sep_id;
    return npieces + 2;
}

int tokenizer_encode(Tokenizer* t, const char* text, int* ids, int max_len) {
    return tokenizer_encode_bytes(t, text, strlen(text), ids, max_len);
}

// Encodes a sentence pair into ids and types: [CLS] a [SEP] b [SEP], type 0 up to the first [SEP],
// 1 after it. Longest first, as tokenizers' TruncationStrategy::LongestFirst (utils/truncation.rs):
// with room for max_len - 3 pieces, a shorter text that fits in half of it is kept whole and the
// longer one gets the rest; else each gets half, and the longer one (the second, if they tie) the
// odd piece. Returns the number of ids written.
int tokenizer_encode_pair_bytes(Tokenizer* t, const char* a, size_t na, const char* b, size_t nb,
                                int* ids, int* types, int max_len) {
    if (max_len < 3) {
        fprintf(stderr, "Error: tokenizer_encode_pair: max_len %d leaves no room for [CLS] and "
                "two [SEP]\n", max_len);
        exit(EXIT_FAILURE);
    }
    int n1 = tokenizer_pieces_(t, a, na);
    arrsetlen(t->first_ids, n1);
    if (n1 > 0) { memcpy(t->first_ids, t->ids, (size_t)n1 * sizeof(int)); }
    int n2 = tokenizer_pieces_(t, b, nb);
    int room = max_len - 3;
    if (n1 + n2 > room) {
        int shorter = n1 <= n2 ? n1 : n2;
        int keep_short = shorter > room / 2 ? room / 2 : shorter;
        int keep_long = shorter > room / 2 ? room / 2 + room % 2 : room - shorter;
        if (n1 <= n2) { n1 = keep_short; n2 = keep_long; } else { n1 = keep_long; n2 = keep_short; }
    }
    int n = 0;
    ids[n++] = t->cls_id;
    for (int i = 0; i < n1; i++) { ids[n++] = t->first_ids[i]; }
    ids[n++] = t->sep_id;
    int first_len = n;
    for (int i = 0; i < n2; i++) { ids[n++] = t->ids[i]; }
    ids[n++] = t->sep_id;
    for (int i = 0; i < n; i++) { types[i] = i >= first_len; }
    return n;
}

int tokenizer_encode_pair(Tokenizer* t, const char* a, const char* b, int* ids, int* types,
                          int max_len) {
    return tokenizer_encode_pair_bytes(t, a, strlen(a), b, strlen(b), ids, types, max_len);
}
