/*
cuda/attention.cuh: train_bert.c's attention_forward / attention_backward, bidirectional self-attention with a key
padding mask, as BertSelfAttention: scores = q k^T / sqrt(hs) over the real keys, softmax, dropout, @ v.

Kernel set 1: one warp per query row (b, h, t) with its row of scores in shared memory (T <= 512 keeps it at
2 KB a warp); att (B, NH, T, T), the softmax, is stored for the backward as the CPU stores it.
Kernel set 2, for T <= 128 and hs <= 64 (emotion: T <= 87): one block per (b, h) with the head's keys and values
in shared memory; only each softmax row's max and sum are kept (stats, (B, NH, T, 2)), and the backward
recomputes the probabilities from them, with the forward's very operations, instead of reading att.
*/
#pragma once
#include "common.cuh"

namespace cu {

#define ATT_WARPS 4 // query rows per block

// qkv (B, T, 3C) -> out (B, T, C), att (B, NH, T, T) the softmax before dropout (0 beyond len)
__global__ void attention_forward_kernel(float* out, float* att, const float* qkv, const int* lengths, int B, int T,
                                         int C, int NH, float scale, float p, float pscale, uint64_t stream) {
    extern __shared__ float shared[];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    size_t row = (size_t)blockIdx.x * ATT_WARPS + warp; // ((b * NH) + h) * T + t
    if (row >= (size_t)B * NH * T) { return; }
    int t = row % T, h = (row / T) % NH, b = row / ((size_t)T * NH);
    int hs = C / NH, len = lengths[b];
    float* w = shared + warp * T;
    const float* q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
    float maxval = -INFINITY;
    for (int t2 = lane; t2 < len; t2 += 32) {
        const float* k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
        float s = 0.0f;
        for (int i = 0; i < hs; i++) { s += q[i] * k[i]; }
        s *= scale;
        w[t2] = s;
        maxval = fmaxf(maxval, s);
    }
    maxval = warp_max(maxval);
    float sum = 0.0f;
    for (int t2 = lane; t2 < len; t2 += 32) { float e = expf(w[t2] - maxval); w[t2] = e; sum += e; }
    sum = warp_sum(sum);
    float* a = att + row * T;
    for (int t2 = lane; t2 < T; t2 += 32) {
        float v = t2 < len ? w[t2] / sum : 0.0f;
        a[t2] = v;
        // from here on w holds dropout(softmax), the weights of the sum below
        if (p > 0.0f) { v = dropout_uniform(stream, row * T + t2) >= p ? v * pscale : 0.0f; }
        w[t2] = v;
    }
    __syncwarp();
    float* o = out + ((size_t)b * T + t) * C + h * hs;
    for (int i = lane; i < hs; i += 32) {
        float acc = 0.0f;
        for (int t2 = 0; t2 < len; t2++) { acc += w[t2] * qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * hs + i]; }
        o[i] = acc;
    }
}

// Backward part 1, one warp per query row: datt = (dout . v) * mask, ds = a * (datt - sum(datt * a)) * scale
// (the softmax backward), kept in dsbuf (B, NH, T, T) for part 2; then dq[t] += sum_t2 ds[t2] k[t2].
__global__ void attention_backward_query_kernel(float* dqkv, float* dsbuf, const float* dout, const float* qkv,
                                                const float* att, const int* lengths, int B, int T, int C, int NH,
                                                float scale, float p, float pscale, uint64_t stream) {
    extern __shared__ float shared[];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    size_t row = (size_t)blockIdx.x * ATT_WARPS + warp;
    if (row >= (size_t)B * NH * T) { return; }
    int t = row % T, h = (row / T) % NH, b = row / ((size_t)T * NH);
    int hs = C / NH, len = lengths[b];
    float* ds = shared + warp * T;
    const float* a = att + row * T;
    const float* d = dout + ((size_t)b * T + t) * C + h * hs;
    float dot = 0.0f;
    for (int t2 = lane; t2 < len; t2 += 32) {
        const float* v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
        float dw = 0.0f;
        for (int i = 0; i < hs; i++) { dw += d[i] * v[i]; }
        float m = 1.0f;
        if (p > 0.0f) { m = dropout_uniform(stream, row * T + t2) >= p ? pscale : 0.0f; }
        float datt = dw * m;
        ds[t2] = datt;
        dot += datt * a[t2];
    }
    dot = warp_sum(dot);
    for (int t2 = lane; t2 < len; t2 += 32) {
        float s = a[t2] * (ds[t2] - dot) * scale;
        ds[t2] = s;
        dsbuf[row * T + t2] = s;
    }
    __syncwarp();
    float* dq = dqkv + ((size_t)b * T + t) * 3 * C + h * hs;
    for (int i = lane; i < hs; i += 32) {
        float acc = 0.0f;
        for (int t2 = 0; t2 < len; t2++) { acc += ds[t2] * qkv[((size_t)b * T + t2) * 3 * C + C + h * hs + i]; }
        dq[i] += acc;
    }
}

// Backward part 2, one warp per real key row (b, h, t2 < len), summing over every query row t:
// dk[t2] += sum_t ds[t, t2] q[t], dv[t2] += sum_t dropout(a)[t, t2] dout[t]
__global__ void attention_backward_key_kernel(float* dqkv, const float* dsbuf, const float* dout, const float* qkv,
                                              const float* att, const int* lengths, int B, int T, int C, int NH,
                                              float p, float pscale, uint64_t stream) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    size_t krow = (size_t)blockIdx.x * ATT_WARPS + warp; // ((b * NH) + h) * T + t2
    if (krow >= (size_t)B * NH * T) { return; }
    int t2 = krow % T, h = (krow / T) % NH, b = krow / ((size_t)T * NH);
    int hs = C / NH, len = lengths[b];
    if (t2 >= len) { return; }
    size_t bh = krow / T;
    float* dk = dqkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
    float* dv = dk + C;
    for (int i = lane; i < hs; i += 32) {
        float acck = 0.0f, accv = 0.0f;
        for (int t = 0; t < T; t++) {
            size_t r = (bh * T + t) * T + t2; // element (t, t2) of this head's (T, T)
            float w = att[r];
            if (p > 0.0f) { w = dropout_uniform(stream, r) >= p ? w * pscale : 0.0f; }
            acck += dsbuf[r] * qkv[((size_t)b * T + t) * 3 * C + h * hs + i];
            accv += w * dout[((size_t)b * T + t) * C + h * hs + i];
        }
        dk[i] += acck;
        dv[i] += accv;
    }
}

void attention_forward(float* out, float* att, const float* qkv, const int* lengths, int B, int T, int C, int NH,
                       float p, uint64_t stream) {
    float scale = 1.0f / sqrtf((float)(C / NH));
    size_t rows = (size_t)B * NH * T;
    size_t smem = ATT_WARPS * T * sizeof(float);
    attention_forward_kernel<<<ceil_div(rows, ATT_WARPS), ATT_WARPS * 32, smem>>>(out, att, qkv, lengths, B, T, C, NH,
                                                                               scale, p, 1.0f / (1.0f - p), stream);
    kernelCheck();
}

// accumulates into dqkv (B, T, 3C); dsbuf (B, NH, T, T) is scratch
void attention_backward(float* dqkv, float* dsbuf, const float* dout, const float* qkv, const float* att,
                        const int* lengths, int B, int T, int C, int NH, float p, uint64_t stream) {
    float scale = 1.0f / sqrtf((float)(C / NH));
    size_t rows = (size_t)B * NH * T;
    size_t smem = ATT_WARPS * T * sizeof(float);
    attention_backward_query_kernel<<<ceil_div(rows, ATT_WARPS), ATT_WARPS * 32, smem>>>(
        dqkv, dsbuf, dout, qkv, att, lengths, B, T, C, NH, scale, p, 1.0f / (1.0f - p), stream);
    kernelCheck();
    attention_backward_key_kernel<<<ceil_div(rows, ATT_WARPS), ATT_WARPS * 32>>>(
        dqkv, dsbuf, dout, qkv, att, lengths, B, T, C, NH, p, 1.0f / (1.0f - p), stream);
    kernelCheck();
}

// ----------------------------------------------------------------------------
// kernel set 2: a block per (b, h), keys and values in shared memory, the softmax recomputed in backward

#define ATT2_WARPS 8      // warps per block, each taking query (or key) rows in turn
#define ATT2_MAX_T 128    // the longest padded batch it takes
#define ATT2_MAX_HS 64    // the widest head

// the shared memory of one block: K and V of the head (rows padded to hs + 1 against bank conflicts), and per warp
// one query row and one row of probabilities (forward) or the score gradients of every query row (backward)
static size_t attention2_smem_(int T, int hs, int backward) {
    size_t kv = 2 * (size_t)T * (hs + 1), per_warp = ATT2_WARPS * ((size_t)hs + T);
    return (kv + (backward ? (size_t)T * (T + 1) : 0) + per_warp) * sizeof(float);
}

// the head's rows of k and v (len of them) into shared memory, padded rows; base: the sequence's first row
__device__ void attention2_load_kv_(float* ks, float* vs, const float* qkv, size_t base, int h, int C, int hs,
                                    int len) {
    for (int idx = threadIdx.x; idx < len * hs; idx += blockDim.x) {
        int t2 = idx / hs, i = idx % hs;
        const float* row = qkv + (base + t2) * 3 * C + h * hs;
        ks[t2 * (hs + 1) + i] = row[C + i];
        vs[t2 * (hs + 1) + i] = row[2 * C + i];
    }
}

// One query row's softmax over the real keys, as the CPU computes it: w[t2] = exp(q . k[t2] * scale - max) for
// t2 < len, their sum; returns the max. q in shared memory (hs), w (len) in shared memory. Each lane takes keys
// lane, lane + 32, ...; the dot products run over i in order, as the CPU's.
__device__ float attention2_row_(float* w, float* sum_out, const float* q, const float* ks, int hs, int len,
                                 float scale) {
    int lane = threadIdx.x % 32;
    float maxval = -INFINITY;
    for (int t2 = lane; t2 < len; t2 += 32) {
        const float* k = ks + t2 * (hs + 1);
        float s = 0.0f;
        for (int i = 0; i < hs; i++) { s += q[i] * k[i]; }
        s *= scale;
        w[t2] = s;
        maxval = fmaxf(maxval, s);
    }
    maxval = warp_max(maxval);
    float sum = 0.0f;
    for (int t2 = lane; t2 < len; t2 += 32) { float e = expf(w[t2] - maxval); w[t2] = e; sum += e; }
    *sum_out = warp_sum(sum);
    __syncwarp();
    return maxval;
}

// out (B, T, C) = dropout(softmax(q k^T * scale)) v per head; stats (B, NH, T, 2) the rows' max and sum.
// starts (B): packed tokens (kernel set 3), qkv (N, 3C) and out (N, C) with sequence b from row starts[b], and
// only the real query rows; the masks and stats keep the padded indices, so they are the CPU's.
__global__ void attention_forward_kernel2(float* out, float* stats, const float* qkv, const int* lengths, int T, int C,
                                          int NH, float scale, float p, float pscale, uint64_t stream,
                                          const int* starts) {
    extern __shared__ float smem[];
    int bh = blockIdx.x, b = bh / NH, h = bh % NH, hs = C / NH, len = lengths[b];
    size_t base = seq_start(b, T, starts);
    int nq = starts != NULL ? len : T; // query rows
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* ks = smem;
    float* vs = ks + (size_t)T * (hs + 1);
    float* q = vs + (size_t)T * (hs + 1) + (size_t)warp * (hs + T);
    float* w = q + hs;
    attention2_load_kv_(ks, vs, qkv, base, h, C, hs, len);
    __syncthreads();
    for (int t = warp; t < nq; t += ATT2_WARPS) { // padded: padded query rows too, as the CPU (nothing reads them)
        const float* qrow = qkv + (base + t) * 3 * C + h * hs;
        for (int i = lane; i < hs; i += 32) { q[i] = qrow[i]; }
        __syncwarp();
        float sum;
        float maxval = attention2_row_(w, &sum, q, ks, hs, len, scale);
        size_t row = (size_t)bh * T + t;
        for (int t2 = lane; t2 < len; t2 += 32) { // dropout(softmax): the CPU's mask index, row * T + t2
            float a = w[t2] / sum;
            w[t2] = p > 0.0f ? (dropout_uniform(stream, row * T + t2) >= p ? a * pscale : 0.0f) : a;
        }
        __syncwarp();
        float* o = out + (base + t) * C + h * hs;
        for (int i = lane; i < hs; i += 32) {
            float acc = 0.0f;
            for (int t2 = 0; t2 < len; t2++) { acc += w[t2] * vs[t2 * (hs + 1) + i]; }
            o[i] = acc;
        }
        if (lane == 0) { stats[2 * row] = maxval; stats[2 * row + 1] = sum; }
        __syncwarp();
    }
}

// Backward into dqkv (B, T, 3C), which it accumulates, from dout (B, T, C) and the forward's stats. Phase 1, a warp
// per query row: the probabilities a[t2] again, datt = mask * (dout . v), ds = a * (datt - sum(datt * a)) * scale,
// dq += ds k; ds kept in shared memory. Phase 2, a warp per real key row t2, over the query rows t in order (the
// CPU's accumulation order): dk += ds[t][t2] q[t], dv += dropout(a)[t][t2] dout[t], with a recomputed once more.
// starts: packed tokens, as the forward's.
__global__ void attention_backward_kernel2(float* dqkv, const float* dout, const float* qkv, const float* stats,
                                           const int* lengths, int T, int C, int NH, float scale, float p,
                                           float pscale, uint64_t stream, const int* starts) {
    extern __shared__ float smem[];
    int bh = blockIdx.x, b = bh / NH, h = bh % NH, hs = C / NH, len = lengths[b];
    size_t base = seq_start(b, T, starts);
    int nq = starts != NULL ? len : T; // query rows
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* ks = smem;
    float* vs = ks + (size_t)T * (hs + 1);
    float* ds = vs + (size_t)T * (hs + 1);          // (T, T + 1) the score gradients of every query row
    float* q = ds + (size_t)T * (T + 1) + (size_t)warp * (hs + T);
    float* w = q + hs;
    attention2_load_kv_(ks, vs, qkv, base, h, C, hs, len);
    __syncthreads();
    for (int t = warp; t < nq; t += ATT2_WARPS) {
        const float* qrow = qkv + (base + t) * 3 * C + h * hs;
        const float* d = dout + (base + t) * C + h * hs;
        for (int i = lane; i < hs; i += 32) { q[i] = qrow[i]; }
        __syncwarp();
        float sum;
        attention2_row_(w, &sum, q, ks, hs, len, scale);
        size_t row = (size_t)bh * T + t;
        float dot = 0.0f;
        float* dsr = ds + (size_t)t * (T + 1);
        for (int t2 = lane; t2 < len; t2 += 32) {
            float a = w[t2] / sum;
            float m = p > 0.0f ? (dropout_uniform(stream, row * T + t2) >= p ? pscale : 0.0f) : 1.0f;
            float dw = 0.0f;
            for (int i = 0; i < hs; i++) { dw += d[i] * vs[t2 * (hs + 1) + i]; }
            float datt = dw * m;
            dsr[t2] = datt;
            w[t2] = a;
            dot += datt * a;
        }
        dot = warp_sum(dot);
        for (int t2 = lane; t2 < len; t2 += 32) { dsr[t2] = w[t2] * (dsr[t2] - dot) * scale; }
        __syncwarp();
        float* dq = dqkv + (base + t) * 3 * C + h * hs;
        for (int i = lane; i < hs; i += 32) {
            float acc = 0.0f;
            for (int t2 = 0; t2 < len; t2++) { acc += dsr[t2] * ks[t2 * (hs + 1) + i]; }
            dq[i] += acc;
        }
        __syncwarp();
    }
    __syncthreads();
    // phase 2: the stats give every row's probabilities back; q[t] and dout[t] come from global memory (L2)
    for (int t2 = warp; t2 < len; t2 += ATT2_WARPS) {
        const float* k = ks + t2 * (hs + 1);
        for (int t = lane; t < nq; t += 32) { // column t2 of dropout(a), a query row per lane
            size_t row = (size_t)bh * T + t;
            const float* qt = qkv + (base + t) * 3 * C + h * hs;
            float s = 0.0f;
            for (int j = 0; j < hs; j++) { s += qt[j] * k[j]; }
            float a = expf(s * scale - stats[2 * row]) / stats[2 * row + 1]; // the forward's operations
            if (p > 0.0f) { a = dropout_uniform(stream, row * T + t2) >= p ? a * pscale : 0.0f; }
            w[t] = a;
        }
        __syncwarp();
        float* dk = dqkv + (base + t2) * 3 * C + C + h * hs;
        float* dv = dk + C;
        for (int i = lane; i < hs; i += 32) {
            float acck = 0.0f, accv = 0.0f;
            for (int t = 0; t < nq; t++) {
                acck += ds[(size_t)t * (T + 1) + t2] * qkv[(base + t) * 3 * C + h * hs + i];
                accv += w[t] * dout[(base + t) * C + h * hs + i];
            }
            dk[i] += acck;
            dv[i] += accv;
        }
        __syncwarp();
    }
}

// can kernel set 2 take this shape on this device? (otherwise the caller uses kernel set 1's). The backward's
// shared memory is 139 KB at T 128, hs 64: within an H100's or A100's opt-in limit, not an sm_86/89 card's 99 KB.
inline int attention2_fits(int T, int C, int NH) {
    if (T > ATT2_MAX_T || C / NH > ATT2_MAX_HS) { return 0; }
    int device, optin;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return attention2_smem_(T, C / NH, 1) <= (size_t)optin;
}

// starts: packed tokens (kernel set 3); NULL: (B, T) padded rows
void attention_forward2(float* out, float* stats, const float* qkv, const int* lengths, int B, int T, int C, int NH,
                        float p, uint64_t stream, const int* starts = NULL) {
    size_t smem = attention2_smem_(T, C / NH, 0);
    cudaCheck(cudaFuncSetAttribute(attention_forward_kernel2, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_forward_kernel2<<<B * NH, ATT2_WARPS * 32, smem>>>(out, stats, qkv, lengths, T, C, NH,
                                                                1.0f / sqrtf((float)(C / NH)), p, 1.0f / (1.0f - p),
                                                                stream, starts);
    kernelCheck();
}

void attention_backward2(float* dqkv, const float* dout, const float* qkv, const float* stats, const int* lengths,
                         int B, int T, int C, int NH, float p, uint64_t stream, const int* starts = NULL) {
    size_t smem = attention2_smem_(T, C / NH, 1);
    cudaCheck(cudaFuncSetAttribute(attention_backward_kernel2, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_backward_kernel2<<<B * NH, ATT2_WARPS * 32, smem>>>(dqkv, dout, qkv, stats, lengths, T, C, NH,
                                                                 1.0f / sqrtf((float)(C / NH)), p, 1.0f / (1.0f - p),
                                                                 stream, starts);
    kernelCheck();
}

} // namespace cu
