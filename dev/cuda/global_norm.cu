/*
Global L2 norm of the gradients (torch.nn.utils.clip_grad_norm_), as train_bert.c's bert_grad_norm:
squares summed in double.

Versions:
  1: fixed grid of NORM_BLOCKS, per-block double partials, then one thread sums them in order:
     deterministic (cuda/adamw.cuh, in train_bert.cu)
  2: one pass, per-block double sums added with atomicAdd: not bitwise deterministic

  make global_norm && ./global_norm 1
  make global_norm && ./global_norm 2
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes: N 4 read once (bert-base 110M: 0.44 GB, ~0.15 ms at 3.0 TB/s).
*/
#include "common.h"
#include "../../cuda/adamw.cuh" // defines: cu::grad_sumsq

__global__ void grad_sumsq_kernel2(double* out, const float* grad, size_t N) {
    __shared__ double shared[32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (size_t)gridDim.x * blockDim.x) {
        double g = grad[i];
        s += g * g;
    }
    for (int o = 16; o > 0; o >>= 1) { s += __shfl_xor_sync(0xffffffff, s, o); }
    if (threadIdx.x % 32 == 0) { shared[threadIdx.x / 32] = s; }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < (int)blockDim.x / 32; w++) { total += shared[w]; }
        atomicAdd(out, total);
    }
}

double norm_gpu(int version, double* d_out, double* d_partials, const float* d_g, size_t N, int block) {
    if (version == 1) { cu::grad_sumsq(d_out, d_partials, d_g, N); }
    else if (version == 2) {
        cudaCheck(cudaMemset(d_out, 0, sizeof(double)));
        grad_sumsq_kernel2<<<132 * 2, block>>>(d_out, d_g, N);
        cudaCheck(cudaGetLastError());
    } else { fprintf(stderr, "unknown version %d\n", version); exit(EXIT_FAILURE); }
    double s;
    cudaCheck(cudaMemcpy(&s, d_out, sizeof(double), cudaMemcpyDeviceToHost));
    return sqrt(s);
}

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (!require_device("global_norm")) { return 2; }
    size_t Ns[] = {4616, 22713216, 109486854};
    int blocks[] = {64, 128, 256, 512, 1024};
    double *d_out, *d_partials;
    cudaCheck(cudaMalloc(&d_out, sizeof(double)));
    cudaCheck(cudaMalloc(&d_partials, NORM_BLOCKS * sizeof(double)));
    for (int k = 0; k < 3; k++) {
        if (EMULATED && k > 0) { continue; }
        size_t N = Ns[k];
        float* g = make_random(N, 1e-3f);
        double ref = 0.0;
        for (size_t i = 0; i < N; i++) { ref += (double)g[i] * g[i]; }
        ref = sqrt(ref);
        float* d_g = to_device(g, N);
        printf("N %zu reference norm %.9e\n", N, ref);
        for (int bi = 0; bi < 5; bi++) {
            int block = version == 1 ? NORM_THREADS : blocks[bi]; // v1's block size is fixed by its shared array
            double got = norm_gpu(version, d_out, d_partials, d_g, N, block);
            double rel = fabs(got - ref) / ref;
            printf("  v%d block %d norm %.9e rel err %.2e %s\n", version, block, got, rel,
                   rel <= 1e-12 ? "ok" : "FAIL");
            EXPECT(rel <= 1e-12);
        }
        for (int bi = 0; bi < 5; bi++) {
            int block = version == 1 ? NORM_THREADS : blocks[bi];
            float ms = time_ms([&] { norm_gpu(version, d_out, d_partials, d_g, N, block); });
            printf("  block %4d | %.4f ms %.0f GB/s (includes the 8-byte copy back)\n", block, ms, 4.0 * N / ms / 1e6);
        }
        free(g);
        cudaCheck(cudaFree(d_g));
    }
    cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_partials));
    printf("global_norm: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
