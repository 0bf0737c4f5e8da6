/*
Matrix products through cuBLAS, in PyTorch's row-major nn.Linear convention, and the
bias column sums of the backward. fp32 mode is plain FP32 (CUBLAS_COMPUTE_32F, default
math, TF32 off: it matches the CPU reference to rounding). bf16 mode rounds both operands
to bf16 and multiplies on the tensor cores, accumulating and storing in fp32; weights
come from a bf16 copy refreshed after each update (matmul_register_bf16), activations
are cast into scratch on the way in. Everything else stays fp32.
*/
#pragma once
#include "common.cuh"

namespace cu {

enum Precision { PRECISION_FP32 = 0, PRECISION_BF16 = 1 };
inline const char* precision_name(int precision) { return precision == PRECISION_BF16 ? "bf16" : "fp32"; }

// one cuBLAS handle and the bf16 state, set up once by matmul_init
typedef struct {
    cublasHandle_t handle;
    int precision;
    __nv_bfloat16* scratch[2]; // operand casts, each (scratch_cap)
    size_t scratch_cap;
    // fp32 ranges that have a bf16 copy kept elsewhere (the parameter and LoRA blocks)
    const float* ranges[2];
    const __nv_bfloat16* ranges16[2];
    size_t range_sizes[2];
    int users;                 // models that called matmul_init and not yet matmul_free
} MatmulContext;
static MatmulContext mm_; // one per process: train_bert.cu is one translation unit

// Reference-counted: every model calls it (tests hold two at once); the scratch only grows.
// The bf16 ranges are global, so only one bf16 model may run at a time.
void matmul_init(int precision, size_t scratch_elems) {
    if (mm_.users++ == 0) {
        cublasCheck(cublasCreate(&mm_.handle));
        cublasCheck(cublasSetMathMode(mm_.handle, CUBLAS_DEFAULT_MATH)); // no TF32 behind our back
    }
    mm_.precision = precision;
    if (precision == PRECISION_BF16 && scratch_elems > mm_.scratch_cap) {
        for (int i = 0; i < 2; i++) {
            if (mm_.scratch_cap > 0) { cudaCheck(cudaFree(mm_.scratch[i])); }
            cudaCheck(cudaMalloc(&mm_.scratch[i], scratch_elems * sizeof(__nv_bfloat16)));
        }
        mm_.scratch_cap = scratch_elems;
    }
}

void matmul_free(void) {
    if (--mm_.users > 0) { return; }
    cublasCheck(cublasDestroy(mm_.handle));
    if (mm_.scratch_cap > 0) { cudaCheck(cudaFree(mm_.scratch[0])); cudaCheck(cudaFree(mm_.scratch[1])); }
    memset(&mm_, 0, sizeof(mm_));
}

// slot 0: parameters, slot 1: LoRA; copy16 must be kept equal to bf16(fp32) by the caller
void matmul_register_bf16(int slot, const float* fp32, const __nv_bfloat16* copy16, size_t n) {
    mm_.ranges[slot] = fp32; mm_.ranges16[slot] = copy16; mm_.range_sizes[slot] = n;
}

__global__ void cast_bf16_kernel(__nv_bfloat16* out, const float* inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { out[i] = __float2bfloat16_rn(inp[i]); }
}

void cast_bf16(__nv_bfloat16* out, const float* inp, size_t N) {
    if (N == 0) { return; }
    cast_bf16_kernel<<<ceil_div(N, 256), 256>>>(out, inp, N);
    cudaCheck(cudaGetLastError());
}

// the bf16 view of a column-major operand with `rows` rows, `cols` columns and leading dim ld
static const __nv_bfloat16* bf16_operand_(const float* p, int rows, int cols, int ld, int slot) {
    for (int r = 0; r < 2; r++) {
        if (mm_.ranges[r] != NULL && p >= mm_.ranges[r] && p < mm_.ranges[r] + mm_.range_sizes[r]) {
            return mm_.ranges16[r] + (p - mm_.ranges[r]);
        }
    }
    size_t n = (size_t)ld * (cols - 1) + rows; // every element the operand reaches
    if (n > mm_.scratch_cap) {
        fprintf(stderr, "Error: bf16 operand of %zu elements exceeds the scratch (%zu)\n", n, mm_.scratch_cap);
        exit(EXIT_FAILURE);
    }
    cast_bf16(mm_.scratch[slot], p, n);
    return mm_.scratch[slot];
}

// Column-major C (m, n) = alpha op(A) op(B) + beta C, as cublasGemmEx; the only call into cuBLAS.
void gemm_(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
    if (m == 0 || n == 0) { return; }
    if (mm_.precision == PRECISION_BF16) {
        const __nv_bfloat16* A16 = bf16_operand_(A, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, 0);
        const __nv_bfloat16* B16 = bf16_operand_(B, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, 1);
        cublasCheck(cublasGemmEx(mm_.handle, ta, tb, m, n, k, &alpha, A16, CUDA_R_16BF, lda, B16, CUDA_R_16BF, ldb,
                                 &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        cublasCheck(cublasGemmEx(mm_.handle, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                                 &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
}

// out (N, OC) row-major = bias broadcast, before the product accumulates into it (as the CPU does)
__global__ void bias_fill_kernel(float* out, const float* bias, int N, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) { out[i] = bias[i % OC]; }
}

// dbias[o] += sum_n dout[n, o]: one thread per column, rows in order (deterministic);
// consecutive threads read consecutive columns, so each row is one coalesced read
__global__ void bias_backward_kernel(float* dbias, const float* dout, int N, int OC, int ld) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) { return; }
    float sum = 0.0f;
    for (int n = 0; n < N; n++) { sum += dout[(size_t)n * ld + o]; }
    dbias[o] += sum;
}

// nn.Linear: out (N, OC) = inp (N, C) @ weight^T + bias, weight (OC, C); bias may be NULL.
// In cuBLAS's column-major terms: out^T (OC, N) = W (C, OC col-major, transposed) x inp^T (C, N).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
    if (bias != NULL) {
        bias_fill_kernel<<<ceil_div((size_t)N * OC, 256), 256>>>(out, bias, N, OC);
        cudaCheck(cudaGetLastError());
    }
    gemm_(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, 1.0f, weight, C, inp, C, bias != NULL ? 1.0f : 0.0f, out, OC);
}

// backward of out = inp @ weight^T + bias; any of dinp, dweight, dbias may be NULL. All accumulate.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
    // dinp (N, C) += dout (N, OC) @ W (OC, C)
    if (dinp != NULL) { gemm_(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, 1.0f, weight, C, dout, OC, 1.0f, dinp, C); }
    // dW (OC, C) += dout^T @ inp
    if (dweight != NULL) { gemm_(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, C); }
    if (dbias != NULL) {
        bias_backward_kernel<<<ceil_div(OC, 128), 128>>>(dbias, dout, N, OC, OC);
        cudaCheck(cudaGetLastError());
    }
}

} // namespace cu
