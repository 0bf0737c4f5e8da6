/*
bertc/dataloader.h: a tokenized split (written by prepro_emotion.py) and the loader that
shuffles it each epoch and pads each batch to its own longest example. A split of version 2 also
has each token's type (1 on a sentence pair's second text) and the label names; version 1
(emotion's, single texts) still loads, its types all 0 and no names.

Defines: Dataset, dataset_load, dataset_free, DataLoader, loader_init, loader_start_epoch,
loader_next_batch, loader_next_batch_types, loader_free.
Used by: trainer.h (training and evaluation), the tests, dev/fuzz.
*/
#pragma once
#include "utils.h"
#include "formats.h"
#include "rand.h"

typedef struct {
    int N;          // examples
    int T_max;      // longest example, [CLS] and [SEP] included
    int NC;         // labels
    int V;          // vocabulary of the tokenizer
    int* lengths;   // (N)
    int* labels;    // (N)
    int* ids;       // (sum of lengths) examples back to back, no padding
    int* types;     // (sum of lengths) token types, 0 or 1, as ids
    int max_type;   // the largest token type: 1 with sentence pairs (the model needs TV > 1)
    size_t* starts; // (N) where each example begins in ids
    const char** label_names; // (NC) the labels' names, into label_text; NULL: the file has none
    char* label_text;         // (H_LABEL_NAMES_INTS * 4) the names, NUL-terminated
} Dataset;

// Read a split and check every field against the model it will feed: V and NC must be the
// model's, no example longer than its P positions, every id < V and every label < NC.
static inline void dataset_load(Dataset* ds, const char* path, int V, int NC, int P) {
    const char* hint = "re-run `python prepro_emotion.py` (make data)";
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    long fsize = header_read_versions(fp, path, h, SPLIT_MAGIC, 1, SPLIT_VERSION, "split file",
                                      hint);
    int has_types = h[H_VERSION] >= 2;
    ds->N = h[SPLIT_N]; ds->T_max = h[SPLIT_T_MAX]; ds->NC = h[SPLIT_NC]; ds->V = h[SPLIT_V];
    long ntok = h[SPLIT_NTOK];
    if (ds->N <= 0 || ntok <= 0 || ds->T_max <= 0) {
        error_exit("split file %s: header says N %d, T_max %d, %ld tokens; all must be positive\n---> HINT: %s",
                   path, ds->N, ds->T_max, ntok, hint);
    }
    // 64-bit sums of 32-bit fields: cannot overflow
    long want = (long)sizeof(h) + (2L * ds->N + (has_types ? 2 : 1) * ntok) * (long)sizeof(int32_t);
    if (fsize != want) {
        error_exit("split file %s has %ld bytes, its header (N %d, tokens %ld) says %ld\n---> HINT: %s",
                   path, fsize, ds->N, ntok, want, hint);
    }
    if (ds->V != V || ds->NC != NC) {
        error_exit("split file %s was made for V %d and %d labels; the model has V %d and %d labels\n"
                   "---> HINT: re-run `python prepro_emotion.py` with the same --model", path, ds->V, ds->NC, V, NC);
    }
    if (ds->T_max > P) {
        error_exit("split file %s has examples of %d tokens; the model has %d positions", path, ds->T_max, P);
    }
    // the truncation length prepro used: room for [CLS] and [SEP], no shorter than the longest example, and no
    // longer than the model's positions (prepro refuses that too)
    int max_len = h[SPLIT_MAX_LEN], lo = ds->T_max > 2 ? ds->T_max : 2;
    if (max_len < lo || max_len > P) {
        error_exit("split file %s: header says max length %d, want %d..%d (T_max %d, the model's %d positions)\n"
                   "---> HINT: %s", path, max_len, lo, P, ds->T_max, P, hint);
    }
    ds->lengths = (int*)mallocCheck(ds->N * sizeof(int));
    ds->labels = (int*)mallocCheck(ds->N * sizeof(int));
    ds->ids = (int*)mallocCheck(ntok * sizeof(int));
    ds->types = (int*)callocCheck(ntok, sizeof(int)); // version 1: all 0
    ds->starts = (size_t*)mallocCheck(ds->N * sizeof(size_t));
    freadCheck(ds->lengths, sizeof(int), ds->N, fp, path);
    freadCheck(ds->labels, sizeof(int), ds->N, fp, path);
    freadCheck(ds->ids, sizeof(int), ntok, fp, path);
    if (has_types) { freadCheck(ds->types, sizeof(int), ntok, fp, path); }
    fcloseCheck(fp, path);
    ds->label_text = (char*)mallocCheck(H_LABEL_NAMES_INTS * 4);
    ds->label_names = (const char**)mallocCheck(ds->NC * sizeof(char*));
    if (!has_types || !header_label_names(h, SPLIT_LABEL_BYTES, ds->NC, ds->label_text,
                                          ds->label_names, path, hint)) {
        free(ds->label_names);
        ds->label_names = NULL;
    }
    long sum = 0;
    int longest = 0;
    ds->max_type = 0;
    for (int n = 0; n < ds->N; n++) {
        if (ds->lengths[n] < 1 || ds->lengths[n] > ds->T_max) {
            error_exit("split file %s: example %d has length %d (want 1..T_max %d)", path, n, ds->lengths[n],
                       ds->T_max);
        }
        if (ds->labels[n] < 0 || ds->labels[n] >= ds->NC) {
            error_exit("split file %s: example %d has label %d (want 0..%d)", path, n, ds->labels[n], ds->NC - 1);
        }
        ds->starts[n] = sum;
        sum += ds->lengths[n];
        if (ds->lengths[n] > longest) { longest = ds->lengths[n]; }
    }
    if (sum != ntok) {
        error_exit("split file %s: lengths add up to %ld tokens, the header says %ld", path, sum, ntok);
    }
    if (longest != ds->T_max) { error_exit("split file %s: the longest example has %d tokens, the header says T_max %d",
                                           path, longest, ds->T_max); }
    for (long i = 0; i < ntok; i++) {
        if (ds->ids[i] < 0 || ds->ids[i] >= V) {
            error_exit("split file %s: token %ld has id %d, outside the vocabulary [0, %d)", path, i, ds->ids[i], V);
        }
        if (ds->types[i] != 0 && ds->types[i] != 1) {
            error_exit("split file %s: token %ld has token type %d, want 0 or 1\n---> HINT: %s",
                       path, i, ds->types[i], hint);
        }
        if (ds->types[i] > ds->max_type) { ds->max_type = ds->types[i]; }
    }
}

static inline void dataset_free(Dataset* ds) {
    free(ds->lengths);
    free(ds->labels);
    free(ds->ids);
    free(ds->types);
    free(ds->starts);
    free(ds->label_names);
    free(ds->label_text);
}

typedef struct {
    const Dataset* ds;
    int B;          // batch size; the last batch of an epoch may be smaller
    int* order;     // (N) the visiting order of this epoch
    int pos;        // next position in order, 0..N
    uint64_t seed;
    // data-parallel ranks (bertc/dist.h): this process takes slice `part` of `parts` contiguous
    // slices of each batch, padded to the whole batch's longest example (loader_split)
    int part, parts;
    int b0;         // the last batch's slice: its first example's place in the batch
    int batch;      // the last batch's size (B, or fewer at the epoch's end); the slice's is B_out
} DataLoader;

static inline void loader_init(DataLoader* loader, const Dataset* ds, int B, uint64_t seed) {
    loader->ds = ds;
    loader->B = B;
    loader->seed = seed;
    loader->order = (int*)mallocCheck(ds->N * sizeof(int));
    for (int n = 0; n < ds->N; n++) { loader->order[n] = n; }
    loader->pos = 0;
    loader->part = 0;
    loader->parts = 1;
}

// From now on each batch is cut into `parts` contiguous slices (sizes B * k / parts apart) and
// loader_next_batch_types fills slice `part` alone; every part reads the same order.
static inline void loader_split(DataLoader* loader, int part, int parts) {
    loader->part = part;
    loader->parts = parts;
}

// Start an epoch: in order (shuffle == 0, evaluation) or in a Fisher-Yates shuffle that depends
// only on (seed, epoch), so a run is reproducible epoch by epoch, and resumable mid-epoch.
static inline void loader_start_epoch(DataLoader* loader, int epoch, int shuffle) {
    int N = loader->ds->N;
    for (int n = 0; n < N; n++) { loader->order[n] = n; }
    if (shuffle) {
        uint64_t stream = dropout_stream(loader->seed, (uint64_t)epoch, 0xfffe);
        for (int i = N - 1; i > 0; i--) {
            // j in 0..i: the high half of a 64 x 64-bit product (bias below 2^-32)
            int j = (int)(((unsigned __int128)mix64(stream + i) * (unsigned)(i + 1)) >> 64);
            int tmp = loader->order[i]; loader->order[i] = loader->order[j]; loader->order[j] = tmp;
        }
    }
    loader->pos = 0;
}

// Fill the next batch, padded to its own longest example: ids (B, T) with the pad id, types
// (B, T) with 0 past the end (types NULL: not filled), lengths (B), labels (B); split
// (loader_split): this part's slice of it, padded to the whole batch's longest. Returns 0 when the
// epoch is over.
static inline int loader_next_batch_types(DataLoader* loader, int* ids, int* types, int* lengths,
                                          int* labels, int pad_id, int* B_out, int* T_out) {
    const Dataset* ds = loader->ds;
    if (loader->pos < 0 || loader->pos >= ds->N) { return 0; }
    int B = ds->N - loader->pos < loader->B ? ds->N - loader->pos : loader->B;
    int T = 0;
    for (int b = 0; b < B; b++) {
        int n = loader->order[loader->pos + b];
        if (ds->lengths[n] > T) { T = ds->lengths[n]; }
    }
    int lo = (int)((long)B * loader->part / loader->parts);
    int hi = (int)((long)B * (loader->part + 1) / loader->parts);
    loader->b0 = lo;
    loader->batch = B;
    int first = loader->pos + lo; // the slice's first example, in order
    B = hi - lo;
    for (int b = 0; b < B; b++) {
        int n = loader->order[first + b];
        lengths[b] = ds->lengths[n];
        labels[b] = ds->labels[n];
        for (int t = 0; t < T; t++) { ids[b * T + t] = t < ds->lengths[n] ? ds->ids[ds->starts[n] + t] : pad_id; }
        for (int t = 0; types != NULL && t < T; t++) {
            types[b * T + t] = t < ds->lengths[n] ? ds->types[ds->starts[n] + t] : 0;
        }
    }
    loader->pos += loader->batch;
    *B_out = B;
    *T_out = T;
    return 1;
}

// The batch without its token types, for callers that feed single texts only (trainer.h until
// it passes model->types, the fuzzer, the benches)
static inline int loader_next_batch(DataLoader* loader, int* ids, int* lengths, int* labels,
                                    int pad_id, int* B_out, int* T_out) {
    return loader_next_batch_types(loader, ids, NULL, lengths, labels, pad_id, B_out, T_out);
}

static inline void loader_free(DataLoader* loader) { free(loader->order); }
