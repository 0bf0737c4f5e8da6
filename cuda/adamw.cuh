/*
cuda/adamw.cuh: train_bert.c's bert_grad_norm and adamw_update. The global gradient L2 norm (clip_grad_norm_) over the
flat block of
trainable gradients, and torch.optim.AdamW on one tensor (decoupled weight decay,
bias correction), all in fp32 with the norm's sum in double as the CPU does.
*/
#pragma once
#include "common.cuh"

namespace cu {

#define NORM_BLOCKS 264 // 2 per H100 SXM multiprocessor; fixed, so the sum's order is too
#define NORM_THREADS 512

// partials[blockIdx.x] = sum of g^2 over this block's grid-stride share, in double
__global__ void grad_sumsq_kernel(double* partials, const float* grad, size_t N) {
    __shared__ double shared[NORM_THREADS / 32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (size_t)gridDim.x * blockDim.x) {
        double g = grad[i];
        s += g * g;
    }
    for (int o = 16; o > 0; o >>= 1) { s += __shfl_xor_sync(0xffffffff, s, o); }
    if (threadIdx.x % 32 == 0) { shared[threadIdx.x / 32] = s; }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < NORM_THREADS / 32; w++) { total += shared[w]; }
        partials[blockIdx.x] = total;
    }
}

// out[0] = sum of partials, in a fixed order
__global__ void sum_partials_kernel(double* out, const double* partials, int n) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < n; i++) { total += partials[i]; }
        out[0] = total;
    }
}

// sum of squares of grad (N) into *out_device (double); partials (NORM_BLOCKS) is scratch
void grad_sumsq(double* out_device, double* partials, const float* grad, size_t N) {
    grad_sumsq_kernel<<<NORM_BLOCKS, NORM_THREADS>>>(partials, grad, N);
    kernelCheck();
    sum_partials_kernel<<<1, 32>>>(out_device, partials, NORM_BLOCKS);
    kernelCheck();
}

// one AdamW step over one tensor, as train_bert.c's bert_update (clip folded into the gradient)
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, size_t N, float lr, float beta1,
                             float beta2, float eps, float wd, float clip, float step_size, float bc2_sqrt) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float gi = clip < 1.0f ? grad[i] * clip : grad[i];
    float p = param[i] * (1.0f - lr * wd);
    float mi = m[i] + (1.0f - beta1) * (gi - m[i]);       // exp_avg.lerp_(grad, 1 - beta1)
    float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;   // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    param[i] = p - step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
}

void adamw_update(float* param, const float* grad, float* m, float* v, size_t N, float lr, float beta1, float beta2,
                  float eps, float wd, float clip, float step_size, float bc2_sqrt) {
    if (N == 0) { return; }
    adamw_kernel<<<ceil_div(N, 256), 256>>>(param, grad, m, v, N, lr, beta1, beta2, eps, wd, clip, step_size, bc2_sqrt);
    kernelCheck();
}

} // namespace cu
