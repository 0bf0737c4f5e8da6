/*
cuda/crossentropy.cuh: train_bert.c's crossentropy_forward / crossentropy_backward, nn.CrossEntropyLoss
with the mean over the batch. B rows of NC logits: tiny, one thread per row.
*/
#pragma once
#include "common.cuh"

namespace cu {

// probs (B, NC) = softmax(logits), losses (B) = -log probs[label]; the mean is taken on the host
__global__ void crossentropy_forward_kernel(float* losses, float* probs, const float* logits, const int* labels, int B,
                                            int NC) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) { return; }
    const float* z = logits + (size_t)b * NC;
    float* pr = probs + (size_t)b * NC;
    float maxval = z[0];
    for (int c = 1; c < NC; c++) { maxval = fmaxf(maxval, z[c]); }
    float sum = 0.0f;
    for (int c = 0; c < NC; c++) { pr[c] = expf(z[c] - maxval); sum += pr[c]; }
    for (int c = 0; c < NC; c++) { pr[c] /= sum; }
    losses[b] = logf(sum) + maxval - z[labels[b]];
}

// dlogits = (probs - onehot(label)) / B_mean: B_mean is B, or the global batch's size where these
// B rows are a rank's slice of it (the ranks' gradients then sum)
__global__ void crossentropy_backward_kernel(float* dlogits, const float* probs, const int* labels,
                                             int B, int B_mean, int NC) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * NC) { return; }
    int b = i / NC, c = i % NC;
    dlogits[i] = (probs[i] - (c == labels[b] ? 1.0f : 0.0f)) / B_mean;
}

void crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels, int B, int NC) {
    crossentropy_forward_kernel<<<ceil_div(B, 32), 32>>>(losses, probs, logits, labels, B, NC);
    kernelCheck();
}

void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int B_mean,
                           int NC) {
    crossentropy_backward_kernel<<<ceil_div((size_t)B * NC, 256), 256>>>(dlogits, probs, labels, B,
                                                                         B_mean, NC);
    kernelCheck();
}

// ----------------------------------------------------------------------------
// kernel set 2: the mean loss and evaluation stay on the device; the host reads them when it needs them

// *mean_out = the losses' (B) share of the mean over B_mean, summed in the CPU's order and
// precision: crossentropy_forward's float sum, or bert_forward's double sum for a rank's slice
__global__ void mean_loss_kernel(float* mean_out, const float* losses, int B, int B_mean) {
    if (blockIdx.x != 0 || threadIdx.x != 0) { return; }
    if (B_mean != B) {
        double sum = 0.0;
        for (int b = 0; b < B; b++) { sum += losses[b]; }
        *mean_out = (float)(sum / B_mean);
        return;
    }
    float mean = 0.0f;
    for (int b = 0; b < B; b++) { mean += losses[b]; }
    *mean_out = mean / B;
}

// evaluation: confusion[label][argmax(logits row)] += 1 for each row (integer atomics: any order gives the same
// counts), and *loss_sum += (double)mean * B, as the host's evaluate_ adds each batch's loss
__global__ void eval_accumulate_kernel(int* confusion, double* loss_sum, const float* mean, const float* logits,
                                       const int* labels, int B, int NC) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b < B) {
        const float* z = logits + (size_t)b * NC;
        int best = 0;
        for (int c = 1; c < NC; c++) { if (z[c] > z[best]) { best = c; } } // the first largest, as argmax()
        atomicAdd(&confusion[labels[b] * NC + best], 1);
    }
    if (b == 0) { *loss_sum += (double)(*mean) * B; }
}

void mean_loss(float* mean_out, const float* losses, int B, int B_mean) {
    mean_loss_kernel<<<1, 32>>>(mean_out, losses, B, B_mean);
    kernelCheck();
}

void eval_accumulate(int* confusion, double* loss_sum, const float* mean, const float* logits, const int* labels, int B,
                     int NC) {
    eval_accumulate_kernel<<<ceil_div(B, 128), 128>>>(confusion, loss_sum, mean, logits, labels, B, NC);
    kernelCheck();
}

} // namespace cu
