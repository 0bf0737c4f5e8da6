/*
AdamW over one flat tensor, as train_bert.c's bert_update inner loop (torch.optim.AdamW with
clip_grad_norm_'s coefficient folded into the gradient).

Versions:
  1: one thread per element (cuda/adamw.cuh, in train_bert.cu: one launch per trainable tensor)
  2: four elements per thread through float4; N must be a multiple of 4

  make adamw && ./adamw 1
  make adamw && ./adamw 2
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes: param, m, v read and written, grad read: 7 N 4 (bert-base, 110M: 3.1 GB, ~1.0 ms at 3.0 TB/s).
*/
#include "common.h"
#include "../../cuda/adamw.cuh" // defines: cu::adamw_kernel

// the CPU reference: bert_update's loop for one tensor
static void adamw_cpu(float* param, const float* grad, float* m, float* v, size_t N, float lr, float beta1, float beta2,
                      float eps, float wd, float clip, float step_size, float bc2_sqrt) {
    for (size_t i = 0; i < N; i++) {
        float gi = clip < 1.0f ? grad[i] * clip : grad[i];
        param[i] *= 1.0f - lr * wd;
        m[i] += (1.0f - beta1) * (gi - m[i]);
        v[i] = v[i] * beta2 + (1.0f - beta2) * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        param[i] -= step_size * m[i] / denom;
    }
}

__global__ void adamw_kernel2(float4* param, const float4* grad, float4* m, float4* v, size_t N4, float lr, float beta1,
                              float beta2, float eps, float wd, float clip, float step_size, float bc2_sqrt) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N4) { return; }
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

void adamw(int version, float* p, const float* g, float* m, float* v, size_t N, float lr, float wd, float clip,
           float step_size, float bc2_sqrt, int block) {
    if (version == 1) {
        cu::adamw_kernel<<<ceil_div(N, block), block>>>(p, g, m, v, N, lr, 0.9f, 0.999f, 1e-8f, wd, clip, step_size,
                                                        bc2_sqrt);
    }
    else if (version == 2) {
        adamw_kernel2<<<ceil_div(N / 4, block), block>>>((float4*)p, (const float4*)g, (float4*)m, (float4*)v, N / 4,
                                                         lr, 0.9f,
                                                         0.999f, 1e-8f, wd, clip, step_size, bc2_sqrt);
    } else { fprintf(stderr, "unknown version %d\n", version); exit(EXIT_FAILURE); }
    cudaCheck(cudaGetLastError());
}

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (!require_device("adamw")) { return 2; }
    size_t Ns[] = {4616, 22713216, 109486854 / 4 * 4}; // LoRA-ish, MiniLM, bert-base (rounded to 4)
    int blocks[] = {64, 128, 256, 512, 1024};
    float lr = 1e-3f, wd = 0.01f, step_size = 1e-3f / 0.1f, bc2_sqrt = sqrtf(0.001f);
    for (int k = 0; k < 3; k++) {
        size_t N = Ns[k];
        float* p = make_random(N, 1.0f);
        float* g = make_random(N, 1.0f);
        float* m = make_random(N, 0.1f);
        float* v = make_random(N, 0.1f);
        for (size_t i = 0; i < N; i++) { v[i] = fabsf(v[i]); }
        float *d_p = to_device(p, N), *d_g = to_device(g, N), *d_m = to_device(m, N), *d_v = to_device(v, N);
        adamw_cpu(p, g, m, v, N, lr, 0.9f, 0.999f, 1e-8f, wd, 0.5f, step_size, bc2_sqrt);
        printf("N %zu\n", N);
        for (int bi = 0; bi < 5; bi++) {
            // fresh copies of the inputs: the update is in place
            float *e_p = to_device(p, N), *e_m, *e_v;
            cudaCheck(cudaMemcpy(e_p, d_p, N * 4, cudaMemcpyDeviceToDevice));
            e_m = to_device(m, N); cudaCheck(cudaMemcpy(e_m, d_m, N * 4, cudaMemcpyDeviceToDevice));
            e_v = to_device(v, N); cudaCheck(cudaMemcpy(e_v, d_v, N * 4, cudaMemcpyDeviceToDevice));
            adamw(version, e_p, d_g, e_m, e_v, N, lr, wd, 0.5f, step_size, bc2_sqrt, blocks[bi]);
            printf("  v%d block %d\n", version, blocks[bi]);
            EXPECT(validate("param", e_p, p, N, 1e-6));
            EXPECT(validate("m", e_m, m, N, 1e-6));
            EXPECT(validate("v", e_v, v, N, 1e-6));
            cudaCheck(cudaFree(e_p)); cudaCheck(cudaFree(e_m)); cudaCheck(cudaFree(e_v));
        }
        for (int bi = 0; bi < 5; bi++) {
            int block = blocks[bi];
            float ms = time_ms([&] { adamw(version, d_p, d_g, d_m, d_v, N, lr, wd, 0.5f, step_size, bc2_sqrt,
                                           block); });
            printf("  block %4d | %.4f ms %.0f GB/s\n", block, ms, 7.0 * N * 4 / ms / 1e6);
        }
        free(p); free(g); free(m); free(v);
        cudaCheck(cudaFree(d_p)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v));
    }
    printf("adamw: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
