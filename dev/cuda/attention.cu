/*
Masked bidirectional attention forward and backward (train_bert.c's attention_forward /
attention_backward), dropout on the probabilities with the shared counter-based masks.

Versions (forward and backward together):
  1: one warp per query row, scores in shared memory; backward in two kernels, per query row
     (datt, softmax backward, dq) and per key row (dk, dv), no atomics; the softmax stored (kernel set 1)
  2: one block per (b, h), the head's keys and values in shared memory; only each softmax row's max and sum are
     kept, and backward recomputes the probabilities (phase 1 per query row: dq and the score gradients, kept in
     shared memory; phase 2 per key row: dk, dv); T <= 128, hs <= 64 (kernel set 2)
  3: version 2 on packed tokens: qkv, out, dout, dqkv hold only the real tokens' rows, sequence b from row
     starts[b]; the masks and stats keep the padded indices (kernel set 3). Checked against the CPU's real rows,
     with dout zero on the padded rows (as in the model, where nothing reads them)

  make attention && ./attention 1
  make attention && ./attention 2
  make attention && ./attention 3
Results (card, ms, GB/s): not run yet; fill in on a GPU.
Validated at p = 0 and p = 0.1: the masks are the CPU's, so the two agree to rounding either way.
Bytes counted (forward): qkv read once 3 B T C 4, out written B T C 4, and in version 1 att written B NH T T 4.
*/
#include "common.h"
#include "../../cuda/attention.cuh" // defines: cu::attention_forward, cu::attention_backward

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (version < 1 || version > 3) { fprintf(stderr, "unknown version %d\n", version); return 1; }
    if (!require_device("attention")) { return 2; }
    // (B, T, C, NH): the emotion batches (mean and max T), MiniLM and bert-base widths, and T = 512
    int cfgs[][4] = {{32, 25, 384, 12}, {32, 87, 768, 12}, {4, 512, 768, 12}, {3, 7, 64, 2}, {2, 128, 768, 12}};
    float ps[] = {0.0f, 0.1f};
    uint64_t stream = dropout_stream(42, 7, 3);
    for (int k = 0; k < 5; k++) {
        if (EMULATED && (k == 1 || k == 2)) { continue; } // bert-base width and T 512: too slow there
        int B = cfgs[k][0], T = cfgs[k][1], C = cfgs[k][2], NH = cfgs[k][3];
        if (version >= 2 && !cu::attention2_fits(T, C, NH)) { printf("B %d T %d: too long for v2\n", B, T); continue; }
        size_t BT = (size_t)B * T, natt = (size_t)B * NH * T * T;
        int* lengths = (int*)mallocCheck(B * sizeof(int));
        for (int b = 0; b < B; b++) { lengths[b] = b == 0 ? T : 1 + (int)((rand_uniform_() + 1.0f) * 0.5f * (T - 1)); }
        float* qkv = make_random(BT * 3 * C, 1.0f);
        float* dout = make_random(BT * C, 1.0f);
        // version 3: the real tokens' rows, packed (rows[n] their padded row, starts[b] where sequence b starts)
        int* rows = (int*)mallocCheck(BT * sizeof(int));
        int* starts = (int*)mallocCheck(B * sizeof(int));
        size_t N = 0;
        for (int b = 0; b < B; b++) {
            starts[b] = (int)N;
            for (int t = 0; t < T; t++) {
                if (t < lengths[b]) { rows[N++] = b * T + t; }
                else if (version == 3) { memset(dout + ((size_t)b * T + t) * C, 0, C * sizeof(float)); }
            }
        }
        if (version != 3) { N = BT; }
        // a (BT, width) tensor's real rows (version 3) or all of it, into packed (N, width)
        auto gather = [&](float* packed, const float* padded, int width) {
            for (size_t n = 0; n < N; n++) {
                size_t src = version == 3 ? (size_t)rows[n] : n;
                memcpy(packed + n * width, padded + src * width, width * sizeof(float));
            }
        };
        float* qkv_in = (float*)mallocCheck(BT * 3 * C * sizeof(float));
        float* dout_in = (float*)mallocCheck(BT * C * sizeof(float));
        float* out_ref = (float*)mallocCheck(BT * C * sizeof(float));
        float* dqkv_ref = (float*)mallocCheck(BT * 3 * C * sizeof(float));
        gather(qkv_in, qkv, 3 * C);
        gather(dout_in, dout, C);
        float* out = (float*)mallocCheck(BT * C * sizeof(float));
        float* att = (float*)mallocCheck(natt * sizeof(float));
        float* dqkv = (float*)mallocCheck(BT * 3 * C * sizeof(float));
        float *d_qkv = to_device(qkv_in, N * 3 * C), *d_dout = to_device(dout_in, N * C);
        float *d_out, *d_att, *d_dqkv, *d_ds, *d_stats;
        int *d_len, *d_starts = NULL;
        cudaCheck(cudaMalloc(&d_out, BT * C * 4)); cudaCheck(cudaMalloc(&d_att, natt * 4));
        cudaCheck(cudaMalloc(&d_dqkv, BT * 3 * C * 4)); cudaCheck(cudaMalloc(&d_ds, natt * 4));
        cudaCheck(cudaMalloc(&d_stats, (size_t)B * NH * T * 2 * 4));
        auto forward = [&](float p) {
            if (version == 1) { cu::attention_forward(d_out, d_att, d_qkv, d_len, B, T, C, NH, p, stream); }
            else { cu::attention_forward2(d_out, d_stats, d_qkv, d_len, B, T, C, NH, p, stream, d_starts); }
        };
        auto backward = [&](float p) {
            if (version == 1) {
                cu::attention_backward(d_dqkv, d_ds, d_dout, d_qkv, d_att, d_len, B, T, C, NH, p, stream);
            }
            else { cu::attention_backward2(d_dqkv, d_dout, d_qkv, d_stats, d_len, B, T, C, NH, p, stream, d_starts); }
        };
        cudaCheck(cudaMalloc(&d_len, B * sizeof(int)));
        cudaCheck(cudaMemcpy(d_len, lengths, B * sizeof(int), cudaMemcpyHostToDevice));
        if (version == 3) {
            cudaCheck(cudaMalloc(&d_starts, B * sizeof(int)));
            cudaCheck(cudaMemcpy(d_starts, starts, B * sizeof(int), cudaMemcpyHostToDevice));
        }
        printf("B %d T %d C %d NH %d\n", B, T, C, NH);
        for (int pi = 0; pi < 2; pi++) {
            float p = ps[pi];
            attention_forward(out, att, qkv, lengths, NULL, B, T, C, NH, p, stream); // padded
            memset(dqkv, 0, BT * 3 * C * sizeof(float));
            attention_backward(dqkv, dout, qkv, att, lengths, NULL, B, T, C, NH, p, stream);
            gather(out_ref, out, C);
            gather(dqkv_ref, dqkv, 3 * C);
            poison(d_out, BT * C); poison(d_att, natt);
            forward(p);
            printf("  v%d p %.1f\n", version, p);
            EXPECT(validate("out", d_out, out_ref, N * C, 1e-5));
            if (version == 1) { EXPECT(validate("att", d_att, att, natt, 1e-5)); }
            cudaCheck(cudaMemset(d_dqkv, 0, BT * 3 * C * 4));
            backward(p);
            EXPECT(validate("dqkv", d_dqkv, dqkv_ref, N * 3 * C, 1e-5));
        }
        float ms = time_ms([&] { forward(0.1f); });
        float msb = time_ms([&] { backward(0.1f); });
        double fbytes = (4.0 * N * C + (version == 1 ? natt : 0)) * 4;
        printf("  v%d | forward %.4f ms %.0f GB/s | backward %.4f ms\n", version, ms, fbytes / ms / 1e6, msb);
        free(lengths); free(qkv); free(dout); free(out); free(att); free(dqkv);
        free(rows); free(starts); free(qkv_in); free(dout_in); free(out_ref); free(dqkv_ref);
        cudaCheck(cudaFree(d_qkv)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_att));
        cudaCheck(cudaFree(d_dqkv)); cudaCheck(cudaFree(d_ds)); cudaCheck(cudaFree(d_len));
        cudaCheck(cudaFree(d_stats)); cudaCheck(cudaFree(d_starts));
    }
    printf("attention: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
