/*
bertc/pack.h: packed tokens. A batch arrives padded, (B, T) ids with each sequence's length; the models
compute only its N real tokens, sequence after sequence, with no padding rows (on emotion at batch 32 the
padded layout holds 2.34x the real tokens). Two index maps say where each packed row sits: row n is the
padded layout's row rows[n] = b * T + t (its id, its position t, and the index of its dropout mask, so
the masks are the padded layout's whatever is packed), and sequence b starts at packed row starts[b].
Under nvcc padded_row and seq_start are __host__ __device__: the CPU and the GPU use one definition.

Defines: padded_row, seq_start, batch_pack.
Used by: train_bert.c (every per-token layer), train_bert.cu and cuda/ (kernel set 3).
*/
#pragma once
#include <stddef.h>
#include "rand.h"  // defines: HOST_DEVICE (and the dropout masks the row index keys)
#include "utils.h" // defines: error_exit

// the padded row of packed row n, and the first row of sequence b; NULL maps: the padded layout itself
HOST_DEVICE size_t padded_row(size_t n, const int* rows) { return rows != NULL ? (size_t)rows[n] : n; }
HOST_DEVICE size_t seq_start(int b, int T, const int* starts) {
    return starts != NULL ? (size_t)starts[b] : (size_t)b * T;
}

// the maps of a batch of B sequences (lengths 1..T each) padded to T: rows (B * T at most), starts (B);
// returns N, the number of real tokens
static inline int batch_pack(int* rows, int* starts, const int* lengths, int B, int T) {
    int N = 0;
    for (int b = 0; b < B; b++) {
        // every sequence has its [CLS]: the pooler reads row starts[b], which with length 0 is the next one's
        if (lengths[b] < 1 || lengths[b] > T) {
            error_exit("batch sequence %d has length %d, outside 1..%d", b, lengths[b], T);
        }
        starts[b] = N;
        for (int t = 0; t < lengths[b]; t++) { rows[N++] = b * T + t; }
    }
    return N;
}
