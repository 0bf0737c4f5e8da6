/*
cuda/matmul.cuh: train_bert.c's matmul_forward / matmul_backward (nn.Linear) through cuBLAS, in
PyTorch's row-major convention, and the bias column sums of the backward.

Precision is per model (a Matmul context each, so two models in one process never share state):
fp32 is plain FP32 (CUBLAS_COMPUTE_32F with the default math mode, so no TF32: it matches the CPU
to rounding); bf16 rounds both operands to bf16 and multiplies on the tensor cores, accumulating
and storing in fp32. Weights come from a bf16 copy the model refreshes after each update
(matmul_register_bf16); other operands are cast into the context's scratch on the way in.

cuBLAS is column-major: a row-major (R, K) array is, to it, the (K, R) matrix of its transpose. So
row-major out (N, OC) = inp (N, C) @ W^T, with W (OC, C), is column-major out^T = W inp^T: A is W's
memory, seen as W^T (C, OC), used transposed (CUBLAS_OP_T, lda = C); B is inp's memory, inp^T (C, N),
used as is; m = OC, n = N, k = C. Each call below says what it computes.
*/
#pragma once
#include "common.cuh"

namespace cu {

enum Precision { PRECISION_FP32 = 0, PRECISION_BF16 = 1 };
inline const char* precision_name(int precision) { return precision == PRECISION_BF16 ? "bf16" : "fp32"; }

// one cuBLAS handle and the bf16 state of one model
typedef struct {
    cublasHandle_t handle;
    int precision;
    int kernels;               // 1: the first kernels; 2: kernel set 2 (bias gradients by a two-stage reduction)
    float* bias_partials;      // (bias_partials_cap) kernel set 2's per-chunk column sums
    __nv_bfloat16* scratch[2]; // operand casts, each (scratch_cap)
    size_t scratch_cap;
    // fp32 ranges that have a bf16 copy kept elsewhere (slot 0: the parameters, 1: LoRA)
    const float* ranges[2];
    const __nv_bfloat16* ranges16[2];
    size_t range_sizes[2];
    size_t bias_partials_cap;
} Matmul;

#define BIAS_CHUNK 64 // rows per partial sum of the kernel set 2 bias gradient

// scratch_elems: the largest operand that is not a weight (bf16 only); N_max x OC_max: the largest output
void matmul_init(Matmul* mm, int precision, int kernels, size_t scratch_elems, size_t N_max, size_t OC_max) {
    memset(mm, 0, sizeof(*mm));
    cublasCheck(cublasCreate(&mm->handle));
    cublasCheck(cublasSetMathMode(mm->handle, CUBLAS_DEFAULT_MATH)); // no TF32 behind our back
    mm->precision = precision;
    mm->kernels = kernels;
    if (kernels >= 2) {
        mm->bias_partials_cap = (size_t)ceil_div(N_max, BIAS_CHUNK) * OC_max;
        cudaCheck(cudaMalloc(&mm->bias_partials, mm->bias_partials_cap * sizeof(float)));
    }
    if (precision == PRECISION_BF16) {
        for (int i = 0; i < 2; i++) { cudaCheck(cudaMalloc(&mm->scratch[i], scratch_elems * sizeof(__nv_bfloat16))); }
        mm->scratch_cap = scratch_elems;
    }
}

void matmul_free(Matmul* mm) {
    cublasCheck(cublasDestroy(mm->handle));
    if (mm->scratch_cap > 0) { cudaCheck(cudaFree(mm->scratch[0])); cudaCheck(cudaFree(mm->scratch[1])); }
    if (mm->bias_partials != NULL) { cudaCheck(cudaFree(mm->bias_partials)); }
    memset(mm, 0, sizeof(*mm));
}

// copy16 must be kept equal to bf16(fp32) by the caller
void matmul_register_bf16(Matmul* mm, int slot, const float* fp32, const __nv_bfloat16* copy16, size_t n) {
    mm->ranges[slot] = fp32; mm->ranges16[slot] = copy16; mm->range_sizes[slot] = n;
}

__global__ void cast_bf16_kernel(__nv_bfloat16* out, const float* inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { out[i] = __float2bfloat16_rn(inp[i]); }
}

void cast_bf16(__nv_bfloat16* out, const float* inp, size_t N) {
    if (N == 0) { return; }
    cast_bf16_kernel<<<ceil_div(N, 256), 256>>>(out, inp, N);
    kernelCheck();
}

// the bf16 view of a column-major operand with `rows` rows, `cols` columns and leading dim ld
static const __nv_bfloat16* bf16_operand_(const Matmul* mm, const float* p, int rows, int cols, int ld, int slot) {
    for (int r = 0; r < 2; r++) {
        if (mm->ranges[r] != NULL && p >= mm->ranges[r] && p < mm->ranges[r] + mm->range_sizes[r]) {
            return mm->ranges16[r] + (p - mm->ranges[r]);
        }
    }
    size_t n = (size_t)ld * (cols - 1) + rows; // every element the operand reaches
    if (n > mm->scratch_cap) {
        fprintf(stderr, "Error: bf16 operand of %zu elements exceeds the scratch (%zu)\n", n, mm->scratch_cap);
        exit(EXIT_FAILURE);
    }
    cast_bf16(mm->scratch[slot], p, n);
    return mm->scratch[slot];
}

// Column-major C (m, n) = alpha op(A) op(B) + beta C, as cublasGemmEx: the only call into cuBLAS.
void gemm_(const Matmul* mm, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
           const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
    if (m == 0 || n == 0) { return; }
    if (mm->precision == PRECISION_BF16) {
        const __nv_bfloat16* A16 = bf16_operand_(mm, A, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, 0);
        const __nv_bfloat16* B16 = bf16_operand_(mm, B, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, 1);
        cublasCheck(cublasGemmEx(mm->handle, ta, tb, m, n, k, &alpha, A16, CUDA_R_16BF, lda, B16, CUDA_R_16BF, ldb,
                                 &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        cublasCheck(cublasGemmEx(mm->handle, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
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

// Kernel set 2: the same column sums as a two-stage reduction. Stage 1: block (32, 8) takes 32 columns of a
// chunk of BIAS_CHUNK rows, 8 rows at a time, and writes the chunk's sums; stage 2: one thread per column adds
// the chunks in order. Fixed chunks, fixed order: deterministic, and all of the machine busy.
__global__ void bias_partials_kernel(float* partials, const float* dout, int N, int OC) {
    __shared__ float s[8][33];
    int o = blockIdx.x * 32 + threadIdx.x;
    int n0 = blockIdx.y * BIAS_CHUNK, n1 = n0 + BIAS_CHUNK < N ? n0 + BIAS_CHUNK : N;
    float acc = 0.0f;
    if (o < OC) {
        for (int n = n0 + threadIdx.y; n < n1; n += 8) { acc += dout[(size_t)n * OC + o]; }
    }
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        for (int y = 1; y < 8; y++) { acc += s[y][threadIdx.x]; }
        partials[(size_t)blockIdx.y * OC + o] = acc;
    }
}

__global__ void bias_sum_kernel(float* dbias, const float* partials, int chunks, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) { return; }
    float sum = 0.0f;
    for (int c = 0; c < chunks; c++) { sum += partials[(size_t)c * OC + o]; }
    dbias[o] += sum;
}

// dbias (OC) += the column sums of dout (N, OC)
void bias_backward(const Matmul* mm, float* dbias, const float* dout, int N, int OC) {
    int chunks = ceil_div(N, BIAS_CHUNK);
    if (mm->kernels >= 2 && (size_t)chunks * OC <= mm->bias_partials_cap) {
        bias_partials_kernel<<<dim3(ceil_div(OC, 32), chunks), dim3(32, 8)>>>(mm->bias_partials, dout, N, OC);
        kernelCheck();
        bias_sum_kernel<<<ceil_div(OC, 128), 128>>>(dbias, mm->bias_partials, chunks, OC);
    } else {
        bias_backward_kernel<<<ceil_div(OC, 128), 128>>>(dbias, dout, N, OC, OC);
    }
    kernelCheck();
}

// nn.Linear, as train_bert.c's matmul_forward: out (N, OC) = inp (N, C) @ weight^T + bias, weight (OC, C).
void matmul_forward(const Matmul* mm, float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
    if (bias != NULL) {
        bias_fill_kernel<<<ceil_div((size_t)N * OC, 256), 256>>>(out, bias, N, OC);
        kernelCheck();
    }
    // column-major out^T (OC, N) = W (read as (C, OC), transposed) x inp^T (C, N)
    gemm_(mm, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, 1.0f, weight, C, inp, C, bias != NULL ? 1.0f : 0.0f, out, OC);
}

// backward of out = inp @ weight^T + bias; any of dinp, dweight, dbias may be NULL. All accumulate.
void matmul_backward(const Matmul* mm, float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
    // dinp (N, C) += dout (N, OC) @ W (OC, C): column-major dinp^T (C, N) += W^T-view (C, OC) x dout^T (OC, N)
    if (dinp != NULL) { gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, 1.0f, weight, C, dout, OC, 1.0f, dinp, C); }
    // dW (OC, C) += dout^T @ inp: column-major dW^T (C, OC) += inp^T (C, N) x dout (N, OC)
    if (dweight != NULL) { gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, C); }
    if (dbias != NULL) { bias_backward(mm, dbias, dout, N, OC); }
}

} // namespace cu
