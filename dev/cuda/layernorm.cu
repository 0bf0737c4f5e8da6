/*
LayerNorm forward and backward (train_bert.c's layernorm_forward / layernorm_backward), and the fused residual
versions of kernel set 2 (dropout_forward + layernorm_forward, and layernorm_backward + a copy + dropout_backward).

Forward versions:
  1: one warp per row, two passes over the row in global memory (cuda/layernorm.cuh, kernel set 1)
  2: one block per row, the row cached in shared memory, block reductions
  3: r = residual + dropout(x) and LN(r) in one warp-per-row pass (cuda/layernorm.cuh, kernel set 2)
Backward versions:
  1: one warp per row for dinp; dweight/dbias by a (32, 8) block per 32 columns, fixed-order sum (kernel set 1)
  2: the residual backward: dresidual = LN'(dout) and dx = mask * dresidual in one pass, then the same
     dweight/dbias kernel (kernel set 2); it replaces kernel set 1's 2 memsets, a copy and a dropout launch

  make layernorm && ./layernorm 1 1     (forward v1, backward v1)
  make layernorm && ./layernorm 2 1
  make layernorm && ./layernorm 3 2     (the fused residual pair, dropout 0.1)
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes: forward 1, 2 read inp and write out: 2 N C 4; forward 3 reads x and residual, writes r and out: 4 N C 4
(kernel set 1 does that in two launches moving 5 N C 4). Backward 1 reads dout, inp, writes dinp (+ a read of dinp
for the +=), and reads both again for dweight: 6 N C 4; backward 2 writes two outputs: 6 N C 4 (kernel set 1: the
same plus memsets, a copy and the dropout pass, 13 N C 4).
*/
#include "common.h"
#include "../../cuda/layernorm.cuh" // defines: cu::layernorm_*_kernel, cu::residual_layernorm_*_kernel

// version 2: one block per row, the row in shared memory (C floats, dynamic)
__global__ void layernorm_forward_kernel2(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                          const float* bias, int N, int C, float eps) {
    extern __shared__ float row[];
    __shared__ float red[32];
    int n = blockIdx.x;
    if (n >= N) { return; } // the whole block: one block per row
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

// Forward. Versions 1 and 2: out = LN(inp). Version 3: r = res + dropout(inp), out = LN(r).
void layernorm_forward(int version, float* out, float* r, float* mean, float* rstd, const float* inp, const float* res,
                       const float* w, const float* b, int N, int C, float p, uint64_t stream, int block) {
    switch (version) {
    case 1:
        cu::layernorm_forward_kernel<<<ceil_div(N, block / 32), block>>>(out, mean, rstd, inp, w, b, N, C, 1e-12f,
                                                                         0.0f, 1.0f, 0, NULL);
        break;
    case 2:
        layernorm_forward_kernel2<<<N, block, C * sizeof(float)>>>(out, mean, rstd, inp, w, b, N, C, 1e-12f);
        break;
    case 3:
        cu::residual_layernorm_forward_kernel<<<ceil_div(N, block / 32), block>>>(out, r, mean, rstd, inp, res, w, b, N,
                                                                                  C, 1e-12f, p, 1.0f / (1.0f - p),
                                                                                  stream, NULL);
        break;
    default: fprintf(stderr, "unknown forward version %d\n", version); exit(EXIT_FAILURE);
    }
    cudaCheck(cudaGetLastError());
}

// Backward. Version 1: dinp += LN'(dout). Version 2: dinp = LN'(dout), dx = mask * dinp (both overwritten).
// Both: dw, db += the parameter gradients.
void layernorm_backward(int version, float* dinp, float* dx, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int N, int C, float p, uint64_t stream,
                        int block) {
    switch (version) {
    case 1:
        cu::layernorm_backward_kernel<<<ceil_div(N, block / 32), block>>>(dinp, dout, inp, w, mean, rstd, N, C);
        break;
    case 2:
        cu::residual_layernorm_backward_kernel<<<ceil_div(N, block / 32), block>>>(dinp, dx, dout, inp, w, mean, rstd,
                                                                                   N, C, p, 1.0f / (1.0f - p), stream,
                                                                                   NULL);
        break;
    default: fprintf(stderr, "unknown backward version %d\n", version); exit(EXIT_FAILURE);
    }
    cudaCheck(cudaGetLastError());
    cu::layernorm_param_backward_kernel<<<ceil_div(C, 32), dim3(32, LN_ROWS)>>>(dw, db, dout, inp, mean, rstd, N, C);
    cudaCheck(cudaGetLastError());
}

static float* device_zeros_(size_t n) {
    float* d;
    cudaCheck(cudaMalloc(&d, n * sizeof(float)));
    cudaCheck(cudaMemset(d, 0, n * sizeof(float)));
    return d;
}

int main(int argc, char** argv) {
    int fwd = argc > 1 ? atoi(argv[1]) : 1, bwd = argc > 2 ? atoi(argv[2]) : 1;
    if (!require_device("layernorm")) { return 2; }
    int fused = fwd == 3; // the residual pair: dropout 0.1 and a residual input
    if (fused != (bwd == 2)) { fprintf(stderr, "forward 3 goes with backward 2, 1 and 2 with 1\n"); return 1; }
    float p = fused ? 0.1f : 0.0f;
    uint64_t stream = dropout_stream(42, 7, 3);
    int Ns[] = {32 * 25, 32 * 87, 64 * 128}, Cs[] = {384, 768};
    int blocks[] = {64, 128, 256, 512, 1024};
    for (int ni = 0; ni < 3; ni++) {
        if (EMULATED && ni > 0) { continue; }
        for (int ci = 0; ci < 2; ci++) {
            int N = Ns[ni], C = Cs[ci];
            size_t NC = (size_t)N * C;
            float* inp = make_random(NC, 3.0f);
            float* res = make_random(NC, 1.0f);
            float* w = make_random(C, 1.0f);
            float* b = make_random(C, 1.0f);
            float* dout = make_random(NC, 1.0f);
            float* out = (float*)mallocCheck(NC * sizeof(float));
            float* r = (float*)mallocCheck(NC * sizeof(float));
            float* mean = (float*)mallocCheck(N * sizeof(float));
            float* rstd = (float*)mallocCheck(N * sizeof(float));
            float* dinp = (float*)callocCheck(NC, sizeof(float));
            float* dx = (float*)callocCheck(NC, sizeof(float));
            float* dw = (float*)callocCheck(C, sizeof(float));
            float* db = (float*)callocCheck(C, sizeof(float));
            // the CPU reference, train_bert.c's own layers
            const float* ln_in = inp;
            if (fused) { dropout_forward(r, inp, res, NULL, N, C, p, stream); ln_in = r; }
            layernorm_forward(out, mean, rstd, ln_in, w, b, N, C, 1e-12f);
            layernorm_backward(dinp, dw, db, dout, ln_in, w, mean, rstd, N, C);
            if (fused) { dropout_backward(dx, dinp, NULL, N, C, p, stream); }
            float *d_inp = to_device(inp, NC), *d_res = to_device(res, NC), *d_w = to_device(w, C);
            float *d_b = to_device(b, C), *d_dout = to_device(dout, NC);
            float *d_out = device_zeros_(NC), *d_r = device_zeros_(NC), *d_mean = device_zeros_(N);
            float *d_rstd = device_zeros_(N), *d_dinp = device_zeros_(NC), *d_dx = device_zeros_(NC);
            float *d_dw = device_zeros_(C), *d_db = device_zeros_(C);
            printf("N %d C %d\n", N, C);
            for (int bi = 0; bi < 5; bi++) {
                int block = blocks[bi];
                poison(d_out, NC); poison(d_mean, N); poison(d_rstd, N); poison(d_r, NC);
                layernorm_forward(fwd, d_out, d_r, d_mean, d_rstd, d_inp, d_res, d_w, d_b, N, C, p, stream, block);
                printf("  forward v%d block %d\n", fwd, block);
                EXPECT(validate("out", d_out, out, NC, 1e-5));
                EXPECT(validate("mean", d_mean, mean, N, 1e-5));
                EXPECT(validate("rstd", d_rstd, rstd, N, 1e-5));
                if (fused) { EXPECT(validate("r", d_r, r, NC, 1e-7)); }
                // version 1 accumulates into dinp, version 2 overwrites it (poisoned first, so every element counts)
                const float* d_ln_in = fused ? d_r : d_inp;
                if (fused) { poison(d_dinp, NC); poison(d_dx, NC); } else { cudaCheck(cudaMemset(d_dinp, 0, NC * 4)); }
                cudaCheck(cudaMemset(d_dw, 0, C * 4));
                cudaCheck(cudaMemset(d_db, 0, C * 4));
                layernorm_backward(bwd, d_dinp, d_dx, d_dw, d_db, d_dout, d_ln_in, d_w, d_mean, d_rstd, N, C, p, stream,
                                   block);
                printf("  backward v%d block %d\n", bwd, block);
                EXPECT(validate("dinp", d_dinp, dinp, NC, 1e-5));
                if (fused) { EXPECT(validate("dx", d_dx, dx, NC, 1e-5)); }
                EXPECT(validate("dweight", d_dw, dw, C, 1e-5));
                EXPECT(validate("dbias", d_db, db, C, 1e-5));
            }
            for (int bi = 0; bi < 5; bi++) {
                int block = blocks[bi];
                const float* d_ln_in = fused ? d_r : d_inp;
                float ms = time_ms([&] {
                    layernorm_forward(fwd, d_out, d_r, d_mean, d_rstd, d_inp, d_res, d_w, d_b, N, C, p, stream, block);
                });
                float msb = time_ms([&] {
                    layernorm_backward(bwd, d_dinp, d_dx, d_dw, d_db, d_dout, d_ln_in, d_w, d_mean, d_rstd, N, C, p,
                                       stream, block);
                });
                double fbytes = (fused ? 4.0 : 2.0) * NC * 4, bbytes = 6.0 * NC * 4;
                printf("  block %4d | forward v%d %.4f ms %.0f GB/s | backward v%d %.4f ms %.0f GB/s\n", block, fwd, ms,
                       fbytes / ms / 1e6, bwd, msb, bbytes / msb / 1e6);
            }
            float* host[] = {inp, res, w, b, dout, out, r, mean, rstd, dinp, dx, dw, db};
            for (size_t k = 0; k < sizeof(host) / sizeof(host[0]); k++) { free(host[k]); }
            float* dev[] = {d_inp, d_res, d_w, d_b, d_dout, d_out, d_r, d_mean, d_rstd, d_dinp, d_dx, d_dw, d_db};
            for (size_t k = 0; k < sizeof(dev) / sizeof(dev[0]); k++) { cudaCheck(cudaFree(dev[k])); }
        }
    }
    printf("layernorm: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
