/*
cuda/gelu.cuh: train_bert.c's gelu_forward / gelu_backward, exact GELU as Hugging Face's "gelu": 0.5 x (1 + erf(x / sqrt
2)), and its derivative.
*/
#pragma once
#include "common.cuh"

namespace cu {

#define GELU_INV_SQRT2 0.70710678118654752f
#define GELU_INV_SQRT_2PI 0.39894228040143268f

__global__ void gelu_forward_kernel(float* out, const float* inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { float x = inp[i]; out[i] = 0.5f * x * (1.0f + erff(x * GELU_INV_SQRT2)); }
}

// dinp = dout * (Phi(x) + x phi(x)); dinp may alias dout
__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = inp[i];
    float grad = 0.5f * (1.0f + erff(x * GELU_INV_SQRT2)) + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
    dinp[i] = dout[i] * grad;
}

void gelu_forward(float* out, const float* inp, size_t N) {
    if (N == 0) { return; }
    gelu_forward_kernel<<<ceil_div(N, 256), 256>>>(out, inp, N);
    kernelCheck();
}

void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
    if (N == 0) { return; }
    gelu_backward_kernel<<<ceil_div(N, 256), 256>>>(dinp, inp, dout, N);
    kernelCheck();
}

} // namespace cu
