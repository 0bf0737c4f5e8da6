/*
Exact (erf) GELU forward and backward (train_bert.c's gelu_forward / gelu_backward).

Versions:
  1: one thread per element (cuda/gelu.cuh, in train_bert.cu)
  2: four elements per thread through float4 (16-byte loads and stores); N must be a multiple of 4

  make gelu && ./gelu 1
  make gelu && ./gelu 2
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes: forward 2 N 4, backward 3 N 4.
*/
#include "common.h"
#include "../../cuda/gelu.cuh" // defines: cu::gelu_forward_kernel, cu::gelu_backward_kernel

__device__ __forceinline__ float gelu_(float x) { return 0.5f * x * (1.0f + erff(x * GELU_INV_SQRT2)); }
__device__ __forceinline__ float gelu_grad_(float x) {
    return 0.5f * (1.0f + erff(x * GELU_INV_SQRT2)) + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
}

__global__ void gelu_forward_kernel2(float4* out, const float4* inp, size_t N4) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N4) { return; }
    float4 x = inp[i];
    out[i] = make_float4(gelu_(x.x), gelu_(x.y), gelu_(x.z), gelu_(x.w));
}

__global__ void gelu_backward_kernel2(float4* dinp, const float4* inp, const float4* dout, size_t N4) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N4) { return; }
    float4 x = inp[i], d = dout[i];
    dinp[i] = make_float4(d.x * gelu_grad_(x.x), d.y * gelu_grad_(x.y), d.z * gelu_grad_(x.z), d.w * gelu_grad_(x.w));
}

void gelu_fwd(int version, float* out, const float* inp, size_t N, int block) {
    if (version == 1) { cu::gelu_forward_kernel<<<ceil_div(N, block), block>>>(out, inp, N); }
    else if (version == 2) {
        gelu_forward_kernel2<<<ceil_div(N / 4, block), block>>>((float4*)out, (const float4*)inp, N / 4);
    }
    else { fprintf(stderr, "unknown version %d\n", version); exit(EXIT_FAILURE); }
    cudaCheck(cudaGetLastError());
}

void gelu_bwd(int version, float* dinp, const float* inp, const float* dout, size_t N, int block) {
    if (version == 1) { cu::gelu_backward_kernel<<<ceil_div(N, block), block>>>(dinp, inp, dout, N); }
    else if (version == 2) {
        gelu_backward_kernel2<<<ceil_div(N / 4, block), block>>>((float4*)dinp, (const float4*)inp,
                                                                 (const float4*)dout, N / 4);
    }
    else { fprintf(stderr, "unknown version %d\n", version); exit(EXIT_FAILURE); }
    cudaCheck(cudaGetLastError());
}

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (!require_device("gelu")) { return 2; }
    size_t Ns[] = {16 * 25 * 1536, 16 * 87 * 3072, 64 * 512 * 3072}; // (B T FF): MiniLM mean, bert-base max, large
    int blocks[] = {64, 128, 256, 512, 1024};
    for (int k = 0; k < 3; k++) {
        if (EMULATED && k > 0) { continue; }
        size_t N = Ns[k];
        float* inp = make_random(N, 4.0f);
        float* dout = make_random(N, 1.0f);
        float* out = (float*)mallocCheck(N * 4);
        float* dinp = (float*)mallocCheck(N * 4);
        gelu_forward(out, inp, N);
        gelu_backward(dinp, inp, dout, N);
        float *d_inp = to_device(inp, N), *d_dout = to_device(dout, N), *d_out, *d_dinp;
        cudaCheck(cudaMalloc(&d_out, N * 4)); cudaCheck(cudaMalloc(&d_dinp, N * 4));
        printf("N %zu\n", N);
        for (int bi = 0; bi < 5; bi++) {
            poison(d_out, N); poison(d_dinp, N);
            gelu_fwd(version, d_out, d_inp, N, blocks[bi]);
            gelu_bwd(version, d_dinp, d_inp, d_dout, N, blocks[bi]);
            printf("  v%d block %d\n", version, blocks[bi]);
            EXPECT(validate("out", d_out, out, N, 1e-6));
            EXPECT(validate("dinp", d_dinp, dinp, N, 1e-6));
        }
        for (int bi = 0; bi < 5; bi++) {
            int block = blocks[bi];
            float ms = time_ms([&] { gelu_fwd(version, d_out, d_inp, N, block); });
            float msb = time_ms([&] { gelu_bwd(version, d_dinp, d_inp, d_dout, N, block); });
            printf("  block %4d | forward %.4f ms %.0f GB/s | backward %.4f ms %.0f GB/s\n", block, ms,
                   2.0 * N * 4 / ms / 1e6,
                   msb, 3.0 * N * 4 / msb / 1e6);
        }
        free(inp); free(dout); free(out); free(dinp);
        cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_dout));
        cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_dinp));
    }
    printf("gelu: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
