/*
test_tokenizer.c: checks tokenizer.h against Hugging Face's BertTokenizerFast.

    python dev/tokenizer_reference.py    # writes data/tokenizer_ref.bin
    gcc -O2 -Wall -Wextra -o test_tokenizer test_tokenizer.c -lm
    ./test_tokenizer [vocab.txt] [tokenizer_ref.bin]

Three parts: every reference case (the emotion dataset, awkward inputs, a few
invalid UTF-8 strings; alone and as sentence pairs, those also truncated
longest first) must give exactly HF's ids and token types; a list of invalid UTF-8 byte
strings must not crash and must give [CLS] ... [SEP] with ids < V; and
truncation to max_len must keep [CLS] first and [SEP] last. Not tested here:
cased vocabularies (do_lower_case = 0).

Prints the first few mismatches, then one last line "N passed, N failed", and
exits non-zero if anything failed.
*/
#define STB_DS_IMPLEMENTATION
#include <stb/stb_ds.h>
#undef STB_DS_IMPLEMENTATION
#include "bertc/utils.h"   // defines: fopenCheck, freadCheck, mallocCheck
#include "bertc/formats.h" // defines: TOKREF_MAGIC, TOKREF_VERSION, header_read
#include "tokenizer.h"

#define MAX_PRINT 5

// ----------------------------------------------------------------------------
// reporting

static int passed = 0, failed = 0;

static void print_text(const char* text, int n) {
    printf("  text (%d bytes): \"", n);
    for (int i = 0; i < n && i < 200; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\\' || c == '"') { printf("\\%c", c); }
        else if (c < 0x20 || c == 0x7F) { printf("\\x%02x", c); }
        else { putchar(c); } // bytes >= 0x80 pass through, the terminal decodes them
    }
    printf(n > 200 ? "\"...\n" : "\"\n");
}

static void print_ids(const char* name, const int* ids, int n, const Tokenizer* t) {
    printf("  %s (%d):", name, n);
    for (int i = 0; i < n && i < 40; i++) {
        int ok = ids[i] >= 0 && ids[i] < t->V;
        printf(" %d:%s", ids[i], ok ? t->tokens[ids[i]] : "?");
    }
    printf(n > 40 ? " ...\n" : "\n");
}

static void check(int ok, const char* what) {
    if (ok) { passed++; return; }
    failed++;
    if (failed <= MAX_PRINT) { printf("FAIL %s\n", what); }
}

// ----------------------------------------------------------------------------
// the tests

// one text of a pair case: its length, then its bytes, into *text (an stb_ds array, NUL-terminated)
static int read_text(FILE* f, const char* path, int c, char** text) {
    int nbytes;
    freadCheck(&nbytes, sizeof(int), 1, f, path);
    if (nbytes < 0) {
        fprintf(stderr, "Error: %s pair %d: bad length %d\n", path, c, nbytes);
        exit(EXIT_FAILURE);
    }
    arrsetlen(*text, nbytes + 1);
    if (nbytes > 0) { freadCheck(*text, 1, (size_t)nbytes, f, path); }
    (*text)[nbytes] = '\0';
    return nbytes;
}

// the NP sentence pairs after the single texts: each with its own max_length, ids and token types
static void test_reference_pairs(Tokenizer* t, FILE* f, const char* path, int NP, int max_len) {
    int* ref = mallocCheck(2 * (size_t)max_len * sizeof(int));
    int* ids = mallocCheck(2 * (size_t)max_len * sizeof(int));
    char *a = NULL, *b = NULL;
    int case_failed = 0;
    for (int c = 0; c < NP; c++) {
        int len, nref;
        freadCheck(&len, sizeof(int), 1, f, path);
        int na = read_text(f, path, c, &a), nb = read_text(f, path, c, &b);
        freadCheck(&nref, sizeof(int), 1, f, path);
        if (len < 3 || len > max_len || nref < 3 || nref > len) {
            fprintf(stderr, "Error: %s pair %d: max_length %d, %d ids\n", path, c, len, nref);
            exit(EXIT_FAILURE);
        }
        freadCheck(ref, sizeof(int), 2 * (size_t)nref, f, path); // ids, then types
        int n = tokenizer_encode_pair_bytes(t, a, (size_t)na, b, (size_t)nb, ids, ids + len, len);
        int ok = n == nref && memcmp(ids, ref, (size_t)n * sizeof(int)) == 0 &&
                 memcmp(ids + len, ref + nref, (size_t)n * sizeof(int)) == 0;
        if (ok) { passed++; continue; }
        failed++;
        case_failed++;
        if (failed <= MAX_PRINT) {
            printf("FAIL reference pair %d (max_length %d)\n", c, len);
            print_text(a, na);
            print_text(b, nb);
            print_ids("want", ref, nref, t);
            print_ids("got ", ids, n, t);
        }
    }
    printf("reference pairs: %d, %d match Hugging Face (ids and types), %d differ\n", NP,
           NP - case_failed, case_failed);
    arrfree(a);
    arrfree(b);
    free(ref);
    free(ids);
}

static void test_reference(Tokenizer* t, const char* path) {
    FILE* f;
    fopenCheck(&f, path, "rb");
    int32_t header[HEADER_INTS];
    header_read(f, path, header, TOKREF_MAGIC, TOKREF_VERSION, "tokenizer reference",
                "re-run `python dev/tokenizer_reference.py`");
    int N = header[2], max_len = header[3];
    if (header[4] != t->do_lower_case || header[5] != t->V) {
        fprintf(stderr, "Error: %s was made with do_lower_case %d and V %d, the tokenizer has %d and %d\n",
                path, header[4], header[5], t->do_lower_case, t->V);
        exit(EXIT_FAILURE);
    }
    int* ref = mallocCheck((size_t)max_len * sizeof(int));
    int* ids = mallocCheck((size_t)max_len * sizeof(int));
    char* text = NULL; // stb_ds array, grows to the longest text
    int case_failed = 0;
    for (int c = 0; c < N; c++) {
        int nbytes, nref;
        freadCheck(&nbytes, sizeof(int), 1, f, path);
        if (nbytes < 0) { fprintf(stderr, "Error: %s case %d: bad length %d\n", path, c, nbytes); exit(EXIT_FAILURE); }
        arrsetlen(text, nbytes + 1);
        if (nbytes > 0) { freadCheck(text, 1, (size_t)nbytes, f, path); }
        text[nbytes] = '\0';
        freadCheck(&nref, sizeof(int), 1, f, path);
        if (nref < 2 || nref > max_len) {
            fprintf(stderr, "Error: %s case %d: bad id count %d\n", path, c, nref); exit(EXIT_FAILURE);
        }
        freadCheck(ref, sizeof(int), (size_t)nref, f, path);

        int n = tokenizer_encode_bytes(t, text, (size_t)nbytes, ids, max_len);
        int ok = n == nref && memcmp(ids, ref, (size_t)n * sizeof(int)) == 0;
        if (ok) { passed++; continue; }
        failed++;
        case_failed++;
        if (failed <= MAX_PRINT) {
            printf("FAIL reference case %d\n", c);
            print_text(text, nbytes);
            print_ids("want", ref, nref, t);
            print_ids("got ", ids, n, t);
        }
    }
    printf("reference: %d cases, %d match Hugging Face, %d differ\n", N, N - case_failed,
           case_failed);
    test_reference_pairs(t, f, path, header[6], max_len);
    char extra;
    if (fread(&extra, 1, 1, f) != 0) {
        fprintf(stderr, "Error: %s has bytes after its last case\n", path); exit(EXIT_FAILURE);
    }
    fclose(f);
    arrfree(text);
    free(ref);
    free(ids);
}

// ids must be [CLS] x... [SEP], with every x a valid id and not [CLS]/[SEP]
static int well_formed(const Tokenizer* t, const int* ids, int n, int max_len) {
    if (n < 2 || n > max_len || ids[0] != t->cls_id || ids[n - 1] != t->sep_id) { return 0; }
    for (int i = 1; i < n - 1; i++) {
        if (ids[i] < 0 || ids[i] >= t->V || ids[i] == t->cls_id || ids[i] == t->sep_id) { return 0; }
    }
    return 1;
}

static void test_invalid_utf8(Tokenizer* t) {
    static const char* cases[] = {
        "\x80", "\xbf\xbf\xbf", "a\x80\x62", "\xc3", "caf\xc3", "\xc3(", "\xe2\x82", "\xe2\x82(",
        "\xf0\x9f\x98", "\xf0\x9f", "\xc0\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xe0\x9f\xbf",
        "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf", "\xff", "\xfe", "\xff\xfe\xff", "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf",
        "\xed\xa0\xbd\xed\xb8\x80", "\xf4\x90\x80\x80", "hello \xff world \xc3\xa9 \x80",
        "\xe2\x82\xac\x80\xe2\x82\xac", "\xef\xbf\xbd", "\xef\xbf\xbe\xef\xbf\xbf",
    };
    int ids[64];
    int ncases = (int)(sizeof(cases) / sizeof(cases[0]));
    for (int i = 0; i < ncases; i++) {
        int n = tokenizer_encode(t, cases[i], ids, 64);
        char what[64];
        snprintf(what, sizeof(what), "invalid UTF-8 case %d", i);
        check(well_formed(t, ids, n, 64), what);
    }
    // a lone invalid byte between letters disappears, joining them (U+FFFD is cleaned away)
    int a[8], b[8];
    int na = tokenizer_encode(t, "hel\xfflo", a, 8), nb = tokenizer_encode(t, "hello", b, 8);
    check(na == nb && memcmp(a, b, (size_t)na * sizeof(int)) == 0, "invalid byte inside a word is dropped");
    // every single byte and every byte pair: no crash, well formed
    int all_ok = 1;
    for (int x = 1; x < 256; x++) {
        for (int y = 0; y < 256; y++) {
            char s[4] = {(char)x, (char)y, 'a', 0};
            int n = tokenizer_encode_bytes(t, s, 3, ids, 64);
            all_ok &= well_formed(t, ids, n, 64);
        }
    }
    check(all_ok, "all byte pairs");
    printf("invalid UTF-8: %d cases, all byte pairs\n", ncases);
}

static void test_truncation(Tokenizer* t) {
    const char* text = "i can go from feeling so hopeless to so damned hopeful just from being around someone";
    int full[64], ids[64];
    int n = tokenizer_encode(t, text, full, 64);
    check(n == 18 && well_formed(t, full, n, 64), "untruncated length");
    for (int max_len = 2; max_len <= n + 2; max_len++) {
        int m = tokenizer_encode(t, text, ids, max_len);
        int want = max_len < n ? max_len : n;
        int ok = m == want && well_formed(t, ids, m, max_len) &&
                 memcmp(ids, full, (size_t)(m - 1) * sizeof(int)) == 0;
        char what[64];
        snprintf(what, sizeof(what), "truncation to max_len %d", max_len);
        check(ok, what);
    }
    int s = tokenizer_encode(t, "[SEP][SEP] a [CLS]", ids, 4); // literal specials count as pieces
    check(s == 4 && ids[0] == t->cls_id && ids[1] == t->sep_id && ids[2] == t->sep_id && ids[3] == t->sep_id,
          "truncation with literal special tokens");
    int e = tokenizer_encode(t, "", ids, 2);
    check(e == 2 && ids[0] == t->cls_id && ids[1] == t->sep_id, "empty text");
    printf("truncation: max_len 2..%d\n", n + 2);
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char** argv) {
    // as the Makefile's SHARED
    const char* vocab_path = argc > 1 ? argv[1] : "../shared/data/bert-base-uncased/vocab.txt";
    const char* ref_path = argc > 2 ? argv[2] : "data/tokenizer_ref.bin";
    Tokenizer t;
    tokenizer_init(&t, vocab_path, 1);
    printf("vocab %s: V %d, [CLS] %d [SEP] %d [UNK] %d [PAD] %d\n", vocab_path, t.V, t.cls_id, t.sep_id, t.unk_id,
           t.pad_id);
    test_reference(&t, ref_path);
    test_invalid_utf8(&t);
    test_truncation(&t);
    tokenizer_free(&t);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
