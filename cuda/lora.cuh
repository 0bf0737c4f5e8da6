/*
cuda/lora.cuh: train_bert.c's lora_forward / lora_backward, PEFT's lora.Linear on one projection:
out += s * (dropout(x) @ A^T) @ B^T with s = alpha / r. Four small matrix products through
matmul.cuh's gemm_ and the dropout kernels; out and dout are read with a row stride, so q, k and v
use their columns of qkv directly.
*/
#pragma once
#include "common.cuh"
#include "matmul.cuh"
#include "dropout.cuh"

namespace cu {

// x (N, C), A (r, C), B (OC, r). u (N, r) = dropout(x) @ A^T is kept for backward; xd_scratch (N, C)
// holds dropout(x). out (N, OC) has row stride out_stride.
// rows: packed tokens (kernel set 3), for the dropout masks
void lora_forward(const Matmul* mm, float* out, int out_stride, float* u, float* xd_scratch, const float* x,
                  const float* A, const float* Bw, int N, int C, int OC, int r, float s, float p, uint64_t stream,
                  const int* rows = NULL) {
    // without LoRA dropout (p 0) the products read x itself
    const float* xd = x;
    if (p > 0.0f) { dropout_forward(xd_scratch, x, NULL, (size_t)N * C, p, stream, rows, C); xd = xd_scratch; }
    // u (N, r) = xd @ A^T: column-major u^T (r, N) = A (as (C, r), transposed) x xd^T (C, N)
    gemm_(mm, CUBLAS_OP_T, CUBLAS_OP_N, r, N, C, 1.0f, A, C, xd, C, 0.0f, u, r);
    // out (N, OC) += s * u @ B^T: column-major out^T (OC, N) += s * B (as (r, OC), transposed) x u^T (r, N)
    gemm_(mm, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, r, s, Bw, r, u, r, 1.0f, out, out_stride);
}

// backward of the above: dA, dB accumulate; dx (may be NULL) accumulates through the dropout mask.
// dout (N, OC) is read with row stride dout_stride. du_scratch (N, r), xd_scratch (N, C).
void lora_backward(const Matmul* mm, float* dx, float* dA, float* dBw, float* du_scratch, float* xd_scratch,
                   const float* dout, int dout_stride, const float* u, const float* x, const float* A, const float* Bw,
                   int N, int C, int OC, int r, float s, float p, uint64_t stream, const int* rows = NULL) {
    // du (N, r) = s * dout @ B: column-major du^T (r, N) = s * B^T-view (r, OC) x dout^T (OC, N)
    gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_N, r, N, OC, s, Bw, r, dout, dout_stride, 0.0f, du_scratch, r);
    // dB (OC, r) += s * dout^T @ u: column-major dB^T (r, OC) += s * u^T (r, N) x dout (N, OC)
    gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_T, r, OC, N, s, u, r, dout, dout_stride, 1.0f, dBw, r);
    // dA (r, C) += du^T @ dropout(x): column-major dA^T (C, r) += xd^T (C, N) x du (N, r)
    const float* xd = x;
    if (p > 0.0f) { dropout_forward(xd_scratch, x, NULL, (size_t)N * C, p, stream, rows, C); xd = xd_scratch; }
    gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_T, C, r, N, 1.0f, xd, C, du_scratch, r, 1.0f, dA, C);
    if (dx == NULL) { return; }
    // dx += dropout_backward(du @ A): column-major (du A)^T (C, N) = A^T-view (C, r) x du^T (r, N); without
    // dropout the product adds into dx directly
    if (p == 0.0f) {
        gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_N, C, N, r, 1.0f, A, C, du_scratch, r, 1.0f, dx, C);
        return;
    }
    gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_N, C, N, r, 1.0f, A, C, du_scratch, r, 0.0f, xd_scratch, C);
    dropout_backward(dx, xd_scratch, (size_t)N * C, p, stream, rows, C);
}

} // namespace cu
