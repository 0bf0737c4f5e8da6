/*
The head: BertPooler's [CLS] gather and tanh, the cross-entropy loss (nn.CrossEntropyLoss,
mean over the batch), and their backwards. B rows of NC logits: tiny, one thread per row.
*/
#pragma once
#include "common.cuh"

namespace cu {

// cls (B, C) = h[:, 0]
__global__ void cls_gather_kernel(float* cls, const float* h, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)B * C) { cls[i] = h[(i / C) * T * C + i % C]; }
}

// dh[:, 0] += dcls
__global__ void cls_scatter_add_kernel(float* dh, const float* dcls, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)B * C) { dh[(i / C) * T * C + i % C] += dcls[i]; }
}

__global__ void tanh_forward_kernel(float* x, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { x[i] = tanhf(x[i]); }
}

// dpre = dout * (1 - out^2), out = tanh(pre)
__global__ void tanh_backward_kernel(float* dpre, const float* dout, const float* out, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) { dpre[i] = dout[i] * (1.0f - out[i] * out[i]); }
}

// probs (B, NC) = softmax(logits), losses (B) = -log probs[label]; the mean is taken on the host
__global__ void crossentropy_forward_kernel(float* losses, float* probs, const float* logits, const int* labels, int B, int NC) {
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

// dlogits = (probs - onehot(label)) / B
__global__ void crossentropy_backward_kernel(float* dlogits, const float* probs, const int* labels, int B, int NC) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * NC) { return; }
    int b = i / NC, c = i % NC;
    dlogits[i] = (probs[i] - (c == labels[b] ? 1.0f : 0.0f)) / B;
}

void cls_gather(float* cls, const float* h, int B, int T, int C) {
    cls_gather_kernel<<<ceil_div((size_t)B * C, 256), 256>>>(cls, h, B, T, C);
    cudaCheck(cudaGetLastError());
}

void cls_scatter_add(float* dh, const float* dcls, int B, int T, int C) {
    cls_scatter_add_kernel<<<ceil_div((size_t)B * C, 256), 256>>>(dh, dcls, B, T, C);
    cudaCheck(cudaGetLastError());
}

void tanh_forward(float* x, size_t N) {
    tanh_forward_kernel<<<ceil_div(N, 256), 256>>>(x, N);
    cudaCheck(cudaGetLastError());
}

void tanh_backward(float* dpre, const float* dout, const float* out, size_t N) {
    tanh_backward_kernel<<<ceil_div(N, 256), 256>>>(dpre, dout, out, N);
    cudaCheck(cudaGetLastError());
}

void crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels, int B, int NC) {
    crossentropy_forward_kernel<<<ceil_div(B, 32), 32>>>(losses, probs, logits, labels, B, NC);
    cudaCheck(cudaGetLastError());
}

void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int NC) {
    crossentropy_backward_kernel<<<ceil_div((size_t)B * NC, 256), 256>>>(dlogits, probs, labels, B, NC);
    cudaCheck(cudaGetLastError());
}

} // namespace cu
