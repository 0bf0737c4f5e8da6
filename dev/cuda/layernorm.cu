/*
LayerNorm forward and backward (train_bert.c's layernorm_forward / layernorm_backward).

Forward versions:
  1: one warp per row, two passes over the row in global memory (cuda/layernorm.cuh, in train_bert.cu)
  2: one block per row, the row cached in shared memory, block reductions
Backward versions:
  1: one warp per row for dinp; dweight/dbias by a (32, 8) block per 32 columns, fixed-order sum (cuda/layernorm.cuh)

  make layernorm && ./layernorm 1     (forward v1, backward v1)
  make layernorm && ./layernorm 2     (forward v2, backward v1)
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes counted: forward reads inp, writes out (+ N mean/rstd): 2 N C 4; backward reads dout, inp, writes dinp
(+ read of dinp for the +=) and reads both again for dweight: 6 N C 4.
*/
#include "common.h"
// defines: cu::layernorm_forward_kernel, cu::layernorm_backward_kernel, cu::layernorm_param_backward_kernel
#include "../../cuda/layernorm.cuh"

// version 2: one block per row, the row in shared memory (C floats, dynamic)
__global__ void layernorm_forward_kernel2(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                          const float* bias, int N, int C, float eps) {
    extern __shared__ float row[];
    __shared__ float red[32];
    int n = blockIdx.x;
    const float* x = inp + (size_t)n * C;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) { row[i] = x[i]; sum += row[i]; }
    float m = block_sum(sum, red) / C;
    float sq = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) { float d = row[i] - m; sq += d * d; }
    float s = 1.0f / sqrtf(block_sum(sq, red) / C + eps);
    float* o = out + (size_t)n * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) { o[i] = (row[i] - m) * s * weight[i] + bias[i]; }
    if (threadIdx.x == 0) { mean[n] = m; rstd[n] = s; }
}

void layernorm_forward(int version, float* out, float* mean, float* rstd, const float* inp, const float* w,
                       const float* b,
                       int N, int C, float eps, int block) {
    switch (version) {
    case 1:
        cu::layernorm_forward_kernel<<<ceil_div(N, block / 32), block>>>(out, mean, rstd, inp, w, b, N, C, eps, 0.0f,
                                                                         1.0f, 0);
        break;
    case 2:
        layernorm_forward_kernel2<<<N, block, C * sizeof(float)>>>(out, mean, rstd, inp, w, b, N, C, eps);
        break;
    default: fprintf(stderr, "unknown forward version %d\n", version); exit(EXIT_FAILURE);
    }
    cudaCheck(cudaGetLastError());
}

void layernorm_backward(int version, float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w,
                        const float* mean, const float* rstd, int N, int C, int block) {
    switch (version) {
    case 1:
        cu::layernorm_backward_kernel<<<ceil_div(N, block / 32), block>>>(dinp, dout, inp, w, mean, rstd, N, C);
        cudaCheck(cudaGetLastError());
        cu::layernorm_param_backward_kernel<<<ceil_div(C, 32), dim3(32, LN_ROWS)>>>(dw, db, dout, inp, mean, rstd, N,
                                                                                    C);
        break;
    default: fprintf(stderr, "unknown backward version %d\n", version); exit(EXIT_FAILURE);
    }
    cudaCheck(cudaGetLastError());
}

int main(int argc, char** argv) {
    int fwd = argc > 1 ? atoi(argv[1]) : 1, bwd = 1;
    if (!require_device("layernorm")) { return 2; }
    int Ns[] = {16 * 25, 16 * 87, 64 * 128}, Cs[] = {384, 768};
    int blocks[] = {64, 128, 256, 512, 1024};
    for (int ni = 0; ni < 3; ni++) {
        for (int ci = 0; ci < 2; ci++) {
            int N = Ns[ni], C = Cs[ci];
            size_t NC = (size_t)N * C;
            float* inp = make_random(NC, 3.0f);
            float* w = make_random(C, 1.0f);
            float* b = make_random(C, 1.0f);
            float* dout = make_random(NC, 1.0f);
            float* out = (float*)mallocCheck(NC * sizeof(float));
            float* mean = (float*)mallocCheck(N * sizeof(float));
            float* rstd = (float*)mallocCheck(N * sizeof(float));
            float* dinp = (float*)callocCheck(NC, sizeof(float));
            float* dw = (float*)callocCheck(C, sizeof(float));
            float* db = (float*)callocCheck(C, sizeof(float));
            layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-12f);
            layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
            float *d_inp = to_device(inp, NC), *d_w = to_device(w, C), *d_b = to_device(b,
                                                                                        C), *d_dout = to_device(dout,
                                                                                                                NC);
            float *d_out, *d_mean, *d_rstd, *d_dinp, *d_dw, *d_db;
            cudaCheck(cudaMalloc(&d_out, NC * 4)); cudaCheck(cudaMalloc(&d_mean, N * 4)); cudaCheck(cudaMalloc(&d_rstd,
                                                                                                               N * 4));
            cudaCheck(cudaMalloc(&d_dinp, NC * 4)); cudaCheck(cudaMalloc(&d_dw, C * 4)); cudaCheck(cudaMalloc(&d_db,
                                                                                                              C * 4));
            printf("N %d C %d\n", N, C);
            for (int bi = 0; bi < 5; bi++) {
                int block = blocks[bi];
                poison(d_out, NC); poison(d_mean, N); poison(d_rstd, N);
                layernorm_forward(fwd, d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, 1e-12f, block);
                printf("  forward v%d block %d\n", fwd, block);
                EXPECT(validate("out", d_out, out, NC, 1e-5));
                EXPECT(validate("mean", d_mean, mean, N, 1e-5));
                EXPECT(validate("rstd", d_rstd, rstd, N, 1e-5));
                // backward accumulates: start from zeros as the CPU reference did (d_mean/d_rstd now valid)
                cudaCheck(cudaMemset(d_dinp, 0, NC * 4)); cudaCheck(cudaMemset(d_dw, 0,
                                                                               C * 4)); cudaCheck(cudaMemset(d_db, 0,
                                                                                                             C * 4));
                layernorm_backward(bwd, d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, N, C, block);
                printf("  backward v%d block %d\n", bwd, block);
                EXPECT(validate("dinp", d_dinp, dinp, NC, 1e-5));
                EXPECT(validate("dweight", d_dw, dw, C, 1e-5));
                EXPECT(validate("dbias", d_db, db, C, 1e-5));
            }
            for (int bi = 0; bi < 5; bi++) {
                int block = blocks[bi];
                float ms = time_ms([&] { layernorm_forward(fwd, d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, 1e-12f,
                                                           block); });
                float msb = time_ms([&] { layernorm_backward(bwd, d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean,
                                                             d_rstd, N, C, block); });
                printf("  block %4d | forward v%d %.4f ms %.0f GB/s | backward v%d %.4f ms %.0f GB/s\n", block, fwd, ms,
                       2.0 * NC * 4 / ms / 1e6, bwd, msb, 6.0 * NC * 4 / msb / 1e6);
            }
            free(inp); free(w); free(b); free(dout); free(out); free(mean); free(rstd); free(dinp); free(dw); free(db);
            cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_dout));
            cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_mean)); cudaCheck(cudaFree(d_rstd));
            cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db));
        }
    }
    printf("layernorm: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
