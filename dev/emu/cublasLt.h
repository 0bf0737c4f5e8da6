/*
dev/emu/cublasLt.h: the part of cuBLASLt that cuda/matmul.cuh calls (kernel set 4: products with a bias or
bias-gradient epilogue), for the CPU emulation (cuda_runtime.h and cublas_v2.h beside it). The product is
cublas_v2.h's; the epilogues are their definitions (CUBLASLT_EPILOGUE_BIAS: D = alpha op(A) op(B) + beta C +
bias[row]; CUBLASLT_EPILOGUE_BGRADB: bias[j] = sum over k of op(B)[k, j], written, not accumulated).

What it checks, beyond the operands lying inside device allocations: that a cached algorithm is used only
where it was chosen or checked for. cublasLtMatmulAlgoGetHeuristic picks an algorithm for the alignments the
preference allows (256 bytes unless told otherwise) and for the bias pointer's alignment at that moment, so this
heuristic records them in the algorithm, and cublasLtMatmul fails if an operand (its pointer, or its leading
dimension in bytes) or the bias is less aligned than recorded, if the transposes or epilogue differ, or if the
shape differs from the one it was chosen for and cublasLtMatmulAlgoCheck has not accepted it for this shape.
What it cannot tell: which problems the real library has no algorithm for (it has one for all here;
EMU_LT_NO_ALGORITHM=1 makes it have none with an epilogue, so the callers' fallback runs), which shapes an
algorithm really fits (the check accepts any; EMU_LT_CHECK_REFUSES=1 makes it refuse every shape but the one the
algorithm was chosen for, so the callers ask again), and speed.
*/
#pragma once
#include <set>
#include "cublas_v2.h"

typedef enum {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26
} cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_BGRADB = 512
} cublasLtEpilogue_t;
typedef enum {
    CUBLASLT_MATRIX_LAYOUT_ROWS = 2,
    CUBLASLT_MATRIX_LAYOUT_COLS = 3
} cublasLtMatrixLayoutAttribute_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
} cublasLtMatmulPreferenceAttributes_t;

struct cublasLtContext {
    int unused;
};
typedef cublasLtContext* cublasLtHandle_t;
struct EmuLtDesc {
    cublasComputeType_t compute;
    cudaDataType scale;
    cublasOperation_t ta, tb;
    int epilogue;
    const void* bias;
};
typedef EmuLtDesc* cublasLtMatmulDesc_t;
struct EmuLtLayout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
typedef EmuLtLayout* cublasLtMatrixLayout_t;
struct EmuLtPref {
    size_t workspace;
    uint32_t align[4]; // A, B, C, D
};
typedef EmuLtPref* cublasLtMatmulPreference_t;
// what the heuristic chose for: the problem and the alignments it may rely on
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
    *h = new cublasLtContext{0};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute,
                                                      cudaDataType scale) {
    *d = new EmuLtDesc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                            const void* buf, size_t n) {
    if ((a == CUBLASLT_MATMUL_DESC_TRANSA || a == CUBLASLT_MATMUL_DESC_TRANSB || a == CUBLASLT_MATMUL_DESC_EPILOGUE) &&
        n == sizeof(int32_t)) {
        int32_t v = *(const int32_t*)buf;
        if (a == CUBLASLT_MATMUL_DESC_TRANSA) { d->ta = (cublasOperation_t)v; }
        if (a == CUBLASLT_MATMUL_DESC_TRANSB) { d->tb = (cublasOperation_t)v; }
        if (a == CUBLASLT_MATMUL_DESC_EPILOGUE) { d->epilogue = v; }
        return CUBLAS_STATUS_SUCCESS;
    }
    if (a == CUBLASLT_MATMUL_DESC_BIAS_POINTER && n == sizeof(void*)) {
        d->bias = *(const void* const*)buf;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE; // the emulator models only the attributes above
}
static inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t, uint64_t rows,
                                                        uint64_t cols, int64_t ld) {
    if (ld < (int64_t)(rows > 1 ? rows : 1)) { return CUBLAS_STATUS_INVALID_VALUE; }
    *l = new EmuLtLayout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l,
                                                              cublasLtMatrixLayoutAttribute_t a, const void* buf,
                                                              size_t n) {
    if ((a != CUBLASLT_MATRIX_LAYOUT_ROWS && a != CUBLASLT_MATRIX_LAYOUT_COLS) || n != sizeof(uint64_t)) {
        return CUBLAS_STATUS_INVALID_VALUE; // the emulator models only these two
    }
    uint64_t v = *(const uint64_t*)buf;
    if (a == CUBLASLT_MATRIX_LAYOUT_ROWS && l->ld < (int64_t)(v > 1 ? v : 1)) { return CUBLAS_STATUS_INVALID_VALUE; }
    if (a == CUBLASLT_MATRIX_LAYOUT_ROWS) {
        l->rows = v;
    } else {
        l->cols = v;
    }
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
    *p = new EmuLtPref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                                  cublasLtMatmulPreferenceAttributes_t a,
                                                                  const void* buf, size_t n) {
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && n == sizeof(uint64_t)) {
        p->workspace = *(const uint64_t*)buf;
        return CUBLAS_STATUS_SUCCESS;
    }
    if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES &&
        n == sizeof(uint32_t)) {
        p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = *(const uint32_t*)buf;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

namespace emu {
// the alignment, in bytes (at most 256), that an operand at p with leading dimension ld offers
static inline uint32_t lt_alignment(const void* p, int64_t ld, size_t elem) {
    uintptr_t x = (uintptr_t)p | (uintptr_t)(ld * (int64_t)elem) | 256;
    return (uint32_t)(x & (~x + 1));
}
static inline size_t lt_elem(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }
// the algorithm's record: m, n, k, transposes and epilogue, then the alignments A, B, C, D, bias it relies on
// (the bias's in the low 32 bits; the high ones number the algorithm, for the checked shapes below)
enum { LT_M, LT_N, LT_K, LT_OPS, LT_ALIGN_AB, LT_ALIGN_CD, LT_ALIGN_BIAS, LT_MAGIC };
static const uint64_t LT_SIGNATURE = 0x656d752d6c74ULL;
// the shapes cublasLtMatmulAlgoCheck accepted, per algorithm: (number, m, n, k)
struct LtChecked {
    uint64_t id, m, n, k;
    bool operator<(const LtChecked& o) const {
        return id != o.id ? id < o.id : m != o.m ? m < o.m : n != o.n ? n < o.n : k < o.k;
    }
};
static std::set<LtChecked> lt_checked;
static uint64_t lt_next_id = 1;
// the problem's m, n, k from the descriptor and the layouts
static inline void lt_dims(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, uint64_t* m,
                           uint64_t* n, uint64_t* k) {
    *m = d->ta == CUBLAS_OP_N ? a->rows : a->cols;
    *k = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    *n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
}
static inline uint64_t lt_ops(cublasLtMatmulDesc_t d) {
    return (uint64_t)d->ta | (uint64_t)d->tb << 8 | (uint64_t)d->epilogue << 16;
}
} // namespace emu

static inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                                            cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                            cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                                            cublasLtMatmulPreference_t p, int requested,
                                                            cublasLtMatmulHeuristicResult_t* results, int* returned) {
    *returned = 0;
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    if (requested < 1) { return CUBLAS_STATUS_INVALID_VALUE; }
    uint64_t m = d->ta == CUBLAS_OP_N ? a->rows : a->cols, k = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols, n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (k != kb || c->rows != m || c->cols != n || dl->rows != m || dl->cols != n || c->ld != dl->ld ||
        a->type != b->type || c->type != CUDA_R_32F || d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS &&
        d->epilogue != CUBLASLT_EPILOGUE_BGRADB) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    // EMU_LT_NO_ALGORITHM=1: no algorithm for any epilogue, as the real library may answer for some problems, so
    // that the callers' other path runs too
    const char* none = getenv("EMU_LT_NO_ALGORITHM");
    if (none != NULL && strcmp(none, "1") == 0 && d->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof(r));
    uint64_t* x = r.algo.data;
    x[emu::LT_M] = m; x[emu::LT_N] = n; x[emu::LT_K] = k;
    x[emu::LT_OPS] = (uint64_t)d->ta | (uint64_t)d->tb << 8 | (uint64_t)d->epilogue << 16;
    x[emu::LT_ALIGN_AB] = (uint64_t)p->align[0] << 32 | p->align[1];
    x[emu::LT_ALIGN_CD] = (uint64_t)p->align[2] << 32 | p->align[3];
    x[emu::LT_ALIGN_BIAS] = (d->epilogue == CUBLASLT_EPILOGUE_DEFAULT ? 1 : emu::lt_alignment(d->bias, 0, 1)) |
                            emu::lt_next_id++ << 32;
    x[emu::LT_MAGIC] = emu::LT_SIGNATURE;
    r.workspaceSize = p->workspace < ((size_t)1 << 20) ? p->workspace : ((size_t)1 << 20);
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
    results[0] = r;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

// whether algo (from the heuristic) fits the problem the descriptor and layouts describe now; the emulator accepts
// every shape with the algorithm's transposes and epilogue (but see EMU_LT_CHECK_REFUSES at the top)
static inline cublasStatus_t cublasLtMatmulAlgoCheck(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                                     cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                     cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                                     const cublasLtMatmulAlgo_t* algo,
                                                     cublasLtMatmulHeuristicResult_t* result) {
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    if (algo == NULL || algo->data[emu::LT_MAGIC] != emu::LT_SIGNATURE) { return CUBLAS_STATUS_INVALID_VALUE; }
    const uint64_t* x = algo->data;
    uint64_t m, n, k;
    emu::lt_dims(d, a, b, &m, &n, &k);
    uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols;
    if (k != kb || c->rows != m || c->cols != n || dl->rows != m || dl->cols != n || x[emu::LT_OPS] != emu::lt_ops(d)) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    int same = x[emu::LT_M] == m && x[emu::LT_N] == n && x[emu::LT_K] == k;
    const char* refuse = getenv("EMU_LT_CHECK_REFUSES");
    if (!same && refuse != NULL && strcmp(refuse, "1") == 0) { return CUBLAS_STATUS_NOT_SUPPORTED; }
    emu::lt_checked.insert({x[emu::LT_ALIGN_BIAS] >> 32, m, n, k});
    memset(result, 0, sizeof(*result));
    result->algo = *algo;
    result->workspaceSize = 0;
    result->state = CUBLAS_STATUS_SUCCESS;
    result->wavesCount = 1.0f;
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha,
                                            const void* A, cublasLtMatrixLayout_t a, const void* B,
                                            cublasLtMatrixLayout_t b, const void* beta, const void* C,
                                            cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t dl,
                                            const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_size,
                                            cudaStream_t stream) {
    (void)stream;
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    if (algo == NULL || algo->data[emu::LT_MAGIC] != emu::LT_SIGNATURE) {
        emu::fail("cublasLtMatmul", "the algorithm does not come from cublasLtMatmulAlgoGetHeuristic");
    }
    const uint64_t* x = algo->data;
    uint64_t m, n, k;
    emu::lt_dims(d, a, b, &m, &n, &k);
    if (x[emu::LT_OPS] != emu::lt_ops(d) || C != D || c->ld != dl->ld) {
        emu::fail("cublasLtMatmul", "the transposes or epilogue differ from those the algorithm was chosen for (or C "
                                    "is not D: only in-place products are modelled)");
    }
    int same = x[emu::LT_M] == m && x[emu::LT_N] == n && x[emu::LT_K] == k;
    if (!same && emu::lt_checked.count({x[emu::LT_ALIGN_BIAS] >> 32, m, n, k}) == 0) {
        emu::fail("cublasLtMatmul", "the shape differs from the one the algorithm was chosen for, and "
                                    "cublasLtMatmulAlgoCheck has not accepted it for this one");
    }
    if (workspace_size > 0) { emu::check_range("cublasLtMatmul (workspace)", workspace, workspace_size); }
    // the alignments the algorithm relies on
    uint32_t need[5] = {(uint32_t)(x[emu::LT_ALIGN_AB] >> 32), (uint32_t)x[emu::LT_ALIGN_AB],
                        (uint32_t)(x[emu::LT_ALIGN_CD] >> 32), (uint32_t)x[emu::LT_ALIGN_CD],
                        (uint32_t)(x[emu::LT_ALIGN_BIAS] & 0xffffffffu)};
    uint32_t have[5] = {emu::lt_alignment(A, a->ld, emu::lt_elem(a->type)),
                        emu::lt_alignment(B, b->ld, emu::lt_elem(b->type)),
                        emu::lt_alignment(C, c->ld, 4), emu::lt_alignment(D, dl->ld, 4),
                        d->epilogue == CUBLASLT_EPILOGUE_DEFAULT ? 1 : emu::lt_alignment(d->bias, 0, 1)};
    const char* names[5] = {"A", "B", "C", "D", "the bias"};
    for (int i = 0; i < 5; i++) {
        if (have[i] < need[i]) {
            char msg[200];
            snprintf(msg, sizeof(msg), "%s is aligned to %u bytes, but the algorithm was chosen for %u (set the "
                     "preference's minimum alignments, and choose again when the bias pointer's alignment changes)",
                     names[i], have[i], need[i]);
            emu::fail("cublasLtMatmul", msg);
        }
    }
    if (m == 0 || n == 0) { return CUBLAS_STATUS_SUCCESS; }
    int lda = (int)a->ld, ldb = (int)b->ld, ldc = (int)c->ld;
    if (k > 0) {
        emu::check_operand("A", A, a->type, (int)a->rows, (int)a->cols, lda);
        emu::check_operand("B", B, b->type, (int)b->rows, (int)b->cols, ldb);
    }
    emu::check_operand("C", D, CUDA_R_32F, (int)m, (int)n, ldc);
    float al = *(const float*)alpha, be = *(const float*)beta;
    if (d->epilogue == CUBLASLT_EPILOGUE_BGRADB) { // the column sums of op(B), before D is written
        emu::check_range("cublasLtMatmul (bias gradient)", d->bias, n * 4);
        float* bias = (float*)d->bias;
        for (uint64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (uint64_t l = 0; l < k; l++) {
                s += emu::load(B, b->type, d->tb == CUBLAS_OP_N ? l + j * (uint64_t)ldb : j + l * (uint64_t)ldb);
            }
            bias[j] = s;
        }
    }
    emu::gemm(d->ta, d->tb, (int)m, (int)n, (int)k, al, A, a->type, lda, B, b->type, ldb, be, (float*)D, ldc);
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) {
        emu::check_range("cublasLtMatmul (bias)", d->bias, m * 4);
        const float* bias = (const float*)d->bias;
        for (uint64_t j = 0; j < n; j++) {
            for (uint64_t i = 0; i < m; i++) { ((float*)D)[i + j * (uint64_t)ldc] += bias[i]; }
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}
