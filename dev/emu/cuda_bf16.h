/*
dev/emu/cuda_bf16.h: __nv_bfloat16 for the CPU emulation (see cuda_runtime.h beside it): the 16 high bits
of a float, rounded to nearest even as __float2bfloat16_rn does (NaN stays NaN).
*/
#pragma once
#include "cuda_runtime.h"

struct alignas(2) __nv_bfloat16 {
    unsigned short x;
};
// two bf16 as one 4-byte vector: a load or store of one must be 4-byte aligned (see float4 in cuda_runtime.h)
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.x = (unsigned short)((u >> 16) | 0x40);
        return r;
    } // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    r.x = (unsigned short)(u >> 16);
    return r;
}

static inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
