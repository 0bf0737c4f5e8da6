/*
cuda/embedding.cuh: train_bert.c's embedding_forward / embedding_backward, BertEmbeddings before its
LayerNorm: word + position + token type (1 on a sentence pair's second text). With packed tokens
(kernel set 3) the output has one row per real token: row n is the padded layout's row rows[n] (its
id, type and position), and sequence b starts at row starts[b].
*/
#pragma once
#include "common.cuh"

namespace cu {

// out (N, C) = wte[ids] + wpe[t] + wtt[types]; N = B * T padded rows, or the real tokens' rows
// (rows not NULL)
__global__ void embedding_forward_kernel(float* out, const int* ids, const int* types,
                                         const float* wte, const float* wpe, const float* wtt,
                                         size_t N, int T, int C, const int* rows) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C) { return; }
    int i = idx % C;
    size_t n = idx / C, bt = padded_row(n, rows); // the token's padded row: its id and position
    int t = bt % T;
    out[idx] = wte[(size_t)ids[bt] * C + i] + wpe[(size_t)t * C + i]
               + wtt[(size_t)types[bt] * C + i];
}

// Backward, deterministic and in the CPU's order: thread (c, which) walks the real tokens
// (b, t < len) in sequence and accumulates into column c of one table (which 0: wte, 1: wpe,
// 2: wtt). Two tokens with the same id (or type) add into the same row, so a row is never shared
// between threads. Latency-bound (B*T sequential steps), but it is once per step.
__global__ void embedding_backward_kernel(float* dwte, float* dwpe, float* dwtt, const float* dout,
                                          const int* ids, const int* types, const int* lengths,
                                          int B, int T, int C, int first_table, const int* starts) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int which = first_table + blockIdx.y;
    if (c >= C) { return; }
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < lengths[b]; t++) {
            float d = dout[(seq_start(b, T, starts) + t) * C + c];
            if (which == 0) { dwte[(size_t)ids[b * T + t] * C + c] += d; }
            else if (which == 1) { dwpe[(size_t)t * C + c] += d; }
            else { dwtt[(size_t)types[b * T + t] * C + c] += d; }
        }
    }
}

// rows, N: packed tokens (kernel set 3); rows NULL: all B * T positions
void embedding_forward(float* out, const int* ids, const int* types, const float* wte,
                       const float* wpe, const float* wtt, int B, int T, int C,
                       const int* rows = NULL, size_t N = 0) {
    if (rows == NULL) { N = (size_t)B * T; }
    embedding_forward_kernel<<<ceil_div(N * C, 256), 256>>>(out, ids, types, wte, wpe, wtt, N, T, C,
                                                            rows);
    kernelCheck();
}

void embedding_backward(float* dwte, float* dwpe, float* dwtt, const float* dout, const int* ids,
                        const int* types, const int* lengths, int B, int T, int C) {
    embedding_backward_kernel<<<dim3(ceil_div(C, 32), 3), 32>>>(dwte, dwpe, dwtt, dout, ids, types,
                                                                 lengths, B, T, C, 0, NULL);
    kernelCheck();
}

// ----------------------------------------------------------------------------
// kernel set 2: the same sums, parallel. The host lists the batch's real tokens sorted by id, stably, so each
// id's tokens keep the CPU's (b, t) order (embedding_sort_tokens); a block per (id, 128 columns) adds its
// tokens' rows in that order. dwpe: a block per (position, 128 columns) adds over the batch in order. Both
// gradients start at 0 each step, so 0 + (d1 + d2 + ...) is the CPU's ((0 + d1) + d2) + ...: the same bits.

// tokens (ntok) holds the row of dout of each real token (b * T + t, or with packed tokens starts[b] + t),
// sorted by (id, b, t); runs (nruns + 1) where each id's run starts, run_ids (nruns) its id. Returns nruns.
// Host side: a sort of 64-bit keys (id, row); rows grow with (b, t) in both layouts, so this is the stable order.
// starts_host: the forward's packed starts on the host (kernel set 3), NULL: padded rows.
static int cmp_u64_(const void* a, const void* b) {
    unsigned long long x = *(const unsigned long long*)a, y = *(const unsigned long long*)b;
    return (x > y) - (x < y);
}
static int embedding_sort_tokens(int* tokens, int* runs, int* run_ids, const int* ids, const int* lengths, int B,
                                 int T, const int* starts_host, int* ntok_out) {
    int ntok = 0;
    for (int b = 0; b < B; b++) { ntok += lengths[b]; }
    unsigned long long* keys = (unsigned long long*)mallocCheck((size_t)(ntok > 0 ? ntok : 1) * sizeof(*keys));
    for (int b = 0, i = 0; b < B; b++) {
        for (int t = 0; t < lengths[b]; t++, i++) {
            unsigned row = starts_host != NULL ? (unsigned)(starts_host[b] + t) : (unsigned)(b * T + t);
            keys[i] = ((unsigned long long)(unsigned)ids[b * T + t] << 32) | row;
        }
    }
    qsort(keys, ntok, sizeof(*keys), cmp_u64_);
    int nruns = 0;
    for (int i = 0; i < ntok; i++) {
        int id = (int)(keys[i] >> 32);
        tokens[i] = (int)(keys[i] & 0xffffffffu);
        if (i == 0 || id != (int)(keys[i - 1] >> 32)) { runs[nruns] = i; run_ids[nruns] = id; nruns++; }
    }
    runs[nruns] = ntok;
    free(keys);
    *ntok_out = ntok;
    return nruns;
}

__global__ void embedding_backward_wte_kernel(float* dwte, const float* dout, const int* tokens, const int* runs,
                                              const int* run_ids, int C) {
    int run = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) { return; }
    float acc = 0.0f;
    for (int k = runs[run]; k < runs[run + 1]; k++) { acc += dout[(size_t)tokens[k] * C + c]; }
    dwte[(size_t)run_ids[run] * C + c] += acc;
}

__global__ void embedding_backward_wpe_kernel(float* dwpe, const float* dout, const int* lengths, int B, int T, int C,
                                              const int* starts) {
    int t = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) { return; }
    float acc = 0.0f;
    for (int b = 0; b < B; b++) {
        if (t < lengths[b]) { acc += dout[(seq_start(b, T, starts) + t) * C + c]; }
    }
    dwpe[(size_t)t * C + c] += acc;
}

// tokens, runs, run_ids: embedding_sort_tokens' lists, already on the device; dwtt keeps the serial kernel.
// starts (B): packed tokens (kernel set 3), NULL: dout is (B, T, C)
void embedding_backward_sorted(float* dwte, float* dwpe, float* dwtt, const float* dout, const int* ids,
                               const int* types, const int* lengths, const int* tokens,
                               const int* runs, const int* run_ids, int nruns, int B, int T, int C,
                               const int* starts = NULL) {
    embedding_backward_wte_kernel<<<dim3(nruns, ceil_div(C, 128)), 128>>>(dwte, dout, tokens, runs, run_ids, C);
    kernelCheck();
    embedding_backward_wpe_kernel<<<dim3(T, ceil_div(C, 128)), 128>>>(dwpe, dout, lengths, B, T, C, starts);
    kernelCheck();
    embedding_backward_kernel<<<dim3(ceil_div(C, 32), 1), 32>>>(dwte, dwpe, dwtt, dout, ids, types,
                                                                 lengths, B, T, C, 2, starts);
    kernelCheck();
}

} // namespace cu
