/*
Shared by every kernel header of train_bert.cu and by dev/cuda: the check macros,
ceil_div, warp and block reductions, and the device copy of train_bert.c's
counter-based dropout generator (bit for bit the same masks as the CPU).
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

// ----------------------------------------------------------------------------
// checks: every CUDA and cuBLAS call, every launch (cudaCheck(cudaGetLastError()))

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

static inline int ceil_div(size_t a, size_t b) { return (int)((a + b - 1) / b); }

// ----------------------------------------------------------------------------
// reductions: fp32 everywhere (LayerNorm statistics, softmax, losses, norms)

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

// ----------------------------------------------------------------------------
// dropout randomness: the same functions as train_bert.c's mix64_ / dropout_stream /
// dropout_uniform, callable on both sides so a host check can prove they agree.
// Integer arithmetic only, so the masks are identical bit for bit.

__host__ __device__ __forceinline__ uint64_t mix64_cu(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

__host__ __device__ __forceinline__ uint64_t dropout_stream_cu(uint64_t seed, uint64_t step, uint64_t site) {
    return mix64_cu(mix64_cu(seed + 0x9e3779b97f4a7c15ULL) ^ (step << 16) ^ site);
}

// uniform in [0, 1) with 24 random bits: exact in float, so the comparison with p is too
__host__ __device__ __forceinline__ float dropout_uniform_cu(uint64_t stream, uint64_t i) {
    return (float)(mix64_cu(stream + i) >> 40) * (1.0f / 16777216.0f);
}

// the keep-scale of element i: 0 (dropped) or 1 / (1 - p); p == 0 keeps everything at 1
__device__ __forceinline__ float dropout_scale_cu(uint64_t stream, uint64_t i, float p, float pscale) {
    if (p <= 0.0f) { return 1.0f; }
    return dropout_uniform_cu(stream, i) >= p ? pscale : 0.0f;
}
