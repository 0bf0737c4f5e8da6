/*
cuda/embedding.cuh: train_bert.c's embedding_forward / embedding_backward, BertEmbeddings before its
LayerNorm: word + position + token type 0.
*/
#pragma once
#include "common.cuh"

namespace cu {

// out (B, T, C) = wte[ids] + wpe[t] + wtt[0]
__global__ void embedding_forward_kernel(float* out, const int* ids, const float* wte, const float* wpe,
                                         const float* wtt,
                                         int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) { return; }
    int i = idx % C;
    size_t bt = idx / C;
    int t = bt % T;
    out[idx] = wte[(size_t)ids[bt] * C + i] + wpe[(size_t)t * C + i] + wtt[i];
}

// Backward, deterministic and in the CPU's order: thread (c, which) walks the real tokens
// (b, t < len) in sequence and accumulates into column c of one table (which 0: wte, 1: wpe,
// 2: wtt). Two tokens with the same id add into the same row, so a row is never shared
// between threads. Latency-bound (B*T sequential steps), but it is once per step.
__global__ void embedding_backward_kernel(float* dwte, float* dwpe, float* dwtt, const float* dout, const int* ids,
                                          const int* lengths, int B, int T, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int which = blockIdx.y;
    if (c >= C) { return; }
    float acc = 0.0f; // wtt: one row
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < lengths[b]; t++) {
            float d = dout[((size_t)b * T + t) * C + c];
            if (which == 0) { dwte[(size_t)ids[b * T + t] * C + c] += d; }
            else if (which == 1) { dwpe[(size_t)t * C + c] += d; }
            else { acc += d; }
        }
    }
    if (which == 2) { dwtt[c] += acc; }
}

void embedding_forward(float* out, const int* ids, const float* wte, const float* wpe, const float* wtt, int B, int T,
                       int C) {
    embedding_forward_kernel<<<ceil_div((size_t)B * T * C, 256), 256>>>(out, ids, wte, wpe, wtt, B, T, C);
    kernelCheck();
}

void embedding_backward(float* dwte, float* dwpe, float* dwtt, const float* dout, const int* ids, const int* lengths,
                        int B, int T, int C) {
    embedding_backward_kernel<<<dim3(ceil_div(C, 32), 3), 32>>>(dwte, dwpe, dwtt, dout, ids, lengths, B, T, C);
    kernelCheck();
}

} // namespace cu
