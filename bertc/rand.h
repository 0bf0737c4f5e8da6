/*
bertc/rand.h: counter-based randomness. A dropout mask is a pure function of (seed, step, site,
index), so backward regenerates the forward's mask instead of storing it, a resumed run draws
exactly the masks of an uninterrupted one, and the GPU computes the very same masks: under nvcc
these functions are __host__ __device__, one definition for both sides.

Defines: mix64, dropout_stream, dropout_uniform.
Used by: train_bert.c (dropout, LoRA init), bertc/dataloader.h (the shuffle), the cuda/ kernels (dropout).
*/
#pragma once
#include <stdint.h>

#ifdef __CUDACC__
#define HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HOST_DEVICE static inline
#endif

// the splitmix64 finaliser: a bijection on 64 bits with good avalanche
HOST_DEVICE uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// one stream per (step, site); train_bert.c numbers the sites (bert_stream)
HOST_DEVICE uint64_t dropout_stream(uint64_t seed, uint64_t step, uint64_t site) {
    return mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (step << 16) ^ site);
}

// uniform in [0, 1) with 24 random bits, exact in float; element i keeps its value iff u >= p
HOST_DEVICE float dropout_uniform(uint64_t stream, uint64_t i) {
    return (float)(mix64(stream + i) >> 40) * (1.0f / 16777216.0f);
}
