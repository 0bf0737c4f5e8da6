/*
BERT fine-tuning for sequence classification, on one NVIDIA GPU, or one per rank of mpirun (make
train_bertcu USE_MPI=1: cuda/dist.cuh sums the ranks' gradients with NCCL, in bert_update).

This file is train_bert.c's model functions on the device, and nothing else: bert_forward,
bert_zero_grad, bert_backward and bert_update (in namespace cu, with the CPU's names and
arguments), the device buffers they use, and the copies between host and device that
checkpoints and training states need. The program around them (flags, data, the loop,
evaluation, checkpoints, logs, resume, classify mode) is trainer.h, the same code the CPU
trainer runs, so train_bertcu has every flag, file and output line of train_bert, plus -c.
The layers are header-only kernels in cuda/, one header per CPU layer.

The host model (Bert, from train_bert.c) keeps the config, the tensor tables, the strategy, the
step and the batch, and host copies of the weights and moments; it knows nothing of the device.
The device state of each model set up (BertGPU, below) is found from the host model's address.
Dropout masks are the CPU's (bertc/rand.h runs on both sides).

Precision (-c): fp32 (default) is plain FP32 everywhere, TF32 off, so it matches the CPU to
rounding. bf16 rounds the matrix-product operands to bf16 (tensor cores, fp32 accumulation into
fp32 outputs); activations, LayerNorm, softmax, loss, norm and AdamW stay fp32, and the master
weights are fp32. It is not yet bf16 activation storage (dev/cuda/README.md has the plan).

Kernel sets (-K): 1 the first versions; 2 fused (optimizer, residual + LayerNorm, attention without
the stored softmax, evaluation on the device); 3 set 2 on packed tokens; 4 set 3 with cuBLASLt bias
epilogues (matmul.cuh).

Run: make train_bertcu && ./train_bertcu -s full      (./train_bertcu -h lists every flag)
*/
#define TESTING                  // train_bert.c without its main
#include "train_bert.c"          // defines: the host model (Bert, tables), the layers' CPU
                                 // reference, trainer.h
#include "cuda/common.cuh"       // defines: cudaCheck, cublasCheck, kernelCheck, reductions
#include "cuda/matmul.cuh"       // defines: cu::Matmul, cu::matmul_forward, cu::matmul_backward, cu::gemm_ (cuBLAS)
#include "cuda/embedding.cuh"    // defines: cu::embedding_forward, cu::embedding_backward
#include "cuda/layernorm.cuh"    // defines: cu::layernorm_forward, cu::layernorm_backward
#include "cuda/dropout.cuh"      // defines: cu::dropout_forward, cu::dropout_backward
#include "cuda/attention.cuh"    // defines: cu::attention_forward, cu::attention_backward
#include "cuda/gelu.cuh"         // defines: cu::gelu_forward, cu::gelu_backward
#include "cuda/pooler.cuh"       // defines: cu::pooler_forward, cu::pooler_backward
#include "cuda/crossentropy.cuh" // defines: cu::crossentropy_forward, cu::crossentropy_backward
#include "cuda/lora.cuh"         // defines: cu::lora_forward, cu::lora_backward
#include "cuda/adamw.cuh"        // defines: cu::grad_sumsq, cu::adamw_update
#include "cuda/dist.cuh"         // defines: cu::gpu_dist_init, cu::gpu_dist_sum_floats (NCCL)

namespace cu {

// ----------------------------------------------------------------------------
// the device state of one model

// The host side of a batch's uploads: pinned, so the copies are asynchronous and a step never waits for the
// device. Two slots, used by alternate batches: the host fills one while the device may still copy from the
// other, and waits on a slot's event (recorded after its last copy) before filling it again.
typedef struct {
    int* ids;     // (B_max * T_max)
    int* types;   // (B_max * T_max)
    int* lengths; // (B_max)
    int* labels;  // (B_max)
    int* pack;    // (B_max * T_max + B_max) kernel set 3: the real tokens' rows, then each sequence's first row
    int* sort;    // (3 * B_max * T_max + 1) kernel set 2: embedding_sort_tokens' tokens, runs and run ids
    cudaEvent_t uploaded;
} Upload;

typedef struct {
    int kernels;             // the kernel set (-K): 1 the first versions, 2 the fused ones
                             // (dev/cuda/README.md)
    Matmul mm;               // cuBLAS handle and precision, this model's own
    ParameterTensors params; // (num_parameters) in the table's order, as the host's
    float* params_memory;
    LoraTensors lora;
    float* lora_memory;      // (num_lora_parameters)
    ParameterTensors grads;  // NULL for tensors that do not train
    LoraTensors lora_grads;
    float* grads_memory;     // (num_trainable): trainable gradients in table order, then LoRA's, so the
                             // norm and AdamW walk it flat, in the order of the moments
    size_t num_trainable;    // 0 for inference (classify mode)
    float* m_memory;         // (num_trainable) AdamW moments
    float* v_memory;
    __nv_bfloat16* params16; // bf16 copies of the weights for the bf16 matrix products (bf16 only)
    __nv_bfloat16* lora16;
    int weights16_stale;     // 2: recast everything, 1: recast what trains, 0: up to date
    ActivationTensors acts;  // from train_bert.c's ACTIVATION_SPECS
    float* acts_memory;
    ScratchTensors scratch;  // from SCRATCH_SPECS (the GPU rows)
    float* scratch_memory;
    float* att_memory;       // att_stats and datt, one of them of size 0
    float* att_stats;        // (L, B, NH, T, 2) kernel set 2: each softmax row's max and sum,
                             // instead of acts.att
    float* datt;             // (B, NH, T, T) kernel set 1: the attention score gradients
    int* ids;                // (B_max * T_max)
    int* types;              // (B_max * T_max) token types
    int* lengths;            // (B_max)
    int* labels;             // (B_max)
    double* norm_partials;   // (NORM_BLOCKS)
    double* norm_sumsq;      // (1)
    float* host_out;         // (B_max * max(C, NC)) logits or pooled output copied back
    // kernel set 2 (-K 2): the step's numbers stay on the device until the host asks
    AdamWTable adamw;        // the trainable tensors for the fused optimizer step
    float* loss;             // (1) the last forward's mean loss
    int* confusion;          // (NC, NC) evaluation: rows the true label, columns the prediction
    double* loss_sum;        // (1) evaluation: the sum of batch losses times batch sizes
    int* confusion_host;     // (NC, NC) kernel set 1's evaluation, on the host
    double loss_sum_host;
    int* tokens;             // (B_max * T_max) the batch's real tokens sorted by id (embedding_sort_tokens), device
    int* runs;               // (B_max * T_max + 1) where each id's run of tokens starts, device
    int* run_ids;            // (B_max * T_max) the id of each run, device
    Upload up[2];            // pinned host staging for the uploads, the current batch's is up[slot]
    int slot;
    // the training steps since the trainer last read them (bert_read_steps)
    int nsteps;
    float* step_loss;        // (STEPS_MAX) each step's mean loss, device (kernel set 2)
    double* step_sumsq;      // (STEPS_MAX) each step's squared gradient norm, device (kernel set 2)
    float step_loss_host[STEPS_MAX], step_norm_host[STEPS_MAX]; // kernel set 1's, on the host
    // kernel set 3 (-K 3): packed tokens. Per-token tensors hold only the real tokens, N = sum of lengths rows
    // instead of B * T (the layers' strides stay B * T); row n is padded row rows[n], sequence b starts at row
    // starts[b]. The dropout masks keep the padded indices, so they are the CPU's.
    int packed;              // 1 when this model packs (kernel set 3 and attention kernel set 2 takes the shape)
    int ntok;                // the last forward's N
    int* rows;               // (B_max * T_max) device
    int* starts;             // (B_max) device
} BertGPU;

// The kernel set of the models set up from now on: the trainer's -K (bert_init_device), a test's
// choice.
static int kernel_set = 1;

// The device state of each host model set up, by the host model's address: the trainer has one
// model, the tests a CPU and a GPU one side by side.
#define GPU_MODELS_MAX 8
static struct { const Bert* host; BertGPU* gpu; } gpu_models_[GPU_MODELS_MAX];

static BertGPU* gpu_find_(const Bert* model) { // NULL: not set up
    for (int i = 0; i < GPU_MODELS_MAX; i++) {
        if (gpu_models_[i].host == model) { return gpu_models_[i].gpu; }
    }
    return NULL;
}

static BertGPU* gpu_(const Bert* model) {
    BertGPU* g = gpu_find_(model);
    if (g == NULL) { error_exit("the GPU model is not set up (cu::bert_setup)"); }
    return g;
}

// remember g as model's device state; g NULL: forget model's
static void gpu_register_(const Bert* model, BertGPU* g) {
    const Bert* slot = g != NULL ? NULL : model; // a free slot, or model's own
    for (int i = 0; i < GPU_MODELS_MAX; i++) {
        if (gpu_models_[i].host == slot) {
            gpu_models_[i].host = g != NULL ? model : NULL;
            gpu_models_[i].gpu = g;
            return;
        }
    }
    error_exit("more than %d GPU models at once", GPU_MODELS_MAX);
}

// one zeroed cudaMalloc for a table of tensors; rows of size 0 get NULL
static float* cuda_malloc_and_point_(float** ptrs, const size_t* sizes, int n) {
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

// the host copies of weights (and, when training, AdamW moments) -> device
void bert_from_host(Bert* model) {
    BertGPU* g = gpu_(model);
    cudaCheck(cudaMemcpy(g->params_memory, model->params_memory, model->num_parameters * sizeof(float),
                         cudaMemcpyHostToDevice));
    if (model->num_lora_parameters > 0) {
        cudaCheck(cudaMemcpy(g->lora_memory, model->lora_memory, model->num_lora_parameters * sizeof(float),
                             cudaMemcpyHostToDevice));
    }
    if (g->num_trainable > 0) {
        cudaCheck(cudaMemcpy(g->m_memory, model->m_memory, g->num_trainable * sizeof(float), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(g->v_memory, model->v_memory, g->num_trainable * sizeof(float), cudaMemcpyHostToDevice));
    }
    g->weights16_stale = 2;
}

// device -> the host copies, before a checkpoint or a training state is written
void bert_to_host(Bert* model) {
    BertGPU* g = gpu_(model);
    cudaCheck(cudaMemcpy(model->params_memory, g->params_memory, model->num_parameters * sizeof(float),
                         cudaMemcpyDeviceToHost));
    if (model->num_lora_parameters > 0) {
        cudaCheck(cudaMemcpy(model->lora_memory, g->lora_memory, model->num_lora_parameters * sizeof(float),
                             cudaMemcpyDeviceToHost));
    }
    if (g->num_trainable > 0) {
        cudaCheck(cudaMemcpy(model->m_memory, g->m_memory, g->num_trainable * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(model->v_memory, g->v_memory, g->num_trainable * sizeof(float), cudaMemcpyDeviceToHost));
    }
}

// Device memory for a model built on the host (bert_build_from_file, and bert_init_training when
// it trains): weights, gradients and moments of what trains, activations and scratch for batches
// up to (B_max, T_max) from train_bert.c's buffer tables, the batch, and cuBLAS at
// model->precision.
void bert_setup(Bert* model, int B_max, int T_max) {
    if (gpu_find_(model) != NULL) {
        error_exit("cu::bert_setup: the model is set up already (cu::bert_free first)");
    }
    BertGPU* g = (BertGPU*)callocCheck(1, sizeof(BertGPU));
    gpu_register_(model, g);
    g->kernels = kernel_set;
    const BertConfig* cfg = &model->config;
    // the weights: the same table and order as the host's, so one copy moves them (bert_from_host)
    size_t sizes[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    table_sizes(sizes, model->param_info, NUM_PARAMETER_TENSORS, 0);
    g->params_memory = cuda_malloc_and_point_((float**)&g->params, sizes, NUM_PARAMETER_TENSORS);
    int lora = model->strategy == STRATEGY_LORA;
    if (lora) {
        table_sizes(sizes, model->lora_info, NUM_LORA_TENSORS, 0);
        g->lora_memory = cuda_malloc_and_point_((float**)&g->lora, sizes, NUM_LORA_TENSORS);
    }
    if (model->m_memory != NULL) { // training: gradients and moments of what trains, in the order of the moments
        table_sizes(sizes, model->param_info, NUM_PARAMETER_TENSORS, 1);
        if (lora) { table_sizes(sizes + NUM_PARAMETER_TENSORS, model->lora_info, NUM_LORA_TENSORS, 0); }
        float* ptrs[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
        g->grads_memory = cuda_malloc_and_point_(ptrs, sizes, NUM_PARAMETER_TENSORS + (lora ? NUM_LORA_TENSORS : 0));
        memcpy(&g->grads, ptrs, sizeof(g->grads));
        if (lora) {
            g->lora_grads.lora_a = ptrs[NUM_PARAMETER_TENSORS]; g->lora_grads.lora_b = ptrs[NUM_PARAMETER_TENSORS + 1];
        }
        g->num_trainable = bert_num_trainable(model);
        cudaCheck(cudaMalloc(&g->m_memory, g->num_trainable * sizeof(float)));
        cudaCheck(cudaMalloc(&g->v_memory, g->num_trainable * sizeof(float)));
        cudaCheck(cudaMalloc(&g->norm_partials, NORM_BLOCKS * sizeof(double)));
        cudaCheck(cudaMalloc(&g->norm_sumsq, sizeof(double)));
    }
    // activations and scratch from the shared tables
    int r = lora ? model->lora_r : 0;
    size_t a[NUM_ACTIVATION_TENSORS], s[NUM_SCRATCH_TENSORS];
    fill_in_buffer_sizes(a, ACTIVATION_SPECS, NUM_ACTIVATION_TENSORS, cfg, B_max, T_max, r);
    fill_in_buffer_sizes(s, SCRATCH_SPECS, NUM_SCRATCH_TENSORS, cfg, B_max, T_max, r);
    g->packed = g->kernels >= 3 && attention2_fits(T_max, cfg->C, cfg->NH);
    // kernel set 2 recomputes the softmax in backward from each row's max and sum:
    // no (L, B, NH, T, T) probabilities, no score gradients
    int att2 = g->kernels >= 2 && attention2_fits(T_max, cfg->C, cfg->NH);
    size_t BNT = (size_t)B_max * cfg->NH * T_max;
    size_t att_sizes[2] = {att2 ? cfg->L * BNT * 2 : 0, att2 ? 0 : BNT * T_max};
    if (att2) { a[buffer_index(ACTIVATION_SPECS, NUM_ACTIVATION_TENSORS, "att")] = 0; }
    g->acts_memory = cuda_malloc_and_point_((float**)&g->acts, a, NUM_ACTIVATION_TENSORS);
    g->scratch_memory = cuda_malloc_and_point_((float**)&g->scratch, s, NUM_SCRATCH_TENSORS);
    float* att_ptrs[2];
    g->att_memory = cuda_malloc_and_point_(att_ptrs, att_sizes, 2);
    g->att_stats = att_ptrs[0];
    g->datt = att_ptrs[1];
    // the batch, uploaded by each forward from the host's buffers
    cudaCheck(cudaMalloc(&g->ids, (size_t)B_max * T_max * sizeof(int)));
    cudaCheck(cudaMalloc(&g->types, (size_t)B_max * T_max * sizeof(int)));
    cudaCheck(cudaMalloc(&g->lengths, B_max * sizeof(int)));
    cudaCheck(cudaMalloc(&g->labels, B_max * sizeof(int)));
    g->host_out =
        (float*)mallocCheck((size_t)B_max * (cfg->C > cfg->NC ? cfg->C : cfg->NC) * sizeof(float));
    // cuBLAS; for bf16 the weight copies and the scratch for the largest operand that is not a
    // weight: (B*T, max(FF, 3C)), dqkv read with stride 3C
    size_t wide = cfg->FF > 3 * cfg->C ? cfg->FF : 3 * cfg->C;
    matmul_init(&g->mm, model->precision, g->kernels, (size_t)B_max * T_max * wide,
                (size_t)B_max * T_max, wide);
    size_t BT_max = (size_t)B_max * T_max;
    cudaCheck(cudaMalloc(&g->loss, sizeof(float)));
    cudaCheck(cudaMalloc(&g->confusion, (size_t)cfg->NC * cfg->NC * sizeof(int)));
    cudaCheck(cudaMalloc(&g->loss_sum, sizeof(double)));
    g->confusion_host = (int*)callocCheck((size_t)cfg->NC * cfg->NC, sizeof(int));
    cudaCheck(cudaMalloc(&g->tokens, BT_max * sizeof(int)));
    cudaCheck(cudaMalloc(&g->runs, (BT_max + 1) * sizeof(int)));
    cudaCheck(cudaMalloc(&g->run_ids, BT_max * sizeof(int)));
    cudaCheck(cudaMalloc(&g->rows, BT_max * sizeof(int)));
    cudaCheck(cudaMalloc(&g->starts, B_max * sizeof(int)));
    for (int k = 0; k < 2; k++) {
        Upload* u = &g->up[k];
        cudaCheck(cudaMallocHost(&u->ids, BT_max * sizeof(int)));
        cudaCheck(cudaMallocHost(&u->types, BT_max * sizeof(int)));
        cudaCheck(cudaMallocHost(&u->lengths, B_max * sizeof(int)));
        cudaCheck(cudaMallocHost(&u->labels, B_max * sizeof(int)));
        cudaCheck(cudaMallocHost(&u->pack, (BT_max + B_max) * sizeof(int)));
        cudaCheck(cudaMallocHost(&u->sort, (3 * BT_max + 1) * sizeof(int)));
        cudaCheck(cudaEventCreate(&u->uploaded));
    }
    cudaCheck(cudaMalloc(&g->step_loss, STEPS_MAX * sizeof(float)));
    cudaCheck(cudaMalloc(&g->step_sumsq, STEPS_MAX * sizeof(double)));
    if (model->precision == PRECISION_BF16) {
        cudaCheck(cudaMalloc(&g->params16, model->num_parameters * sizeof(__nv_bfloat16)));
        matmul_register_bf16(&g->mm, 0, g->params_memory, g->params16, model->num_parameters);
        if (lora) {
            cudaCheck(cudaMalloc(&g->lora16, model->num_lora_parameters * sizeof(__nv_bfloat16)));
            matmul_register_bf16(&g->mm, 1, g->lora_memory, g->lora16, model->num_lora_parameters);
        }
    }
    // kernel set 2's optimizer table: the trainable tensors in the order of the flat gradient and moment blocks
    if (g->num_trainable > 0) {
        size_t offset = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS; i++) {
            int is_lora = i >= NUM_PARAMETER_TENSORS;
            if (is_lora && !lora) { break; }
            const TensorInfo* t = is_lora ? &model->lora_info[i - NUM_PARAMETER_TENSORS] : &model->param_info[i];
            if (!t->trainable) { continue; }
            float* base = is_lora ? g->lora_memory : g->params_memory;
            float* param = is_lora ? ((float**)&g->lora)[i - NUM_PARAMETER_TENSORS] : ((float**)&g->params)[i];
            __nv_bfloat16* base16 = is_lora ? g->lora16 : g->params16;
            AdamWTensor a = {param, base16 != NULL ? base16 + (param - base) : NULL, offset, t->size, t->decay};
            g->adamw.t[g->adamw.n++] = a;
            offset += t->size;
        }
    }
    bert_from_host(model);
}

// recast the bf16 weight copies that changed (bf16 only)
static void weights16_refresh_(const Bert* model, BertGPU* g) {
    if (model->precision != PRECISION_BF16 || g->weights16_stale == 0) { return; }
    if (g->weights16_stale == 2) {
        cast_bf16(g->params16, g->params_memory, model->num_parameters);
    } else {
        size_t offset = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            size_t n = model->param_info[i].size;
            if (model->param_info[i].trainable) { cast_bf16(g->params16 + offset, g->params_memory + offset, n); }
            offset += n;
        }
    }
    if (model->num_lora_parameters > 0) { cast_bf16(g->lora16, g->lora_memory, model->num_lora_parameters); }
    g->weights16_stale = 0;
}

// ----------------------------------------------------------------------------
// forward, backward, update: train_bert.c's, line for line, on the device

// Forward pass over the batch in model->ids / lengths (B, T), uploaded here. With labels (host),
// also the mean cross-entropy in model->mean_loss. train = 1 turns dropout on.
void bert_forward(Bert* model, int B, int T, const int* labels, int train) {
    bert_set_batch(model, B, T);
    BertGPU* g = gpu_(model);
    const Matmul* mm = &g->mm;
    ParameterTensors w = g->params; // on the device, as the activations and scratch
    ActivationTensors a = g->acts;
    ScratchTensors s = g->scratch;
    const BertConfig* cfg = &model->config;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    size_t BNT2 = (size_t)B * NH * T * 2; // a layer's att_stats (kernel set 2)
    int r = model->lora_r;
    float p = train ? model->dropout : 0.0f, plora = train ? model->lora_dropout : 0.0f;
    float lora_scale = model->strategy == STRATEGY_LORA ? model->lora_alpha / r : 0.0f;
    size_t BTC = (size_t)BT * C;
    // the batch to the device through the next pinned slot, once the device has copied from it last time
    g->slot ^= 1;
    Upload* u = &g->up[g->slot];
    cudaCheck(cudaEventSynchronize(u->uploaded));
    memcpy(u->ids, model->ids, (size_t)BT * sizeof(int));
    memcpy(u->types, model->types, (size_t)BT * sizeof(int));
    memcpy(u->lengths, model->lengths, B * sizeof(int));
    cudaCheck(cudaMemcpyAsync(g->ids, u->ids, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpyAsync(g->types, u->types, (size_t)BT * sizeof(int),
                              cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpyAsync(g->lengths, u->lengths, B * sizeof(int), cudaMemcpyHostToDevice));
    // the bf16 weight copies up to date (bf16 only)
    weights16_refresh_(model, g);
    // kernel set 3: the real tokens' rows. N rows per token tensor, rows/starts say where they sit (NULL: padded)
    int N = BT;
    const int* rows = NULL;
    const int* starts = NULL;
    if (g->packed) {
        int* rows_host = u->pack;
        int* starts_host = u->pack + BT;
        N = batch_pack(rows_host, starts_host, model->lengths, B, T); // the CPU's maps (train_bert.c)
        cudaCheck(cudaMemcpyAsync(g->rows, rows_host, (size_t)N * sizeof(int), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpyAsync(g->starts, starts_host, B * sizeof(int), cudaMemcpyHostToDevice));
        rows = g->rows;
        starts = g->starts;
    }
    g->ntok = N;

    // BertEmbeddings: hs[0] = dropout(LayerNorm(wte[ids] + wpe[t] + wtt[types])); the dropout is
    // fused into the LayerNorm
    embedding_forward(a.encoded, g->ids, g->types, w.wte, w.wpe, w.wtt, B, T, C, rows, N);
    layernorm_forward(a.hs, a.emb_mean, a.emb_rstd, a.encoded, w.embln_w, w.embln_b, N, C, cfg->eps, p,
                      bert_slice_stream(model, -1, 0), rows);
    for (int l = 0; l < L; l++) {
        LayerActivations la = layer_activations(&a, l, B, T, C, NH, FF);
        matmul_forward(mm, la.qkv, la.x, LAYER_(w.qkvw, l, 3 * C * C), LAYER_(w.qkvb, l, 3 * C), N, C, 3 * C);
        if (model->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_forward(mm, la.qkv + j * C, 3 * C, a.lora_u + lj * BT * r, s.xd, la.x, g->lora.lora_a + lj * r * C,
                             g->lora.lora_b + lj * C * r, N, C, C, r, lora_scale, plora,
                             bert_slice_stream(model, l, SITE_LORA_Q + j), rows);
            }
        }
        if (la.att == NULL) { // kernel set 2: only the rows' max and sum are kept
            attention_forward2(la.atty, LAYER_(g->att_stats, l, BNT2), la.qkv, g->lengths, B, T, C,
                               NH, p, bert_slice_stream(model, l, SITE_ATT), starts);
        } else {
            attention_forward(la.atty, la.att, la.qkv, g->lengths, B, T, C, NH, p,
                              bert_slice_stream(model, l, SITE_ATT));
        }
        matmul_forward(mm, s.tmp, la.atty, LAYER_(w.attprojw, l, C * C), LAYER_(w.attprojb, l, C), N, C, C);
        if (g->kernels >= 2) { // r1 = x + dropout(tmp), ln1 = LN1(r1) in one pass
            residual_layernorm_forward(la.ln1, la.r1, la.ln1_mean, la.ln1_rstd, s.tmp, la.x, LAYER_(w.ln1w, l, C),
                                       LAYER_(w.ln1b, l, C), N, C, cfg->eps, p,
                                       bert_slice_stream(model, l, SITE_ATTPROJ), rows);
        } else {
            dropout_forward(la.r1, s.tmp, la.x, BTC, p, bert_slice_stream(model, l, SITE_ATTPROJ));
            layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, la.r1, LAYER_(w.ln1w, l, C), LAYER_(w.ln1b, l, C),
                              BT, C, cfg->eps, 0.0f, 0);
        }
        matmul_forward(mm, la.fch, la.ln1, LAYER_(w.fcw, l, FF * C), LAYER_(w.fcb, l, FF), N, C, FF);
        gelu_forward(la.fch_gelu, la.fch, (size_t)N * FF);
        matmul_forward(mm, s.tmp, la.fch_gelu, LAYER_(w.fcprojw, l, C * FF), LAYER_(w.fcprojb, l, C), N, FF, C);
        if (g->kernels >= 2) { // r2 = ln1 + dropout(tmp), hs[l+1] = LN2(r2)
            residual_layernorm_forward(la.x + BTC, la.r2, la.ln2_mean, la.ln2_rstd, s.tmp, la.ln1, LAYER_(w.ln2w, l, C),
                                       LAYER_(w.ln2b, l, C), N, C, cfg->eps, p,
                                       bert_slice_stream(model, l, SITE_FCPROJ), rows);
        } else {
            dropout_forward(la.r2, s.tmp, la.ln1, BTC, p, bert_slice_stream(model, l, SITE_FCPROJ));
            layernorm_forward(la.x + BTC, la.ln2_mean, la.ln2_rstd, la.r2, LAYER_(w.ln2w, l, C),
                              LAYER_(w.ln2b, l, C), BT, C, cfg->eps, 0.0f, 0);
        }
    }
    pooler_forward(mm, a.pooled, a.cls, a.hs + L * BTC, w.poolw, w.poolb, B, T, C, starts);
    dropout_forward(a.pooled_d, a.pooled, NULL, (size_t)B * C, p, bert_slice_stream(model, L, 0));
    matmul_forward(mm, a.logits, a.pooled_d, w.clsw, w.clsb, B, C, NC);
    if (labels != NULL) {
        if (labels != model->labels) { memcpy(model->labels, labels, B * sizeof(int)); }
        memcpy(u->labels, labels, B * sizeof(int));
        cudaCheck(cudaMemcpyAsync(g->labels, u->labels, B * sizeof(int), cudaMemcpyHostToDevice));
        crossentropy_forward(a.losses, a.probs, a.logits, g->labels, B, NC);
        // with ranks, this slice's share of the global batch's mean (the ranks' shares sum to it)
        int B_mean = model->B_global != 0 ? model->B_global : B;
        if (g->kernels >= 2) { // on the device: the host reads it with the norm (bert_update) or
                               // the evaluation
            mean_loss(g->loss, a.losses, B, B_mean);
        } else {
            cudaCheck(cudaMemcpy(g->host_out, a.losses, B * sizeof(float), cudaMemcpyDeviceToHost));
            float mean = 0.0f; // summed in the CPU's order and precision (bert_forward's)
            double sum = 0.0;
            for (int b = 0; b < B; b++) { mean += g->host_out[b]; sum += g->host_out[b]; }
            model->mean_loss = B_mean == B ? mean / B : (float)(sum / B_mean);
        }
    }
    cudaCheck(cudaEventRecord(u->uploaded));
}

void bert_zero_grad(Bert* model) {
    BertGPU* g = gpu_(model);
    cudaCheck(cudaMemset(g->grads_memory, 0, g->num_trainable * sizeof(float)));
}

// Backward pass of the last training forward, as train_bert.c's bert_backward line for line.
void bert_backward(Bert* model) {
    BertGPU* g = gpu_(model);
    const Matmul* mm = &g->mm;
    ParameterTensors w = g->params, gr = g->grads; // on the device, as the activations and scratch
    ActivationTensors a = g->acts;
    ScratchTensors s = g->scratch;
    const BertConfig* cfg = &model->config;
    int B = model->B, T = model->T;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    size_t BNT2 = (size_t)B * NH * T * 2; // a layer's att_stats (kernel set 2)
    float p = model->dropout, plora = model->lora_dropout; // the forward's rates (it was a training pass)
    int r = model->lora_r;
    float lora_scale = model->strategy == STRATEGY_LORA ? model->lora_alpha / r : 0.0f;
    size_t BTC = (size_t)BT * C;
    // kernel set 3: the forward's packed rows (N = BT, rows = starts = NULL when padded)
    int N = g->ntok;
    const int* rows = g->packed ? g->rows : NULL;
    const int* starts = g->packed ? g->starts : NULL;
    size_t NC_ = (size_t)N * C;

    // loss = crossentropy(logits), logits = pooled_d @ clsw^T + clsb
    int B_mean = model->B_global != 0 ? model->B_global : B; // the global batch's, with ranks
    crossentropy_backward(s.dlogits, a.probs, g->labels, B, B_mean, NC);
    if (model->strategy == STRATEGY_FROZEN) {
        matmul_backward(mm, NULL, gr.clsw, gr.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
        return;
    }
    float* dpooled_d = s.dsmall;
    float* dpooled = s.dsmall + (size_t)B * C;
    cudaCheck(cudaMemset(s.dsmall, 0, 2 * (size_t)B * C * sizeof(float)));
    matmul_backward(mm, dpooled_d, gr.clsw, gr.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
    // pooled_d = dropout(pooled), pooled = tanh(hs[L][:, 0] @ poolw^T + poolb)
    dropout_backward(dpooled, dpooled_d, (size_t)B * C, p, bert_slice_stream(model, L, 0));
    cudaCheck(cudaMemset(s.dh, 0, NC_ * sizeof(float)));
    pooler_backward(mm, s.dh, gr.poolw, gr.poolb, s.dsmall + 2 * (size_t)B * C,
                    s.dsmall + 3 * (size_t)B * C, dpooled, a.pooled, a.cls, w.poolw, B, T, C,
                    starts);
    for (int l = L - 1; l >= 0; l--) {
        LayerActivations la = layer_activations(&a, l, B, T, C, NH, FF);
        // hs[l+1] = LN2(r2), r2 = dropout(fch_gelu @ fcprojw^T + fcprojb) + ln1
        if (g->kernels >= 2) { // dln1 = LN2'(dh), tmp = mask * dln1 in one pass
            residual_layernorm_backward(s.dln1, s.tmp, LAYER_(gr.ln2w, l, C), LAYER_(gr.ln2b, l, C), s.dh, la.r2,
                                        LAYER_(w.ln2w, l, C), la.ln2_mean, la.ln2_rstd, N, C, p,
                                        bert_slice_stream(model, l, SITE_FCPROJ), rows);
        } else {
            cudaCheck(cudaMemset(s.dr, 0, BTC * sizeof(float)));
            layernorm_backward(s.dr, LAYER_(gr.ln2w, l, C), LAYER_(gr.ln2b, l, C), s.dh, la.r2, LAYER_(w.ln2w, l, C),
                               la.ln2_mean, la.ln2_rstd, BT, C);
            cudaCheck(cudaMemcpy(s.dln1, s.dr, BTC * sizeof(float), cudaMemcpyDeviceToDevice));
            cudaCheck(cudaMemset(s.tmp, 0, BTC * sizeof(float)));
            dropout_backward(s.tmp, s.dr, BTC, p, bert_slice_stream(model, l, SITE_FCPROJ));
        }
        cudaCheck(cudaMemset(s.dfch, 0, (size_t)N * FF * sizeof(float)));
        matmul_backward(mm, s.dfch, LAYER_(gr.fcprojw, l, C * FF), LAYER_(gr.fcprojb, l, C), s.tmp, la.fch_gelu,
                        LAYER_(w.fcprojw, l, C * FF), N, FF, C);
        // fch_gelu = gelu(fch), fch = ln1 @ fcw^T + fcb
        gelu_backward(s.dfch, la.fch, s.dfch, (size_t)N * FF);
        matmul_backward(mm, s.dln1, LAYER_(gr.fcw, l, FF * C), LAYER_(gr.fcb, l, FF), s.dfch, la.ln1,
                        LAYER_(w.fcw, l, FF * C), N, C, FF);
        // ln1 = LN1(r1), r1 = dropout(atty @ attprojw^T + attprojb) + x: dh now collects d(x)
        if (g->kernels >= 2) { // dh = LN1'(dln1), tmp = mask * dh in one pass
            residual_layernorm_backward(s.dh, s.tmp, LAYER_(gr.ln1w, l, C), LAYER_(gr.ln1b, l, C), s.dln1, la.r1,
                                        LAYER_(w.ln1w, l, C), la.ln1_mean, la.ln1_rstd, N, C, p,
                                        bert_slice_stream(model, l, SITE_ATTPROJ), rows);
        } else {
            cudaCheck(cudaMemset(s.dr, 0, BTC * sizeof(float)));
            layernorm_backward(s.dr, LAYER_(gr.ln1w, l, C), LAYER_(gr.ln1b, l, C), s.dln1, la.r1, LAYER_(w.ln1w, l, C),
                               la.ln1_mean, la.ln1_rstd, BT, C);
            cudaCheck(cudaMemcpy(s.dh, s.dr, BTC * sizeof(float), cudaMemcpyDeviceToDevice));
            cudaCheck(cudaMemset(s.tmp, 0, BTC * sizeof(float)));
            dropout_backward(s.tmp, s.dr, BTC, p, bert_slice_stream(model, l, SITE_ATTPROJ));
        }
        cudaCheck(cudaMemset(s.datty, 0, NC_ * sizeof(float)));
        matmul_backward(mm, s.datty, LAYER_(gr.attprojw, l, C * C), LAYER_(gr.attprojb, l, C),
                        s.tmp, la.atty, LAYER_(w.attprojw, l, C * C), N, C, C);
        // atty = attention(qkv); kernel set 1's score gradients go through s.datt, kernel set 2 recomputes
        cudaCheck(cudaMemset(s.dqkv, 0, NC_ * 3 * sizeof(float)));
        if (la.att == NULL) {
            attention_backward2(s.dqkv, s.datty, la.qkv, LAYER_(g->att_stats, l, BNT2), g->lengths,
                                B, T, C, NH, p, bert_slice_stream(model, l, SITE_ATT), starts);
        } else {
            attention_backward(s.dqkv, g->datt, s.datty, la.qkv, la.att, g->lengths, B, T, C, NH, p,
                               bert_slice_stream(model, l, SITE_ATT));
        }
        // qkv = x @ qkvw^T + qkvb (+ LoRA); below layer 0 only the full strategy needs d(x)
        float* dx = (l > 0 || model->strategy == STRATEGY_FULL) ? s.dh : NULL;
        matmul_backward(mm, dx, LAYER_(gr.qkvw, l, 3 * C * C), LAYER_(gr.qkvb, l, 3 * C), s.dqkv, la.x,
                        LAYER_(w.qkvw, l, 3 * C * C), N, C, 3 * C);
        if (model->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_backward(mm, dx, g->lora_grads.lora_a + lj * r * C, g->lora_grads.lora_b + lj * C * r, s.du, s.xd,
                              s.dqkv + j * C, 3 * C, a.lora_u + lj * BT * r, la.x, g->lora.lora_a + lj * r * C,
                              g->lora.lora_b + lj * C * r, N, C, C, r, lora_scale, plora,
                              bert_slice_stream(model, l, SITE_LORA_Q + j), rows);
            }
        }
    }
    if (model->strategy != STRATEGY_FULL) { return; }
    // hs[0] = dropout(LN(encoded)), encoded = wte[ids] + wpe[t] + wtt[types]
    cudaCheck(cudaMemset(s.dr, 0, NC_ * sizeof(float)));
    dropout_backward(s.dr, s.dh, NC_, p, bert_slice_stream(model, -1, 0), rows, C);
    cudaCheck(cudaMemset(s.tmp, 0, NC_ * sizeof(float)));
    layernorm_backward(s.tmp, gr.embln_w, gr.embln_b, s.dr, a.encoded, w.embln_w, a.emb_mean, a.emb_rstd, N, C);
    if (g->kernels >= 2) { // parallel over the ids present, from the host's sorted list of tokens
        Upload* u = &g->up[g->slot]; // the forward's slot: its event was waited for before the forward filled it
        int ntok, *tokens = u->sort, *runs = tokens + (size_t)B * T, *run_ids = runs + (size_t)B * T + 1;
        int nruns = embedding_sort_tokens(tokens, runs, run_ids, model->ids, model->lengths, B, T,
                                          g->packed ? u->pack + (size_t)B * T : NULL, &ntok);
        cudaCheck(cudaMemcpyAsync(g->tokens, tokens, ntok * sizeof(int), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpyAsync(g->runs, runs, (nruns + 1) * sizeof(int), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpyAsync(g->run_ids, run_ids, nruns * sizeof(int), cudaMemcpyHostToDevice));
        cudaCheck(cudaEventRecord(u->uploaded));
        embedding_backward_sorted(gr.wte, gr.wpe, gr.wtt, s.tmp, g->ids, g->types, g->lengths,
                                  g->tokens, g->runs, g->run_ids, nruns, B, T, C, starts);
    } else {
        embedding_backward(gr.wte, gr.wpe, gr.wtt, s.tmp, g->ids, g->types, g->lengths, B, T, C);
    }
}

// global L2 norm of the trainable gradients (clip_grad_norm_): one pass over the flat block
float bert_grad_norm(Bert* model) {
    BertGPU* g = gpu_(model);
    grad_sumsq(g->norm_sumsq, g->norm_partials, g->grads_memory, g->num_trainable);
    double sumsq;
    cudaCheck(cudaMemcpy(&sumsq, g->norm_sumsq, sizeof(double), cudaMemcpyDeviceToHost));
    return (float)sqrt(sumsq);
}

// One optimizer step, as train_bert.c's bert_update: clip, then AdamW per trainable tensor.
// The step's loss and gradient norm (before clipping) wait, with those of the steps before it, for
// bert_read_steps: kernel set 2 keeps them on the device, so a step never waits for a copy back.
void bert_update(Bert* model, float lr, float weight_decay, float max_norm) {
    const float beta1 = ADAMW_BETA1, beta2 = ADAMW_BETA2, eps = ADAMW_EPS;
    BertGPU* g = gpu_(model);
    model->step++;
    double bc1 = 1.0 - pow(beta1, model->step);
    double bc2 = 1.0 - pow(beta2, model->step);
    if (g->nsteps == STEPS_MAX) {
        error_exit("%d training steps were not read back (bert_read_steps)", STEPS_MAX);
    }
    // with ranks, each gradient is its slice's share (the loss is the global batch's mean): their
    // sum, by NCCL on the devices, is the global batch's gradient, the same on every rank, before
    // the norm and clipping (train_bert.c's cpu_update_ sums them through MPI)
    gpu_dist_sum_floats(g->grads_memory, g->num_trainable);
    if (g->kernels >= 2) { // one pass, the clip coefficient on the device
        adamw_fused(&g->adamw, g->grads_memory, g->m_memory, g->v_memory, g->num_trainable,
                    g->step_sumsq + g->nsteps, g->norm_partials, max_norm, lr, beta1, beta2, eps,
                    weight_decay, (float)(lr / bc1), (float)sqrt(bc2));
        cudaCheck(cudaMemcpy(g->step_loss + g->nsteps, g->loss, sizeof(float),
                             cudaMemcpyDeviceToDevice));
        g->nsteps++;
        return;
    }
    // kernel set 1: the norm through the host, which computes the clip coefficient, then a launch per tensor
    float norm = cu::bert_grad_norm(model); // qualified: the CPU's bert_grad_norm takes a Bert* too
    float clip = clip_coef(norm, max_norm);
    size_t offset = 0; // into the flat gradient and moment blocks
    for (int i = 0; i < NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS; i++) {
        int is_lora = i >= NUM_PARAMETER_TENSORS;
        if (is_lora && model->strategy != STRATEGY_LORA) { break; }
        const TensorInfo* t = is_lora ? &model->lora_info[i - NUM_PARAMETER_TENSORS] : &model->param_info[i];
        if (!t->trainable) { continue; }
        float* param = is_lora ? ((float**)&g->lora)[i - NUM_PARAMETER_TENSORS] : ((float**)&g->params)[i];
        adamw_update(param, g->grads_memory + offset, g->m_memory + offset, g->v_memory + offset,
                     t->size, lr, beta1, beta2, eps, t->decay ? weight_decay : 0.0f, clip,
                     (float)(lr / bc1), (float)sqrt(bc2));
        offset += t->size;
    }
    if (g->weights16_stale == 0) { g->weights16_stale = 1; }
    // kernel set 1 has them on the host already
    g->step_loss_host[g->nsteps] = model->mean_loss;
    g->step_norm_host[g->nsteps] = norm;
    g->nsteps++;
}

// the loss and gradient norm of the last n training steps (all that wait: n must be their count), oldest first
void bert_read_steps(Bert* model, int n, float* loss, float* norm) {
    BertGPU* g = gpu_(model);
    if (n != g->nsteps) { error_exit("bert_read_steps: %d steps asked for, %d waiting", n, g->nsteps); }
    if (g->kernels >= 2) {
        double sumsq[STEPS_MAX];
        cudaCheck(cudaMemcpy(loss, g->step_loss, n * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(sumsq, g->step_sumsq, n * sizeof(double), cudaMemcpyDeviceToHost));
        for (int i = 0; i < n; i++) { norm[i] = (float)sqrt(sumsq[i]); }
    } else {
        memcpy(loss, g->step_loss_host, n * sizeof(float));
        memcpy(norm, g->step_norm_host, n * sizeof(float));
    }
    g->nsteps = 0;
}

// the last forward's logits (B, NC) and pooled output (B, C), copied to the host
const float* bert_logits(Bert* model, int B) {
    BertGPU* g = gpu_(model);
    cudaCheck(cudaMemcpy(g->host_out, g->acts.logits, (size_t)B * model->config.NC * sizeof(float),
                         cudaMemcpyDeviceToHost));
    return g->host_out;
}

const float* bert_pooled(Bert* model, int B) {
    BertGPU* g = gpu_(model);
    cudaCheck(cudaMemcpy(g->host_out, g->acts.pooled, (size_t)B * model->config.C * sizeof(float),
                         cudaMemcpyDeviceToHost));
    return g->host_out;
}

// Evaluation (the trainer's evaluate_ calls these after each forward with labels). Kernel set 2
// keeps the confusion matrix and the loss sum on the device and copies them once; kernel set 1
// takes the logits to the host.
void bert_eval_add(Bert* model, int B, int first) {
    BertGPU* g = gpu_(model);
    int NC = model->config.NC;
    if (g->kernels >= 2) {
        if (first) {
            cudaCheck(cudaMemset(g->confusion, 0, (size_t)NC * NC * sizeof(int)));
            cudaCheck(cudaMemset(g->loss_sum, 0, sizeof(double)));
        }
        eval_accumulate(g->confusion, g->loss_sum, g->loss, g->acts.logits, g->labels, B, NC);
        return;
    }
    if (first) { memset(g->confusion_host, 0, (size_t)NC * NC * sizeof(int)); g->loss_sum_host = 0.0; }
    g->loss_sum_host += (double)model->mean_loss * B;
    confusion_add(g->confusion_host, cu::bert_logits(model, B), model->labels, B, NC);
}

void bert_eval_read(Bert* model, int* confusion, double* loss_sum) {
    BertGPU* g = gpu_(model);
    size_t n = (size_t)model->config.NC * model->config.NC;
    if (g->kernels >= 2) {
        cudaCheck(cudaMemcpy(confusion, g->confusion, n * sizeof(int), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(loss_sum, g->loss_sum, sizeof(double), cudaMemcpyDeviceToHost));
    } else {
        memcpy(confusion, g->confusion_host, n * sizeof(int));
        *loss_sum = g->loss_sum_host;
    }
}

// kernel set 2 leaves the last forward's mean loss on the device: copy it to model->mean_loss (for tests)
void bert_sync_loss(Bert* model) {
    BertGPU* g = gpu_(model);
    if (g->kernels >= 2) {
        cudaCheck(cudaMemcpy(&model->mean_loss, g->loss, sizeof(float), cudaMemcpyDeviceToHost));
    }
}

// the device gradients in the host's table layout (zeros for frozen tensors), for tests:
// grads (num_parameters), lora_grads (num_lora_parameters) or NULL
void bert_grads_to_host(Bert* model, float* grads, float* lora_grads) {
    BertGPU* g = gpu_(model);
    size_t offset = 0, flat = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = model->param_info[i].size;
        if (model->param_info[i].trainable) {
            cudaCheck(cudaMemcpy(grads + offset, g->grads_memory + flat, n * sizeof(float), cudaMemcpyDeviceToHost));
            flat += n;
        } else {
            memset(grads + offset, 0, n * sizeof(float));
        }
        offset += n;
    }
    if (lora_grads != NULL && model->num_lora_parameters > 0) {
        cudaCheck(cudaMemcpy(lora_grads, g->grads_memory + flat, model->num_lora_parameters * sizeof(float),
                             cudaMemcpyDeviceToHost));
    }
}

void bert_free(Bert* model) {
    BertGPU* g = gpu_find_(model);
    if (g == NULL) { return; } // never set up
    float* blocks[] = {g->params_memory, g->lora_memory, g->grads_memory, g->m_memory, g->v_memory, g->acts_memory,
                       g->scratch_memory, g->att_memory};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) { cudaCheck(cudaFree(blocks[i])); }
    cudaCheck(cudaFree(g->params16));
    cudaCheck(cudaFree(g->lora16));
    cudaCheck(cudaFree(g->ids));
    cudaCheck(cudaFree(g->types));
    cudaCheck(cudaFree(g->lengths));
    cudaCheck(cudaFree(g->labels));
    cudaCheck(cudaFree(g->norm_partials));
    cudaCheck(cudaFree(g->norm_sumsq));
    free(g->host_out);
    cudaCheck(cudaFree(g->loss));
    cudaCheck(cudaFree(g->confusion));
    cudaCheck(cudaFree(g->loss_sum));
    cudaCheck(cudaFree(g->tokens));
    cudaCheck(cudaFree(g->runs));
    cudaCheck(cudaFree(g->run_ids));
    free(g->confusion_host);
    cudaCheck(cudaFree(g->rows));
    cudaCheck(cudaFree(g->starts));
    for (int k = 0; k < 2; k++) {
        Upload* u = &g->up[k];
        cudaCheck(cudaEventSynchronize(u->uploaded));
        int* staging[] = {u->ids, u->types, u->lengths, u->labels, u->pack, u->sort};
        for (int i = 0; i < 6; i++) { cudaCheck(cudaFreeHost(staging[i])); }
        cudaCheck(cudaEventDestroy(u->uploaded));
    }
    cudaCheck(cudaFree(g->step_loss));
    cudaCheck(cudaFree(g->step_sumsq));
    matmul_free(&g->mm);
    free(g);
    gpu_register_(model, NULL);
}

// a device must be there
void device_check(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        error_exit("no CUDA device\n"
                   "---> HINT: train_bertcu needs an NVIDIA GPU; ./train_bert is the same program "
                   "on the CPU");
    }
}

// after the flags, before anything else: the kernel set (-K) and the device
void bert_init(const struct Settings* s) {
    kernel_set = s->kernels;
    device_check();
    gpu_dist_init(); // with ranks (USE_MPI): this rank's GPU and the NCCL communicator
}

// the settings table's back-end row: the card, the precision, and the memory in use
void bert_describe(const Bert* model, char* out, size_t n) {
    cudaDeviceProp prop;
    int dev = 0; // this rank's (gpu_dist_init)
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaGetDeviceProperties(&prop, dev));
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    // the kernel set as it runs: sets 2 and 3 need attention v2 to fit (T_max <= 128, head size
    // <= 64, its shared memory on this card), else attention is set 1's and set 3 does not pack;
    // say so, so no row is mislabelled
    const BertGPU* g = gpu_(model);
    const char* note = g->kernels >= 2 && g->acts.att != NULL
                     ? " (attention v2 does not fit this T_max or card: set 1's attention, no packing)" : "";
    snprintf(out, n, "%s (sm_%d%d), %s, kernel set %d%s, %.0f of %.0f MiB in use", prop.name, prop.major, prop.minor,
             precision_name(model->precision), g->kernels, note, (total_b - free_b) / 1048576.0,
             total_b / 1048576.0);
}

} // namespace cu

static const Backend CUDA_BACKEND = {
    .name = "cuda", .on_gpu = 1, .init = cu::bert_init, .setup = cu::bert_setup,
    .forward = cu::bert_forward, .zero_grad = cu::bert_zero_grad, .backward = cu::bert_backward,
    .update = cu::bert_update, .read_steps = cu::bert_read_steps, .logits = cu::bert_logits,
    .pooled = cu::bert_pooled, .eval_add = cu::bert_eval_add, .eval_read = cu::bert_eval_read,
    .to_host = cu::bert_to_host, .from_host = cu::bert_from_host, .free = cu::bert_free,
    .describe = cu::bert_describe,
};

// ----------------------------------------------------------------------------
// main: trainer.h's, with the GPU back end (train_bert.c's main says what it does)
#ifndef TESTING_CU
int main(int argc, char** argv) {
    return trainer_main(argc, argv, &CUDA_BACKEND);
}
#endif
