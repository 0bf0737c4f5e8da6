/*
cuda/pooler.cuh: train_bert.c's pooler_forward / pooler_backward, BertPooler on the [CLS] position:
out (B, C) = tanh(h[:, 0] @ w^T + b). The gather, the tanh and their backwards are small kernels;
the dense layer is matmul.cuh's.
*/
#pragma once
#include "common.cuh"
#include "matmul.cuh"

namespace cu {

// cls (B, C) = h[:, 0], h (B, T, C) or packed
__global__ void cls_gather_kernel(float* cls, const float* h, int B, int T, int C, const int* starts) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)B * C) { cls[i] = h[seq_start(i / C, T, starts) * C + i % C]; }
}

// dh[:, 0] += dcls
__global__ void cls_scatter_add_kernel(float* dh, const float* dcls, int B, int T, int C, const int* starts) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)B * C) { dh[seq_start(i / C, T, starts) * C + i % C] += dcls[i]; }
}

__global__ void tanh_forward_kernel(float* x, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { x[i] = tanhf(x[i]); }
}

// dpre = dout * (1 - out^2), out = tanh(pre)
__global__ void tanh_backward_kernel(float* dpre, const float* dout, const float* out, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { dpre[i] = dout[i] * (1.0f - out[i] * out[i]); }
}

// out (B, C) = tanh(cls @ w^T + bias) with cls (B, C) = h[:, 0] kept for backward
// starts: packed tokens (kernel set 3), NULL: h is (B, T, C)
void pooler_forward(const Matmul* mm, float* out, float* cls, const float* h, const float* w, const float* bias,
                    int B, int T, int C, const int* starts = NULL) {
    cls_gather_kernel<<<ceil_div((size_t)B * C, 256), 256>>>(cls, h, B, T, C, starts);
    kernelCheck();
    matmul_forward(mm, out, cls, w, bias, B, C, C);
    tanh_forward_kernel<<<ceil_div((size_t)B * C, 256), 256>>>(out, (size_t)B * C);
    kernelCheck();
}

// backward of out = tanh(cls @ w^T + b) into dh (B, T, C), of which only the [CLS] rows get anything.
// dpre_scratch and dcls_scratch are (B, C).
void pooler_backward(const Matmul* mm, float* dh, float* dw, float* db, float* dpre_scratch, float* dcls_scratch,
                     const float* dout, const float* out, const float* cls, const float* w, int B, int T, int C,
                     const int* starts = NULL) {
    tanh_backward_kernel<<<ceil_div((size_t)B * C, 256), 256>>>(dpre_scratch, dout, out, (size_t)B * C);
    kernelCheck();
    cudaCheck(cudaMemset(dcls_scratch, 0, (size_t)B * C * sizeof(float)));
    matmul_backward(mm, dcls_scratch, dw, db, dpre_scratch, cls, w, B, C, C);
    cls_scatter_add_kernel<<<ceil_div((size_t)B * C, 256), 256>>>(dh, dcls_scratch, B, T, C, starts);
    kernelCheck();
}

} // namespace cu
