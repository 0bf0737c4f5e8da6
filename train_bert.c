/*
BERT fine-tuning for sequence classification, in plain C.

This file is the CPU reference of bert.c: every layer's forward and backward pass, the model's
build, forward, backward and AdamW update, LoRA and the metrics, written to be read. It computes
exactly what Hugging Face `BertForSequenceClassification` computes (and PEFT's LoRA on
query/key/value), and test_bert.c checks that against PyTorch tensor by tensor. Clarity wins over
speed; OpenMP pragmas, a cache-blocked matmul and a polynomial exp are the only concessions.

Where things are, and which way the includes point (each file includes only files below it):
  train_bert.cu  the same model functions on the GPU (kernels in cuda/); includes this file
  train_bert.c   this file: the layers, the model functions, the metrics, the CPU back end, main
  trainer.h      the program around the model, shared by both binaries: flags, data, the loop,
                 evaluation, checkpoints and training state, logs, the probe, classify mode
  train_bert.h   the model as the program sees it: config, tensor tables, Bert, Metrics, and
                 the declarations of this file's functions
  bertc/         what knows nothing of BERT: checked I/O, dropout masks, packed rows, file
                 headers, the data loader, the schedule and early stopping, logs, test helpers
The shape is "program on a declared model": trainer.h includes train_bert.h, never this file, so
the program compiles (and reads) without the implementation, and this file includes trainer.h
only at its end, for main and the CPU back end. Nothing in bertc/ includes anything above it.
(The alternative, the program including the implementation, would make this file a library
without its own main, and train_bert.cu a second copy of the program's includes.)

It is not a general transformer library: one architecture (post-LN BERT with absolute positions
and exact GELU), one task (sequence classification of a text or a pair of texts).

Run: make train_bert && ./train_bert -s full      (./train_bert -h lists every flag)
*/
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#ifdef OMP
#include <omp.h>
#endif
// stb_ds: growing lists (the per-epoch history) and the tokenizer's vocabulary hash map.
// This is the one file that defines the implementation.
#define STB_DS_IMPLEMENTATION
#include <stb/stb_ds.h>
#undef STB_DS_IMPLEMENTATION
#include "train_bert.h"  // defines: BertConfig, the tensor tables, Bert, Metrics, AdamW's constants
#include "bertc/pack.h"  // defines: padded_row, seq_start, batch_pack (the real tokens' rows)

// ----------------------------------------------------------------------------
// all the individual layers' forward and backward passes
// B = batch, T = padded sequence length, C = hidden, NH = heads, hs = C / NH, FF = intermediate,
// NC = labels, r = LoRA rank. Row-major throughout; a backward accumulates (+=) into its outputs.
//
// Packed tokens (bertc/pack.h): a per-token tensor holds only the batch's N real tokens, sequence after
// sequence; packed row n is padded row rows[n] (its id, position and dropout mask), sequence b starts at row
// starts[b]. A layer given NULL maps reads the padded (B, T) layout instead: the dev/cuda notebooks check the
// GPU's padded kernels that way.

// Matrix product out (M, N) += a (M, K) @ b (K, N). b and out are row-major; a is read through strides, so the
// same routine serves x @ W^T (a = x), dout @ W (a = dout) and dout^T @ x (a = dout read by columns).
// Each output is out's old value plus a plain sequential sum over k, whatever the blocking and the thread count:
// the K blocks of one output run in order and each reloads the partial sums the last one stored, which is exact
// in float. So the bits equal the naive i-k-j loop's compiled with the same flags (test_bert.c checks it), and the
// PyTorch comparison and bit-exact resumes do not depend on the blocking or the thread count. (The kernel before
// this one rounded its ragged edge tiles without FMA and the rest with; the new one fuses everywhere, so those
// edge outputs moved by rounding, dev/bench_matmul.c counts them.)
// The loops are a BLAS gemm's (Goto and van de Geijn, "Anatomy of High-Performance Matrix Multiplication", 2008)
// without the assembly. Out is cut into blocks of at most MC x NC, the units of parallel work. For each K block a
// thread copies b's KC x NC block into NR-wide column panels (contiguous, in L2), and the micro-tile keeps MR x NR
// sums in vector registers while it walks the K block: its inner loop, one row of a panel times one value of a,
// is what the compiler vectorises. a by rows is read in place; a by columns (dout^T) is packed, MR rows at a time,
// so that the panel read again for every panel of b is 8 KB in a row, not KC pieces a row of dout apart (a page
// apart, for every k). Ragged edges are padded with zeros, whose products land only in outputs not stored.
// The threads share nothing until the end of the call: no barrier per block, so a thread that loses its core to
// another process does not stall the others (this machine is usually shared), at the price of each thread
// packing its own copy of b's blocks. dev/bench_matmul.c times it against the kernel before it.
// A weight the forward reads on every call comes packed already (matmul_pack_weight, made once
// per change of the weight): all of W^T's panels, which the micro-tiles read in place, so no
// thread packs or transposes anything.
#ifndef MM_MR
#ifdef __AVX512F__
// 32 registers of 16 floats: 8 x 48 sums take 24 of them, a row of the b panel 3 more
#define MM_MR 8   // rows of out per micro-tile
#define MM_NR 48  // columns of out per micro-tile
#else
// 16 registers of 8 floats (AVX2): 4 x 24 sums take 12, a row of b 3 (not tuned: 1.5x the old 4 x 32 kernel)
#define MM_MR 4
#define MM_NR 24
#endif
#endif
#define MM_KC 256          // K block: an MR x KC panel of a is 8 KB, in L1
#define MM_MC (32 * MM_MR) // most rows of a block of out: b's block is packed once per MC rows
#define MM_NC (10 * MM_NR) // most columns of a block of out: b's KC x NC block is 480 KB, in L2

// ap (kc, MR) = a[i0 : i0 + rows, k0 : k0 + kc] transposed, zero past the last row; reads along a's contiguous index
static void mm_pack_a_(float* ap, const float* a, size_t a_rs, size_t a_cs, int i0, int rows, int k0, int kc) {
    if (rows < MM_MR) { memset(ap, 0, (size_t)kc * MM_MR * sizeof(float)); }
    if (a_cs == 1) {
        for (int i = 0; i < rows; i++) {
            const float* arow = a + (size_t)(i0 + i) * a_rs + k0;
            for (int k = 0; k < kc; k++) { ap[k * MM_MR + i] = arow[k]; }
        }
    } else {
        for (int k = 0; k < kc; k++) {
            const float* acol = a + (size_t)(k0 + k) * a_cs + (size_t)i0 * a_rs;
            for (int i = 0; i < rows; i++) { ap[k * MM_MR + i] = acol[(size_t)i * a_rs]; }
        }
    }
}

// bp (kc, NR) = b[k0 : k0 + kc, j0 : j0 + cols] (b has N columns), zero past the last column
static void mm_pack_b_(float* bp, const float* b, int N, int k0, int kc, int j0, int cols) {
    for (int k = 0; k < kc; k++) {
        const float* brow = b + (size_t)(k0 + k) * N + j0;
        if (cols == MM_NR) { // a fixed count: a few vector moves, not a call to memcpy
            for (int j = 0; j < MM_NR; j++) { bp[k * MM_NR + j] = brow[j]; }
        } else {
            for (int j = 0; j < MM_NR; j++) { bp[k * MM_NR + j] = j < cols ? brow[j] : 0.0f; }
        }
    }
}

// c (mr, NR, row stride ldc) += a (mr, kc) @ bp (kc, NR), with a[i, k] = ap[i * ap_rs + k * ap_cs]: a's rows in
// place, or a packed panel. The sums stay in registers for the whole K block. Inlined with mr a constant: MR for the
// full tiles, MR / 2 and MR / 4 for a ragged last tile of few rows (one text's tokens), which would otherwise spend
// most of a full tile's work on rows it does not store. Each output's sum is the same in every variant.
static inline __attribute__((always_inline)) void mm_tile_rows_(float* c, size_t ldc, const float* ap,
                                                                 size_t ap_rs, size_t ap_cs, const float* bp,
                                                                 int kc, int mr) {
    float acc[MM_MR][MM_NR];
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < MM_NR; j++) { acc[i][j] = c[i * ldc + j]; }
    }
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < mr; i++) {
            float aik = ap[i * ap_rs + k * ap_cs];
            for (int j = 0; j < MM_NR; j++) { acc[i][j] += aik * bp[k * MM_NR + j]; }
        }
    }
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < MM_NR; j++) { c[i * ldc + j] = acc[i][j]; }
    }
}
static void mm_tile_(float* c, size_t ldc, const float* ap, size_t ap_rs, size_t ap_cs, const float* bp, int kc) {
    mm_tile_rows_(c, ldc, ap, ap_rs, ap_cs, bp, kc, MM_MR);
}
static void mm_tile_half_(float* c, size_t ldc, const float* ap, size_t ap_rs, size_t ap_cs, const float* bp,
                          int kc) {
    mm_tile_rows_(c, ldc, ap, ap_rs, ap_cs, bp, kc, MM_MR / 2);
}
static void mm_tile_quarter_(float* c, size_t ldc, const float* ap, size_t ap_rs, size_t ap_cs, const float* bp,
                             int kc) {
    mm_tile_rows_(c, ldc, ap, ap_rs, ap_cs, bp, kc, MM_MR / 4);
}

// b_packed: b is already cut into NR-wide panels over all of K (matmul_pack_weight's layout)
static void matmul_(float* out, const float* a, size_t a_rs, size_t a_cs, const float* b,
                    int b_packed, int M, int K, int N) {
    int threads = 1;
#ifdef OMP
    threads = omp_get_max_threads();
#endif
    // blocks of rows: at most MC, and as many as it takes for the number of blocks to divide among the threads
    // (1700 tokens in blocks of 256 would leave one thread 4 blocks and the other 3)
    int mtiles = (M + MM_MR - 1) / MM_MR, nblocks = (N + MM_NC - 1) / MM_NC;
    int mblocks = (M + MM_MC - 1) / MM_MC;
    int ntiles = (N + MM_NR - 1) / MM_NR;
    // rows for one block only (one text's tokens): the columns are cut among the threads instead
    // (22 rows in blocks of 16 and 6 leave one thread 2 tiles, the other 1)
    if (mblocks == 1 && ntiles >= threads) { nblocks = (nblocks + threads - 1) / threads * threads; }
    // column blocks of equal width in whole panels: 1536 columns in blocks of at most 480 are 4 of
    // 384, not 480, 480, 480 and 96, which would leave one of 2 threads 960 columns, the other 576
    int nc_max = (ntiles + nblocks - 1) / nblocks * MM_NR;
    nblocks = (N + nc_max - 1) / nc_max;
    while ((mblocks * nblocks) % threads != 0 && mblocks < mtiles) { mblocks++; }
    int mc_max = (mtiles + mblocks - 1) / mblocks * MM_MR;
    mblocks = (M + mc_max - 1) / mc_max;
    int kc_max = K < MM_KC ? K : MM_KC;
    #pragma omp parallel
    {
        // this thread's packed blocks: b's (malloc keeps a freed block of this size for the next call), a's
        float* bp = b_packed ? NULL : (float*)mallocCheck((size_t)kc_max * nc_max * sizeof(float));
        float ap[MM_KC * MM_MR];
        // dynamic: a thread that lost its core for a while leaves the blocks it has not started to the others
        #pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < mblocks * nblocks; blk++) {
            int m0 = blk / nblocks * mc_max, mc = M - m0 < mc_max ? M - m0 : mc_max;
            int n0 = blk % nblocks * nc_max, nc = N - n0 < nc_max ? N - n0 : nc_max;
            int npanels = (nc + MM_NR - 1) / MM_NR;
            for (int k0 = 0; k0 < K; k0 += MM_KC) {
                int kc = K - k0 < MM_KC ? K - k0 : MM_KC;
                for (int p = 0; p < npanels && !b_packed; p++) {
                    int cols = nc - p * MM_NR < MM_NR ? nc - p * MM_NR : MM_NR;
                    mm_pack_b_(bp + (size_t)p * kc * MM_NR, b, N, k0, kc, n0 + p * MM_NR, cols);
                }
                for (int i0 = m0; i0 < m0 + mc; i0 += MM_MR) {
                    int rows = m0 + mc - i0 < MM_MR ? m0 + mc - i0 : MM_MR;
                    // a by rows is read in place; by columns, or a ragged last tile, it is packed first
                    const float* at = a + (size_t)i0 * a_rs + (size_t)k0 * a_cs;
                    size_t at_rs = a_rs, at_cs = 1;
                    if (a_cs != 1 || rows < MM_MR) {
                        mm_pack_a_(ap, a, a_rs, a_cs, i0, rows, k0, kc);
                        at = ap; at_rs = 1; at_cs = MM_MR;
                    }
                    for (int p = 0; p < npanels; p++) {
                        int cols = nc - p * MM_NR < MM_NR ? nc - p * MM_NR : MM_NR;
                        float* c = out + (size_t)i0 * N + n0 + p * MM_NR;
                        const float* bpp = b_packed
                            ? b + ((size_t)(n0 / MM_NR + p) * K + k0) * MM_NR // in place
                            : bp + (size_t)p * kc * MM_NR;
                        if (rows == MM_MR && cols == MM_NR) {
                            mm_tile_(c, N, at, at_rs, at_cs, bpp, kc);
                        } else { // a ragged edge: the same sums, through a full-size copy of the tile
                            float t[MM_MR * MM_NR] = {0};
                            size_t row_bytes = cols * sizeof(float);
                            for (int i = 0; i < rows; i++) { memcpy(t + i * MM_NR, c + (size_t)i * N, row_bytes); }
                            if (rows <= MM_MR / 4) {
                                mm_tile_quarter_(t, MM_NR, at, at_rs, at_cs, bpp, kc);
                            } else if (rows <= MM_MR / 2) {
                                mm_tile_half_(t, MM_NR, at, at_rs, at_cs, bpp, kc);
                            } else {
                                mm_tile_(t, MM_NR, at, at_rs, at_cs, bpp, kc);
                            }
                            for (int i = 0; i < rows; i++) { memcpy(c + (size_t)i * N, t + i * MM_NR, row_bytes); }
                        }
                    }
                }
            }
        }
        free(bp);
    }
}

// out (Cc, R) = w (R, Cc) transposed: scratch for matmul_forward. In 32 x 32 tiles, so that both the rows read and
// the rows written stay in L1 (a plain column loop misses on every write)
static void transpose_(float* out, const float* w, int R, int Cc) {
    #pragma omp parallel for collapse(2)
    for (int c0 = 0; c0 < Cc; c0 += 32) {
        for (int r0 = 0; r0 < R; r0 += 32) {
            for (int c = c0; c < c0 + 32 && c < Cc; c++) {
                for (int r = r0; r < r0 + 32 && r < R; r++) { out[(size_t)c * R + r] = w[(size_t)r * Cc + c]; }
            }
        }
    }
}

// the floats of a weight (OC, C) packed by matmul_pack_weight: OC rounded up to whole panels
static inline size_t matmul_packed_size(int OC, int C) {
    return (size_t)(OC + MM_NR - 1) / MM_NR * MM_NR * C;
}

// wp (ceil(OC / NR), C, NR) = weight (OC, C) transposed, in NR-wide column panels, zero past column
// OC: b = W^T as matmul_ packs it for each block, but all of K at once, so that a forward reads it
// in place. Each panel reads NR rows of the weight side by side and writes its own floats in order.
void matmul_pack_weight(float* wp, const float* weight, int OC, int C) {
    int panels = (OC + MM_NR - 1) / MM_NR;
    #pragma omp parallel for
    for (int p = 0; p < panels; p++) {
        float* out = wp + (size_t)p * C * MM_NR;
        for (int k = 0; k < C; k++) {
            for (int j = 0; j < MM_NR; j++) {
                int o = p * MM_NR + j;
                out[(size_t)k * MM_NR + j] = o < OC ? weight[(size_t)o * C + k] : 0.0f;
            }
        }
    }
}

// out starts as the bias and the product accumulates into it: each output is bias + a plain sum
static void matmul_bias_(float* out, const float* bias, int N, int OC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) { out[(size_t)n * OC + o] = bias != NULL ? bias[o] : 0.0f; }
    }
}

// nn.Linear (https://pytorch.org/docs/stable/generated/torch.nn.Linear.html):
// out (N, OC) = inp (N, C) @ weight^T + bias, with weight (OC, C) as PyTorch stores it, packed by
// matmul_pack_weight into wp. The model's layers read their weights so (bert_pack_weights).
void matmul_forward_packed(float* out, const float* inp, const float* wp, const float* bias,
                           int N, int C, int OC) {
    matmul_bias_(out, bias, N, OC);
    matmul_(out, inp, C, 1, wp, 1, N, C, OC); // a = inp read by rows: a[n, k] = inp[n * C + k]
}

// The same product, with the same bits, for a weight that is not packed (the probe's classifier,
// the tests): wt_scratch (C, OC) holds weight^T, so that packing b copies rows (one transpose a
// call, N times cheaper than the product, instead of a strided gather for every block).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    float* wt_scratch, int N, int C, int OC) {
    transpose_(wt_scratch, weight, OC, C);
    matmul_bias_(out, bias, N, OC);
    matmul_(out, inp, C, 1, wt_scratch, 0, N, C, OC);
}

// backward of out = inp @ weight^T + bias. Any of dinp (N, C), dweight (OC, C), dbias (OC) may be
// NULL: a frozen weight, or an input that needs no gradient. All three accumulate.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC) {
    if (dinp != NULL) { matmul_(dinp, dout, OC, 1, weight, 0, N, OC, C); }  // dinp += dout @ W
    if (dweight != NULL) { matmul_(dweight, dout, 1, OC, inp, 0, OC, N, C); } // dW += dout^T @ inp
    if (dbias != NULL) { // dbias += the column sums of dout
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++) { sum += dout[(size_t)n * OC + o]; }
            dbias[o] += sum;
        }
    }
}

// BertEmbeddings before its LayerNorm (transformers/models/bert/modeling_bert.py, BertEmbeddings):
// out (N, C) = wte[id] + wpe[t] + wtt[type] for each row, ids and types (B, T) padded; the type
// is 1 on a sentence pair's second text, 0 elsewhere. rows NULL: every padded position, N = B * T.
void embedding_forward(float* out, const int* ids, const int* types, const float* wte,
                       const float* wpe, const float* wtt, const int* rows, int N, int T, int C) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        size_t row = padded_row(n, rows);
        float* o = out + (size_t)n * C;
        const float* we = wte + (size_t)ids[row] * C;
        const float* pe = wpe + (row % T) * C; // position t of row b * T + t
        const float* te = wtt + (size_t)types[row] * C;
        for (int i = 0; i < C; i++) { o[i] = we[i] + pe[i] + te[i]; }
    }
}

// backward of o = wte[id] + wpe[t] + wtt[type] over the real tokens' rows (padded positions,
// which the maps leave out, get exactly zero: Hugging Face's padding_idx keeps wte[pad] unchanged)
void embedding_backward(float* dwte, float* dwpe, float* dwtt, const float* dout, const int* ids,
                        const int* types, const int* rows, int N, int T, int C) {
    // serial over tokens: two tokens with the same id add into the same row
    for (int n = 0; n < N; n++) {
        size_t row = padded_row(n, rows);
        const float* d = dout + (size_t)n * C;
        float* dwe = dwte + (size_t)ids[row] * C;
        float* dpe = dwpe + (row % T) * C;
        float* dte = dwtt + (size_t)types[row] * C;
        for (int i = 0; i < C; i++) { dwe[i] += d[i]; dpe[i] += d[i]; dte[i] += d[i]; }
    }
}

// nn.LayerNorm over the last dim, biased variance (https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html):
// out (N, C) = (x - mean) * rstd * weight + bias, keeping mean (N) and rstd (N) for backward.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        // two passes, as torch: the mean, then the mean squared deviation (numerically better than E[x^2] - m^2)
        float m = 0.0f;
        for (int i = 0; i < C; i++) { m += x[i]; }
        m /= C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) { float d = x[i] - m; v += d * d; }
        v /= C;
        float s = 1.0f / sqrtf(v + eps); // 1 / std, kept for backward
        float* o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) { o[i] = (x[i] - m) * s * weight[i] + bias[i]; }
        mean[n] = m;
        rstd[n] = s;
    }
}

// backward of out = (x - mean) * rstd * w + b; dweight / dbias may be NULL (frozen)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * C;
        const float* x = inp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        // dnorm = dout * w; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * d[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float* dx = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * d[i];
            dx[i] += s * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
        }
    }
    if (dweight != NULL) {
        // dweight = sum_n norm * dout, dbias = sum_n dout; a separate loop over channels: parallel without two
        // threads adding into one dw[i]
        #pragma omp parallel for
        for (int i = 0; i < C; i++) {
            float dw = 0.0f, db = 0.0f;
            for (int n = 0; n < N; n++) {
                float norm = (inp[(size_t)n * C + i] - mean[n]) * rstd[n];
                dw += norm * dout[(size_t)n * C + i];
                db += dout[(size_t)n * C + i];
            }
            dweight[i] += dw;
            dbias[i] += db;
        }
    }
}

// nn.Dropout, inverted (https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html): kept values
// scale by 1 / (1 - p). out (N, C) = dropout(inp) (+ residual if not NULL); out may alias inp.
// Element (n, c) is kept iff dropout_uniform(stream, padded_row(n) * C + c) >= p: the mask of the padded
// layout, whatever rows are packed (rows NULL: a plain (N, C) tensor). p == 0 is the identity.
void dropout_forward(float* out, const float* inp, const float* residual, const int* rows, size_t N, size_t C,
                     float p, uint64_t stream) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (size_t n = 0; n < N; n++) {
        size_t mask = padded_row(n, rows) * C;
        for (size_t c = 0; c < C; c++) {
            size_t i = n * C + c;
            float x = inp[i];
            if (p > 0.0f) { x = dropout_uniform(stream, mask + c) >= p ? x * scale : 0.0f; }
            out[i] = residual != NULL ? x + residual[i] : x;
        }
    }
}

// backward of out = dropout(inp): dinp += mask / (1 - p) * dout, the mask regenerated from the stream
void dropout_backward(float* dinp, const float* dout, const int* rows, size_t N, size_t C, float p,
                      uint64_t stream) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (size_t n = 0; n < N; n++) {
        size_t mask = padded_row(n, rows) * C;
        for (size_t c = 0; c < C; c++) {
            float d = dout[n * C + c];
            if (p > 0.0f) { d = dropout_uniform(stream, mask + c) >= p ? d * scale : 0.0f; }
            dinp[n * C + c] += d;
        }
    }
}

// one head's keys or values of one sequence, transposed for attention's register sums: dst[i * T16 + t2] =
// src[t2 * 3C + i] for the len rows of qkv from src, zero from len up to the next multiple of 16
static void head_transpose_(float* dst, const float* src, int len, int T16, int hs, int C) {
    int len16 = (len + 15) / 16 * 16;
    for (int i = 0; i < hs; i++) {
        for (int t2 = 0; t2 < len16; t2++) {
            dst[(size_t)i * T16 + t2] = t2 < len ? src[(size_t)t2 * 3 * C + i] : 0.0f;
        }
    }
}

// Bidirectional self-attention with a key padding mask, as BertSelfAttention (modeling_bert.py):
// scores = q k^T / sqrt(hs) over the real keys, softmax, dropout, @ v; each sequence attends within itself.
// qkv (N, 3C) holds q, k, v side by side, head h in columns h*hs..(h+1)*hs of each, sequence b's tokens
// from row starts[b]; out (N, C) has the heads concatenated. att (B, NH, T, T) keeps the softmax (before
// dropout) of each real query row for backward, 0 beyond the length; its index is also the dropout mask's.
// starts NULL: the padded layout (N = B * T), where the padded query rows attend to the real keys too, so
// they never produce NaN (and nothing reads them).
void attention_forward(float* out, float* att, const float* qkv, const int* lengths, const int* starts,
                       int B, int T, int C, int NH, float p, uint64_t stream) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float pscale = 1.0f / (1.0f - p);
    int T16 = (T + 15) / 16 * 16;
    #pragma omp parallel
    {
        // One (b, h)'s keys, transposed: kt[i * T16 + t2] = k[t2][i], zero past the last key. A
        // query row's scores are then summed 16 keys at a time in a register (acc), and its output 16
        // columns at a time: sums that live in memory would wait on their own last store each step.
        float* kt = (float*)mallocCheck((size_t)hs * T16 * sizeof(float));
        float* w = (float*)mallocCheck((size_t)T * sizeof(float)); // a row after dropout
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                int len = lengths[b];
                int nq = starts != NULL ? len : T; // packed: the real query rows only
                size_t base = seq_start(b, T, starts); // the sequence's first row in qkv and out
                head_transpose_(kt, qkv + base * 3 * C + C + h * hs, len, T16, hs, C);
                for (int t = 0; t < nq; t++) {
                    const float* q = qkv + (base + t) * 3 * C + h * hs;
                    float* a = att + (((size_t)b * NH + h) * T + t) * T;
                    // a[t2] = q . k[t2] * scale for the real keys t2 < len
                    float maxval = -INFINITY;
                    for (int t0 = 0; t0 < len; t0 += 16) {
                        float acc[16] = {0};
                        for (int i = 0; i < hs; i++) {
                            const float* kr = kt + (size_t)i * T16 + t0;
                            for (int j = 0; j < 16; j++) { acc[j] += q[i] * kr[j]; }
                        }
                        for (int j = 0; j < 16 && t0 + j < len; j++) {
                            a[t0 + j] = acc[j] * scale;
                            if (a[t0 + j] > maxval) { maxval = a[t0 + j]; }
                        }
                    }
                    // softmax over them; padded keys get exactly 0
                    float sum = 0.0f;
                    for (int t2 = 0; t2 < len; t2++) { a[t2] = expf(a[t2] - maxval); sum += a[t2]; }
                    for (int t2 = 0; t2 < len; t2++) { a[t2] /= sum; }
                    for (int t2 = len; t2 < T; t2++) { a[t2] = 0.0f; }
                    // o = dropout(a) @ v; the mask index is the position in att
                    size_t row = (((size_t)b * NH + h) * T + t) * T;
                    for (int t2 = 0; t2 < len; t2++) {
                        w[t2] = a[t2];
                        if (p > 0.0f) {
                            w[t2] = dropout_uniform(stream, row + t2) >= p ? a[t2] * pscale : 0.0f;
                        }
                    }
                    float* o = out + (base + t) * C + h * hs;
                    int i0 = 0;
                    for (; i0 + 16 <= hs; i0 += 16) {
                        float acc[16] = {0};
                        for (int t2 = 0; t2 < len; t2++) {
                            const float* v = qkv + (base + t2) * 3 * C + 2 * C + h * hs + i0;
                            for (int j = 0; j < 16; j++) { acc[j] += w[t2] * v[j]; }
                        }
                        for (int j = 0; j < 16; j++) { o[i0 + j] = acc[j]; }
                    }
                    for (int i = i0; i < hs; i++) { // a head size not a multiple of 16
                        float acc = 0.0f;
                        for (int t2 = 0; t2 < len; t2++) {
                            acc += w[t2] * qkv[(base + t2) * 3 * C + 2 * C + h * hs + i];
                        }
                        o[i] = acc;
                    }
                }
            }
        }
        free(w);
        free(kt);
    }
}

// backward of out = dropout(softmax(q k^T / sqrt(hs))) @ v into dqkv (N, 3C), which it accumulates; att is the
// forward's softmax, the dropout mask is regenerated. Parallel over (b, h): every write of one (b, h) lands in its
// own slice of dqkv, so no two threads add into one element. starts as the forward's.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, const int* lengths,
                        const int* starts, int B, int T, int C, int NH, float p, uint64_t stream) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float pscale = 1.0f / (1.0f - p);
    #pragma omp parallel
    {
        int T16 = (T + 15) / 16 * 16;
        float* datt = (float*)mallocCheck((size_t)T16 * sizeof(float)); // one row of d(softmax)
        // one (b, h)'s values, transposed as the forward's keys: vt[i * T16 + t2] = v[t2][i]
        float* vt = (float*)mallocCheck((size_t)hs * T16 * sizeof(float));
        #pragma omp for collapse(2)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                int len = lengths[b];
                int nq = starts != NULL ? len : T; // the query rows the forward computed
                size_t base = seq_start(b, T, starts);
                head_transpose_(vt, qkv + base * 3 * C + 2 * C + h * hs, len, T16, hs, C);
                for (int t = 0; t < nq; t++) {
                    const float* a = att + (((size_t)b * NH + h) * T + t) * T;
                    const float* d = dout + (base + t) * C + h * hs;
                    const float* q = qkv + (base + t) * 3 * C + h * hs;
                    float* dq = dqkv + (base + t) * 3 * C + h * hs;
                    size_t row = (((size_t)b * NH + h) * T + t) * T;
                    // o = sum_t2 dropout(a)[t2] * v[t2]: datt[t2] = mask * (do . v[t2]), summed for
                    // all keys at once as the forward's scores, then dv[t2] += dropout(a)[t2] * do
                    for (int t0 = 0; t0 < len; t0 += 16) {
                        float acc[16] = {0};
                        for (int i = 0; i < hs; i++) {
                            const float* vr = vt + (size_t)i * T16 + t0;
                            for (int j = 0; j < 16; j++) { acc[j] += d[i] * vr[j]; }
                        }
                        for (int j = 0; j < 16; j++) { datt[t0 + j] = acc[j]; }
                    }
                    float dot = 0.0f;
                    for (int t2 = 0; t2 < len; t2++) {
                        float m = 1.0f;
                        if (p > 0.0f) { m = dropout_uniform(stream, row + t2) >= p ? pscale : 0.0f; }
                        float* dv = dqkv + (base + t2) * 3 * C + 2 * C + h * hs;
                        for (int i = 0; i < hs; i++) { dv[i] += a[t2] * m * d[i]; }
                        datt[t2] = datt[t2] * m;
                        dot += datt[t2] * a[t2];
                    }
                    // a = softmax(s): ds = a * (datt - sum(datt * a)) (into datt); s = q . k * scale
                    for (int t2 = 0; t2 < len; t2++) {
                        datt[t2] = a[t2] * (datt[t2] - dot) * scale;
                        float* dk = dqkv + (base + t2) * 3 * C + C + h * hs;
                        for (int i = 0; i < hs; i++) { dk[i] += datt[t2] * q[i]; }
                    }
                    // dq += sum_t2 ds[t2] k[t2], 16 columns at a time in a register, keys in order
                    int i0 = 0;
                    for (; i0 + 16 <= hs; i0 += 16) {
                        float acc[16];
                        for (int j = 0; j < 16; j++) { acc[j] = dq[i0 + j]; }
                        for (int t2 = 0; t2 < len; t2++) {
                            const float* k = qkv + (base + t2) * 3 * C + C + h * hs + i0;
                            for (int j = 0; j < 16; j++) { acc[j] += datt[t2] * k[j]; }
                        }
                        for (int j = 0; j < 16; j++) { dq[i0 + j] = acc[j]; }
                    }
                    for (int i = i0; i < hs; i++) { // a head size not a multiple of 16
                        for (int t2 = 0; t2 < len; t2++) {
                            dq[i] += datt[t2] * qkv[(base + t2) * 3 * C + C + h * hs + i];
                        }
                    }
                }
            }
        }
        free(vt);
        free(datt);
    }
}

// e^x for the GELU loops, in plain arithmetic that the compiler vectorises (glibc's expf and erff are calls, one
// element at a time: they took about a tenth of a MiniLM training step). x = n ln2 + r with |r| <= ln2 / 2 and ln2
// in two parts, e^r from Cephes' expf polynomial (relative error under 2e-7 over the range, test_bert checks it),
// 2^n put into the exponent bits. Clamped to [-87, 88], where 2^n stays a normal float, and 0 below -87 (e^-87
// is 1.6e-38: a GELU gradient at |x| over 1e19 would take it for more than 0). NaN clamps to -87, which keeps the
// integer conversion defined; the callers' x carries the NaN on.
static inline float exp_(float x0) {
    float x = x0 > -87.0f ? (x0 < 88.0f ? x0 : 88.0f) : -87.0f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; // round to nearest (1.5 * 2^23)
    float r = x - n * 0.693359375f;                                     // ln2's high part, exact in n * it
    r = r - n * -2.12194440e-4f;                                        // and its low part
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float er = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return x0 < -87.0f ? 0.0f : er * scale;
}

// erf(x / sqrt 2) given e = e^(-x^2 / 2), as PyTorch's CPU GELU computes it (ATen's Vectorized<float>::erf,
// Abramowitz and Stegun 7.1.26: absolute error under 1.5e-7): erf(z) = sign(z) (1 - t P(t) e^(-z^2)) with
// t = 1 / (1 + 0.3275911 |z|)
static inline float erf_scaled_(float x, float e) {
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float poly = (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f;
    float y = 1.0f - poly * t * e;
    return x < 0.0f ? -y : y;
}

// exact GELU, Hugging Face's "gelu" (https://pytorch.org/docs/stable/generated/torch.nn.GELU.html,
// approximate='none'): out (N) = 0.5 x (1 + erf(x / sqrt 2)), erf as PyTorch's CPU kernel has it
#define INV_SQRT_2PI 0.39894228040143268f
void gelu_forward(float* out, const float* inp, size_t N) {
    #pragma omp parallel for simd
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erf_scaled_(x, exp_(-0.5f * x * x)));
    }
}

// backward of out = x Phi(x): dinp = dout * (Phi(x) + x phi(x)). Overwrites dinp, which may alias dout.
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
    #pragma omp parallel for simd
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float e = exp_(-0.5f * x * x);
        dinp[i] = dout[i] * (0.5f * (1.0f + erf_scaled_(x, e)) + x * INV_SQRT_2PI * e);
    }
}

// BertPooler (modeling_bert.py) on the [CLS] position: out (B, C) = tanh(cls @ w^T + bias), with
// cls (B, C) = each sequence's first row of h (N, C) (row starts[b]), kept for backward;
// wp is w packed (matmul_pack_weight).
void pooler_forward(float* out, float* cls, const float* h, const float* wp, const float* bias,
                    const int* starts, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        memcpy(cls + (size_t)b * C, h + seq_start(b, T, starts) * C, C * sizeof(float));
    }
    matmul_forward_packed(out, cls, wp, bias, B, C, C);
    for (size_t i = 0; i < (size_t)B * C; i++) { out[i] = tanhf(out[i]); }
}

// backward of out = tanh(cls @ w^T + b) into dh (N, C), of which only the [CLS] rows get anything.
// dpre_scratch and dcls_scratch are (B, C).
void pooler_backward(float* dh, float* dw, float* db, float* dpre_scratch, float* dcls_scratch, const float* dout,
                     const float* out, const float* cls, const float* w, const int* starts, int B, int T, int C) {
    // tanh' = 1 - tanh^2
    for (size_t i = 0; i < (size_t)B * C; i++) { dpre_scratch[i] = dout[i] * (1.0f - out[i] * out[i]); }
    memset(dcls_scratch, 0, (size_t)B * C * sizeof(float));
    matmul_backward(dcls_scratch, dw, db, dpre_scratch, cls, w, B, C, C);
    for (int b = 0; b < B; b++) {
        float* d = dh + seq_start(b, T, starts) * C;
        for (int i = 0; i < C; i++) { d[i] += dcls_scratch[(size_t)b * C + i]; }
    }
}

// nn.CrossEntropyLoss, mean over the batch (https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html):
// probs (B, NC) = softmax(logits), losses (B) = -log probs[label]. Returns the mean loss.
float crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels, int B, int NC) {
    float mean = 0.0f;
    for (int b = 0; b < B; b++) {
        const float* z = logits + (size_t)b * NC;
        float* pr = probs + (size_t)b * NC;
        float maxval = z[0];
        for (int c = 1; c < NC; c++) { if (z[c] > maxval) { maxval = z[c]; } }
        float sum = 0.0f;
        for (int c = 0; c < NC; c++) { pr[c] = expf(z[c] - maxval); sum += pr[c]; }
        for (int c = 0; c < NC; c++) { pr[c] /= sum; }
        losses[b] = logf(sum) + maxval - z[labels[b]];
        mean += losses[b];
    }
    return mean / B;
}

// backward of the mean loss over B_mean examples, B of them here:
// dlogits (B, NC) = (probs - onehot(label)) / B_mean. B_mean is B but where the batch is a rank's
// slice of a global batch of B_mean (the ranks' gradients then sum).
void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int B_mean,
                           int NC) {
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < NC; c++) {
            float onehot = c == labels[b] ? 1.0f : 0.0f;
            dlogits[(size_t)b * NC + c] = (probs[(size_t)b * NC + c] - onehot) / B_mean;
        }
    }
}

// LoRA on one projection, as PEFT's lora.Linear (peft/tuners/lora/layer.py):
// out += s * (dropout(x) @ A^T) @ B^T with s = alpha / r. x (N, C), A (r, C), B (OC, r); rows: the dropout
// mask's rows (the packed tokens' padded rows, see dropout_forward).
// u (N, r) = dropout(x) @ A^T is kept for backward; xd_scratch (N, C) holds dropout(x).
// out has row stride out_stride, so q, k and v write straight into their columns of qkv.
void lora_forward(float* out, size_t out_stride, float* u, float* xd_scratch, const float* x, const float* A,
                  const float* Bw, int N, int C, int OC, int r, float s, float p, uint64_t stream, const int* rows) {
    dropout_forward(xd_scratch, x, NULL, rows, N, C, p, stream);
    // per row: u = A dropout(x) (r numbers), then out += s * B u; r is small (8), so plain loops
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* xn = xd_scratch + (size_t)n * C;
        float* un = u + (size_t)n * r;
        for (int j = 0; j < r; j++) {
            const float* a = A + (size_t)j * C;
            float sum = 0.0f;
            for (int i = 0; i < C; i++) { sum += xn[i] * a[i]; }
            un[j] = sum;
        }
        float* o = out + (size_t)n * out_stride;
        for (int o_ = 0; o_ < OC; o_++) {
            const float* bw = Bw + (size_t)o_ * r;
            float sum = 0.0f;
            for (int j = 0; j < r; j++) { sum += un[j] * bw[j]; }
            o[o_] += s * sum;
        }
    }
}

// backward of out += s * (dropout(x) @ A^T) @ B^T. dout (N, OC) is read with row stride dout_stride.
// dA, dB accumulate; dx (may be NULL) accumulates through the dropout mask. du_scratch (N, r).
void lora_backward(float* dx, float* dA, float* dBw, float* du_scratch, float* xd_scratch, const float* dout,
                   size_t dout_stride, const float* u, const float* x, const float* A, const float* Bw,
                   int N, int C, int OC, int r, float s, float p, uint64_t stream, const int* rows) {
    // du = s * dout @ B
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * dout_stride;
        for (int j = 0; j < r; j++) {
            float sum = 0.0f;
            for (int o = 0; o < OC; o++) { sum += d[o] * Bw[(size_t)o * r + j]; }
            du_scratch[(size_t)n * r + j] = s * sum;
        }
    }
    // dB += s * dout^T @ u
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        for (int j = 0; j < r; j++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++) { sum += dout[(size_t)n * dout_stride + o] * u[(size_t)n * r + j]; }
            dBw[(size_t)o * r + j] += s * sum;
        }
    }
    // dA += du^T @ dropout(x), with dropout(x) regenerated
    dropout_forward(xd_scratch, x, NULL, rows, N, C, p, stream);
    #pragma omp parallel for
    for (int j = 0; j < r; j++) {
        float* da = dA + (size_t)j * C;
        for (int n = 0; n < N; n++) {
            float dun = du_scratch[(size_t)n * r + j];
            const float* xn = xd_scratch + (size_t)n * C;
            for (int i = 0; i < C; i++) { da[i] += dun * xn[i]; }
        }
    }
    // dx += dropout_backward(du @ A), unless nothing below needs it
    if (dx == NULL) { return; }
    memset(xd_scratch, 0, (size_t)N * C * sizeof(float));
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float* dxn = xd_scratch + (size_t)n * C;
        for (int j = 0; j < r; j++) {
            float dun = du_scratch[(size_t)n * r + j];
            const float* a = A + (size_t)j * C;
            for (int i = 0; i < C; i++) { dxn[i] += dun * a[i]; }
        }
    }
    dropout_backward(dx, xd_scratch, rows, N, C, p, stream);
}

// torch.optim.AdamW on one tensor (https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html):
// decoupled weight decay, bias-corrected moments, the gradient first scaled by clip (<= 1).
// step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t) are computed once per step.
void adamw_update(float* param, const float* grad, float* m, float* v, size_t N, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float clip, float step_size, float bc2_sqrt) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float gi = clip < 1.0f ? grad[i] * clip : grad[i];
        param[i] *= 1.0f - lr * weight_decay;
        m[i] += (1.0f - beta1) * (gi - m[i]);          // exp_avg.lerp_(grad, 1 - beta1)
        v[i] = v[i] * beta2 + (1.0f - beta2) * gi * gi; // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        param[i] -= step_size * m[i] / denom;
    }
}

// the number of elements of a shape, with checked products
static size_t shape_size_(const int* shape, const BertConfig* cfg, size_t B, size_t T, size_t r) {
    size_t C = cfg->C, FF = cfg->FF;
    size_t n = 1;
    for (int i = 0; i < MAX_DIMS && shape[i] != D_END; i++) {
        size_t d = 0;
        switch (shape[i]) {
            case D_V: d = cfg->V; break;
            case D_P: d = cfg->P; break;
            case D_TV: d = cfg->TV; break;
            case D_C: d = C; break;
            case D_3C: d = 3 * C; break;
            case D_L: d = cfg->L; break;
            case D_L1: d = (size_t)cfg->L + 1; break;
            case D_NH: d = cfg->NH; break;
            case D_FF: d = FF; break;
            case D_NC: d = cfg->NC; break;
            case D_B: d = B; break;
            case D_T: d = T; break;
            case D_R: d = r; break;
            case D_2: d = 2; break;
            case D_3: d = 3; break;
            case D_4: d = 4; break;
        }
        n = size_mul(n, d, "tensor size");
    }
    return n;
}

// the model's parameter rows for a strategy: sizes from the shapes, trainable from the table
void fill_in_parameter_sizes(TensorInfo* info, const BertConfig* cfg, int strategy) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        info[i].name = PARAMETER_SPECS[i].name;
        info[i].size = shape_size_(PARAMETER_SPECS[i].shape, cfg, 0, 0, 0);
        info[i].decay = PARAMETER_SPECS[i].decay;
        info[i].trainable = (PARAMETER_SPECS[i].trained_by >> strategy) & 1;
    }
}

void fill_in_lora_sizes(TensorInfo* info, const BertConfig* cfg, int r) {
    for (int i = 0; i < NUM_LORA_TENSORS; i++) {
        info[i].name = LORA_SPECS[i].name;
        info[i].size = shape_size_(LORA_SPECS[i].shape, cfg, 0, 0, (size_t)r);
        info[i].decay = LORA_SPECS[i].decay;
        info[i].trainable = 1;
    }
}

// sizes of a buffer table for a batch of (B, T)
void fill_in_buffer_sizes(size_t* sizes, const BufferSpec* specs, int n, const BertConfig* cfg,
                          int B, int T, int r) {
    for (int i = 0; i < n; i++) {
        sizes[i] = shape_size_(specs[i].shape, cfg, (size_t)B, (size_t)T, (size_t)r);
    }
}

// the row of a buffer table with this name (for a back end that does without one)
int buffer_index(const BufferSpec* specs, int n, const char* name) {
    for (int i = 0; i < n; i++) { if (strcmp(specs[i].name, name) == 0) { return i; } }
    error_exit("no buffer named %s", name);
}

// One allocation for a table of tensors: sizes in, one pointer per row out (a row of size 0, such
// as a frozen tensor's gradient, gets NULL). Returns the zeroed block.
float* malloc_and_point(float** ptrs, const size_t* sizes, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) { total = size_add(total, sizes[i], "tensor table"); }
    float* mem = (float*)callocCheck(total, sizeof(float));
    float* p = mem;
    for (int i = 0; i < n; i++) {
        ptrs[i] = sizes[i] > 0 ? p : NULL;
        p += sizes[i];
    }
    return mem;
}

// the sizes column of a table; only_trainable zeroes the rows that do not train
void table_sizes(size_t* sizes, const TensorInfo* info, int n, int only_trainable) {
    for (int i = 0; i < n; i++) { sizes[i] = (!only_trainable || info[i].trainable) ? info[i].size : 0; }
}

size_t bert_num_trainable(const Bert* model) {
    size_t n = model->num_lora_parameters;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (model->param_info[i].trainable) { n += model->param_info[i].size; }
    }
    return n;
}

// ----------------------------------------------------------------------------
// build: a model file (or a checkpoint) into a Bert; training state; activations

// the config from a model or checkpoint header, every field checked against what the code and the
// rest of the file need. The bounds keep every size product far inside 64 bits.
static void bert_config_from_header_(BertConfig* cfg, const int32_t* h, const char* path) {
    cfg->V = h[MODEL_V]; cfg->P = h[MODEL_P]; cfg->TV = h[MODEL_TV]; cfg->C = h[MODEL_C]; cfg->L = h[MODEL_L];
    cfg->NH = h[MODEL_NH]; cfg->FF = h[MODEL_FF]; cfg->NC = h[MODEL_NC]; cfg->eps = bits_to_float(h[MODEL_EPS]);
    cfg->pad_id = h[MODEL_PAD_ID]; cfg->lower = h[MODEL_LOWER];
    // in 64 bits: a bound computed from a field (V - 1) must not overflow before that field is checked
    struct { const char* name; long long value, lo, hi; } fields[] = {
        {"V", cfg->V, 1, 1 << 24}, {"P", cfg->P, P_MIN, 8192}, {"TV", cfg->TV, 1, 16}, {"C", cfg->C, 1, 16384},
        {"L", cfg->L, 1, 256}, {"NH", cfg->NH, 1, cfg->C}, {"FF", cfg->FF, 1, 65536}, {"NC", cfg->NC, 2, 1024},
        {"pad id", cfg->pad_id, 0, (long long)cfg->V - 1}, {"lower-case flag", cfg->lower, 0, 1},
        {"activation", h[MODEL_ACT], 1, 1}, {"kind", h[MODEL_KIND], 0, 1},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].value < fields[i].lo || fields[i].value > fields[i].hi) {
            error_exit("model file %s: header field %s is %lld, want %lld..%lld\n"
                       "---> HINT: re-run `python prepro_emotion.py`", path, fields[i].name, fields[i].value,
                       fields[i].lo, fields[i].hi);
        }
    }
    if (cfg->C % cfg->NH != 0) {
        error_exit("model file %s: hidden size %d is not a multiple of %d heads", path, cfg->C, cfg->NH);
    }
    if (!(isfinite(cfg->eps) && cfg->eps > 0.0f && cfg->eps < 1.0f)) {
        error_exit("model file %s: layer-norm eps is %g, want a number in (0, 1)", path, cfg->eps);
    }
    memcpy(cfg->name, &h[MODEL_NAME], MODEL_NAME_INTS * 4);
    if (memchr(cfg->name, '\0', MODEL_NAME_INTS * 4) == NULL) {
        error_exit("model file %s: the model name is not NUL-terminated", path);
    }
    cfg->name[256] = '\0';
    const char* names[1024]; // NC <= 1024, checked above
    memset(cfg->label_text, 0, sizeof(cfg->label_text));
    int named = header_label_names(h, MODEL_LABEL_BYTES, cfg->NC, cfg->label_text, names, path,
                                   "re-run `python prepro_emotion.py`");
    cfg->label_bytes = named ? h[MODEL_LABEL_BYTES] : 0;
    if (h[MODEL_KIND] == MODEL_KIND_CHECKPOINT) {
        int s = h[CKPT_STRATEGY], r = h[CKPT_LORA_R];
        float alpha = bits_to_float(h[CKPT_LORA_ALPHA]);
        if (s < 0 || s >= NUM_STRATEGIES) {
            error_exit("checkpoint %s: strategy %d (want 0 full, 1 frozen, 2 lora)", path, s);
        }
        // alpha scales the adapters: a LoRA checkpoint's is one -a accepts (NaN fails both comparisons)
        if (s == STRATEGY_LORA && (r < 1 || r > cfg->C || !(alpha >= LORA_ALPHA_MIN && alpha <= LORA_ALPHA_MAX))) {
            error_exit("checkpoint %s: LoRA rank %d and alpha %g (want 1..%d and %g..%g)", path, r, alpha, cfg->C,
                       LORA_ALPHA_MIN, LORA_ALPHA_MAX);
        }
        // bert_checkpoint_header_ writes rank 0 and alpha 0.0 (all bits zero) where there are no adapters
        if (s != STRATEGY_LORA && (r != 0 || h[CKPT_LORA_ALPHA] != 0)) {
            error_exit("checkpoint %s: a %s checkpoint with LoRA rank %d and alpha %g (want 0 and 0)", path,
                       STRATEGY_NAMES[s], r, alpha);
        }
        if (h[CKPT_EPOCH] < 0 || h[CKPT_STEP] < 0) { error_exit("checkpoint %s: negative epoch or step", path); }
    }
}

// Read a model file, or a checkpoint (its base parameters, plus LoRA tensors into model->lora_memory
// when read_lora). model->strategy decides what trains later; the file's own strategy is returned.
static int bert_read_file_(Bert* model, const char* path, int read_lora) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    long fsize = header_read(fp, path, h, MODEL_MAGIC, MODEL_VERSION, "model file",
                             "re-run `python prepro_emotion.py`");
    BertConfig* cfg = &model->config;
    bert_config_from_header_(cfg, h, path);
    int file_strategy = h[MODEL_KIND] == MODEL_KIND_CHECKPOINT ? h[CKPT_STRATEGY] : -1;
    fill_in_parameter_sizes(model->param_info, cfg, model->strategy);
    model->num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        model->num_parameters = size_add(model->num_parameters, model->param_info[i].size, "parameters");
    }
    // a LoRA checkpoint carries its adapters after the parameters
    TensorInfo lora_info[NUM_LORA_TENSORS];
    size_t nlora = 0;
    if (file_strategy == STRATEGY_LORA) {
        fill_in_lora_sizes(lora_info, cfg, h[CKPT_LORA_R]);
        nlora = lora_info[0].size + lora_info[1].size;
    }
    size_t want = size_add(sizeof(h),
                           size_mul(size_add(model->num_parameters, nlora, "model"), sizeof(float), "model"), "model");
    if ((size_t)fsize != want) {
        error_exit("model file %s has %ld bytes, its header says %zu\n---> HINT: re-run `python prepro_emotion.py`",
                   path, fsize, want);
    }
    size_t sizes[NUM_PARAMETER_TENSORS];
    table_sizes(sizes, model->param_info, NUM_PARAMETER_TENSORS, 0);
    model->params_memory = malloc_and_point((float**)&model->params, sizes, NUM_PARAMETER_TENSORS);
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    check_finite(model->params_memory, model->num_parameters, path, "parameter");
    if (nlora > 0 && read_lora) {
        memcpy(model->lora_info, lora_info, sizeof(lora_info));
        size_t lsizes[NUM_LORA_TENSORS];
        table_sizes(lsizes, model->lora_info, NUM_LORA_TENSORS, 0);
        model->lora_memory = malloc_and_point((float**)&model->lora, lsizes, NUM_LORA_TENSORS);
        model->num_lora_parameters = nlora;
        freadCheck(model->lora_memory, sizeof(float), nlora, fp, path);
        check_finite(model->lora_memory, nlora, path, "LoRA parameter");
    }
    fcloseCheck(fp, path);
    return file_strategy;
}

// The model to fine-tune: a model file from prepro_emotion.py, or a full or frozen checkpoint
// (whose parameters are the whole model). model->strategy is set by the caller.
void bert_build_from_file(Bert* model, const char* path) {
    int file_strategy = bert_read_file_(model, path, 0);
    if (file_strategy == STRATEGY_LORA) {
        error_exit("%s is a LoRA checkpoint: training from it would drop its adapters\n"
                   "---> HINT: start from its base model file (-m data/model.bin)", path);
    }
}

// A model for inference from a checkpoint alone: the strategy, LoRA rank and alpha come from its
// header. No gradients or optimizer state are allocated.
void bert_build_from_checkpoint(Bert* model, const char* path) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    header_read(fp, path, h, MODEL_MAGIC, MODEL_VERSION, "checkpoint",
                "pass out/checkpoint_best.bin (or _last) written by train_bert");
    fcloseCheck(fp, path);
    if (h[MODEL_KIND] != MODEL_KIND_CHECKPOINT) {
        error_exit("%s is not a train_bert checkpoint (a plain model file: header kind %d)\n"
                   "---> HINT: pass out/checkpoint_best.bin (or _last) written by ./train_bert", path, h[MODEL_KIND]);
    }
    model->strategy = h[CKPT_STRATEGY];
    model->lora_r = h[CKPT_LORA_R];
    model->lora_alpha = bits_to_float(h[CKPT_LORA_ALPHA]);
    bert_read_file_(model, path, 1); // checks everything, reads the parameters and the LoRA tensors
}

// Set up training for model->strategy: gradient and AdamW memory for what trains, and the LoRA
// adapters initialised like PEFT (A kaiming-uniform with a = sqrt 5, B zero).
void bert_init_training(Bert* model) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    fill_in_parameter_sizes(model->param_info, &model->config, model->strategy);
    table_sizes(sizes, model->param_info, NUM_PARAMETER_TENSORS, 1);
    model->grads_memory = malloc_and_point((float**)&model->grads, sizes, NUM_PARAMETER_TENSORS);
    model->num_lora_parameters = 0;
    if (model->strategy == STRATEGY_LORA) {
        const BertConfig* cfg = &model->config;
        fill_in_lora_sizes(model->lora_info, cfg, model->lora_r);
        size_t lsizes[NUM_LORA_TENSORS];
        table_sizes(lsizes, model->lora_info, NUM_LORA_TENSORS, 0);
        model->lora_memory = malloc_and_point((float**)&model->lora, lsizes, NUM_LORA_TENSORS);
        model->lora_grads_memory = malloc_and_point((float**)&model->lora_grads, lsizes, NUM_LORA_TENSORS);
        model->num_lora_parameters = model->lora_info[0].size + model->lora_info[1].size;
        // kaiming_uniform_(a=sqrt(5)) on (r, C): bound = gain * sqrt(3 / fan_in) = 1 / sqrt(C)
        float bound = 1.0f / sqrtf((float)cfg->C);
        uint64_t stream = dropout_stream(model->seed, 0xffffffffULL, 0xffff);
        for (size_t i = 0; i < model->lora_info[0].size; i++) {
            model->lora.lora_a[i] = (2.0f * dropout_uniform(stream, i) - 1.0f) * bound;
        }
    }
    size_t ntrain = bert_num_trainable(model);
    model->m_memory = (float*)callocCheck(ntrain, sizeof(float));
    model->v_memory = (float*)callocCheck(ntrain, sizeof(float));
    model->step = 0;
}

// the host buffers of one batch, up to (B_max, T_max): both back ends read the batch from here
void bert_alloc_batch(Bert* model, int B_max, int T_max) {
    model->B_max = B_max;
    model->T_max = T_max;
    model->ids = (int*)mallocCheck(size_mul((size_t)B_max, (size_t)T_max, "batch") * sizeof(int));
    model->types = (int*)callocCheck((size_t)B_max * T_max, sizeof(int));
    model->lengths = (int*)mallocCheck((size_t)B_max * sizeof(int));
    model->labels = (int*)mallocCheck((size_t)B_max * sizeof(int));
    model->rows = (int*)mallocCheck(size_mul((size_t)B_max, (size_t)T_max, "batch") * sizeof(int));
    model->starts = (int*)mallocCheck((size_t)B_max * sizeof(int));
    model->b0 = 0;
    model->B_global = 0;
}

// Row k of LINEAR_WEIGHTS: its row of PARAMETER_SPECS, and its (layers, OC, C), the last two
// dims of its shape
static int linear_weight_(int k, const BertConfig* cfg, size_t* layers, int* OC, int* C) {
    int i = 0;
    while (i < NUM_PARAMETER_TENSORS && strcmp(PARAMETER_SPECS[i].name, LINEAR_WEIGHTS[k]) != 0) {
        i++;
    }
    if (i == NUM_PARAMETER_TENSORS) { error_exit("no parameter named %s", LINEAR_WEIGHTS[k]); }
    const int* shape = PARAMETER_SPECS[i].shape;
    int n = 0;
    while (n < MAX_DIMS && shape[n] != D_END) { n++; }
    int outer[MAX_DIMS] = {D_END}, oc[2] = {shape[n - 2], D_END}, c[2] = {shape[n - 1], D_END};
    memcpy(outer, shape, (size_t)(n - 2) * sizeof(int));
    *layers = shape_size_(outer, cfg, 0, 0, 0);
    *OC = (int)shape_size_(oc, cfg, 0, 0, 0);
    *C = (int)shape_size_(c, cfg, 0, 0, 0);
    return i;
}

// The CPU back end's buffers: activations and scratch for batches up to (B_max, T_max), from the
// buffer tables, and the packed copies of the linear weights, made at the first forward
// (bert_pack_weights)
void bert_alloc_activations(Bert* model, int B_max, int T_max) {
    int r = model->strategy == STRATEGY_LORA ? model->lora_r : 0;
    size_t a[NUM_ACTIVATION_TENSORS], s[NUM_SCRATCH_TENSORS], p[NUM_PARAMETER_TENSORS] = {0};
    const BertConfig* cfg = &model->config;
    fill_in_buffer_sizes(a, ACTIVATION_SPECS, NUM_ACTIVATION_TENSORS, cfg, B_max, T_max, r);
    fill_in_buffer_sizes(s, SCRATCH_SPECS, NUM_SCRATCH_TENSORS, cfg, B_max, T_max, r);
    model->acts_memory = malloc_and_point((float**)&model->acts, a, NUM_ACTIVATION_TENSORS);
    model->scratch_memory = malloc_and_point((float**)&model->scratch, s, NUM_SCRATCH_TENSORS);
    for (int k = 0; k < NUM_LINEAR_WEIGHTS; k++) {
        size_t layers;
        int OC, C;
        int i = linear_weight_(k, &model->config, &layers, &OC, &C);
        p[i] = size_mul(layers, matmul_packed_size(OC, C), "packed weight");
    }
    model->packed_memory = malloc_and_point((float**)&model->packed, p, NUM_PARAMETER_TENSORS);
    memset(model->packed_fresh, 0, sizeof(model->packed_fresh));
}

// the slice of layer l of an (L, n) tensor; NULL stays NULL (a frozen tensor's gradient)
#define LAYER_(ptr, l, n) ((ptr) != NULL ? (ptr) + (size_t)(l) * (n) : NULL)

// the activations of layer l: slices of the (L, ...) buffers of a batch of (B, T)
typedef struct {
    float* x;        // (B, T, C) the layer's input, hs[l]; its output is hs[l + 1] = x + B * T * C
    float* qkv;      // (B, T, 3*C)
    float* att;      // (B, NH, T, T)
    float* atty;     // (B, T, C)
    float* r1;       // (B, T, C)
    float* ln1;      // (B, T, C)
    float* ln1_mean; // (B, T)
    float* ln1_rstd; // (B, T)
    float* fch;      // (B, T, FF)
    float* fch_gelu; // (B, T, FF)
    float* r2;       // (B, T, C)
    float* ln2_mean; // (B, T)
    float* ln2_rstd; // (B, T)
} LayerActivations;

static inline LayerActivations layer_activations(const ActivationTensors* a, int l, int B, int T, int C, int NH,
                                                 int FF) {
    size_t BT = (size_t)B * T, BTC = BT * C;
    LayerActivations la = {a->hs + l * BTC, a->qkv + l * BTC * 3, LAYER_(a->att, l, (size_t)B * NH * T * T),
                           a->atty + l * BTC,
                           a->r1 + l * BTC, a->ln1 + l * BTC, a->ln1_mean + l * BT, a->ln1_rstd + l * BT,
                           a->fch + l * BT * FF, a->fch_gelu + l * BT * FF, a->r2 + l * BTC, a->ln2_mean + l * BT,
                           a->ln2_rstd + l * BT};
    return la;
}


// ----------------------------------------------------------------------------
// forward, backward, update

// The weights changed other than by bert_update (a checkpoint or a training state read into
// them): the packed copies are made again at the next forward.
void bert_weights_changed(Bert* model) {
    memset(model->packed_fresh, 0, sizeof(model->packed_fresh));
}

// Packs again each linear weight whose packed copy is out of date: all of them at the first
// forward and after bert_weights_changed, those that train after bert_update, never a frozen one.
// So a forward does no work on the weights, and a training step one packing per trained weight.
void bert_pack_weights(Bert* model) {
    for (int k = 0; k < NUM_LINEAR_WEIGHTS; k++) {
        size_t layers;
        int OC, C;
        int i = linear_weight_(k, &model->config, &layers, &OC, &C);
        if (model->packed_fresh[i]) { continue; }
        const float* w = ((float**)&model->params)[i];
        float* wp = ((float**)&model->packed)[i];
        for (size_t l = 0; l < layers; l++) {
            matmul_pack_weight(wp + l * matmul_packed_size(OC, C), w + l * OC * C, OC, C);
        }
        model->packed_fresh[i] = 1;
        model->packs++;
    }
}

// the batch a forward pass is about to run: it must fit the allocation (both back ends call this),
// and a slice of a global batch (model->b0, B_global) must lie inside it
void bert_set_batch(Bert* model, int B, int T) {
    if (B < 1 || T < 1 || B > model->B_max || T > model->T_max) {
        error_exit("batch (%d, %d) is outside the allocated (%d, %d)", B, T, model->B_max, model->T_max);
    }
    if (model->B_global != 0 && (model->b0 < 0 || model->b0 + B > model->B_global)) {
        error_exit("batch slice %d..%d is outside the global batch of %d", model->b0,
                   model->b0 + B, model->B_global);
    }
    model->B = B;
    model->T = T;
}

// Forward pass over the batch in model->ids / lengths, (B, T), on its real tokens only (packed, see the
// layers' section). With labels (B), also the mean cross-entropy in model->mean_loss. train = 1 turns
// dropout on (model->dropout, lora_dropout).
void bert_forward(Bert* model, int B, int T, const int* labels, int train) {
    const BertConfig* cfg = &model->config;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    int r = model->lora_r;
    bert_set_batch(model, B, T);
    int N = model->N = batch_pack(model->rows, model->starts, model->lengths, B, T);
    const int* rows = model->rows;
    const int* starts = model->starts;
    float p = train ? model->dropout : 0.0f;
    float plora = train ? model->lora_dropout : 0.0f;
    float lora_scale = model->strategy == STRATEGY_LORA ? model->lora_alpha / r : 0.0f;
    bert_pack_weights(model);
    ParameterTensors w = model->params;
    ParameterTensors wp = model->packed; // the linear weights as the products read them
    // a layer's slice of each packed weight
    size_t qkv_p = matmul_packed_size(3 * C, C), att_p = matmul_packed_size(C, C);
    size_t fc_p = matmul_packed_size(FF, C), fcproj_p = matmul_packed_size(C, FF);
    ActivationTensors a = model->acts;
    ScratchTensors s = model->scratch;
    size_t BTC = (size_t)BT * C; // a layer's slice of the (L, ...) buffers (of which N rows are used)

    // BertEmbeddings: hs[0] = dropout(LayerNorm(wte[ids] + wpe[t] + wtt[0]))
    embedding_forward(a.encoded, model->ids, model->types, w.wte, w.wpe, w.wtt, rows, N, T, C);
    layernorm_forward(a.hs, a.emb_mean, a.emb_rstd, a.encoded, w.embln_w, w.embln_b, N, C, cfg->eps);
    dropout_forward(a.hs, a.hs, NULL, rows, N, C, p, bert_slice_stream(model, -1, 0));
    // BertLayer, L times (post-LN): x -> LN1(x + dropout(attention(x))) -> LN2(. + dropout(FFN(.)))
    for (int l = 0; l < L; l++) {
        LayerActivations la = layer_activations(&a, l, B, T, C, NH, FF);
        matmul_forward_packed(la.qkv, la.x, LAYER_(wp.qkvw, l, qkv_p), LAYER_(w.qkvb, l, 3 * C),
                              N, C, 3 * C);
        if (model->strategy == STRATEGY_LORA) { // q, k, v each += s * B (A dropout(x))
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_forward(la.qkv + j * C, 3 * C, a.lora_u + lj * BT * r, s.xd, la.x, model->lora.lora_a + lj * r * C,
                             model->lora.lora_b + lj * C * r, N, C, C, r, lora_scale, plora,
                             bert_slice_stream(model, l, SITE_LORA_Q + j), rows);
            }
        }
        attention_forward(la.atty, la.att, la.qkv, model->lengths, starts, B, T, C, NH, p,
                          bert_slice_stream(model, l, SITE_ATT));
        matmul_forward_packed(s.tmp, la.atty, LAYER_(wp.attprojw, l, att_p),
                              LAYER_(w.attprojb, l, C), N, C, C);
        dropout_forward(la.r1, s.tmp, la.x, rows, N, C, p,
                        bert_slice_stream(model, l, SITE_ATTPROJ));
        layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, la.r1, LAYER_(w.ln1w, l, C),
                          LAYER_(w.ln1b, l, C), N, C, cfg->eps);
        matmul_forward_packed(la.fch, la.ln1, LAYER_(wp.fcw, l, fc_p), LAYER_(w.fcb, l, FF),
                              N, C, FF);
        gelu_forward(la.fch_gelu, la.fch, (size_t)N * FF);
        matmul_forward_packed(s.tmp, la.fch_gelu, LAYER_(wp.fcprojw, l, fcproj_p),
                              LAYER_(w.fcprojb, l, C), N, FF, C);
        dropout_forward(la.r2, s.tmp, la.ln1, rows, N, C, p,
                        bert_slice_stream(model, l, SITE_FCPROJ));
        layernorm_forward(la.x + BTC, la.ln2_mean, la.ln2_rstd, la.r2, LAYER_(w.ln2w, l, C),
                          LAYER_(w.ln2b, l, C), N, C, cfg->eps);
    }
    // BertPooler, then the classifier on dropout(pooled)
    pooler_forward(a.pooled, a.cls, a.hs + L * BTC, wp.poolw, w.poolb, starts, B, T, C);
    dropout_forward(a.pooled_d, a.pooled, NULL, NULL, B, C, p, bert_slice_stream(model, L, 0));
    matmul_forward_packed(a.logits, a.pooled_d, wp.clsw, w.clsb, B, C, NC);
    if (labels != NULL) {
        if (labels != model->labels) { memcpy(model->labels, labels, B * sizeof(int)); }
        model->mean_loss = crossentropy_forward(a.losses, a.probs, a.logits, labels, B, NC);
        if (model->B_global != 0 && model->B_global != B) { // a rank's share of the global mean
            double sum = 0.0;
            for (int b = 0; b < B; b++) { sum += a.losses[b]; }
            model->mean_loss = (float)(sum / model->B_global);
        }
    }
}

void bert_zero_grad(Bert* model) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        float* g = ((float**)&model->grads)[i];
        if (g != NULL) { memset(g, 0, model->param_info[i].size * sizeof(float)); }
    }
    if (model->lora_grads_memory != NULL) {
        memset(model->lora_grads_memory, 0, model->num_lora_parameters * sizeof(float));
    }
}

// Backward pass of the last training forward, layer by layer in reverse; accumulates into the
// gradients of what trains. Frozen tensors get no gradient, and no work is done below the lowest
// trainable tensor (classifier only: nothing below the classifier; LoRA: nothing below layer 0).
void bert_backward(Bert* model) {
    const BertConfig* cfg = &model->config;
    int B = model->B, T = model->T, N = model->N; // the forward's batch and its real tokens
    const int* rows = model->rows;
    const int* starts = model->starts;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    int r = model->lora_r;
    int B_mean = model->B_global != 0 ? model->B_global : B;
    float p = model->dropout, plora = model->lora_dropout;
    float lora_scale = model->strategy == STRATEGY_LORA ? model->lora_alpha / r : 0.0f;
    ParameterTensors w = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    ScratchTensors s = model->scratch;
    size_t NC_ = (size_t)N * C; // the rows a per-token gradient uses

    // loss = crossentropy(logits), logits = pooled_d @ clsw^T + clsb
    crossentropy_backward(s.dlogits, a.probs, model->labels, B, B_mean, NC);
    if (model->strategy == STRATEGY_FROZEN) {
        matmul_backward(NULL, g.clsw, g.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
        return;
    }
    float* dpooled_d = s.dsmall;
    float* dpooled = s.dsmall + (size_t)B * C;
    memset(s.dsmall, 0, 2 * (size_t)B * C * sizeof(float));
    matmul_backward(dpooled_d, g.clsw, g.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
    // pooled_d = dropout(pooled), pooled = tanh(hs[L][:, 0] @ poolw^T + poolb)
    dropout_backward(dpooled, dpooled_d, NULL, B, C, p, bert_slice_stream(model, L, 0));
    memset(s.dh, 0, NC_ * sizeof(float));
    pooler_backward(s.dh, g.poolw, g.poolb, s.dsmall + 2 * (size_t)B * C, s.dsmall + 3 * (size_t)B * C, dpooled,
                    a.pooled, a.cls, w.poolw, starts, B, T, C);
    for (int l = L - 1; l >= 0; l--) {
        LayerActivations la = layer_activations(&a, l, B, T, C, NH, FF);
        // hs[l+1] = LN2(r2)
        memset(s.dr, 0, NC_ * sizeof(float));
        layernorm_backward(s.dr, LAYER_(g.ln2w, l, C), LAYER_(g.ln2b, l, C), s.dh, la.r2, LAYER_(w.ln2w, l, C),
                           la.ln2_mean, la.ln2_rstd, N, C);
        // r2 = dropout(fch_gelu @ fcprojw^T + fcprojb) + ln1: d(ln1) gets dr directly, the dense gets it through the
        // mask
        memcpy(s.dln1, s.dr, NC_ * sizeof(float));
        memset(s.tmp, 0, NC_ * sizeof(float));
        dropout_backward(s.tmp, s.dr, rows, N, C, p, bert_slice_stream(model, l, SITE_FCPROJ));
        memset(s.dfch, 0, (size_t)N * FF * sizeof(float));
        matmul_backward(s.dfch, LAYER_(g.fcprojw, l, C * FF), LAYER_(g.fcprojb, l, C), s.tmp, la.fch_gelu,
                        LAYER_(w.fcprojw, l, C * FF), N, FF, C);
        // fch_gelu = gelu(fch), fch = ln1 @ fcw^T + fcb
        gelu_backward(s.dfch, la.fch, s.dfch, (size_t)N * FF);
        matmul_backward(s.dln1, LAYER_(g.fcw, l, FF * C), LAYER_(g.fcb, l, FF), s.dfch, la.ln1,
                        LAYER_(w.fcw, l, FF * C), N, C, FF);
        // ln1 = LN1(r1)
        memset(s.dr, 0, NC_ * sizeof(float));
        layernorm_backward(s.dr, LAYER_(g.ln1w, l, C), LAYER_(g.ln1b, l, C), s.dln1, la.r1, LAYER_(w.ln1w, l, C),
                           la.ln1_mean, la.ln1_rstd, N, C);
        // r1 = dropout(atty @ attprojw^T + attprojb) + x: dh now collects d(x)
        memcpy(s.dh, s.dr, NC_ * sizeof(float));
        memset(s.tmp, 0, NC_ * sizeof(float));
        dropout_backward(s.tmp, s.dr, rows, N, C, p,
                         bert_slice_stream(model, l, SITE_ATTPROJ));
        memset(s.datty, 0, NC_ * sizeof(float));
        matmul_backward(s.datty, LAYER_(g.attprojw, l, C * C), LAYER_(g.attprojb, l, C), s.tmp, la.atty,
                        LAYER_(w.attprojw, l, C * C), N, C, C);
        // atty = attention(qkv)
        memset(s.dqkv, 0, NC_ * 3 * sizeof(float));
        attention_backward(s.dqkv, s.datty, la.qkv, la.att, model->lengths, starts, B, T, C, NH, p,
                           bert_slice_stream(model, l, SITE_ATT));
        // qkv = x @ qkvw^T + qkvb (+ LoRA); below layer 0 only the full strategy needs d(x)
        float* dx = (l > 0 || model->strategy == STRATEGY_FULL) ? s.dh : NULL;
        matmul_backward(dx, LAYER_(g.qkvw, l, 3 * C * C), LAYER_(g.qkvb, l, 3 * C), s.dqkv, la.x,
                        LAYER_(w.qkvw, l, 3 * C * C), N, C, 3 * C);
        if (model->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_backward(dx, model->lora_grads.lora_a + lj * r * C, model->lora_grads.lora_b + lj * C * r, s.du,
                              s.xd, s.dqkv + j * C, 3 * C, a.lora_u + lj * BT * r, la.x,
                              model->lora.lora_a + lj * r * C, model->lora.lora_b + lj * C * r, N, C, C, r,
                              lora_scale, plora, bert_slice_stream(model, l, SITE_LORA_Q + j),
                              rows);
            }
        }
    }
    if (model->strategy != STRATEGY_FULL) { return; }
    // hs[0] = dropout(LN(encoded)), encoded = wte[ids] + wpe[t] + wtt[0]
    memset(s.dr, 0, NC_ * sizeof(float));
    dropout_backward(s.dr, s.dh, rows, N, C, p, bert_slice_stream(model, -1, 0));
    memset(s.tmp, 0, NC_ * sizeof(float));
    layernorm_backward(s.tmp, g.embln_w, g.embln_b, s.dr, a.encoded, w.embln_w, a.emb_mean, a.emb_rstd, N, C);
    embedding_backward(g.wte, g.wpe, g.wtt, s.tmp, model->ids, model->types, rows, N, T, C);
}

// the trainable tensors as flat (param, grad, size, decay) rows, base model first, then LoRA:
// the order of the AdamW moments
typedef struct { float* param; float* grad; size_t size; int decay; } OptTensor;

static int bert_opt_tensors_(Bert* model, OptTensor* out) {
    int n = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (!model->param_info[i].trainable) { continue; }
        OptTensor t = {((float**)&model->params)[i], ((float**)&model->grads)[i], model->param_info[i].size,
                       model->param_info[i].decay};
        out[n++] = t;
    }
    if (model->strategy == STRATEGY_LORA) {
        for (int i = 0; i < NUM_LORA_TENSORS; i++) {
            OptTensor t = {((float**)&model->lora)[i], ((float**)&model->lora_grads)[i], model->lora_info[i].size,
                           model->lora_info[i].decay};
            out[n++] = t;
        }
    }
    return n;
}

// global L2 norm of the trainable gradients, as torch.nn.utils.clip_grad_norm_ computes it
float bert_grad_norm(Bert* model) {
    OptTensor t[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    int n = bert_opt_tensors_(model, t);
    double sumsq = 0.0;
    for (int k = 0; k < n; k++) {
        double s = 0.0;
        #pragma omp parallel for reduction(+:s)
        for (size_t i = 0; i < t[k].size; i++) { s += (double)t[k].grad[i] * t[k].grad[i]; }
        sumsq += s;
    }
    return (float)sqrt(sumsq);
}

// The clip coefficient of clip_grad_norm_: max_norm / (norm + 1e-6), clamped to 1 (max_norm 0 = off).
static inline float clip_coef(float norm, float max_norm) {
    return max_norm > 0.0f ? max_norm / (norm + 1e-6f) : 1.0f;
}

// One optimizer step: clip the global gradient norm to max_norm (clip_grad_norm_), then AdamW on
// every trainable tensor. Returns the norm before clipping.
float bert_update(Bert* model, float lr, float weight_decay, float max_norm) {
    const float beta1 = ADAMW_BETA1, beta2 = ADAMW_BETA2, eps = ADAMW_EPS;
    OptTensor t[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    int n = bert_opt_tensors_(model, t);
    float norm = bert_grad_norm(model);
    float clip = clip_coef(norm, max_norm);
    model->step++;
    // bias corrections in double, as torch computes them from Python floats
    double bc1 = 1.0 - pow(beta1, model->step);
    double bc2 = 1.0 - pow(beta2, model->step);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (model->param_info[i].trainable) { model->packed_fresh[i] = 0; }
    }
    size_t offset = 0;
    for (int k = 0; k < n; k++) {
        adamw_update(t[k].param, t[k].grad, model->m_memory + offset, model->v_memory + offset, t[k].size, lr, beta1,
                     beta2, eps, t[k].decay ? weight_decay : 0.0f, clip, (float)(lr / bc1), (float)sqrt(bc2));
        offset += t[k].size;
    }
    return norm;
}

void bert_free(Bert* model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->lora_memory);
    free(model->lora_grads_memory);
    free(model->acts_memory);
    free(model->scratch_memory);
    free(model->packed_memory);
    free(model->ids);
    free(model->types);
    free(model->lengths);
    free(model->rows);
    free(model->starts);
    free(model->labels);
}

void metrics_init(Metrics* m, int NC) {
    memset(m, 0, sizeof(*m));
    m->NC = NC;
    m->confusion = (int*)callocCheck((size_t)NC * NC, sizeof(int));
    m->class_precision = (float*)callocCheck(NC, sizeof(float));
    m->class_recall = (float*)callocCheck(NC, sizeof(float));
    m->class_f1 = (float*)callocCheck(NC, sizeof(float));
    m->support = (int*)callocCheck(NC, sizeof(int));
}

void metrics_free(Metrics* m) {
    free(m->confusion); free(m->class_precision); free(m->class_recall); free(m->class_f1); free(m->support);
}

// everything from the confusion matrix over N examples (m->confusion filled in)
void metrics_from_confusion(Metrics* m, int N) {
    int NC = m->NC;
    int correct = 0;
    double precision = 0.0, recall = 0.0, f1 = 0.0;
    // per class c: tp = confusion[c][c], support = its row's sum (true c), predicted = its column's sum
    for (int c = 0; c < NC; c++) {
        int tp = m->confusion[c * NC + c], support = 0, predicted = 0;
        for (int k = 0; k < NC; k++) { support += m->confusion[c * NC + k]; predicted += m->confusion[k * NC + c]; }
        correct += tp;
        m->support[c] = support;
        // zero_division = 0: an empty denominator scores 0
        m->class_precision[c] = predicted > 0 ? (float)tp / predicted : 0.0f;
        m->class_recall[c] = support > 0 ? (float)tp / support : 0.0f;
        int f1_denom = support + predicted; // 2 tp + fp + fn
        m->class_f1[c] = f1_denom > 0 ? 2.0f * tp / f1_denom : 0.0f;
        precision += (double)m->class_precision[c] * support;
        recall += (double)m->class_recall[c] * support;
        f1 += (double)m->class_f1[c] * support;
    }
    // weighted by support: each class counts as often as it occurs
    m->accuracy = (float)correct / N;
    m->precision = (float)(precision / N);
    m->recall = (float)(recall / N);
    m->f1 = (float)(f1 / N);
}

// everything from predictions (N) and true labels (N)
void metrics_compute(Metrics* m, const int* preds, const int* labels, int N) {
    int NC = m->NC;
    memset(m->confusion, 0, (size_t)NC * NC * sizeof(int));
    for (int n = 0; n < N; n++) { m->confusion[labels[n] * NC + preds[n]]++; }
    metrics_from_confusion(m, N);
}

// a batch's predictions (the argmax of each row of logits) into a confusion matrix (NC, NC)
void confusion_add(int* confusion, const float* logits, const int* labels, int B, int NC) {
    for (int b = 0; b < B; b++) {
        confusion[labels[b] * NC + argmax(logits + (size_t)b * NC, NC)]++;
    }
}

void metrics_print_report(const Metrics* m, const char* split, const char* const* names) {
    int NC = m->NC;
    printf("%s | loss %.4f | acc %.4f | precision %.4f | recall %.4f | F1 (weighted) %.4f\n",
           split, m->loss, m->accuracy, m->precision, m->recall, m->f1);
    printf("%-10s %9s %9s %9s %8s\n", "class", "precision", "recall", "F1", "support");
    for (int c = 0; c < NC; c++) {
        printf("%-10s %9.4f %9.4f %9.4f %8d\n", names[c], m->class_precision[c], m->class_recall[c],
               m->class_f1[c], m->support[c]);
    }
    printf("confusion matrix (rows: true label, columns: predicted)\n%-10s", "");
    for (int c = 0; c < NC; c++) { printf(" %8.8s", names[c]); }
    printf("\n");
    for (int row = 0; row < NC; row++) {
        printf("%-10s", names[row]);
        for (int c = 0; c < NC; c++) { printf(" %8d", m->confusion[row * NC + c]); }
        printf("\n");
    }
}

// ----------------------------------------------------------------------------
// the program around the model, shared with train_bert.cu

#include "trainer.h" // defines: Backend, trainer_main: the flags, the loop, evaluation,
                     // checkpoints, classify mode

// ----------------------------------------------------------------------------
// the CPU back end: the reference functions above, the weights and moments in host memory. It keeps
// a step's loss and norm and an evaluation's sums on the host, where the GPU keeps them on the
// device.

static struct {
    int nsteps;                                  // the steps since the trainer last read them
    float loss[STEPS_MAX], norm[STEPS_MAX];
    int* confusion;                              // (NC, NC) the evaluation in progress
    double loss_sum;
} cpu_;

static void cpu_init_(const struct Settings* s) { (void)s; } // no flags of its own, no device
static void cpu_setup_(Bert* model, int B_max, int T_max) {
    bert_alloc_activations(model, B_max, T_max);
    cpu_.nsteps = 0;
}

static void cpu_update_(Bert* model, float lr, float weight_decay, float max_norm) {
    if (cpu_.nsteps == STEPS_MAX) {
        error_exit("%d training steps were not read back (read_steps)", STEPS_MAX);
    }
    // with ranks, each gradient is its slice's share (the loss is the global batch's mean): their
    // sum is the global batch's gradient, the same on every rank, before the norm and clipping
    dist_sum_floats(model->grads_memory, bert_num_trainable(model) - model->num_lora_parameters);
    dist_sum_floats(model->lora_grads_memory, model->num_lora_parameters);
    cpu_.norm[cpu_.nsteps] = bert_update(model, lr, weight_decay, max_norm);
    cpu_.loss[cpu_.nsteps] = model->mean_loss;
    cpu_.nsteps++;
}

static void cpu_read_steps_(Bert* model, int n, float* loss, float* norm) {
    (void)model;
    if (n != cpu_.nsteps) {
        error_exit("read_steps: %d steps asked for, %d waiting", n, cpu_.nsteps);
    }
    memcpy(loss, cpu_.loss, n * sizeof(float));
    memcpy(norm, cpu_.norm, n * sizeof(float));
    cpu_.nsteps = 0;
}

static const float* cpu_logits_(Bert* model, int B) { (void)B; return model->acts.logits; }
static const float* cpu_pooled_(Bert* model, int B) { (void)B; return model->acts.pooled; }

static void cpu_eval_add_(Bert* model, int B, int first) {
    int NC = model->config.NC;
    if (first) {
        cpu_.confusion = (int*)reallocCheck(cpu_.confusion, (size_t)NC * NC * sizeof(int));
        memset(cpu_.confusion, 0, (size_t)NC * NC * sizeof(int));
        cpu_.loss_sum = 0.0;
    }
    cpu_.loss_sum += (double)model->mean_loss * B;
    confusion_add(cpu_.confusion, model->acts.logits, model->labels, B, NC);
}

static void cpu_eval_read_(Bert* model, int* confusion, double* loss_sum) {
    memcpy(confusion, cpu_.confusion, (size_t)model->config.NC * model->config.NC * sizeof(int));
    *loss_sum = cpu_.loss_sum;
}

static void cpu_host_(Bert* model) { (void)model; } // to_host, from_host: the host model is the
                                                    // CPU's
static void cpu_free_(Bert* model) { (void)model; free(cpu_.confusion); cpu_.confusion = NULL; }

static void cpu_describe_(const Bert* model, char* out, size_t n) {
    int threads = 1;
#ifdef OMP
    threads = omp_get_max_threads();
#endif
    snprintf(out, n, "CPU, %d thread%s, fp32%s", threads, threads == 1 ? "" : "s",
             model->precision == 0 ? "" : "(?)");
}

static const Backend CPU_BACKEND = {
    .name = "cpu", .on_gpu = 0, .init = cpu_init_, .setup = cpu_setup_, .forward = bert_forward,
    .zero_grad = bert_zero_grad, .backward = bert_backward, .update = cpu_update_,
    .read_steps = cpu_read_steps_, .logits = cpu_logits_, .pooled = cpu_pooled_,
    .eval_add = cpu_eval_add_, .eval_read = cpu_eval_read_, .to_host = cpu_host_,
    .from_host = cpu_host_, .free = cpu_free_, .describe = cpu_describe_,
};

// ----------------------------------------------------------------------------
// main: everything it does is in trainer.h's trainer_main, which reads as a list of steps:
// parse and check the flags; build the model from the model file and set up the strategy; load and
// check the three splits; then per epoch: per batch bert_forward, bert_zero_grad, bert_backward,
// bert_update at the scheduled learning rate; evaluate on validation; early stopping, checkpoints,
// log.tsv and the training state. At the end the best checkpoint is evaluated on test.
#ifndef TESTING
int main(int argc, char** argv) {
    return trainer_main(argc, argv, &CPU_BACKEND);
}
#endif
