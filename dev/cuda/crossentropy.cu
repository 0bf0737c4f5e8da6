/*
Softmax cross-entropy forward (probs, per-example losses, the batch mean) and backward (dlogits), as train_bert.c's
crossentropy_forward / crossentropy_backward, and evaluation's argmax and loss sum (trainer.h's
evaluate_). B rows of NC = 6: launch-bound.

Versions:
  1: one thread per row forward, one per element backward; the mean taken on the host after a copy of the
     losses, and evaluation's argmax on the host after a copy of the logits (kernel set 1)
  2: the same kernels, then the mean in one device thread (the CPU's order, the same bits) and evaluation as a
     confusion matrix and a loss sum on the device, read once per evaluation (kernel set 2): no copy per batch

  make crossentropy && ./crossentropy 1
  make crossentropy && ./crossentropy 2
Results (card, ms): not run yet; fill in on a GPU. Expect launch latency (~3-5 us), not bandwidth; version 2 saves
the host round trip per batch (tens of microseconds each).
*/
#include "common.h"
#include "../../cuda/crossentropy.cuh" // defines: cu::crossentropy_*, cu::mean_loss, cu::eval_accumulate

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (version != 1 && version != 2) { fprintf(stderr, "unknown version %d\n", version); return 1; }
    if (!require_device("crossentropy")) { return 2; }
    int cfgs[][2] = {{32, 6}, {1, 6}, {1024, 6}, {64, 1000}};
    for (int k = 0; k < 4; k++) {
        int B = cfgs[k][0], NC = cfgs[k][1];
        size_t n = (size_t)B * NC;
        float* logits = make_random(n, 8.0f);
        int* labels = (int*)mallocCheck(B * sizeof(int));
        for (int b = 0; b < B; b++) { labels[b] = (int)((rand_uniform_() + 1.0f) * 0.5f * NC) % NC; }
        float* losses = (float*)mallocCheck(B * 4);
        float* probs = (float*)mallocCheck(n * 4);
        float* dlogits = (float*)mallocCheck(n * 4);
        float mean = crossentropy_forward(losses, probs, logits, labels, B, NC);
        crossentropy_backward(dlogits, probs, labels, B, B, NC);
        // evaluation over two batches of this one, as evaluate_ adds them
        int* confusion = (int*)callocCheck((size_t)NC * NC, sizeof(int));
        for (int b = 0; b < B; b++) { confusion[labels[b] * NC + argmax(logits + (size_t)b * NC, NC)] += 2; }
        double loss_sum = (double)mean * B + (double)mean * B;
        float *d_logits = to_device(logits, n), *d_losses, *d_probs, *d_dlogits, *d_mean;
        int *d_labels, *d_confusion;
        double* d_loss_sum;
        cudaCheck(cudaMalloc(&d_losses, B * 4));
        cudaCheck(cudaMalloc(&d_probs, n * 4));
        cudaCheck(cudaMalloc(&d_dlogits, n * 4));
        cudaCheck(cudaMalloc(&d_mean, 4));
        cudaCheck(cudaMalloc(&d_labels, B * sizeof(int)));
        cudaCheck(cudaMalloc(&d_confusion, (size_t)NC * NC * sizeof(int)));
        cudaCheck(cudaMalloc(&d_loss_sum, sizeof(double)));
        cudaCheck(cudaMemcpy(d_labels, labels, B * sizeof(int), cudaMemcpyHostToDevice));
        poison(d_losses, B); poison(d_probs, n); poison(d_dlogits, n); poison(d_mean, 1);
        cu::crossentropy_forward(d_losses, d_probs, d_logits, d_labels, B, NC);
        cu::crossentropy_backward(d_dlogits, d_probs, d_labels, B, B, NC);
        printf("B %d NC %d v%d\n", B, NC, version);
        EXPECT(validate("losses", d_losses, losses, B, 1e-6));
        EXPECT(validate("probs", d_probs, probs, n, 1e-6));
        EXPECT(validate("dlogits", d_dlogits, dlogits, n, 1e-6));
        if (version == 2) {
            cu::mean_loss(d_mean, d_losses, B, B);
            cudaCheck(cudaMemset(d_confusion, 0, (size_t)NC * NC * sizeof(int)));
            cudaCheck(cudaMemset(d_loss_sum, 0, sizeof(double)));
            for (int rep = 0; rep < 2; rep++) {
                cu::eval_accumulate(d_confusion, d_loss_sum, d_mean, d_logits, d_labels, B, NC);
            }
            int* got = (int*)mallocCheck((size_t)NC * NC * sizeof(int));
            double got_sum;
            float got_mean;
            cudaCheck(cudaMemcpy(got, d_confusion, (size_t)NC * NC * sizeof(int), cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(&got_sum, d_loss_sum, sizeof(double), cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(&got_mean, d_mean, sizeof(float), cudaMemcpyDeviceToHost));
            int same = memcmp(got, confusion, (size_t)NC * NC * sizeof(int)) == 0;
            // the GPU's losses differ from the CPU's by rounding (expf, logf), so the mean and sum too, slightly
            int close = fabsf(got_mean - mean) <= 1e-6f * fabsf(mean) + 1e-7f &&
                        fabs(got_sum - loss_sum) <= 1e-5 * fabs(loss_sum);
            printf("    confusion %s | mean %.7f vs %.7f | loss sum %.6f vs %.6f %s\n", same ? "ok" : "FAIL", got_mean,
                   mean, got_sum, loss_sum, close ? "ok" : "FAIL");
            EXPECT(same && close);
            free(got);
        }
        float ms = time_ms([&] {
            cu::crossentropy_forward(d_losses, d_probs, d_logits, d_labels, B, NC);
            if (version == 2) {
                cu::mean_loss(d_mean, d_losses, B, B);
                cu::eval_accumulate(d_confusion, d_loss_sum, d_mean, d_logits, d_labels, B, NC);
            } else {
                cudaCheck(cudaMemcpy(losses, d_losses, B * 4, cudaMemcpyDeviceToHost)); // the host's mean and argmax
                cudaCheck(cudaMemcpy(probs, d_logits, n * 4, cudaMemcpyDeviceToHost));
            }
            cu::crossentropy_backward(d_dlogits, d_probs, d_labels, B, B, NC);
        });
        printf("  forward + loss + evaluation's part + backward %.4f ms\n", ms);
        free(logits); free(labels); free(losses); free(probs); free(dlogits); free(confusion);
        cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_probs));
        cudaCheck(cudaFree(d_dlogits)); cudaCheck(cudaFree(d_labels)); cudaCheck(cudaFree(d_mean));
        cudaCheck(cudaFree(d_confusion)); cudaCheck(cudaFree(d_loss_sum));
    }
    printf("crossentropy: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}
