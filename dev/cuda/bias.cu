/*
The bias gradient of a linear layer (train_bert.c's matmul_backward: dbias[o] += sum_n dout[n, o]).

Versions:
  1: one thread per column walks the rows in order: deterministic, but OC threads of N sequential reads
     (768 threads: a few percent of the machine) (kernel set 1)
  2: two stages: a (32, 8) block per 32 columns and BIAS_CHUNK rows writes the chunk's sums, then one thread per
     column adds the chunks in order: deterministic, every SM busy (kernel set 2)

  make bias && ./bias 1
  make bias && ./bias 2
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Bytes: dout read once, N OC 4 (B T = 32 x 48, OC = 3072: 19 MB, ~6 us at 3 TB/s).
*/
#include "common.h"
#include "../../cuda/matmul.cuh" // defines: cu::Matmul, cu::bias_backward

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (version != 1 && version != 2) { fprintf(stderr, "unknown version %d\n", version); return 1; }
    if (!require_device("bias")) { return 2; }
    int cfgs[][2] = {{32 * 48, 768}, {32 * 48, 2304}, {32 * 48, 3072}, {32 * 87, 3072}, {32, 6}, {5, 768}};
    for (int k = 0; k < 6; k++) {
        int N = cfgs[k][0], OC = cfgs[k][1];
        float* dout = make_random((size_t)N * OC, 1.0f);
        float* dbias = make_random(OC, 1.0f); // accumulates: start from something
        float* d_dbias0 = to_device(dbias, OC);
        float* d_dbias;
        cudaCheck(cudaMalloc(&d_dbias, OC * 4));
        matmul_backward(NULL, NULL, dbias, dout, NULL, NULL, N, 0, OC);
        float* d_dout = to_device(dout, (size_t)N * OC);
        cu::Matmul mm;
        cu::matmul_init(&mm, cu::PRECISION_FP32, version, 0, N, OC);
        cudaCheck(cudaMemcpy(d_dbias, d_dbias0, OC * 4, cudaMemcpyDeviceToDevice));
        cu::bias_backward(&mm, d_dbias, d_dout, N, OC);
        printf("N %d OC %d v%d\n", N, OC, version);
        EXPECT(validate("dbias", d_dbias, dbias, OC, 1e-6));
        float ms = time_ms([&] { cu::bias_backward(&mm, d_dbias, d_dout, N, OC); });
        printf("  %.4f ms %.0f GB/s\n", ms, (double)N * OC * 4 / ms / 1e6);
        cu::matmul_free(&mm);
        free(dout); free(dbias);
        cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dbias)); cudaCheck(cudaFree(d_dbias0));
    }
    printf("bias: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
