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

Kernel set 4 (-K 4) runs the two products that have a bias through cuBLASLt with an epilogue: the forward's
bias is added by the product (CUBLASLT_EPILOGUE_BIAS: no fill kernel, no read of the filled output), and the
weight gradient's product also writes the column sums of dout (CUBLASLT_EPILOGUE_BGRADB), which one small kernel
adds into dbias (the epilogue overwrites; a backward accumulates). The sums change order (bias last instead of
first; the bias gradient summed inside cuBLASLt, from the bf16 dout in bf16 mode), so fp32 still matches the CPU
to rounding, not bit for bit. GELU is not fused: cuBLASLt's GELU epilogue is the tanh approximation (PyTorch's
_addmm_activation, which uses it, decomposes to gelu(approximate="tanh") on CUDA), and BERT's is the erf one.
cuBLASLt picks an algorithm per problem (shape, transposes, epilogue) and per alignment of every operand and of
the bias (cublasLtMatmulAlgoGetHeuristic assumes 256-byte alignment unless told; cublasLt.h). A plan is made once
per all of these but the token count N (LtKey), which changes with nearly every packed batch: asking the heuristic
for each N would be thousands of queries an epoch. For a new N the plan's algorithms are checked against it
(cublasLtMatmulAlgoCheck), the first that fits is remembered for that N, and only where none fits is the heuristic
asked again. Where cuBLASLt has no algorithm the product runs as kernel set 3's, and says so once per plan.
*/
#pragma once
#include <cublasLt.h>
#include <stb/stb_ds.h> // defines: hmputs, hmgetp_null (the cuBLASLt plan cache)
#include "common.cuh"

namespace cu {

enum Precision { PRECISION_FP32 = 0, PRECISION_BF16 = 1 };
inline const char* precision_name(int precision) { return precision == PRECISION_BF16 ? "bf16" : "fp32"; }

// kernel set 4: one cuBLASLt plan per problem and alignments, less the token count N (see the top)
typedef struct {
    int ta, tb, m, n, k, lda, ldb, ldc, epilogue, bf16; // the dimension that is N holds 0
    int align[4]; // bytes, at most 256: A, B, C (= D), the bias
} LtKey;
#define LT_ALGOS 4 // algorithms a plan keeps; a fifth distinct one is not expected (the notes say if it is)
typedef struct {
    LtKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c; // their dimensions hold the N of the last product
    cublasLtMatmulAlgo_t algos[LT_ALGOS];
    int nalgos;
    int misses;              // heuristic queries that found nothing: after LT_ALGOS of them the plan asks no more
    int n_now;               // the N the layouts hold now
    unsigned char* choice;   // (N_max + 1): 0 not yet seen, 1 no algorithm (kernel set 3's path), 2 + i: algos[i]
    int noted;               // the "no algorithm" note was printed
} LtPlan;
typedef struct {
    cublasLtHandle_t handle;
    void* workspace;
    size_t workspace_size;
    LtPlan* plans;       // stb_ds hash map on key
    float* dbias;        // (OC_max) the bias-gradient epilogue's output, added into dbias by a kernel
    size_t dbias_cap;
    int N_max;           // the largest token count, the length of each plan's choice table
    long heuristics;     // calls of cublasLtMatmulAlgoGetHeuristic and cublasLtMatmulAlgoCheck (tests read them)
    long checks;
} LtCache;

#define LT_WORKSPACE (32 << 20) // cuBLASLt's workspace: 32 MiB, NVIDIA's recommendation for Hopper

// one cuBLAS handle and the bf16 state of one model
typedef struct {
    cublasHandle_t handle;
    int precision;
    int kernels;               // 1: the first kernels; 2, 3: bias gradients by a two-stage reduction; 4: cuBLASLt
    float* bias_partials;      // (bias_partials_cap) kernel set 2's per-chunk column sums
    __nv_bfloat16* scratch[2]; // operand casts, each (scratch_cap)
    size_t scratch_cap;
    // fp32 ranges that have a bf16 copy kept elsewhere (slot 0: the parameters, 1: LoRA)
    const float* ranges[2];
    const __nv_bfloat16* ranges16[2];
    size_t range_sizes[2];
    size_t bias_partials_cap;
    LtCache* lt;               // kernel set 4 (NULL otherwise); a pointer, so the const Matmul* calls can cache
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
    if (kernels >= 4) {
        mm->lt = (LtCache*)callocCheck(1, sizeof(LtCache));
        cublasCheck(cublasLtCreate(&mm->lt->handle));
        mm->lt->workspace_size = LT_WORKSPACE;
        cudaCheck(cudaMalloc(&mm->lt->workspace, mm->lt->workspace_size));
        mm->lt->dbias_cap = OC_max;
        mm->lt->N_max = (int)N_max;
        cudaCheck(cudaMalloc(&mm->lt->dbias, (OC_max > 0 ? OC_max : 1) * sizeof(float)));
    }
}

void matmul_free(Matmul* mm) {
    cublasCheck(cublasDestroy(mm->handle));
    if (mm->scratch_cap > 0) { cudaCheck(cudaFree(mm->scratch[0])); cudaCheck(cudaFree(mm->scratch[1])); }
    if (mm->bias_partials != NULL) { cudaCheck(cudaFree(mm->bias_partials)); }
    if (mm->lt != NULL) {
        for (int i = 0; i < hmlen(mm->lt->plans); i++) {
            LtPlan* p = &mm->lt->plans[i];
            cublasCheck(cublasLtMatmulDescDestroy(p->desc));
            cublasCheck(cublasLtMatrixLayoutDestroy(p->a));
            cublasCheck(cublasLtMatrixLayoutDestroy(p->b));
            cublasCheck(cublasLtMatrixLayoutDestroy(p->c));
            free(p->choice);
        }
        hmfree(mm->lt->plans);
        cudaCheck(cudaFree(mm->lt->workspace));
        cudaCheck(cudaFree(mm->lt->dbias));
        cublasCheck(cublasLtDestroy(mm->lt->handle));
        free(mm->lt);
    }
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

// the operands of a product as it reads them: A and B themselves, or in bf16 their bf16 views (gemm_, lt_gemm_)
static void gemm_operands_(const Matmul* mm, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* A, int lda, const float* B, int ldb, const void** A_, const void** B_) {
    *A_ = A;
    *B_ = B;
    if (mm->precision == PRECISION_BF16) {
        *A_ = bf16_operand_(mm, A, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, 0);
        *B_ = bf16_operand_(mm, B, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, 1);
    }
}

// Column-major C (m, n) = alpha op(A) op(B) + beta C, as cublasGemmEx: every product without an epilogue.
void gemm_(const Matmul* mm, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
           const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
    if (m == 0 || n == 0) { return; }
    const void *A_, *B_;
    gemm_operands_(mm, ta, tb, m, n, k, A, lda, B, ldb, &A_, &B_);
    cudaDataType ab = mm->precision == PRECISION_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasCheck(cublasGemmEx(mm->handle, ta, tb, m, n, k, &alpha, A_, ab, lda, B_, ab, ldb, &beta, C, CUDA_R_32F, ldc,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// the alignment in bytes, at most 256, that an operand at p with leading dimension ld (elements of elem bytes)
// offers cuBLASLt: its pointer's and its leading dimension's in bytes
static int lt_alignment_(const void* p, int ld, size_t elem) {
    uintptr_t x = (uintptr_t)p | (uintptr_t)ld * elem | 256;
    return (int)(x & (~x + 1));
}

// the heuristic's first algorithm for the plan's problem as its layouts hold it now, with the alignments of its key
static int lt_heuristic_(LtCache* lt, const LtPlan* p, cublasLtMatmulAlgo_t* algo) {
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = lt->workspace_size;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const cublasLtMatmulPreferenceAttributes_t aligns[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) {
        uint32_t v = p->key.align[i < 3 ? i : 2]; // D is C
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, aligns[i], &v, sizeof(v)));
    }
    cublasLtMatmulHeuristicResult_t result;
    int returned = 0;
    lt->heuristics++;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt->handle, p->desc, p->a, p->b, p->c, p->c, pref, 1, &result,
                                                       &returned);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS || returned == 0) { return 0; }
    *algo = result.algo;
    return 1;
}

// a new plan for key: the descriptor and the layouts (their N set by the caller), no algorithm yet
static LtPlan* lt_plan_(LtCache* lt, const LtKey* key) {
    LtPlan plan;
    memset(&plan, 0, sizeof(plan));
    plan.key = *key;
    cudaDataType ab = key->bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasCheck(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    int32_t tai = key->ta, tbi = key->tb, epi = key->epilogue;
    cublasCheck(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &tai, sizeof(tai)));
    cublasCheck(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tbi, sizeof(tbi)));
    cublasCheck(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    cublasCheck(cublasLtMatrixLayoutCreate(&plan.a, ab, 1, 1, key->lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&plan.b, ab, 1, 1, key->ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, 1, 1, key->ldc));
    plan.choice = (unsigned char*)callocCheck((size_t)lt->N_max + 1, 1);
    hmputs(lt->plans, plan);
    return hmgetp_null(lt->plans, *key);
}

// the layouts' dimensions for the problem (m, n, k) under the plan's transposes
static void lt_set_dims_(LtPlan* p, int m, int n, int k) {
    const cublasLtMatrixLayoutAttribute_t R = CUBLASLT_MATRIX_LAYOUT_ROWS, C = CUBLASLT_MATRIX_LAYOUT_COLS;
    uint64_t ar = p->key.ta == CUBLAS_OP_N ? m : k, ac = p->key.ta == CUBLAS_OP_N ? k : m;
    uint64_t br = p->key.tb == CUBLAS_OP_N ? k : n, bc = p->key.tb == CUBLAS_OP_N ? n : k;
    uint64_t cr = m, cc = n;
    cublasCheck(cublasLtMatrixLayoutSetAttribute(p->a, R, &ar, sizeof(ar)));
    cublasCheck(cublasLtMatrixLayoutSetAttribute(p->a, C, &ac, sizeof(ac)));
    cublasCheck(cublasLtMatrixLayoutSetAttribute(p->b, R, &br, sizeof(br)));
    cublasCheck(cublasLtMatrixLayoutSetAttribute(p->b, C, &bc, sizeof(bc)));
    cublasCheck(cublasLtMatrixLayoutSetAttribute(p->c, R, &cr, sizeof(cr)));
    cublasCheck(cublasLtMatrixLayoutSetAttribute(p->c, C, &cc, sizeof(cc)));
}

// which of the plan's algorithms runs at token count N (the layouts hold N): the first the library accepts for
// it, else a new one from the heuristic; -1 where there is none. Decided once per N.
static int lt_choose_(LtCache* lt, LtPlan* p, int N) {
    if (p->choice[N] != 0) { return p->choice[N] - 2; }
    int pick = -1;
    for (int i = 0; i < p->nalgos && pick < 0; i++) {
        cublasLtMatmulHeuristicResult_t r;
        lt->checks++;
        if (cublasLtMatmulAlgoCheck(lt->handle, p->desc, p->a, p->b, p->c, p->c, &p->algos[i], &r) ==
                CUBLAS_STATUS_SUCCESS && r.workspaceSize <= lt->workspace_size) {
            pick = i;
        }
    }
    if (pick < 0 && p->nalgos + p->misses < LT_ALGOS) {
        if (lt_heuristic_(lt, p, &p->algos[p->nalgos])) { pick = p->nalgos++; } else { p->misses++; }
    }
    if (pick < 0 && !p->noted) { // said once per plan
        const LtKey* k = &p->key;
        fprintf(stderr, "note: cuBLASLt has no algorithm for (m %d, n %d, k %d, op %d%d, epilogue %d, %s) at N %d%s; "
                "that product runs as kernel set 3's where none fits\n", k->m, k->n, k->k, k->ta, k->tb, k->epilogue,
                k->bf16 ? "bf16" : "fp32", N, p->nalgos == LT_ALGOS ? " (its four algorithms do not fit)" : "");
        p->noted = 1;
    }
    p->choice[N] = (unsigned char)(pick + 2);
    return pick;
}

// Kernel set 4: column-major C (m, n) = op(A) op(B) + beta C with a cuBLASLt epilogue and its bias vector:
// CUBLASLT_EPILOGUE_BIAS adds bias (m) to every column; CUBLASLT_EPILOGUE_BGRADB writes bias (n) = the column
// sums of op(B) over k. N_is_k: the token count is k (the weight gradient), else n (the forward). Returns 0,
// doing nothing, where cuBLASLt has no algorithm for the problem, or for an empty one (the plain path has those
// right already).
int lt_gemm_(const Matmul* mm, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int N_is_k,
             const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc,
             cublasLtEpilogue_t epilogue, const float* bias) {
    LtCache* lt = mm->lt;
    int N = N_is_k ? k : n;
    if (m == 0 || n == 0 || k == 0 || N > lt->N_max) { return 0; }
    int bf16 = mm->precision == PRECISION_BF16;
    const void *A_, *B_;
    gemm_operands_(mm, ta, tb, m, n, k, A, lda, B, ldb, &A_, &B_);
    size_t elem = bf16 ? 2 : 4;
    LtKey key;
    memset(&key, 0, sizeof(key)); // hashed as bytes
    key.ta = ta; key.tb = tb; key.m = m; key.n = N_is_k ? n : 0; key.k = N_is_k ? 0 : k;
    key.lda = lda; key.ldb = ldb; key.ldc = ldc; key.epilogue = epilogue; key.bf16 = bf16;
    key.align[0] = lt_alignment_(A_, lda, elem);
    key.align[1] = lt_alignment_(B_, ldb, elem);
    key.align[2] = lt_alignment_(C, ldc, 4);
    key.align[3] = lt_alignment_(bias, 0, 1);
    LtPlan* p = hmgetp_null(lt->plans, key);
    if (p == NULL) { p = lt_plan_(lt, &key); }
    // the heuristic and the check read the bias pointer's alignment, so it is set before either
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    if (p->n_now != N) {
        lt_set_dims_(p, m, n, k);
        p->n_now = N;
    }
    int i = lt_choose_(lt, p, N);
    if (i < 0) { return 0; }
    const float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(lt->handle, p->desc, &alpha, A_, p->a, B_, p->b, &beta, C, p->c, C, p->c,
                               &p->algos[i], lt->workspace, lt->workspace_size, 0));
    return 1;
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
    // kernel set 4: the bias added by the product's epilogue
    if (mm->lt != NULL && bias != NULL &&
        lt_gemm_(mm, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, 0, weight, C, inp, C, 0.0f, out, OC, CUBLASLT_EPILOGUE_BIAS,
                 bias)) {
        return;
    }
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
    // kernel set 4: the same product also writes dout's column sums (op(B) = dout, summed over k = N), then added
    if (mm->lt != NULL && dweight != NULL && dbias != NULL && (size_t)OC <= mm->lt->dbias_cap &&
        lt_gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1, inp, C, dout, OC, 1.0f, dweight, C,
                 CUBLASLT_EPILOGUE_BGRADB, mm->lt->dbias)) {
        bias_sum_kernel<<<ceil_div(OC, 128), 128>>>(dbias, mm->lt->dbias, 1, OC);
        kernelCheck();
        return;
    }
    if (dweight != NULL) { gemm_(mm, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, C); }
    if (dbias != NULL) { bias_backward(mm, dbias, dout, N, OC); }
}

} // namespace cu
