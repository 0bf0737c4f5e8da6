/*
cuda/dropout.cuh: train_bert.c's dropout_forward / dropout_backward, inverted dropout with train_bert.c's
counter-based masks: element i of a tensor is kept iff dropout_uniform(stream, i) >= p, so forward, backward and
the CPU agree exactly. With packed tokens (kernel set 3) row n of a (N, C) tensor is row rows[n] of the CPU's
padded (B * T, C) one, and the mask index is that padded element's: the same masks again.
*/
#pragma once
#include "common.cuh"

namespace cu {

// the mask index of element i of a (N, C) tensor: i itself, or its element of the padded layout (rows not NULL)
__device__ __forceinline__ size_t mask_index(size_t i, const int* rows, int C) {
    return rows == NULL ? i : padded_row(i / C, rows) * C + i % C;
}

// out = dropout(inp) (+ residual if not NULL); out may alias inp
__global__ void dropout_forward_kernel(float* out, const float* inp, const float* residual, size_t N, float p,
                                       float pscale, uint64_t stream, const int* rows, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = inp[i];
    if (p > 0.0f) { x = dropout_uniform(stream, mask_index(i, rows, C)) >= p ? x * pscale : 0.0f; }
    out[i] = residual != NULL ? x + residual[i] : x;
}

// dinp += mask * dout
__global__ void dropout_backward_kernel(float* dinp, const float* dout, size_t N, float p, float pscale,
                                        uint64_t stream, const int* rows, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float d = dout[i];
    if (p > 0.0f) { d = dropout_uniform(stream, mask_index(i, rows, C)) >= p ? d * pscale : 0.0f; }
    dinp[i] += d;
}

// rows, C: packed tokens (kernel set 3), see above; NULL: element i is the CPU's element i
void dropout_forward(float* out, const float* inp, const float* residual, size_t N, float p, uint64_t stream,
                     const int* rows = NULL, int C = 1) {
    if (N == 0) { return; }
    dropout_forward_kernel<<<ceil_div(N, 256), 256>>>(out, inp, residual, N, p, 1.0f / (1.0f - p), stream, rows, C);
    kernelCheck();
}

void dropout_backward(float* dinp, const float* dout, size_t N, float p, uint64_t stream, const int* rows = NULL,
                      int C = 1) {
    if (N == 0) { return; }
    dropout_backward_kernel<<<ceil_div(N, 256), 256>>>(dinp, dout, N, p, 1.0f / (1.0f - p), stream, rows, C);
    kernelCheck();
}

} // namespace cu
