/*
Tests of the CPU emulation of CUDA (dev/emu/cuda_runtime.h) itself: that it computes what a GPU computes
for correct kernels, and that it catches the faults it claims to catch. Each fault runs in a child
process, which must exit non-zero with the expected message (or, for a race, give different results in
the two thread orders). Built and run by `make test-emu` (make dev/emu/test_emu && ./dev/emu/test_emu).
*/
#include <unistd.h>
#include <sys/wait.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cublasLt.h>

static int passed = 0, failed = 0;
static void check(int ok, const char* what) {
    printf("%s %s\n", ok ? "OK  " : "FAIL", what);
    if (ok) {
        passed++;
    } else {
        failed++;
    }
}

// ----------------------------------------------------------------------------
// correct kernels

__device__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) { x += __shfl_xor_sync(0xffffffff, x, o); }
    return x;
}

// out[block] = sum of in over the block, through warp shuffles and static shared memory
__global__ void block_sum_kernel(float* out, const float* in) {
    __shared__ float partial[32];
    int t = threadIdx.x, lane = t % 32, warp = t / 32;
    float x = warp_sum(in[blockIdx.x * blockDim.x + t]);
    if (lane == 0) { partial[warp] = x; }
    __syncthreads();
    if (warp == 0) {
        x = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
        x = warp_sum(x);
        if (lane == 0) { out[blockIdx.x] = x; }
    }
}

// out[0] = the sum of 32 doubles through double shuffles, as cuda/adamw.cuh's gradient norm sums its partials
__global__ void double_sum_kernel(double* out, const double* in) {
    double x = in[threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) { x += __shfl_xor_sync(0xffffffff, x, o); }
    if (threadIdx.x == 0) { out[0] = x; }
}

// reverses each block's slice through dynamic shared memory; a 2D block
__global__ void reverse_kernel(float* out, const float* in) {
    extern __shared__ float buf[];
    int n = blockDim.x * blockDim.y, t = threadIdx.y * blockDim.x + threadIdx.x;
    buf[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = buf[n - 1 - t];
}

// ----------------------------------------------------------------------------
// faulty kernels

// reads a neighbour's shared value without the barrier in between
__global__ void race_kernel(float* out) {
    __shared__ float buf[64];
    int t = threadIdx.x;
    buf[t] = (float)t;
    out[t] = buf[(t + 1) % 64];
}

// two block sums through one shared array, without the barrier that keeps the second's writes from overtaking the
// first's reads (cuda/common.cuh's block_sum minus its first __syncthreads): only a warp running ahead shows it
__device__ float block_sum_unsafe(float x, float* shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    x = warp_sum(x);
    if (lane == 0) { shared[warp] = x; }
    __syncthreads();
    x = lane < nwarps ? shared[lane] : 0.0f;
    return warp_sum(x);
}
__global__ void reuse_race_kernel(float* out) {
    __shared__ float shared[32];
    float a = block_sum_unsafe(1.0f, shared);               // blockDim.x
    float b = block_sum_unsafe((float)threadIdx.x, shared); // 0 + 1 + ... + blockDim.x - 1
    out[threadIdx.x] = a + b;
}

// half of the warp shuffles
__global__ void divergent_shuffle_kernel(float* out) {
    float x = (float)threadIdx.x;
    if (threadIdx.x < 16) { x = warp_sum(x); }
    out[threadIdx.x] = x;
}

__global__ void write_kernel(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { out[i] = 1.0f; }
}

__global__ void big_smem_kernel(float* out) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = 1.0f;
    out[threadIdx.x] = buf[threadIdx.x];
}

// copies n float4 from in to out: both must be 16-byte aligned, as on the card
__global__ void copy4_kernel(float4* out, const float4* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { out[i] = in[i]; }
}

// runs fn in a child process: it must exit non-zero, and its stderr must contain expect
static void expect_failure(const char* what, const char* expect, void (*fn)(void)) {
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        perror("pipe");
        exit(1);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        fn();
        exit(0);
    }
    close(pipefd[1]);
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(pipefd[0], buf + n, sizeof(buf) - 1 - n)) > 0) { n += (size_t)r; }
    buf[n] = '\0';
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(buf, expect) != NULL;
    if (!ok) { fprintf(stderr, "    child said: %s\n", buf); }
    check(ok, what);
}

// a float4 read 4 bytes past a 256-byte boundary (cudaErrorMisalignedAddress on a card; x86 would take it)
static void misaligned_load_(void) {
    float *in, *out;
    cudaMalloc(&in, 64 * sizeof(float));
    cudaMalloc(&out, 64 * sizeof(float));
    copy4_kernel<<<1, 8>>>((float4*)out, (const float4*)(in + 1), 8);
}
// the same for a store: 8 bytes past
static void misaligned_store_(void) {
    float *in, *out;
    cudaMalloc(&in, 64 * sizeof(float));
    cudaMalloc(&out, 64 * sizeof(float));
    copy4_kernel<<<1, 8>>>((float4*)(out + 2), (const float4*)in, 8);
}
static void host_pointer_(void) {
    float host[32];
    write_kernel<<<1, 32>>>(host, 32);
}
static void divergent_shuffle_(void) {
    float* d;
    cudaMalloc(&d, 32 * sizeof(float));
    divergent_shuffle_kernel<<<1, 32>>>(d);
}
static void memcpy_past_end_(void) {
    float* d;
    float h[16] = {0};
    volatile size_t n = 8; // not a constant, so the compiler does not warn about the overflow this test makes
    cudaMalloc(&d, n * sizeof(float));
    cudaMemcpy(d, h, 16 * sizeof(float), cudaMemcpyHostToDevice);
}
static void memcpy_direction_(void) {
    float *a, *b;
    cudaMalloc(&a, 8 * sizeof(float));
    cudaMalloc(&b, 8 * sizeof(float));
    cudaMemcpy(a, b, 8 * sizeof(float), cudaMemcpyHostToDevice);
}
// the host rewrites a pinned staging buffer before waiting for the async copy that reads it
static int* async_setup_(int** d) {
    int* h;
    cudaMallocHost(&h, 64 * sizeof(int));
    cudaMalloc(d, 64 * sizeof(int));
    for (int i = 0; i < 64; i++) { h[i] = i; }
    return h;
}
static void async_race_(void) {
    int *d, *h = async_setup_(&d);
    cudaMemcpyAsync(d, h, 64 * sizeof(int), cudaMemcpyHostToDevice);
    h[0] = 1; // the next batch, too early
}
static void async_event_before_(void) {
    int *d, *h = async_setup_(&d);
    cudaEvent_t e;
    cudaEventCreate(&e);
    cudaEventRecord(e); // recorded before the copy: waiting on it says nothing about the copy
    cudaMemcpyAsync(d, h, 64 * sizeof(int), cudaMemcpyHostToDevice);
    cudaEventSynchronize(e);
    h[0] = 1;
}
static void async_pageable_(void) {
    int *d, h[64] = {0};
    cudaMalloc(&d, sizeof(h));
    cudaMemcpyAsync(d, h, sizeof(h), cudaMemcpyHostToDevice);
}
static void gemm_past_end_(void) {
    // C (4, 4) = A (4, 3) B (3, 4) with lda 4, but A holds only 4 x 3 - 1 elements
    float *A, *B, *C;
    cudaMalloc(&A, 11 * sizeof(float));
    cudaMalloc(&B, 12 * sizeof(float));
    cudaMalloc(&C, 16 * sizeof(float));
    cublasHandle_t h;
    cublasCreate(&h);
    float one = 1.0f, zero = 0.0f;
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 3, &one, A, CUDA_R_32F, 4, B, CUDA_R_32F, 3, &zero, C, CUDA_R_32F,
                 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

// column-major C (2, 3) = A^T (2, 4) B (4, 3) through cuBLASLt with an epilogue and its bias; the algorithm is
// chosen with the bias at bias_choose, then run with it at bias_run
static cublasStatus_t lt_product_(const float* A, const float* B, float* C, int epilogue, float* bias_choose,
                                  float* bias_run) {
    cublasLtHandle_t h;
    cublasLtCreate(&h);
    cublasLtMatmulDesc_t d;
    cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_choose, sizeof(bias_choose));
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, 4, 2, 4);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, 4, 3, 4);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, 2, 3, 2);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    uint32_t align = 8; // what the leading dimensions 4 and 2 floats allow
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align, sizeof(align));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align, sizeof(align));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align, sizeof(align));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align, sizeof(align));
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    cublasLtMatmulAlgoGetHeuristic(h, d, la, lb, lc, lc, pref, 1, &r, &n);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_run, sizeof(bias_run));
    float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = n == 1 ? cublasLtMatmul(h, d, &one, A, la, B, lb, &zero, C, lc, C, lc, &r.algo, NULL, 0, 0)
                               : CUBLAS_STATUS_NOT_SUPPORTED;
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb); cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(d);
    cublasLtDestroy(h);
    return st;
}
static void lt_misaligned_bias_(void) {
    float *A, *B, *C, *bias;
    cudaMalloc(&A, 8 * sizeof(float));
    cudaMalloc(&B, 12 * sizeof(float));
    cudaMalloc(&C, 6 * sizeof(float));
    cudaMalloc(&bias, 4 * sizeof(float));
    lt_product_(A, B, C, CUBLASLT_EPILOGUE_BIAS, bias, bias + 1); // chosen for 256 bytes, run at 4
}

int main(void) {
    { // float4 at aligned addresses works (the misaligned ones stop the run: below)
        float h4[32], back[32], *a, *b;
        for (int i = 0; i < 32; i++) { h4[i] = (float)i; }
        cudaMalloc(&a, sizeof(h4));
        cudaMalloc(&b, sizeof(h4));
        cudaMemcpy(a, h4, sizeof(h4), cudaMemcpyHostToDevice);
        copy4_kernel<<<1, 4>>>((float4*)(b + 4), (const float4*)(a + 4), 4);
        cudaMemcpy(back, b, sizeof(back), cudaMemcpyDeviceToHost);
        check(memcmp(back + 4, h4 + 4, 16 * sizeof(float)) == 0, "float4 copies at 16-byte aligned addresses");
        cudaFree(a);
        cudaFree(b);
    }
    // block sums against the CPU, with shuffles and shared memory
    const int B = 3, T = 256;
    float h_in[B * T], h_out[B], *d_in, *d_out;
    for (int i = 0; i < B * T; i++) { h_in[i] = (float)(i % 17) - 8.0f; }
    cudaMalloc(&d_in, sizeof(h_in));
    cudaMalloc(&d_out, sizeof(h_out));
    cudaMemcpy(d_in, h_in, sizeof(h_in), cudaMemcpyHostToDevice);
    block_sum_kernel<<<B, T>>>(d_out, d_in);
    cudaMemcpy(h_out, d_out, sizeof(h_out), cudaMemcpyDeviceToHost);
    int ok = 1;
    for (int b = 0; b < B; b++) {
        float s = 0.0f;
        for (int t = 0; t < T; t++) { s += h_in[b * T + t]; }
        ok &= h_out[b] == s;
    }
    check(ok, "block sums through shuffles and shared memory equal the CPU's");

    // a double crosses a shuffle whole (rounded to float, the sum below would be off by ~1e-9 of it)
    double h_d[32], h_dsum, want_dsum = 0.0, *d_d, *d_dsum;
    for (int i = 0; i < 32; i++) { h_d[i] = 1.0 + i * 1e-12; }
    for (int o = 16; o > 0; o >>= 1) { // the butterfly's own order: every lane ends with the same sum
        double next[32];
        for (int i = 0; i < 32; i++) { next[i] = h_d[i] + h_d[i ^ o]; }
        memcpy(h_d, next, sizeof(h_d));
    }
    want_dsum = h_d[0];
    for (int i = 0; i < 32; i++) { h_d[i] = 1.0 + i * 1e-12; }
    cudaMalloc(&d_d, sizeof(h_d));
    cudaMalloc(&d_dsum, sizeof(double));
    cudaMemcpy(d_d, h_d, sizeof(h_d), cudaMemcpyHostToDevice);
    double_sum_kernel<<<1, 32>>>(d_dsum, d_d);
    cudaMemcpy(&h_dsum, d_dsum, sizeof(double), cudaMemcpyDeviceToHost);
    check(h_dsum == want_dsum, "a warp sum of doubles through shuffles equals the CPU's bit for bit");

    // dynamic shared memory in a 2D block
    float h_rev[B * T], *d_rev;
    cudaMalloc(&d_rev, sizeof(h_rev));
    reverse_kernel<<<B, dim3(32, 8), T * sizeof(float)>>>(d_rev, d_in);
    cudaMemcpy(h_rev, d_rev, sizeof(h_rev), cudaMemcpyDeviceToHost);
    ok = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) { ok &= h_rev[b * T + t] == h_in[b * T + T - 1 - t]; }
    check(ok, "a 2D block reverses through dynamic shared memory");

    // gemm against the definition: C (2, 3) = A^T B with A (4, 2) and B (4, 3), column-major
    float hA[8] = {1, 2, 3, 4, 5, 6, 7, 8}, hB[12] = {1, 0, 0, 1, 0, 1, 0, 1, 2, 2, 2, 2}, hC[6];
    float *A, *Bm, *C;
    cudaMalloc(&A, sizeof(hA));
    cudaMalloc(&Bm, sizeof(hB));
    cudaMalloc(&C, sizeof(hC));
    cudaMemcpy(A, hA, sizeof(hA), cudaMemcpyHostToDevice);
    cudaMemcpy(Bm, hB, sizeof(hB), cudaMemcpyHostToDevice);
    cublasHandle_t handle;
    cublasCreate(&handle);
    float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, 2, 3, 4, &one, A, CUDA_R_32F, 4, Bm, CUDA_R_32F,
                                     4, &zero, C, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    cudaMemcpy(hC, C, sizeof(hC), cudaMemcpyDeviceToHost);
    const float want[6] = {5, 13, 6, 14, 20, 52}; // C[i + 2 j] = sum_l A[l + 4 i] B[l + 4 j]
    ok = st == CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < 6; i++) { ok &= hC[i] == want[i]; }
    check(ok, "cublasGemmEx (A transposed) equals the definition");
    st = cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 3, 4, &one, A, CUDA_R_32F, 1, Bm, CUDA_R_32F, 4, &zero, C,
                      CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    check(st == CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx refuses lda < m as cuBLAS does");
    // cuBLASLt's epilogues against their definitions: the bias added to every column; op(B)'s column sums
    float hbias[3] = {0.5f, -1.0f, 0.0f}, *dbias;
    cudaMalloc(&dbias, sizeof(hbias));
    cudaMemcpy(dbias, hbias, sizeof(hbias), cudaMemcpyHostToDevice);
    st = lt_product_(A, Bm, C, CUBLASLT_EPILOGUE_BIAS, dbias, dbias);
    cudaMemcpy(hC, C, sizeof(hC), cudaMemcpyDeviceToHost);
    ok = st == CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < 6; i++) { ok &= hC[i] == want[i] + hbias[i % 2]; }
    check(ok, "cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS equals the definition");
    st = lt_product_(A, Bm, C, CUBLASLT_EPILOGUE_BGRADB, dbias, dbias);
    cudaMemcpy(hbias, dbias, sizeof(hbias), cudaMemcpyDeviceToHost);
    cudaMemcpy(hC, C, sizeof(hC), cudaMemcpyDeviceToHost);
    ok = st == CUBLAS_STATUS_SUCCESS && hbias[0] == 2 && hbias[1] == 2 && hbias[2] == 8;
    for (int i = 0; i < 6; i++) { ok &= hC[i] == want[i]; }
    check(ok, "cublasLtMatmul with CUBLASLT_EPILOGUE_BGRADB writes op(B)'s column sums and the product");
    check((uintptr_t)A % 256 == 0 && (uintptr_t)Bm % 256 == 0 && (uintptr_t)dbias % 256 == 0,
          "cudaMalloc's pointers are 256-byte aligned, as the GPU's");

    // uninitialised device memory reads as NaN
    float* d_fresh;
    float h_fresh[4];
    cudaMalloc(&d_fresh, sizeof(h_fresh));
    cudaMemcpy(h_fresh, d_fresh, sizeof(h_fresh), cudaMemcpyDeviceToHost);
    check(isnan(h_fresh[0]) && isnan(h_fresh[3]), "fresh device memory reads as NaN");

    // a missing barrier: the two thread orders read different values
    float h_race[2][64], *d_race;
    cudaMalloc(&d_race, 64 * sizeof(float));
    for (int order = 0; order < 2; order++) {
        emu::set_order(order == 1 ? emu::ORDER_REVERSE : emu::ORDER_FORWARD);
        race_kernel<<<1, 64>>>(d_race);
        cudaMemcpy(h_race[order], d_race, sizeof(h_race[order]), cudaMemcpyDeviceToHost);
    }
    emu::set_order(emu::ORDER_FORWARD);
    check(memcmp(h_race[0], h_race[1], sizeof(h_race[0])) != 0, "a missing __syncthreads shows: the two orders differ");

    // a warp running ahead into the next reduction: right in forward and reverse order, wrong in warp order
    float h_reuse[3][128], *d_reuse;
    cudaMalloc(&d_reuse, sizeof(h_reuse[0]));
    const int orders[3] = {emu::ORDER_FORWARD, emu::ORDER_REVERSE, emu::ORDER_WARPS};
    for (int o = 0; o < 3; o++) {
        emu::set_order(orders[o]);
        reuse_race_kernel<<<1, 128>>>(d_reuse);
        cudaMemcpy(h_reuse[o], d_reuse, sizeof(h_reuse[o]), cudaMemcpyDeviceToHost);
    }
    emu::set_order(emu::ORDER_FORWARD);
    const float reuse_want = 128.0f + 127.0f * 128.0f / 2.0f;
    check(h_reuse[0][0] == reuse_want && h_reuse[1][0] == reuse_want && h_reuse[2][5] != reuse_want,
          "shared memory reused without a barrier shows only when a warp runs ahead (EMU_ORDER=warps)");

    // launches the GPU refuses: the error comes back from cudaGetLastError
    big_smem_kernel<<<1, 32, 64 * 1024>>>(d_race);
    cudaError_t e1 = cudaGetLastError();
    cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
    big_smem_kernel<<<1, 32, 64 * 1024>>>(d_race);
    cudaError_t e2 = cudaGetLastError();
    write_kernel<<<0, 32>>>(d_race, 64);
    cudaError_t e3 = cudaGetLastError();
    write_kernel<<<1, 2048>>>(d_race, 64);
    cudaError_t e4 = cudaGetLastError();
    check(e1 != cudaSuccess && e2 == cudaSuccess && e3 != cudaSuccess && e4 != cudaSuccess,
          "over 48 KB of shared memory only with the attribute; empty grids and 2048-thread blocks fail");

    // allocations, zero-byte ones included, give back exactly what they took
    size_t free0, free1, total;
    cudaMemGetInfo(&free0, &total);
    float *d_empty, *d_some;
    cudaMalloc(&d_empty, 0);
    cudaMalloc(&d_some, 100);
    cudaFree(d_empty);
    cudaFree(d_some);
    cudaMemGetInfo(&free1, &total);
    check(d_empty != NULL && free1 == free0, "cudaMalloc(0) gives a pointer, and cudaFree returns every byte");

    // pinned staging, an async copy, an event after it: the host may write again once it waited
    int *d_async, *h_async = async_setup_(&d_async), h_back[64];
    cudaEvent_t uploaded;
    cudaEventCreate(&uploaded);
    cudaMemcpyAsync(d_async, h_async, 64 * sizeof(int), cudaMemcpyHostToDevice);
    cudaEventRecord(uploaded);
    int read_ok = h_async[63] == 63; // reading is allowed while the copy is in flight
    cudaEventSynchronize(uploaded);
    h_async[0] = -5;
    cudaMemcpy(h_back, d_async, sizeof(h_back), cudaMemcpyDeviceToHost);
    check(read_ok && h_back[0] == 0 && h_back[63] == 63 && h_async[0] == -5 && cudaFreeHost(h_async) == cudaSuccess,
          "an async copy from pinned memory, then the host writes it after waiting on an event");

    // faults that stop the program
    expect_failure("a float4 load at an address 4 bytes past a 16-byte boundary stops the run",
                   "misaligned address", misaligned_load_);
    expect_failure("a float4 store at an address 8 bytes past a 16-byte boundary stops the run",
                   "misaligned address", misaligned_store_);
    expect_failure("a host pointer passed to a kernel stops the run", "is not device memory", host_pointer_);
    expect_failure("a shuffle in divergent code stops the run", "while other lanes of its warp wait",
                   divergent_shuffle_);
    expect_failure("a cudaMemcpy past the end of an allocation stops the run", "runs past the end", memcpy_past_end_);
    expect_failure("a cudaMemcpy whose kind contradicts its pointers stops the run", "the kind says",
                   memcpy_direction_);
    expect_failure("a cuBLAS operand past its allocation stops the run", "cublasGemmEx (A)", gemm_past_end_);
    expect_failure("the host writing pinned memory before waiting for the async copy stops the run",
                   "while an async copy", async_race_);
    expect_failure("waiting on an event recorded before the copy does not count", "while an async copy",
                   async_event_before_);
    expect_failure("cudaMemcpyAsync from pageable memory stops the run", "not inside a cudaMallocHost",
                   async_pageable_);
    expect_failure("a cuBLASLt algorithm run with a bias less aligned than it was chosen for stops the run",
                   "but the algorithm was chosen for", lt_misaligned_bias_);

    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
