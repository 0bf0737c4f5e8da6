/*
cuda/layernorm.cuh: train_bert.c's layernorm_forward / layernorm_backward, nn.LayerNorm over the last dim (biased
variance), forward and backward, one warp per row.
Statistics in fp32 with the CPU's two-pass formula (mean, then mean of squared deviations).
The forward can apply dropout to its output (the embeddings: hs[0] = dropout(LN(encoded))).
*/
#pragma once
#include "common.cuh"

namespace cu {

// out (N, C) = dropout((x - mean) * rstd * w + b); mean, rstd (N). One warp per row.
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                         const float* bias, int N, int C, float eps, float p, float pscale,
                                         uint64_t stream, const int* rows) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const float* x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) { sum += x[i]; }
    float m = warp_sum(sum) / C;
    float sq = 0.0f;
    for (int i = lane; i < C; i += 32) { float d = x[i] - m; sq += d * d; }
    float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
    float* o = out + (size_t)row * C;
    for (int i = lane; i < C; i += 32) {
        float y = (x[i] - m) * s * weight[i] + bias[i];
        if (p > 0.0f) { // the mask index is the padded layout's (rows: packed tokens, kernel set 3)
            size_t m = padded_row(row, rows) * C + i;
            y = dropout_uniform(stream, m) >= p ? y * pscale : 0.0f;
        }
        o[i] = y;
    }
    if (lane == 0) { mean[row] = m; rstd[row] = s; }
}

// dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * w. One warp per row.
__global__ void layernorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                          const float* mean, const float* rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const float* d = dout + (size_t)row * C;
    const float* x = inp + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s;
        float dnorm = weight[i] * d[i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean = warp_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
    float* dx = dinp + (size_t)row * C;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s;
        float dnorm = weight[i] * d[i];
        dx[i] += s * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
    }
}

// dweight[i] += sum_n norm[n, i] * dout[n, i], dbias[i] += sum_n dout[n, i].
// Block (32, LN_ROWS): x picks the column, y strides the rows; a fixed-order shared
// reduction over y keeps it deterministic.
#define LN_ROWS 8
__global__ void layernorm_param_backward_kernel(float* dweight, float* dbias, const float* dout, const float* inp,
                                                const float* mean, const float* rstd, int N, int C) {
    __shared__ float sw[LN_ROWS][33], sb[LN_ROWS][33];
    int i = blockIdx.x * 32 + threadIdx.x;
    float dw = 0.0f, db = 0.0f;
    if (i < C) {
        for (int n = threadIdx.y; n < N; n += LN_ROWS) {
            float d = dout[(size_t)n * C + i];
            dw += (inp[(size_t)n * C + i] - mean[n]) * rstd[n] * d;
            db += d;
        }
    }
    sw[threadIdx.y][threadIdx.x] = dw;
    sb[threadIdx.y][threadIdx.x] = db;
    __syncthreads();
    if (threadIdx.y == 0 && i < C) {
        for (int y = 1; y < LN_ROWS; y++) { dw += sw[y][threadIdx.x]; db += sb[y][threadIdx.x]; }
        dweight[i] += dw;
        dbias[i] += db;
    }
}

// rows: packed tokens (kernel set 3): row n is the padded layout's row rows[n], for the dropout masks
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C, float eps, float p, uint64_t stream, const int* rows = NULL) {
    const int block = 256;
    layernorm_forward_kernel<<<ceil_div(N, block / 32), block>>>(out, mean, rstd, inp, weight, bias, N, C, eps, p,
                                                                  1.0f / (1.0f - p), stream, rows);
    kernelCheck();
}

// dweight / dbias may be NULL (frozen)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight,
                        const float* mean, const float* rstd, int N, int C) {
    const int block = 256;
    layernorm_backward_kernel<<<ceil_div(N, block / 32), block>>>(dinp, dout, inp, weight, mean, rstd, N, C);
    kernelCheck();
    if (dweight != NULL) {
        layernorm_param_backward_kernel<<<ceil_div(C, 32), dim3(32, LN_ROWS)>>>(dweight, dbias, dout, inp, mean, rstd,
                                                                                N, C);
        kernelCheck();
    }
}

// ----------------------------------------------------------------------------
// kernel set 2: the residual sum, its dropout and the LayerNorm in one pass, forward and backward.
// A post-LN layer computes r = residual + dropout(x), out = LN(r) (train_bert.c: dropout_forward, then
// layernorm_forward); backward, from dout, dr = LN'(dout), d(residual) = dr and dx = mask * dr (there:
// layernorm_backward, a copy and dropout_backward). One warp per row, the dropout index the CPU's.

// r (N, C) = residual + dropout(x); out (N, C) = (r - mean) * rstd * weight + bias; mean, rstd (N)
__global__ void residual_layernorm_forward_kernel(float* out, float* r, float* mean, float* rstd, const float* x,
                                                 const float* residual, const float* weight, const float* bias, int N,
                                                 int C, float eps, float p, float pscale, uint64_t stream,
                                                 const int* rows) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) { return; }
    size_t base = (size_t)row * C, mbase = padded_row(row, rows) * C; // data, mask index
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float xi = x[base + i];
        if (p > 0.0f) { xi = dropout_uniform(stream, mbase + i) >= p ? xi * pscale : 0.0f; }
        float ri = xi + residual[base + i];
        r[base + i] = ri;
        sum += ri;
    }
    float m = warp_sum(sum) / C;
    float sq = 0.0f;
    for (int i = lane; i < C; i += 32) { float d = r[base + i] - m; sq += d * d; }
    float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
    for (int i = lane; i < C; i += 32) { out[base + i] = (r[base + i] - m) * s * weight[i] + bias[i]; }
    if (lane == 0) { mean[row] = m; rstd[row] = s; }
}

// dresidual (N, C) = LN'(dout), dx (N, C) = mask * dresidual: both overwritten
__global__ void residual_layernorm_backward_kernel(float* dresidual, float* dx, const float* dout, const float* r,
                                                   const float* weight, const float* mean, const float* rstd, int N,
                                                   int C, float p, float pscale, uint64_t stream, const int* rows) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) { return; }
    size_t base = (size_t)row * C, mbase = padded_row(row, rows) * C; // data, mask index
    float m = mean[row], s = rstd[row];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (r[base + i] - m) * s;
        float dnorm = weight[i] * dout[base + i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean = warp_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
    for (int i = lane; i < C; i += 32) {
        float norm = (r[base + i] - m) * s;
        float dnorm = weight[i] * dout[base + i];
        float d = 0.0f + s * (dnorm - dnorm_mean - norm * dnorm_norm_mean); // as layernorm_backward's += into zeros
        dresidual[base + i] = d;
        float dd = d;
        if (p > 0.0f) { dd = dropout_uniform(stream, mbase + i) >= p ? dd * pscale : 0.0f; }
        dx[base + i] = 0.0f + dd;
    }
}

void residual_layernorm_forward(float* out, float* r, float* mean, float* rstd, const float* x, const float* residual,
                                const float* weight, const float* bias, int N, int C, float eps, float p,
                                uint64_t stream, const int* rows = NULL) {
    const int block = 256;
    residual_layernorm_forward_kernel<<<ceil_div(N, block / 32), block>>>(out, r, mean, rstd, x, residual, weight,
                                                                          bias, N, C, eps, p, 1.0f / (1.0f - p),
                                                                          stream, rows);
    kernelCheck();
}

// dweight / dbias (may be NULL: frozen) accumulate, as layernorm_backward's
void residual_layernorm_backward(float* dresidual, float* dx, float* dweight, float* dbias, const float* dout,
                                 const float* r, const float* weight, const float* mean, const float* rstd, int N,
                                 int C, float p, uint64_t stream, const int* rows = NULL) {
    const int block = 256;
    residual_layernorm_backward_kernel<<<ceil_div(N, block / 32), block>>>(dresidual, dx, dout, r, weight, mean, rstd,
                                                                           N, C, p, 1.0f / (1.0f - p), stream, rows);
    kernelCheck();
    if (dweight != NULL) {
        layernorm_param_backward_kernel<<<ceil_div(C, 32), dim3(32, LN_ROWS)>>>(dweight, dbias, dout, r, mean, rstd, N,
                                                                               C);
        kernelCheck();
    }
}

} // namespace cu
