/*
The embedding backward (train_bert.c's embedding_backward): dwte[id] += dout, dwpe[t] += dout,
dwtt[type] += dout over the batch's real tokens, in the CPU's order (the batches here are sentence
pairs: types 0 then 1).

Versions:
  1: a thread per (column, table) walks every token in order: deterministic, but 3 C threads doing B T sequential
     steps each (kernel set 1)
  2: the host sorts the tokens by id (stably, so each id keeps the CPU's order); a block per (id, 128 columns)
     sums its tokens, a block per (position, 128 columns) sums over the batch; wtt keeps version 1's kernel
     (kernel set 2). The gradients start at zero each step, so 0 + (d1 + d2 + ...) equals the CPU's
     ((0 + d1) + d2) + ...: bit for bit, as the check below asks.

  make embedding && ./embedding 1
  make embedding && ./embedding 2
Results (card, ms): not run yet; fill in on a GPU.
Bytes: dout read once per table (3 B T C 4) and the touched rows of dwte and dwpe read and written.
*/
#include "common.h"
#include "../../cuda/embedding.cuh" // defines: cu::embedding_backward, cu::embedding_backward_sorted, sort_tokens

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (version != 1 && version != 2) { fprintf(stderr, "unknown version %d\n", version); return 1; }
    if (!require_device("embedding")) { return 2; }
    int V = 30522, P = 512;
    int cfgs[][3] = {{32, 48, 768}, {32, 87, 768}, {16, 64, 384}, {1, 5, 64}};
    for (int k = 0; k < 4; k++) {
        int B = cfgs[k][0], T = cfgs[k][1], C = cfgs[k][2];
        size_t BT = (size_t)B * T;
        int* ids = (int*)mallocCheck(BT * sizeof(int));
        int* types = (int*)mallocCheck(BT * sizeof(int));
        int* lengths = (int*)mallocCheck(B * sizeof(int));
        // real-looking batches: lengths 2..T (one of T), frequent ids repeat ([CLS], "i", "feel" ...), pad 0
        for (int b = 0; b < B; b++) { lengths[b] = b == 0 ? T : 2 + (int)((rand_uniform_() + 1.0f) * 0.5f * (T - 2)); }
        for (size_t i = 0; i < BT; i++) {
            float u = (rand_uniform_() + 1.0f) * 0.5f;
            ids[i] = u < 0.3f ? 101 + (int)(u * 20) : (int)(u * (V - 1));
            types[i] = (int)(i % T) >= lengths[i / T] / 2; // a sequence's second half is text b
        }
        float* dout = make_random(BT * C, 1.0f);
        float* dwte = (float*)callocCheck((size_t)V * C, sizeof(float));
        float* dwpe = (float*)callocCheck((size_t)P * C, sizeof(float));
        float* dwtt = (float*)callocCheck(2 * (size_t)C, sizeof(float));
        // the CPU reference reads the real tokens' rows only (packed): gather them from the padded dout
        int* rows = (int*)mallocCheck(BT * sizeof(int));
        int* starts = (int*)mallocCheck(B * sizeof(int));
        int N = batch_pack(rows, starts, lengths, B, T);
        float* dout_packed = (float*)mallocCheck((size_t)N * C * sizeof(float));
        for (int n = 0; n < N; n++) {
            memcpy(dout_packed + (size_t)n * C, dout + (size_t)rows[n] * C, C * sizeof(float));
        }
        embedding_backward(dwte, dwpe, dwtt, dout_packed, ids, types, rows, N, T, C);
        free(rows); free(starts); free(dout_packed);
        int *d_ids, *d_types, *d_lengths, *d_tokens, *d_runs, *d_run_ids;
        cudaCheck(cudaMalloc(&d_ids, BT * sizeof(int)));
        cudaCheck(cudaMalloc(&d_types, BT * sizeof(int)));
        cudaCheck(cudaMalloc(&d_lengths, B * sizeof(int)));
        cudaCheck(cudaMalloc(&d_tokens, BT * sizeof(int)));
        cudaCheck(cudaMalloc(&d_runs, (BT + 1) * sizeof(int)));
        cudaCheck(cudaMalloc(&d_run_ids, BT * sizeof(int)));
        cudaCheck(cudaMemcpy(d_ids, ids, BT * sizeof(int), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(d_types, types, BT * sizeof(int), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(d_lengths, lengths, B * sizeof(int), cudaMemcpyHostToDevice));
        float *d_dout = to_device(dout, BT * C), *d_dwte, *d_dwpe, *d_dwtt;
        cudaCheck(cudaMalloc(&d_dwte, (size_t)V * C * 4));
        cudaCheck(cudaMalloc(&d_dwpe, (size_t)P * C * 4));
        cudaCheck(cudaMalloc(&d_dwtt, 2 * (size_t)C * 4));
        int* sort_host = (int*)mallocCheck((3 * BT + 1) * sizeof(int));
        auto run = [&]() {
            if (version == 1) {
                cu::embedding_backward(d_dwte, d_dwpe, d_dwtt, d_dout, d_ids, d_types, d_lengths,
                                       B, T, C);
                return;
            }
            int ntok, *tokens = sort_host, *runs = tokens + BT, *run_ids = runs + BT + 1;
            int nruns = cu::embedding_sort_tokens(tokens, runs, run_ids, ids, lengths, B, T, NULL, &ntok);
            cudaCheck(cudaMemcpy(d_tokens, tokens, ntok * sizeof(int), cudaMemcpyHostToDevice));
            cudaCheck(cudaMemcpy(d_runs, runs, (nruns + 1) * sizeof(int), cudaMemcpyHostToDevice));
            cudaCheck(cudaMemcpy(d_run_ids, run_ids, nruns * sizeof(int), cudaMemcpyHostToDevice));
            cu::embedding_backward_sorted(d_dwte, d_dwpe, d_dwtt, d_dout, d_ids, d_types, d_lengths,
                                          d_tokens, d_runs, d_run_ids, nruns, B, T, C);
        };
        cudaCheck(cudaMemset(d_dwte, 0, (size_t)V * C * 4));
        cudaCheck(cudaMemset(d_dwpe, 0, (size_t)P * C * 4));
        cudaCheck(cudaMemset(d_dwtt, 0, 2 * (size_t)C * 4));
        run();
        printf("B %d T %d C %d v%d\n", B, T, C, version);
        // bit for bit: the same sums in the same order
        float* got = (float*)mallocCheck((size_t)V * C * 4);
        const char* names[] = {"dwte", "dwpe", "dwtt"};
        float* refs[] = {dwte, dwpe, dwtt};
        float* devs[] = {d_dwte, d_dwpe, d_dwtt};
        size_t sizes[] = {(size_t)V * C, (size_t)P * C, 2 * (size_t)C};
        for (int t = 0; t < 3; t++) {
            cudaCheck(cudaMemcpy(got, devs[t], sizes[t] * 4, cudaMemcpyDeviceToHost));
            int same = memcmp(got, refs[t], sizes[t] * 4) == 0;
            printf("    %-5s %s\n", names[t], same ? "bit for bit ok" : "FAIL (differs from the CPU)");
            EXPECT(same);
        }
        float ms = time_ms(run);
        printf("  %.4f ms (the host's sort and copies included in v2)\n", ms);
        free(types);
        free(ids); free(lengths); free(dout); free(dwte); free(dwpe); free(dwtt); free(got); free(sort_host);
        cudaCheck(cudaFree(d_types));
        cudaCheck(cudaFree(d_ids)); cudaCheck(cudaFree(d_lengths)); cudaCheck(cudaFree(d_tokens));
        cudaCheck(cudaFree(d_runs)); cudaCheck(cudaFree(d_run_ids)); cudaCheck(cudaFree(d_dout));
        cudaCheck(cudaFree(d_dwte)); cudaCheck(cudaFree(d_dwpe)); cudaCheck(cudaFree(d_dwtt));
    }
    printf("embedding: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
