/*
cuda/attention.cuh: train_bert.c's attention_forward / attention_backward, bidirectional self-attention with a key
padding mask, as BertSelfAttention: scores =
q k^T / sqrt(hs) over the real keys, softmax, dropout, @ v. One warp per query row
(b, h, t) with its row of scores in shared memory: T <= 512 keeps it at 2 KB a warp.
Not flash attention: att (B, NH, T, T) is stored, as the CPU stores it, for the backward.
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

} // namespace cu
