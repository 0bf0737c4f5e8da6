/*
AdamW (train_bert.c's adamw_update, torch.optim.AdamW with clip_grad_norm_'s coefficient folded into the
gradient), over the trainable tensors of a step.

Versions:
  1: one thread per element, one launch per tensor, the clip coefficient from the host (kernel set 1)
  2: as 1 with four elements per thread through float4; each tensor must start 16-byte aligned (a misaligned
     float4 is cudaErrorMisalignedAddress on the card), and its last N % 4 elements go one per thread
  3: the whole step: the norm's sum of squares (deterministic, in double), then one launch over every tensor with
     the clip coefficient computed on the device and the bf16 weight copies written in the same pass (kernel set 2)

  make adamw && ./adamw 1
  make adamw && ./adamw 3
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes per step: param, m, v read and written, grad read: 7 N 4, plus the norm's read of the grads, N 4, and in
version 3 the bf16 copy, N 2 (bert-base, 109.5M: 3.5 GB, ~1.2 ms at 3.0 TB/s). Versions 1 and 2 also pay a host
round trip and one launch per tensor (21 for full fine-tuning).
*/
#include "common.h"
#include "../../cuda/adamw.cuh" // defines: cu::adamw_kernel, cu::grad_sumsq, cu::adamw_fused

__global__ void adamw_kernel2(float4* param, const float4* grad, float4* m, float4* v, size_t N, float lr, float beta1,
                              float beta2, float eps, float wd, float clip, float step_size, float bc2_sqrt) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t N4 = N / 4;
    if (i >= N4) { // the tail: thread N4 + t takes element 4 N4 + t, alone
        size_t j = 4 * N4 + (i - N4);
        if (i - N4 < N % 4) {
            float* p = (float*)param; const float* g = (const float*)grad; float* mm = (float*)m; float* vv = (float*)v;
            float gi = clip < 1.0f ? g[j] * clip : g[j];
            float pk = p[j] * (1.0f - lr * wd);
            mm[j] = mm[j] + (1.0f - beta1) * (gi - mm[j]);
            vv[j] = vv[j] * beta2 + (1.0f - beta2) * gi * gi;
            p[j] = pk - step_size * mm[j] / (sqrtf(vv[j]) / bc2_sqrt + eps);
        }
        return;
    }
    float4 p4 = param[i], g4 = grad[i], m4 = m[i], v4 = v[i];
    float* p = &p4.x; const float* g = &g4.x; float* mm = &m4.x; float* vv = &v4.x;
    #pragma unroll
    for (int k = 0; k < 4; k++) {
        float gi = clip < 1.0f ? g[k] * clip : g[k];
        float pk = p[k] * (1.0f - lr * wd);
        mm[k] = mm[k] + (1.0f - beta1) * (gi - mm[k]);
        vv[k] = vv[k] * beta2 + (1.0f - beta2) * gi * gi;
        p[k] = pk - step_size * mm[k] / (sqrtf(vv[k]) / bc2_sqrt + eps);
    }
    param[i] = p4; m[i] = m4; v[i] = v4;
}

// a step's tensors: NT tensors back to back in one parameter block, gradients and moments flat
#define NT 5
typedef struct {
    size_t sizes[NT];
    int decay[NT];
    size_t total;
} Layout;

// One optimizer step of a version on device buffers. Versions 1 and 2 take the norm on the host, as kernel set 1.
void step(int version, const Layout* lay, float* p, __nv_bfloat16* p16, const float* g, float* m, float* v,
          double* sumsq, double* partials, float lr, float wd, float max_norm, float step_size, float bc2_sqrt,
          int block) {
    if (version == 3) {
        cu::AdamWTable table;
        table.n = NT;
        size_t off = 0;
        for (int k = 0; k < NT; k++) {
            cu::AdamWTensor t = {p + off, p16 != NULL ? p16 + off : NULL, off, lay->sizes[k], lay->decay[k]};
            table.t[k] = t;
            off += lay->sizes[k];
        }
        cu::adamw_fused(&table, g, m, v, lay->total, sumsq, partials, max_norm, lr, 0.9f, 0.999f, 1e-8f, wd,
                        step_size, bc2_sqrt);
        return;
    }
    cu::grad_sumsq(sumsq, partials, g, lay->total);
    double h;
    cudaCheck(cudaMemcpy(&h, sumsq, sizeof(double), cudaMemcpyDeviceToHost));
    float clip = clip_coef((float)sqrt(h), max_norm);
    size_t off = 0;
    for (int k = 0; k < NT; k++) {
        size_t N = lay->sizes[k];
        float w = lay->decay[k] ? wd : 0.0f;
        if (version == 1) {
            cu::adamw_kernel<<<ceil_div(N, block), block>>>(p + off, g + off, m + off, v + off, N, lr, 0.9f, 0.999f,
                                                            1e-8f, w, clip, step_size, bc2_sqrt);
        } else if (version == 2) {
            adamw_kernel2<<<ceil_div(N / 4 + N % 4, block), block>>>((float4*)(p + off), (const float4*)(g + off),
                                                                     (float4*)(m + off), (float4*)(v + off), N, lr,
                                                                     0.9f, 0.999f, 1e-8f, w, clip, step_size,
                                                                     bc2_sqrt);
        } else { fprintf(stderr, "unknown version %d\n", version); exit(EXIT_FAILURE); }
        cudaCheck(cudaGetLastError());
        off += N;
    }
}

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (!require_device("adamw")) { return 2; }
    // LoRA-like (classifier + adapters), MiniLM and bert-base sized steps, each as 5 tensors of mixed decay; the
    // totals are not multiples of 4, so version 2's tail runs at every size (the first runs on the emulator)
    size_t totals[] = {4614 * 4 + 3, 22713222, 109486854};
    int blocks[] = {64, 128, 256, 512, 1024};
    float lr = 1e-3f, wd = 0.01f, step_size = 1e-3f / 0.1f, bc2_sqrt = sqrtf(0.001f);
    for (int k = 0; k < 3; k++) {
        if (EMULATED && k > 0) { continue; }
        // NT tensors of the total, each but the last a multiple of 4 floats, so that every tensor starts 16-byte
        // aligned (as version 2 needs) and the last one has a tail; version 3 walks the total, 1 and 2 the tensors
        Layout lay;
        lay.total = totals[k];
        size_t rest = lay.total;
        for (int t = 0; t < NT; t++) {
            lay.sizes[t] = t < NT - 1 ? lay.total / NT / 4 * 4 : rest;
            rest -= lay.sizes[t];
            lay.decay[t] = t % 2 == 0;
        }
        size_t N = lay.total;
        float* p = make_random(N, 1.0f);
        float* g = make_random(N, sqrtf(3.0f / N)); // a norm near 1, so max_norm 0.5 clips it, as in training
        float* m = make_random(N, 0.1f);
        float* v = make_random(N, 0.1f);
        for (size_t i = 0; i < N; i++) { v[i] = fabsf(v[i]); }
        float *d_p = to_device(p, N), *d_g = to_device(g, N), *d_m = to_device(m, N), *d_v = to_device(v, N);
        // the CPU reference: bert_grad_norm's sum in double, clip_coef, adamw_update per tensor
        double s = 0.0;
        for (size_t i = 0; i < N; i++) { s += (double)g[i] * g[i]; }
        float clip = clip_coef((float)sqrt(s), 0.5f);
        size_t off = 0;
        for (int t = 0; t < NT; t++) {
            adamw_update(p + off, g + off, m + off, v + off, lay.sizes[t], lr, 0.9f, 0.999f, 1e-8f,
                         lay.decay[t] ? wd : 0.0f, clip, step_size, bc2_sqrt);
            off += lay.sizes[t];
        }
        double *d_sumsq, *d_partials;
        cudaCheck(cudaMalloc(&d_sumsq, sizeof(double)));
        cudaCheck(cudaMalloc(&d_partials, NORM_BLOCKS * sizeof(double)));
        __nv_bfloat16* d_p16;
        cudaCheck(cudaMalloc(&d_p16, N * sizeof(__nv_bfloat16)));
        printf("N %zu (clip %.4f)\n", N, clip);
        for (int bi = 0; bi < 5; bi++) {
            // fresh copies of the inputs: the update is in place
            float *e_p = to_device(p, N), *e_m = to_device(m, N), *e_v = to_device(v, N);
            cudaCheck(cudaMemcpy(e_p, d_p, N * 4, cudaMemcpyDeviceToDevice));
            cudaCheck(cudaMemcpy(e_m, d_m, N * 4, cudaMemcpyDeviceToDevice));
            cudaCheck(cudaMemcpy(e_v, d_v, N * 4, cudaMemcpyDeviceToDevice));
            step(version, &lay, e_p, version == 3 ? d_p16 : NULL, d_g, e_m, e_v, d_sumsq, d_partials, lr, wd, 0.5f,
                 step_size, bc2_sqrt, blocks[bi]);
            printf("  v%d block %d\n", version, blocks[bi]);
            EXPECT(validate("param", e_p, p, N, 1e-6));
            EXPECT(validate("m", e_m, m, N, 1e-6));
            EXPECT(validate("v", e_v, v, N, 1e-6));
            if (version == 3) { // the bf16 copy is the rounding of the new weights
                __nv_bfloat16* h16 = (__nv_bfloat16*)mallocCheck(N * sizeof(__nv_bfloat16));
                cudaCheck(cudaMemcpy(h16, d_p16, N * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
                size_t bad = 0;
                for (size_t i = 0; i < N; i++) {
                    if (__bfloat162float(h16[i]) != __bfloat162float(__float2bfloat16_rn(p[i]))) { bad++; }
                }
                printf("    bf16 copy  %zu of %zu differ from bf16(param) %s\n", bad, N, bad == 0 ? "ok" : "FAIL");
                EXPECT(bad == 0);
                free(h16);
            }
            cudaCheck(cudaFree(e_p)); cudaCheck(cudaFree(e_m)); cudaCheck(cudaFree(e_v));
        }
        for (int bi = 0; bi < 5; bi++) {
            int block = blocks[bi];
            float ms = time_ms([&] {
                step(version, &lay, d_p, version == 3 ? d_p16 : NULL, d_g, d_m, d_v, d_sumsq, d_partials, lr, wd, 0.5f,
                     step_size, bc2_sqrt, block);
            });
            double bytes = (8.0 * N + (version == 3 ? 0.5 * N : 0.0)) * 4;
            printf("  block %4d | %.4f ms %.0f GB/s (the whole step, norm included)\n", block, ms, bytes / ms / 1e6);
        }
        free(p); free(g); free(m); free(v);
        cudaCheck(cudaFree(d_p)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v));
        cudaCheck(cudaFree(d_sumsq)); cudaCheck(cudaFree(d_partials)); cudaCheck(cudaFree(d_p16));
    }
    printf("adamw: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
