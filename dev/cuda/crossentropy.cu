/*
Softmax cross-entropy forward (probs, per-example losses) and backward (dlogits), as
train_bert.c's crossentropy_forward / crossentropy_backward. B rows of NC = 6: launch-bound.

Versions:
  1: one thread per row forward, one per element backward (cuda/classifier.cuh, in train_bert.cu)

  make crossentropy && ./crossentropy 1
Results (card, ms): not run yet; fill in on a GPU. Expect launch latency (~3-5 us), not bandwidth.
*/
#include "common.h"
#include "../../cuda/crossentropy.cuh" // defines: cu::crossentropy_forward, cu::crossentropy_backward

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (version != 1) { fprintf(stderr, "unknown version %d\n", version); return 1; }
    if (!require_device("crossentropy")) { return 2; }
    int cfgs[][2] = {{16, 6}, {1, 6}, {1024, 6}, {64, 1000}};
    for (int k = 0; k < 4; k++) {
        int B = cfgs[k][0], NC = cfgs[k][1];
        size_t n = (size_t)B * NC;
        float* logits = make_random(n, 8.0f);
        int* labels = (int*)mallocCheck(B * sizeof(int));
        for (int b = 0; b < B; b++) { labels[b] = (int)((rand_uniform_() + 1.0f) * 0.5f * NC) % NC; }
        float* losses = (float*)mallocCheck(B * 4);
        float* probs = (float*)mallocCheck(n * 4);
        float* dlogits = (float*)mallocCheck(n * 4);
        crossentropy_forward(losses, probs, logits, labels, B, NC);
        crossentropy_backward(dlogits, probs, labels, B, NC);
        float *d_logits = to_device(logits, n), *d_losses, *d_probs, *d_dlogits;
        int* d_labels;
        cudaCheck(cudaMalloc(&d_losses, B * 4)); cudaCheck(cudaMalloc(&d_probs,
                                                                      n * 4)); cudaCheck(cudaMalloc(&d_dlogits, n * 4));
        cudaCheck(cudaMalloc(&d_labels, B * sizeof(int)));
        cudaCheck(cudaMemcpy(d_labels, labels, B * sizeof(int), cudaMemcpyHostToDevice));
        poison(d_losses, B); poison(d_probs, n); poison(d_dlogits, n);
        cu::crossentropy_forward(d_losses, d_probs, d_logits, d_labels, B, NC);
        cu::crossentropy_backward(d_dlogits, d_probs, d_labels, B, NC);
        printf("B %d NC %d v%d\n", B, NC, version);
        EXPECT(validate("losses", d_losses, losses, B, 1e-6));
        EXPECT(validate("probs", d_probs, probs, n, 1e-6));
        EXPECT(validate("dlogits", d_dlogits, dlogits, n, 1e-6));
        float ms = time_ms([&] {
            cu::crossentropy_forward(d_losses, d_probs, d_logits, d_labels, B, NC);
            cu::crossentropy_backward(d_dlogits, d_probs, d_labels, B, NC);
        });
        printf("  forward + backward %.4f ms\n", ms);
        free(logits); free(labels); free(losses); free(probs); free(dlogits);
        cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_probs));
        cudaCheck(cudaFree(d_dlogits)); cudaCheck(cudaFree(d_labels));
    }
    printf("crossentropy: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
