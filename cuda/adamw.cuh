/*
cuda/adamw.cuh: train_bert.c's bert_grad_norm and adamw_update. The global gradient L2 norm (clip_grad_norm_)
over the flat block of trainable gradients, and torch.optim.AdamW (decoupled weight decay, bias correction), all
in fp32 with the norm's sum in double as the CPU does.

Two versions of the step (dev/cuda/adamw.cu has both, and their timing):
  kernel set 1: the norm copied to the host, which computes the clip coefficient, then one launch per tensor;
  kernel set 2: one launch for every trainable tensor, the clip coefficient computed on the device from the
                norm (bit for bit the host's formula), and the bf16 weight copies written in the same pass.
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

// ----------------------------------------------------------------------------
// kernel set 2: the whole step in one pass over the flat blocks, no host round trip

// One trainable tensor for the fused step: its weights, their bf16 copy (NULL in fp32), where its gradient and
// moments start in the flat blocks, its size, and whether AdamW decays it (not biases and LayerNorm).
typedef struct {
    float* param;
    __nv_bfloat16* param16;
    size_t offset;
    size_t size;
    int decay;
} AdamWTensor;
#define MAX_ADAMW_TENSORS 24 // 21 parameter tensors and 2 LoRA ones at most

// the table travels as a kernel argument (under 1 KB), so no allocation and no copy
typedef struct {
    AdamWTensor t[MAX_ADAMW_TENSORS];
    int n;
} AdamWTable;

// train_bert.c's clip_coef from the device sum of squares: the same float operations, so the same bits
__device__ __forceinline__ float clip_coef_device(const double* sumsq, float max_norm) {
    float norm = (float)sqrt(*sumsq);
    return max_norm > 0.0f ? max_norm / (norm + 1e-6f) : 1.0f;
}

// one thread per element of the flat blocks (grid-stride); a binary search finds the element's tensor
__global__ void adamw_fused_kernel(AdamWTable table, const float* grad, float* m, float* v, size_t total,
                                   const double* sumsq, float max_norm, float lr, float beta1, float beta2, float eps,
                                   float weight_decay, float step_size, float bc2_sqrt) {
    float clip = clip_coef_device(sumsq, max_norm);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int lo = 0, hi = table.n - 1; // the last tensor whose offset is <= i
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (table.t[mid].offset <= i) { lo = mid; } else { hi = mid - 1; }
        }
        const AdamWTensor* t = &table.t[lo];
        size_t j = i - t->offset;
        float gi = clip < 1.0f ? grad[i] * clip : grad[i];
        float p = t->param[j] * (1.0f - lr * (t->decay ? weight_decay : 0.0f));
        float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
        float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;
        p -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        t->param[j] = p;
        m[i] = mi;
        v[i] = vi;
        if (t->param16 != NULL) { t->param16[j] = __float2bfloat16_rn(p); }
    }
}

// the whole optimizer step after the backward: the norm's sum of squares into *sumsq (device), then AdamW
// with the clip coefficient derived from it on the device
void adamw_fused(const AdamWTable* table, const float* grad, float* m, float* v, size_t total, double* sumsq,
                 double* partials, float max_norm, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float step_size, float bc2_sqrt) {
    grad_sumsq(sumsq, partials, grad, total);
    if (total == 0) { return; }
    int blocks = ceil_div(total, 256) < 4 * NORM_BLOCKS ? ceil_div(total, 256) : 4 * NORM_BLOCKS;
    adamw_fused_kernel<<<blocks, 256>>>(*table, grad, m, v, total, sumsq, max_norm, lr, beta1, beta2, eps,
                                        weight_decay, step_size, bc2_sqrt);
    kernelCheck();
}

} // namespace cu
