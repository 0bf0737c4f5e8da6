/*
BERT fine-tuning for sequence classification, on one NVIDIA GPU.

This file mirrors train_bert.c function for function: the same model, the same three
strategies (full, frozen, lora), the same dropout masks (train_bert.c's counter-based
generator, recomputed on the device), AdamW as torch, the same flags, printed lines,
log and checkpoints (a GPU checkpoint loads on the CPU and back). The host side
(data, loader, metrics, early stopping, checkpoint files, the parameter tables) is
train_bert.c itself, included below; the layers are header-only kernels in cuda/.

Precision (-c): fp32 (default) is plain FP32 everywhere, TF32 off, so it matches the CPU
to rounding. bf16 rounds the matrix-product operands to bf16 (tensor cores, fp32
accumulation into fp32 outputs); activations, LayerNorm, softmax, loss, norm and AdamW
stay fp32, and the master weights are fp32. It is not yet bf16 activation storage.

It is not fast yet: simple kernels first (see dev/cuda/README.md for the plan).

Run: make train_bertcu && ./train_bertcu -s full      (see -h for every flag)
*/
#define TESTING                 // train_bert.c without its main
#include "train_bert.c"         // defines: the host side (Bert tables, Dataset, DataLoader, Metrics, EarlyStopping, checkpoints)
#include "cuda/common.cuh"      // defines: cudaCheck, cublasCheck, reductions, the device dropout generator
#include "cuda/matmul.cuh"      // defines: cu::matmul_forward, cu::matmul_backward, cu::gemm_, the bf16 operand path
#include "cuda/encoder.cuh"     // defines: cu::embedding_forward, cu::embedding_backward
#include "cuda/layernorm.cuh"   // defines: cu::layernorm_forward, cu::layernorm_backward
#include "cuda/dropout.cuh"     // defines: cu::dropout_forward, cu::dropout_backward
#include "cuda/attention.cuh"   // defines: cu::attention_forward, cu::attention_backward
#include "cuda/gelu.cuh"        // defines: cu::gelu_forward, cu::gelu_backward
#include "cuda/classifier.cuh"  // defines: cu::cls_gather, cu::tanh_*, cu::crossentropy_forward, cu::crossentropy_backward
#include "cuda/adamw.cuh"       // defines: cu::grad_sumsq, cu::adamw_update

// ----------------------------------------------------------------------------
// layers built from the kernels: LoRA (PEFT's lora.Linear) on one projection

// out += s * (dropout(x) @ A^T) @ B^T, out with row stride out_stride. x (N, C), A (r, C), B (OC, r),
// u (N, r) kept for backward, xd_scratch (N, C) holds dropout(x).
void lora_forward_gpu(float* out, int out_stride, float* u, float* xd_scratch, const float* x, const float* A,
                      const float* Bw, int N, int C, int OC, int r, float s, float p, uint64_t stream) {
    cu::dropout_forward(xd_scratch, x, NULL, (size_t)N * C, p, stream);
    // u (N, r) = xd @ A^T
    cu::gemm_(CUBLAS_OP_T, CUBLAS_OP_N, r, N, C, 1.0f, A, C, xd_scratch, C, 0.0f, u, r);
    // out (N, OC; stride out_stride) += s * u @ B^T
    cu::gemm_(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, r, s, Bw, r, u, r, 1.0f, out, out_stride);
}

// backward of the above; dA, dB accumulate, dx (may be NULL) accumulates through the dropout mask.
// dout (N, OC) read with row stride dout_stride. du_scratch (N, r), xd_scratch (N, C).
void lora_backward_gpu(float* dx, float* dA, float* dBw, float* du_scratch, float* xd_scratch, const float* dout,
                       int dout_stride, const float* u, const float* x, const float* A, const float* Bw,
                       int N, int C, int OC, int r, float s, float p, uint64_t stream) {
    // du (N, r) = s * dout @ B
    cu::gemm_(CUBLAS_OP_N, CUBLAS_OP_N, r, N, OC, s, Bw, r, dout, dout_stride, 0.0f, du_scratch, r);
    // dB (OC, r) += s * dout^T @ u
    cu::gemm_(CUBLAS_OP_N, CUBLAS_OP_T, r, OC, N, s, u, r, dout, dout_stride, 1.0f, dBw, r);
    // dA (r, C) += du^T @ dropout(x)
    cu::dropout_forward(xd_scratch, x, NULL, (size_t)N * C, p, stream);
    cu::gemm_(CUBLAS_OP_N, CUBLAS_OP_T, C, r, N, 1.0f, xd_scratch, C, du_scratch, r, 1.0f, dA, C);
    if (dx == NULL) { return; }
    // dx += dropout_backward(du @ A)
    cu::gemm_(CUBLAS_OP_N, CUBLAS_OP_N, C, N, r, 1.0f, A, C, du_scratch, r, 0.0f, xd_scratch, C);
    cu::dropout_backward(dx, xd_scratch, (size_t)N * C, p, stream);
}

// ----------------------------------------------------------------------------
// BERT model on the device: the host Bert keeps the config, tables, settings, step and batch

// scratch for one layer at a time, as train_bert.c's ScratchTensors (no transpose buffer, plus dsbuf)
typedef struct {
    float* tmp;     // (B, T, C) a dense output before its dropout
    float* dh;      // (B, T, C) gradient flowing down the residual stream
    float* dr;      // (B, T, C) gradient of a residual sum
    float* dln1;    // (B, T, C)
    float* datty;   // (B, T, C)
    float* dqkv;    // (B, T, 3*C)
    float* dfch;    // (B, T, FF)
    float* xd;      // (B, T, C) LoRA's dropped-out input and its gradient
    float* du;      // (B, T, r)
    float* dsmall;  // (4, B, C) pooler and classifier gradients
    float* dlogits; // (B, NC)
    float* dsbuf;   // (B, NH, T, T) attention score gradients
} GPUScratchTensors;
#define NUM_GPU_SCRATCH_TENSORS 12

typedef struct {
    Bert cpu;               // host side: config, tables, strategy, LoRA settings, seed, step, the batch
                            // (ids, lengths, labels) and host copies of the weights for checkpoints
    int precision;          // cu::PRECISION_FP32 or cu::PRECISION_BF16
    ParameterTensors params;
    float* params_memory;   // (num_parameters) on the device
    ParameterTensors grads; // NULL for tensors that do not train
    LoraTensors lora;
    LoraTensors lora_grads;
    float* lora_memory;     // (num_lora_parameters)
    float* grads_memory;    // (num_trainable): trainable gradients in table order, then LoRA's; one flat
                            // block, in the order of the CPU's m_memory, so norm and AdamW walk it directly
    size_t num_trainable;
    float* m_memory;        // (num_trainable) AdamW moments
    float* v_memory;
    __nv_bfloat16* params16; // bf16 copies of the weights for the bf16 matrix products (bf16 only)
    __nv_bfloat16* lora16;
    int weights16_stale;    // 2: recast everything, 1: recast what trains, 0: up to date
    ActivationTensors acts; // as train_bert.c's, on the device
    float* acts_memory;
    GPUScratchTensors scratch;
    float* scratch_memory;
    int* ids;               // (B_max * T_max) on the device
    int* lengths;           // (B_max)
    int* labels;            // (B_max)
    double* norm_partials;  // (NORM_BLOCKS)
    double* norm_sumsq;     // (1)
    float* losses_host;     // (B_max)
} BertGPU;

// one cudaMalloc for a table of tensors (zeroed); rows of size 0 get NULL
float* cuda_malloc_and_point(float** ptrs, const size_t* sizes, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) { total += sizes[i]; }
    float* mem;
    cudaCheck(cudaMalloc(&mem, (total == 0 ? 1 : total) * sizeof(float)));
    cudaCheck(cudaMemset(mem, 0, (total == 0 ? 1 : total) * sizeof(float)));
    float* p = mem;
    for (int i = 0; i < n; i++) {
        ptrs[i] = sizes[i] > 0 ? p : NULL;
        p += sizes[i];
    }
    return mem;
}

// host weights (cpu.params_memory, cpu.lora_memory) -> device
void bert_upload_weights(BertGPU* model) {
    cudaCheck(cudaMemcpy(model->params_memory, model->cpu.params_memory, model->cpu.num_parameters * sizeof(float), cudaMemcpyHostToDevice));
    if (model->cpu.num_lora_parameters > 0) {
        cudaCheck(cudaMemcpy(model->lora_memory, model->cpu.lora_memory, model->cpu.num_lora_parameters * sizeof(float), cudaMemcpyHostToDevice));
    }
    model->weights16_stale = 2;
}

// device weights -> host (before a checkpoint is written)
void bert_download_weights(BertGPU* model) {
    cudaCheck(cudaMemcpy(model->cpu.params_memory, model->params_memory, model->cpu.num_parameters * sizeof(float), cudaMemcpyDeviceToHost));
    if (model->cpu.num_lora_parameters > 0) {
        cudaCheck(cudaMemcpy(model->cpu.lora_memory, model->lora_memory, model->cpu.num_lora_parameters * sizeof(float), cudaMemcpyDeviceToHost));
    }
}

// read a model file (or a checkpoint) on the host, then copy the parameters to the device.
// model->cpu.strategy and model->precision are set by the caller.
void bert_build_from_file(BertGPU* model, const char* path) {
    bert_build_from_file(&model->cpu, path);
    cudaCheck(cudaMalloc(&model->params_memory, model->cpu.num_parameters * sizeof(float)));
    size_t sizes[NUM_PARAMETER_TENSORS];
    table_sizes_(sizes, model->cpu.param_info, NUM_PARAMETER_TENSORS, 0);
    float* p = model->params_memory;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { ((float**)&model->params)[i] = p; p += sizes[i]; }
    if (model->precision == cu::PRECISION_BF16) {
        cudaCheck(cudaMalloc(&model->params16, model->cpu.num_parameters * sizeof(__nv_bfloat16)));
        cu::matmul_register_bf16(0, model->params_memory, model->params16, model->cpu.num_parameters);
    }
    bert_upload_weights(model);
}

// Training state for cpu.strategy: the host sets up the tables and initialises LoRA exactly
// as train_bert.c (same generator); gradients and moments then live only on the device.
void bert_init_training(BertGPU* model) {
    Bert* h = &model->cpu;
    bert_init_training(h);
    free(h->grads_memory); free(h->m_memory); free(h->v_memory); free(h->lora_grads_memory);
    h->grads_memory = h->m_memory = h->v_memory = h->lora_grads_memory = NULL;
    memset(&h->grads, 0, sizeof(h->grads));
    memset(&h->lora_grads, 0, sizeof(h->lora_grads));
    size_t sizes[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    table_sizes_(sizes, h->param_info, NUM_PARAMETER_TENSORS, 1);
    int nl = 0;
    if (h->strategy == STRATEGY_LORA) {
        table_sizes_(sizes + NUM_PARAMETER_TENSORS, h->lora_info, NUM_LORA_TENSORS, 0);
        nl = NUM_LORA_TENSORS;
        cudaCheck(cudaMalloc(&model->lora_memory, h->num_lora_parameters * sizeof(float)));
        model->lora.lora_a = model->lora_memory;
        model->lora.lora_b = model->lora_memory + h->lora_info[0].size;
        if (model->precision == cu::PRECISION_BF16) {
            cudaCheck(cudaMalloc(&model->lora16, h->num_lora_parameters * sizeof(__nv_bfloat16)));
            cu::matmul_register_bf16(1, model->lora_memory, model->lora16, h->num_lora_parameters);
        }
    }
    float* ptrs[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    model->grads_memory = cuda_malloc_and_point(ptrs, sizes, NUM_PARAMETER_TENSORS + nl);
    memcpy(&model->grads, ptrs, sizeof(model->grads));
    if (nl > 0) { model->lora_grads.lora_a = ptrs[NUM_PARAMETER_TENSORS]; model->lora_grads.lora_b = ptrs[NUM_PARAMETER_TENSORS + 1]; }
    model->num_trainable = bert_num_trainable(h);
    cudaCheck(cudaMalloc(&model->m_memory, model->num_trainable * sizeof(float)));
    cudaCheck(cudaMalloc(&model->v_memory, model->num_trainable * sizeof(float)));
    cudaCheck(cudaMemset(model->m_memory, 0, model->num_trainable * sizeof(float)));
    cudaCheck(cudaMemset(model->v_memory, 0, model->num_trainable * sizeof(float)));
    cudaCheck(cudaMalloc(&model->norm_partials, NORM_BLOCKS * sizeof(double)));
    cudaCheck(cudaMalloc(&model->norm_sumsq, sizeof(double)));
    bert_upload_weights(model);
}

// activations and scratch for batches up to (B_max, T_max); also the host batch buffers
void bert_alloc_activations(BertGPU* model, int B_max, int T_max) {
    Bert* h = &model->cpu;
    const BertConfig* cfg = &h->config;
    size_t B = B_max, T = T_max, C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC;
    size_t r = h->strategy == STRATEGY_LORA ? h->lora_r : 0;
    h->B_max = B_max;
    h->T_max = T_max;
    // in the order of ActivationTensors, as train_bert.c's bert_alloc_activations
    size_t a[NUM_ACTIVATION_TENSORS] = {
        B * T * C, B * T, B * T, (L + 1) * B * T * C, L * B * T * 3 * C, L * B * NH * T * T, L * B * T * C,
        L * B * T * C, L * B * T * C, L * B * T, L * B * T, L * B * T * FF, L * B * T * FF, L * B * T * C,
        L * B * T, L * B * T, L * 3 * B * T * r, B * C, B * C, B * C, B * NC, B * NC, B};
    model->acts_memory = cuda_malloc_and_point((float**)&model->acts, a, NUM_ACTIVATION_TENSORS);
    size_t s[NUM_GPU_SCRATCH_TENSORS] = {
        B * T * C, B * T * C, B * T * C, B * T * C, B * T * C, B * T * 3 * C, B * T * FF, B * T * C, B * T * r,
        4 * B * C, B * NC, B * NH * T * T};
    model->scratch_memory = cuda_malloc_and_point((float**)&model->scratch, s, NUM_GPU_SCRATCH_TENSORS);
    h->ids = (int*)mallocCheck(B * T * sizeof(int));
    h->lengths = (int*)mallocCheck(B * sizeof(int));
    h->labels = (int*)mallocCheck(B * sizeof(int));
    model->losses_host = (float*)mallocCheck(B * sizeof(float));
    cudaCheck(cudaMalloc(&model->ids, B * T * sizeof(int)));
    cudaCheck(cudaMalloc(&model->lengths, B * sizeof(int)));
    cudaCheck(cudaMalloc(&model->labels, B * sizeof(int)));
    // the largest matrix-product operand that is not a weight: (B*T, max(FF, 3C)), dqkv read with stride 3C
    size_t wide = FF > 3 * C ? FF : 3 * C;
    cu::matmul_init(model->precision, B * T * wide);
}

// recast the bf16 weight copies that changed (bf16 only)
static void weights16_refresh_(BertGPU* model) {
    if (model->precision != cu::PRECISION_BF16 || model->weights16_stale == 0) { return; }
    const Bert* h = &model->cpu;
    if (model->weights16_stale == 2) {
        cu::cast_bf16(model->params16, model->params_memory, h->num_parameters);
    } else {
        size_t offset = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            if (h->param_info[i].trainable) { cu::cast_bf16(model->params16 + offset, model->params_memory + offset, h->param_info[i].size); }
            offset += h->param_info[i].size;
        }
    }
    if (h->num_lora_parameters > 0) { cu::cast_bf16(model->lora16, model->lora_memory, h->num_lora_parameters); }
    model->weights16_stale = 0;
}

// ----------------------------------------------------------------------------
// forward, backward, update

// Forward pass over the batch in cpu.ids / cpu.lengths (B, T), uploaded here. With labels
// (host), also the mean cross-entropy in cpu.mean_loss. train = 1 turns dropout on.
void bert_forward(BertGPU* model, int B, int T, const int* labels, int train) {
    Bert* h = &model->cpu;
    const BertConfig* cfg = &h->config;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    int r = h->lora_r;
    if (B > h->B_max || T > h->T_max) {
        fprintf(stderr, "Error: batch (%d, %d) exceeds the allocated (%d, %d)\n", B, T, h->B_max, h->T_max);
        exit(EXIT_FAILURE);
    }
    h->B = B;
    h->T = T;
    float p = train ? h->dropout : 0.0f;
    float plora = train ? h->lora_dropout : 0.0f;
    float lora_scale = h->strategy == STRATEGY_LORA ? h->lora_alpha / r : 0.0f;
    ParameterTensors w = model->params;
    ActivationTensors a = model->acts;
    GPUScratchTensors s = model->scratch;
    size_t BTC = (size_t)BT * C;
    cudaCheck(cudaMemcpy(model->ids, h->ids, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(model->lengths, h->lengths, B * sizeof(int), cudaMemcpyHostToDevice));
    weights16_refresh_(model);

    cu::embedding_forward(a.encoded, model->ids, w.wte, w.wpe, w.wtt, B, T, C);
    cu::layernorm_forward(a.hs, a.emb_mean, a.emb_rstd, a.encoded, w.embln_w, w.embln_b, BT, C, cfg->eps, p, bert_stream(h, -1, 0));
    for (int l = 0; l < L; l++) {
        float* x = a.hs + l * BTC;
        float* qkv = a.qkv + l * BTC * 3;
        float* atty = a.atty + l * BTC;
        float* r1 = a.r1 + l * BTC;
        float* ln1 = a.ln1 + l * BTC;
        float* fch = a.fch + (size_t)l * BT * FF;
        float* fch_gelu = a.fch_gelu + (size_t)l * BT * FF;
        float* r2 = a.r2 + l * BTC;
        cu::matmul_forward(qkv, x, LAYER_(w.qkvw, l, 3 * C * C), LAYER_(w.qkvb, l, 3 * C), BT, C, 3 * C);
        if (h->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_forward_gpu(qkv + j * C, 3 * C, a.lora_u + lj * BT * r, s.xd, x, model->lora.lora_a + lj * r * C,
                                 model->lora.lora_b + lj * C * r, BT, C, C, r, lora_scale, plora, bert_stream(h, l, SITE_LORA_Q + j));
            }
        }
        cu::attention_forward(atty, a.att + (size_t)l * B * NH * T * T, qkv, model->lengths, B, T, C, NH, p, bert_stream(h, l, SITE_ATT));
        cu::matmul_forward(s.tmp, atty, LAYER_(w.attprojw, l, C * C), LAYER_(w.attprojb, l, C), BT, C, C);
        cu::dropout_forward(r1, s.tmp, x, BTC, p, bert_stream(h, l, SITE_ATTPROJ));
        cu::layernorm_forward(ln1, a.ln1_mean + l * BT, a.ln1_rstd + l * BT, r1, LAYER_(w.ln1w, l, C), LAYER_(w.ln1b, l, C),
                              BT, C, cfg->eps, 0.0f, 0);
        cu::matmul_forward(fch, ln1, LAYER_(w.fcw, l, FF * C), LAYER_(w.fcb, l, FF), BT, C, FF);
        cu::gelu_forward(fch_gelu, fch, (size_t)BT * FF);
        cu::matmul_forward(s.tmp, fch_gelu, LAYER_(w.fcprojw, l, C * FF), LAYER_(w.fcprojb, l, C), BT, FF, C);
        cu::dropout_forward(r2, s.tmp, ln1, BTC, p, bert_stream(h, l, SITE_FCPROJ));
        cu::layernorm_forward(x + BTC, a.ln2_mean + l * BT, a.ln2_rstd + l * BT, r2, LAYER_(w.ln2w, l, C), LAYER_(w.ln2b, l, C),
                              BT, C, cfg->eps, 0.0f, 0);
    }
    // BertPooler: pooled = tanh(dense(hs[L][:, 0]))
    cu::cls_gather(a.cls, a.hs + L * BTC, B, T, C);
    cu::matmul_forward(a.pooled, a.cls, w.poolw, w.poolb, B, C, C);
    cu::tanh_forward(a.pooled, (size_t)B * C);
    cu::dropout_forward(a.pooled_d, a.pooled, NULL, (size_t)B * C, p, bert_stream(h, L, 0));
    cu::matmul_forward(a.logits, a.pooled_d, w.clsw, w.clsb, B, C, NC);
    if (labels != NULL) {
        memcpy(h->labels, labels, B * sizeof(int));
        cudaCheck(cudaMemcpy(model->labels, labels, B * sizeof(int), cudaMemcpyHostToDevice));
        cu::crossentropy_forward(a.losses, a.probs, a.logits, model->labels, B, NC);
        cudaCheck(cudaMemcpy(model->losses_host, a.losses, B * sizeof(float), cudaMemcpyDeviceToHost));
        float mean = 0.0f; // summed in the CPU's order
        for (int b = 0; b < B; b++) { mean += model->losses_host[b]; }
        h->mean_loss = mean / B;
    }
}

void bert_zero_grad(BertGPU* model) {
    cudaCheck(cudaMemset(model->grads_memory, 0, model->num_trainable * sizeof(float)));
}

// Backward pass of the last training forward, as train_bert.c's bert_backward line for line.
void bert_backward(BertGPU* model) {
    Bert* h = &model->cpu;
    const BertConfig* cfg = &h->config;
    int B = h->B, T = h->T;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    int r = h->lora_r;
    float p = h->dropout, plora = h->lora_dropout;
    float lora_scale = h->strategy == STRATEGY_LORA ? h->lora_alpha / r : 0.0f;
    ParameterTensors w = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    GPUScratchTensors s = model->scratch;
    size_t BTC = (size_t)BT * C;

    cu::crossentropy_backward(s.dlogits, a.probs, model->labels, B, NC);
    if (h->strategy == STRATEGY_FROZEN) {
        cu::matmul_backward(NULL, g.clsw, g.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
        return;
    }
    float* dpooled_d = s.dsmall;
    float* dpooled = s.dsmall + (size_t)B * C;
    float* dpre = s.dsmall + 2 * (size_t)B * C;
    float* dcls = s.dsmall + 3 * (size_t)B * C;
    cudaCheck(cudaMemset(s.dsmall, 0, 4 * (size_t)B * C * sizeof(float)));
    cu::matmul_backward(dpooled_d, g.clsw, g.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
    cu::dropout_backward(dpooled, dpooled_d, (size_t)B * C, p, bert_stream(h, L, 0));
    // pooled = tanh(cls @ poolw^T + poolb), cls = hs[L][:, 0]
    cudaCheck(cudaMemset(s.dh, 0, BTC * sizeof(float)));
    cu::tanh_backward(dpre, dpooled, a.pooled, (size_t)B * C);
    cu::matmul_backward(dcls, g.poolw, g.poolb, dpre, a.cls, w.poolw, B, C, C);
    cu::cls_scatter_add(s.dh, dcls, B, T, C);
    for (int l = L - 1; l >= 0; l--) {
        float* x = a.hs + l * BTC;
        float* qkv = a.qkv + l * BTC * 3;
        float* atty = a.atty + l * BTC;
        float* r1 = a.r1 + l * BTC;
        float* ln1 = a.ln1 + l * BTC;
        float* fch = a.fch + (size_t)l * BT * FF;
        float* fch_gelu = a.fch_gelu + (size_t)l * BT * FF;
        float* r2 = a.r2 + l * BTC;
        // hs[l+1] = LN2(r2)
        cudaCheck(cudaMemset(s.dr, 0, BTC * sizeof(float)));
        cu::layernorm_backward(s.dr, LAYER_(g.ln2w, l, C), LAYER_(g.ln2b, l, C), s.dh, r2, LAYER_(w.ln2w, l, C),
                               a.ln2_mean + l * BT, a.ln2_rstd + l * BT, BT, C);
        // r2 = dropout(fch_gelu @ fcprojw^T + fcprojb) + ln1
        cudaCheck(cudaMemcpy(s.dln1, s.dr, BTC * sizeof(float), cudaMemcpyDeviceToDevice));
        cudaCheck(cudaMemset(s.tmp, 0, BTC * sizeof(float)));
        cu::dropout_backward(s.tmp, s.dr, BTC, p, bert_stream(h, l, SITE_FCPROJ));
        cudaCheck(cudaMemset(s.dfch, 0, (size_t)BT * FF * sizeof(float)));
        cu::matmul_backward(s.dfch, LAYER_(g.fcprojw, l, C * FF), LAYER_(g.fcprojb, l, C), s.tmp, fch_gelu,
                            LAYER_(w.fcprojw, l, C * FF), BT, FF, C);
        // fch_gelu = gelu(ln1 @ fcw^T + fcb)
        cu::gelu_backward(s.dfch, fch, s.dfch, (size_t)BT * FF);
        cu::matmul_backward(s.dln1, LAYER_(g.fcw, l, FF * C), LAYER_(g.fcb, l, FF), s.dfch, ln1, LAYER_(w.fcw, l, FF * C), BT, C, FF);
        // ln1 = LN1(r1)
        cudaCheck(cudaMemset(s.dr, 0, BTC * sizeof(float)));
        cu::layernorm_backward(s.dr, LAYER_(g.ln1w, l, C), LAYER_(g.ln1b, l, C), s.dln1, r1, LAYER_(w.ln1w, l, C),
                               a.ln1_mean + l * BT, a.ln1_rstd + l * BT, BT, C);
        // r1 = dropout(atty @ attprojw^T + attprojb) + x: dh now collects d(x)
        cudaCheck(cudaMemcpy(s.dh, s.dr, BTC * sizeof(float), cudaMemcpyDeviceToDevice));
        cudaCheck(cudaMemset(s.tmp, 0, BTC * sizeof(float)));
        cu::dropout_backward(s.tmp, s.dr, BTC, p, bert_stream(h, l, SITE_ATTPROJ));
        cudaCheck(cudaMemset(s.datty, 0, BTC * sizeof(float)));
        cu::matmul_backward(s.datty, LAYER_(g.attprojw, l, C * C), LAYER_(g.attprojb, l, C), s.tmp, atty,
                            LAYER_(w.attprojw, l, C * C), BT, C, C);
        // atty = attention(qkv)
        cudaCheck(cudaMemset(s.dqkv, 0, BTC * 3 * sizeof(float)));
        cu::attention_backward(s.dqkv, s.dsbuf, s.datty, qkv, a.att + (size_t)l * B * NH * T * T, model->lengths,
                               B, T, C, NH, p, bert_stream(h, l, SITE_ATT));
        // qkv = x @ qkvw^T + qkvb (+ LoRA); below layer 0 only the full strategy needs d(x)
        float* dx = (l > 0 || h->strategy == STRATEGY_FULL) ? s.dh : NULL;
        cu::matmul_backward(dx, LAYER_(g.qkvw, l, 3 * C * C), LAYER_(g.qkvb, l, 3 * C), s.dqkv, x, LAYER_(w.qkvw, l, 3 * C * C), BT, C, 3 * C);
        if (h->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_backward_gpu(dx, model->lora_grads.lora_a + lj * r * C, model->lora_grads.lora_b + lj * C * r, s.du, s.xd,
                                  s.dqkv + j * C, 3 * C, a.lora_u + lj * BT * r, x, model->lora.lora_a + lj * r * C,
                                  model->lora.lora_b + lj * C * r, BT, C, C, r, lora_scale, plora, bert_stream(h, l, SITE_LORA_Q + j));
            }
        }
    }
    if (h->strategy != STRATEGY_FULL) { return; }
    // hs[0] = dropout(LN(encoded))
    cudaCheck(cudaMemset(s.dr, 0, BTC * sizeof(float)));
    cu::dropout_backward(s.dr, s.dh, BTC, p, bert_stream(h, -1, 0));
    cudaCheck(cudaMemset(s.tmp, 0, BTC * sizeof(float)));
    cu::layernorm_backward(s.tmp, g.embln_w, g.embln_b, s.dr, a.encoded, w.embln_w, a.emb_mean, a.emb_rstd, BT, C);
    cu::embedding_backward(g.wte, g.wpe, g.wtt, s.tmp, model->ids, model->lengths, B, T, C);
}

// global L2 norm of the trainable gradients (clip_grad_norm_): one pass over the flat block
float bert_grad_norm(BertGPU* model) {
    cu::grad_sumsq(model->norm_sumsq, model->norm_partials, model->grads_memory, model->num_trainable);
    double sumsq;
    cudaCheck(cudaMemcpy(&sumsq, model->norm_sumsq, sizeof(double), cudaMemcpyDeviceToHost));
    return (float)sqrt(sumsq);
}

// One optimizer step, as train_bert.c's bert_update: clip, then AdamW per trainable tensor.
// Returns the norm before clipping.
float bert_update(BertGPU* model, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    Bert* h = &model->cpu;
    float norm = bert_grad_norm(model);
    float clip = max_norm > 0.0f ? max_norm / (norm + 1e-6f) : 1.0f;
    h->step++;
    double bc1 = 1.0 - pow(beta1, h->step);
    double bc2 = 1.0 - pow(beta2, h->step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    size_t offset = 0; // into the flat gradient / moment blocks
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        const TensorInfo* t = &h->param_info[i];
        if (!t->trainable) { continue; }
        cu::adamw_update(((float**)&model->params)[i], model->grads_memory + offset, model->m_memory + offset,
                         model->v_memory + offset, t->size, lr, beta1, beta2, eps, t->decay ? weight_decay : 0.0f, clip,
                         step_size, bc2_sqrt);
        offset += t->size;
    }
    if (h->strategy == STRATEGY_LORA) {
        float* lp[NUM_LORA_TENSORS] = {model->lora.lora_a, model->lora.lora_b};
        for (int i = 0; i < NUM_LORA_TENSORS; i++) {
            const TensorInfo* t = &h->lora_info[i];
            cu::adamw_update(lp[i], model->grads_memory + offset, model->m_memory + offset, model->v_memory + offset,
                             t->size, lr, beta1, beta2, eps, t->decay ? weight_decay : 0.0f, clip, step_size, bc2_sqrt);
            offset += t->size;
        }
    }
    if (model->weights16_stale == 0) { model->weights16_stale = 1; }
    return norm;
}

// the device gradients, in the host's table layout (zeros for frozen tensors): for tests.
// grads (num_parameters), lora_grads (num_lora_parameters) or NULL.
void bert_download_grads(BertGPU* model, float* grads, float* lora_grads) {
    const Bert* h = &model->cpu;
    size_t offset = 0, flat = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = h->param_info[i].size;
        if (h->param_info[i].trainable) {
            cudaCheck(cudaMemcpy(grads + offset, model->grads_memory + flat, n * sizeof(float), cudaMemcpyDeviceToHost));
            flat += n;
        } else {
            memset(grads + offset, 0, n * sizeof(float));
        }
        offset += n;
    }
    if (lora_grads != NULL && h->num_lora_parameters > 0) {
        cudaCheck(cudaMemcpy(lora_grads, model->grads_memory + flat, h->num_lora_parameters * sizeof(float), cudaMemcpyDeviceToHost));
    }
}

void bert_free(BertGPU* model) {
    cudaCheck(cudaFree(model->params_memory));
    cudaCheck(cudaFree(model->lora_memory));
    cudaCheck(cudaFree(model->grads_memory));
    cudaCheck(cudaFree(model->m_memory));
    cudaCheck(cudaFree(model->v_memory));
    cudaCheck(cudaFree(model->params16));
    cudaCheck(cudaFree(model->lora16));
    cudaCheck(cudaFree(model->acts_memory));
    cudaCheck(cudaFree(model->scratch_memory));
    cudaCheck(cudaFree(model->ids));
    cudaCheck(cudaFree(model->lengths));
    cudaCheck(cudaFree(model->labels));
    cudaCheck(cudaFree(model->norm_partials));
    cudaCheck(cudaFree(model->norm_sumsq));
    free(model->losses_host);
    cu::matmul_free();
    bert_free(&model->cpu);
}

// ----------------------------------------------------------------------------
// checkpoints: train_bert.c's format and writer, from a host copy of the device weights

void bert_save_checkpoint(BertGPU* model, const char* path, int epoch) {
    bert_download_weights(model);
    bert_save_checkpoint(&model->cpu, path, epoch);
}

void bert_load_checkpoint(BertGPU* model, const char* path) {
    bert_load_checkpoint(&model->cpu, path);
    bert_upload_weights(model);
}

// ----------------------------------------------------------------------------
// evaluation, as train_bert.c's bert_evaluate: in order, dropout off, argmax on the host

void bert_evaluate(BertGPU* model, const Dataset* ds, int B, Metrics* m) {
    Bert* h = &model->cpu;
    DataLoader loader;
    loader_init(&loader, ds, B, 0);
    loader_start_epoch(&loader, 0, 0);
    int* preds = (int*)mallocCheck(ds->N * sizeof(int));
    int* labels = (int*)mallocCheck(ds->N * sizeof(int));
    int NC = h->config.NC;
    float* logits = (float*)mallocCheck((size_t)B * NC * sizeof(float));
    int Bb, T, n = 0;
    double loss = 0.0;
    while (loader_next_batch(&loader, h->ids, h->lengths, labels + n, h->config.pad_id, &Bb, &T)) {
        bert_forward(model, Bb, T, labels + n, 0);
        loss += (double)h->mean_loss * Bb;
        cudaCheck(cudaMemcpy(logits, model->acts.logits, (size_t)Bb * NC * sizeof(float), cudaMemcpyDeviceToHost));
        for (int b = 0; b < Bb; b++) {
            const float* z = logits + (size_t)b * NC;
            int best = 0;
            for (int c = 1; c < NC; c++) { if (z[c] > z[best]) { best = c; } }
            preds[n + b] = best;
        }
        n += Bb;
    }
    metrics_compute(m, preds, labels, ds->N);
    m->loss = (float)(loss / ds->N);
    free(preds);
    free(labels);
    free(logits);
    loader_free(&loader);
}

// ----------------------------------------------------------------------------
// main training loop, as train_bert.c's (plus -c precision and the device in the settings)
#ifndef TESTING_CU

typedef struct {
    int epoch;
    float train_loss;
    Metrics val;
    double seconds;
    int best;
} EpochRecord;

static void usage_(void) {
    fprintf(stderr, "Usage:   ./train_bertcu [options]\n");
    fprintf(stderr, "Fine-tunes BERT on the emotion dataset on the GPU; defaults are the Hugging Face Trainer recipe.\n");
    fprintf(stderr, "Options:\n");
    fprintf(stderr, "  -s <string> strategy: full | frozen (classifier only) | lora (default full)\n");
    fprintf(stderr, "  -c <string> precision: fp32 (TF32 off) | bf16 (bf16 matmul operands, fp32 rest) (default fp32)\n");
    fprintf(stderr, "  -m <string> model file (default data/model.bin)\n");
    fprintf(stderr, "  -d <string> directory of emotion_{train,validation,test}.bin (default data)\n");
    fprintf(stderr, "  -o <string> output directory for checkpoints and the log (default out)\n");
    fprintf(stderr, "  -e <int>    epochs; also the length of the linear lr decay (default 50)\n");
    fprintf(stderr, "  -b <int>    batch size (default 16)\n");
    fprintf(stderr, "  -l <float>  learning rate (default 5e-5)\n");
    fprintf(stderr, "  -w <float>  weight decay (default 0)\n");
    fprintf(stderr, "  -g <float>  max gradient norm, 0 = no clipping (default 1.0)\n");
    fprintf(stderr, "  -u <int>    warmup steps (default 0)\n");
    fprintf(stderr, "  -q <float>  dropout: hidden, attention and classifier (default 0.1)\n");
    fprintf(stderr, "  -p <int>    early stopping patience in epochs, 0 = off (default 3)\n");
    fprintf(stderr, "  -r <int>    random seed (default 42)\n");
    fprintf(stderr, "  -x <int>    stop after this many steps, -1 = no limit (default -1)\n");
    fprintf(stderr, "  -k <int>    LoRA rank (default 8)\n");
    fprintf(stderr, "  -a <float>  LoRA alpha (default 32)\n");
    fprintf(stderr, "  -z <float>  LoRA dropout (default 0.1)\n");
    fprintf(stderr, "  -f <int>    print a step line every this many steps (default 1)\n");
    fprintf(stderr, "  -h          this help\n");
    exit(EXIT_FAILURE);
}

int main(int argc, char** argv) {
    const char* strategy_name = "full";
    const char* precision_name = "fp32";
    const char* model_path = "data/model.bin";
    const char* data_dir = "data";
    const char* out_dir = "out";
    int epochs = 50, B = 16, warmup = 0, patience = 3, seed = 42, max_steps = -1, lora_r = 8, print_every = 1;
    float lr = 5e-5f, weight_decay = 0.0f, max_norm = 1.0f, dropout = 0.1f, lora_alpha = 32.0f, lora_dropout = 0.1f;
    for (int i = 1; i < argc; i += 2) {
        if (argv[i][0] != '-' || strlen(argv[i]) != 2 || argv[i][1] == 'h' || i + 1 >= argc) { usage_(); }
        char f = argv[i][1];
        const char* v = argv[i + 1];
        if (f == 's') { strategy_name = v; }
        else if (f == 'c') { precision_name = v; }
        else if (f == 'm') { model_path = v; }
        else if (f == 'd') { data_dir = v; }
        else if (f == 'o') { out_dir = v; }
        else if (f == 'e') { epochs = atoi(v); }
        else if (f == 'b') { B = atoi(v); }
        else if (f == 'l') { lr = atof(v); }
        else if (f == 'w') { weight_decay = atof(v); }
        else if (f == 'g') { max_norm = atof(v); }
        else if (f == 'u') { warmup = atoi(v); }
        else if (f == 'q') { dropout = atof(v); }
        else if (f == 'p') { patience = atoi(v); }
        else if (f == 'r') { seed = atoi(v); }
        else if (f == 'x') { max_steps = atoi(v); }
        else if (f == 'k') { lora_r = atoi(v); }
        else if (f == 'a') { lora_alpha = atof(v); }
        else if (f == 'z') { lora_dropout = atof(v); }
        else if (f == 'f') { print_every = atoi(v); }
        else { usage_(); }
    }
    int strategy = -1;
    for (int s = 0; s < 3; s++) { if (strcmp(strategy_name, STRATEGY_NAMES[s]) == 0) { strategy = s; } }
    if (strategy < 0) { fprintf(stderr, "Error: unknown strategy '%s' (full, frozen or lora)\n", strategy_name); usage_(); }
    int precision = -1;
    if (strcmp(precision_name, "fp32") == 0) { precision = cu::PRECISION_FP32; }
    if (strcmp(precision_name, "bf16") == 0) { precision = cu::PRECISION_BF16; }
    if (precision < 0) { fprintf(stderr, "Error: unknown precision '%s' (fp32 or bf16)\n", precision_name); usage_(); }
    if (epochs < 1 || B < 1 || lr <= 0.0f || warmup < 0 || dropout < 0.0f || dropout >= 1.0f || lora_r < 1 ||
        lora_dropout < 0.0f || lora_dropout >= 1.0f || print_every < 1) {
        fprintf(stderr, "Error: a setting is out of range (see -h)\n");
        usage_();
    }
    int device = 0;
    cudaCheck(cudaSetDevice(device));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));

    BertGPU model;
    memset(&model, 0, sizeof(model));
    model.precision = precision;
    model.cpu.strategy = strategy;
    model.cpu.seed = (uint64_t)seed;
    model.cpu.dropout = dropout;
    model.cpu.lora_r = lora_r;
    model.cpu.lora_alpha = lora_alpha;
    model.cpu.lora_dropout = lora_dropout;
    bert_build_from_file(&model, model_path);
    bert_init_training(&model);
    const BertConfig* cfg = &model.cpu.config;

    char path[4096];
    Dataset splits[3];
    const char* split_names[3] = {"train", "validation", "test"};
    int T_max = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof(path), "%s/emotion_%s.bin", data_dir, split_names[k]);
        dataset_load(&splits[k], path, cfg);
        if (splits[k].T_max > T_max) { T_max = splits[k].T_max; }
    }
    bert_alloc_activations(&model, B, T_max);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "Error: could not create output directory %s: %s\n", out_dir, strerror(errno));
        exit(EXIT_FAILURE);
    }

    int steps_per_epoch = (splits[0].N + B - 1) / B;
    int total_steps = epochs * steps_per_epoch;
    printf("+-----------------------+----------------------------------------------------+\n");
    printf("| Parameter             | Value                                              |\n");
    printf("+-----------------------+----------------------------------------------------+\n");
    printf("| strategy              | %-50s |\n", STRATEGY_NAMES[strategy]);
    printf("| precision             | %-50s |\n", cu::precision_name(precision));
    printf("| model file            | %-50s |\n", model_path);
    printf("| model                 | %-50s |\n", cfg->name);
    printf("| data directory        | %-50s |\n", data_dir);
    printf("| output directory      | %-50s |\n", out_dir);
    printf("| epochs (max)          | %-50d |\n", epochs);
    printf("| batch size            | %-50d |\n", B);
    printf("| learning rate         | %-50e |\n", lr);
    printf("| schedule              | linear to 0 over %d steps, warmup %-16d |\n", total_steps, warmup);
    printf("| AdamW                 | betas (0.9, 0.999) eps 1e-8 weight decay %-9g |\n", weight_decay);
    printf("| max grad norm         | %-50g |\n", max_norm);
    printf("| dropout               | %-50g |\n", dropout);
    printf("| early stop patience   | %-50d |\n", patience);
    printf("| seed                  | %-50d |\n", seed);
    printf("| max steps             | %-50d |\n", max_steps);
    if (strategy == STRATEGY_LORA) {
        printf("| LoRA r, alpha, dropout| %d, %g, %-40g |\n", lora_r, lora_alpha, lora_dropout);
    }
    printf("| device                | %-50.50s |\n", prop.name);
    printf("+-----------------------+----------------------------------------------------+\n");
    printf("| V, P, C, L, NH, FF, NC| %d, %d, %d, %d, %d, %d, %-22d |\n", cfg->V, cfg->P, cfg->C, cfg->L, cfg->NH, cfg->FF, cfg->NC);
    printf("| parameters            | %-50zu |\n", model.cpu.num_parameters);
    printf("| trainable parameters  | %-50zu |\n", bert_num_trainable(&model.cpu));
    printf("| train / val / test    | %d / %d / %-38d |\n", splits[0].N, splits[1].N, splits[2].N);
    printf("| T_max                 | %-50d |\n", T_max);
    printf("+-----------------------+----------------------------------------------------+\n");

    snprintf(path, sizeof(path), "%s/log.tsv", out_dir);
    FILE* log;
    fopenCheck(&log, path, "w");
    fprintf(log, "split\tepoch\tstep\ttrain_loss\tloss\taccuracy\tprecision\trecall\tf1\tseconds\tbest\n");
    fflush(log);

    char last_path[4096], best_path[4096];
    snprintf(last_path, sizeof(last_path), "%s/checkpoint_last.bin", out_dir);
    snprintf(best_path, sizeof(best_path), "%s/checkpoint_best.bin", out_dir);
    DataLoader loader;
    loader_init(&loader, &splits[0], B, (uint64_t)seed);
    EarlyStopping es;
    memset(&es, 0, sizeof(es));
    es.patience = patience;
    EpochRecord* history = NULL; // stb_ds growing list
    double run_start = now_seconds_();
    int done = 0;
    for (int epoch = 1; epoch <= epochs && !done; epoch++) {
        double epoch_start = now_seconds_();
        loader_start_epoch(&loader, epoch, 1);
        double loss_sum = 0.0;
        int nsteps = 0, Bb, T;
        while (loader_next_batch(&loader, model.cpu.ids, model.cpu.lengths, model.cpu.labels, cfg->pad_id, &Bb, &T)) {
            double t0 = now_seconds_();
            float step_lr = lr_at_step(lr, model.cpu.step, warmup, total_steps);
            bert_forward(&model, Bb, T, model.cpu.labels, 1);
            bert_zero_grad(&model);
            bert_backward(&model);
            float norm = bert_update(&model, step_lr, 0.9f, 0.999f, 1e-8f, weight_decay, max_norm);
            loss_sum += model.cpu.mean_loss;
            nsteps++;
            if (model.cpu.step % print_every == 0) {
                cudaCheck(cudaDeviceSynchronize()); // the step's time includes its device work
                printf("step %d/%d | epoch %d | loss %.4f | norm %.4f | lr %.2e | %.1f ms\n", model.cpu.step, total_steps,
                       epoch, model.cpu.mean_loss, norm, step_lr, (now_seconds_() - t0) * 1000.0);
                fflush(stdout);
            }
            if (max_steps > 0 && model.cpu.step >= max_steps) { done = 1; break; }
        }
        EpochRecord rec;
        memset(&rec, 0, sizeof(rec));
        rec.epoch = epoch;
        rec.train_loss = (float)(loss_sum / nsteps);
        metrics_init(&rec.val, cfg->NC);
        bert_evaluate(&model, &splits[1], B, &rec.val);
        rec.seconds = now_seconds_() - epoch_start;
        rec.best = early_stopping_update(&es, rec.val.f1, epoch);
        bert_save_checkpoint(&model, last_path, epoch);
        if (rec.best) { bert_save_checkpoint(&model, best_path, epoch); }
        printf("epoch %d | train loss %.4f | val loss %.4f | acc %.4f | precision %.4f | recall %.4f | F1 (weighted) %.4f | %.1f s%s\n",
               epoch, rec.train_loss, rec.val.loss, rec.val.accuracy, rec.val.precision, rec.val.recall, rec.val.f1,
               rec.seconds, rec.best ? " | best" : "");
        fprintf(log, "validation\t%d\t%d\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t%d\n", epoch, model.cpu.step, rec.train_loss,
                rec.val.loss, rec.val.accuracy, rec.val.precision, rec.val.recall, rec.val.f1, rec.seconds, rec.best);
        fflush(log);
        fflush(stdout);
        arrput(history, rec);
        if (early_stopping_should_stop(&es)) {
            printf("early stopping: no F1 improvement for %d epochs (best %.4f at epoch %d)\n", patience, es.best_f1, es.best_epoch);
            done = 1;
        }
    }
    double train_seconds = now_seconds_() - run_start;

    // the best checkpoint by validation F1, then the test split
    bert_load_checkpoint(&model, best_path);
    printf("loaded the best checkpoint (epoch %d, validation F1 %.4f) from %s\n", es.best_epoch, es.best_f1, best_path);
    Metrics test;
    metrics_init(&test, cfg->NC);
    bert_evaluate(&model, &splits[2], B, &test);
    metrics_print_report(&test, "test");
    fprintf(log, "test\t%d\t%d\t\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t1\n", es.best_epoch, model.cpu.step, test.loss, test.accuracy,
            test.precision, test.recall, test.f1, train_seconds);
    fcloseCheck(log, path);
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    printf("summary | strategy %s | trainable %zu | epochs %d | train runtime %.1f s | test acc %.4f | precision %.4f | recall %.4f | F1 %.4f | loss %.4f\n",
           STRATEGY_NAMES[strategy], bert_num_trainable(&model.cpu), (int)arrlen(history), train_seconds, test.accuracy,
           test.precision, test.recall, test.f1, test.loss);
    printf("device memory in use %.1f MiB of %.1f MiB (%s, %s)\n", (total_b - free_b) / 1048576.0, total_b / 1048576.0,
           prop.name, cu::precision_name(precision));

    for (int i = 0; i < arrlen(history); i++) { metrics_free(&history[i].val); }
    arrfree(history);
    metrics_free(&test);
    loader_free(&loader);
    for (int k = 0; k < 3; k++) { dataset_free(&splits[k]); }
    bert_free(&model);
    return 0;
}
#endif
