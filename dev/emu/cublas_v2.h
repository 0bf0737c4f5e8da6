/*
dev/emu/cublas_v2.h: the part of cuBLAS train_bert.cu calls (cublasGemmEx), for the CPU emulation (see
cuda_runtime.h beside it). The product is the definition, column-major, summed in fp32 (eight partial sums).
It checks what cuBLAS checks (CUBLAS_STATUS_INVALID_VALUE) and what cuBLAS cannot: that every operand, as
its leading dimension and transposition say, lies inside one device allocation.
*/
#pragma once
#include "cuda_runtime.h"
#include "cuda_bf16.h"

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;

struct cublasContext {
    cublasMath_t math;
};
typedef cublasContext* cublasHandle_t;

static inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
    *h = new cublasContext{CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}
static inline const char* cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        default: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
}

namespace emu {
__attribute__((no_sanitize("address", "undefined"))) static inline float load(const void* p, cudaDataType t, size_t i) {
    return t == CUDA_R_32F ? ((const float*)p)[i] : __bfloat162float(((const __nv_bfloat16*)p)[i]);
}
// the operand (rows, cols) column-major with leading dimension ld lies inside one allocation
static inline void check_operand(const char* which, const void* p, cudaDataType t, int rows, int cols, int ld) {
    size_t elem = t == CUDA_R_32F ? 4 : 2;
    size_t span = ((size_t)(cols - 1) * ld + rows) * elem;
    char what[64];
    snprintf(what, sizeof(what), "cublasGemmEx (%s)", which);
    check_range(what, p, span);
}

// the product itself, after the operands were checked: not instrumented by the sanitizers (a sanitizer
// build would spend most of its time here, on reads already known to be in range)
__attribute__((no_sanitize("address", "undefined"))) static inline void
gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float a, const void* A, cudaDataType at, int lda,
     const void* B, cudaDataType bt, int ldb, float b, float* c, int ldc) {
    // op(A) row by row and op(B) column by column, as floats, so each output is one contiguous dot product
    std::vector<float> a_rows((size_t)m * k), b_cols((size_t)n * k);
    for (int i = 0; i < m; i++) {
        for (int l = 0; l < k; l++) {
            a_rows[(size_t)i * k + l] = emu::load(A, at, ta == CUBLAS_OP_N ? i + (size_t)l * lda : l + (size_t)i * lda);
        }
    }
    for (int j = 0; j < n; j++) {
        for (int l = 0; l < k; l++) {
            b_cols[(size_t)j * k + l] = emu::load(B, bt, tb == CUBLAS_OP_N ? l + (size_t)j * ldb : j + (size_t)l * ldb);
        }
    }
    for (int j = 0; j < n; j++) {
        const float* y = &b_cols[(size_t)j * k];
        for (int i = 0; i < m; i++) {
            const float* x = &a_rows[(size_t)i * k];
            // eight partial sums (vectorised), added pairwise: an order of summation, as cuBLAS has its own
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int l = 0;
            for (; l + 8 <= k; l += 8) {
                for (int u = 0; u < 8; u++) { acc[u] += x[l + u] * y[l + u]; }
            }
            for (; l < k; l++) { acc[l % 8] += x[l] * y[l]; }
            float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            float* out = &c[i + (size_t)j * ldc];
            *out = b == 0.0f ? a * s : a * s + b * *out;
        }
    }
}
} // namespace emu

// column-major C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C; C is not read when beta == 0
static inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          const void* B, cudaDataType bt, int ldb, const void* beta, void* C,
                                          cudaDataType ct, int ldc, cublasComputeType_t compute,
                                          cublasGemmAlgo_t algo) {
    (void)algo;
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) ||
        ldc < (m > 1 ? m : 1)) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (compute != CUBLAS_COMPUTE_32F || ct != CUDA_R_32F || at != bt) { return CUBLAS_STATUS_NOT_SUPPORTED; }
    if (m == 0 || n == 0) { return CUBLAS_STATUS_SUCCESS; }
    float a = *(const float*)alpha, b = *(const float*)beta;
    if (k > 0) {
        emu::check_operand("A", A, at, arows, ta == CUBLAS_OP_N ? k : m, lda);
        emu::check_operand("B", B, bt, brows, tb == CUBLAS_OP_N ? n : k, ldb);
    }
    emu::check_operand("C", C, ct, m, n, ldc);
    emu::gemm(ta, tb, m, n, k, a, A, at, lda, B, bt, ldb, b, (float*)C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
