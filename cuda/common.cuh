/*
cuda/common.cuh: what every kernel header of train_bert.cu (and dev/cuda) shares. The check
macros, ceil_div, warp and block reductions. The dropout generator is bertc/rand.h itself,
compiled for both host and device, so the GPU draws train_bert.c's masks bit for bit.
Not a library: only what the BERT trainer needs.
*/
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include "../bertc/rand.h" // defines: dropout_stream, dropout_uniform (__host__ __device__ under nvcc)
#include "../bertc/pack.h" // defines: padded_row, seq_start (__host__ __device__ under nvcc), batch_pack

// ----------------------------------------------------------------------------
// checks: every CUDA and cuBLAS call, and every kernel launch (kernelCheck)

inline void cuda_check(cudaError_t err, const char* file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "[CUDA ERROR] at %s:%d\n%s\n", file, line, cudaGetErrorString(err));
        exit(EXIT_FAILURE);
    }
}
#define cudaCheck(err) cuda_check(err, __FILE__, __LINE__)

inline void cublas_check(cublasStatus_t status, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "[cuBLAS ERROR] %d (%s) at %s:%d\n", (int)status, cublasGetStatusString(status), file, line);
        exit(EXIT_FAILURE);
    }
}
#define cublasCheck(status) cublas_check(status, __FILE__, __LINE__)

// After every launch. Release builds check the launch itself (a fault inside a kernel surfaces at
// the next synchronising call); debug builds (-DCUDA_DEBUG: make train_bertcu_debug test_bertcu_debug,
// meant for compute-sanitizer) synchronise too, so an error is reported at the kernel that made it.
#ifdef CUDA_DEBUG
#define kernelCheck() do { cudaCheck(cudaGetLastError()); cudaCheck(cudaDeviceSynchronize()); } while (0)
#else
#define kernelCheck() cudaCheck(cudaGetLastError())
#endif

static inline int ceil_div(size_t a, size_t b) { return (int)((a + b - 1) / b); }

// ----------------------------------------------------------------------------
// reductions: fp32 everywhere (LayerNorm statistics, softmax, losses)

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) { x += __shfl_xor_sync(0xffffffff, x, o); }
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) { x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, o)); }
    return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// shared must hold 32 floats. Safe to call repeatedly (it syncs before reusing shared).
__device__ __forceinline__ float block_sum(float x, float* shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads();
    if (lane == 0) { shared[warp] = x; }
    __syncthreads();
    x = lane < nwarps ? shared[lane] : 0.0f;
    return warp_sum(x);
}

// Kernel set 3 (packed tokens): a per-token tensor holds only the batch's real tokens. Row n is the padded
// layout's row padded_row(n, rows) (its id, position and dropout mask index); sequence b starts at row
// seq_start(b, T, starts). With rows / starts NULL the tensor is the padded (B, T, ...) one (bertc/pack.h: the
// CPU packs the same way).

// the keep-scale of element i of a dropout mask: 0 (dropped) or 1 / (1 - p); p == 0 keeps everything
__device__ __forceinline__ float dropout_scale(uint64_t stream, uint64_t i, float p, float pscale) {
    if (p <= 0.0f) { return 1.0f; }
    return dropout_uniform(stream, i) >= p ? pscale : 0.0f;
}
