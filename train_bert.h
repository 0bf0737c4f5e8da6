/*
train_bert.h: the model, as the rest of the program sees it. The config, the tensor tables (one
row per parameter, activation and scratch tensor, from which both back ends allocate), the Bert
struct, the metrics, AdamW's constants, and the functions train_bert.c defines for the program:
build, forward, backward, update, metrics. train_bert.c implements all of it; trainer.h (the
program: flags, loop, evaluation, checkpoints, classify mode) and train_bert.cu use it.

Defines: BertConfig, the tensor tables and structs, Bert, Metrics, bert_stream, bert_slice_stream,
argmax.
Declares: train_bert.c's functions that trainer.h and train_bert.cu call.
*/
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "bertc/utils.h"   // defines: size_mul (the tables' sizes)
#include "bertc/rand.h"    // defines: dropout_stream (bert_stream)
#include "bertc/formats.h" // defines: the model file's header slots (a checkpoint's too)

// AdamW as the Trainer's defaults (TrainingArguments adam_beta1, adam_beta2, adam_epsilon):
// both back ends' bert_update use them, and the settings table prints them
#define ADAMW_BETA1 0.9f
#define ADAMW_BETA2 0.999f
#define ADAMW_EPS 1e-8f

// ----------------------------------------------------------------------------
// BERT model definition: the config, the tensor tables, and the Bert struct

enum Strategy { STRATEGY_FULL = 0, STRATEGY_FROZEN = 1, STRATEGY_LORA = 2, NUM_STRATEGIES = 3 };
static const char* STRATEGY_NAMES[NUM_STRATEGIES] = {"full", "frozen", "lora"};
// LoRA alpha's range, for -a and for a LoRA checkpoint's header (full and frozen ones store 0)
#define LORA_ALPHA_MIN 1e-6
#define LORA_ALPHA_MAX 1e6
// the fewest positions a model can classify with: [CLS], one word piece, [SEP]
#define P_MIN 3

typedef struct {
    int V;      // vocabulary size, e.g. 30522
    int P;      // max position embeddings, e.g. 512
    int TV;     // token type vocabulary, 2
    int C;      // hidden size, e.g. 768
    int L;      // number of layers, e.g. 12
    int NH;     // number of heads, e.g. 12
    int FF;     // intermediate size, e.g. 3072
    int NC;     // number of labels, 6
    float eps;  // layer-norm epsilon, 1e-12
    int pad_id; // id of [PAD]
    int lower;  // the tokenizer lower-cases
    int label_bytes; // of label_text, as MODEL_LABEL_BYTES; 0: the file names no labels (emotion's)
    char label_text[H_LABEL_NAMES_INTS * 4]; // the NC names, NUL-terminated, in class id order
    char name[257];
} BertConfig;

// A tensor's shape is a list of dimension names, outermost first, ended by D_END; the tables below
// compute every size from it, so a shape is written once.
enum Dim {
    D_END = 0, D_V, D_P, D_TV, D_C, D_3C, D_L, D_L1 /* L + 1 */, D_NH, D_FF, D_NC, D_B, D_T,
    D_R /* LoRA rank */, D_3, D_2, D_4
};
#define MAX_DIMS 6

// One row per parameter tensor: its shape, whether AdamW decays it (the Trainer decays all but
// biases and LayerNorm) and which strategies train it (a bit per strategy).
typedef struct {
    const char* name;
    int shape[MAX_DIMS];
    int decay;
    int trained_by;
} ParameterSpec;
#define TRAINED_BY_FULL (1 << STRATEGY_FULL)
#define TRAINED_BY_ALL ((1 << STRATEGY_FULL) | (1 << STRATEGY_FROZEN) | (1 << STRATEGY_LORA))

#define NUM_PARAMETER_TENSORS 21
static const ParameterSpec PARAMETER_SPECS[NUM_PARAMETER_TENSORS] = {
    // Hugging Face's names: embeddings and pooler under bert., layer ones bert.encoder.layer.{l}.
    // name     shape             decay trained by      Hugging Face tensor
    {"wte",      {D_V, D_C},       1, TRAINED_BY_FULL}, // embeddings.word_embeddings.weight
    {"wpe",      {D_P, D_C},       1, TRAINED_BY_FULL}, // embeddings.position_embeddings.weight
    {"wtt",      {D_TV, D_C},      1, TRAINED_BY_FULL}, // embeddings.token_type_embeddings.weight
    {"embln_w",  {D_C},            0, TRAINED_BY_FULL}, // embeddings.LayerNorm.weight
    {"embln_b",  {D_C},            0, TRAINED_BY_FULL}, // embeddings.LayerNorm.bias
    {"qkvw",     {D_L, D_3C, D_C}, 1, TRAINED_BY_FULL}, // attention.self.{query,key,value}.weight
    {"qkvb",     {D_L, D_3C},      0, TRAINED_BY_FULL}, // attention.self.{query,key,value}.bias
    {"attprojw", {D_L, D_C, D_C},  1, TRAINED_BY_FULL}, // attention.output.dense.weight
    {"attprojb", {D_L, D_C},       0, TRAINED_BY_FULL}, // attention.output.dense.bias
    {"ln1w",     {D_L, D_C},       0, TRAINED_BY_FULL}, // attention.output.LayerNorm.weight
    {"ln1b",     {D_L, D_C},       0, TRAINED_BY_FULL}, // attention.output.LayerNorm.bias
    {"fcw",      {D_L, D_FF, D_C}, 1, TRAINED_BY_FULL}, // intermediate.dense.weight
    {"fcb",      {D_L, D_FF},      0, TRAINED_BY_FULL}, // intermediate.dense.bias
    {"fcprojw",  {D_L, D_C, D_FF}, 1, TRAINED_BY_FULL}, // output.dense.weight
    {"fcprojb",  {D_L, D_C},       0, TRAINED_BY_FULL}, // output.dense.bias
    {"ln2w",     {D_L, D_C},       0, TRAINED_BY_FULL}, // output.LayerNorm.weight
    {"ln2b",     {D_L, D_C},       0, TRAINED_BY_FULL}, // output.LayerNorm.bias
    {"poolw",    {D_C, D_C},       1, TRAINED_BY_FULL}, // pooler.dense.weight
    {"poolb",    {D_C},            0, TRAINED_BY_FULL}, // pooler.dense.bias
    {"clsw",     {D_NC, D_C},      1, TRAINED_BY_ALL},  // classifier.weight
    {"clsb",     {D_NC},           0, TRAINED_BY_ALL},  // classifier.bias
};

// the parameters, in the table's order: all layers of one tensor are contiguous, (L, ...)
typedef struct {
    float* wte;      // (V, C)
    float* wpe;      // (P, C)
    float* wtt;      // (TV, C)
    float* embln_w;  // (C)
    float* embln_b;  // (C)
    float* qkvw;     // (L, 3*C, C)
    float* qkvb;     // (L, 3*C)
    float* attprojw; // (L, C, C)
    float* attprojb; // (L, C)
    float* ln1w;     // (L, C)
    float* ln1b;     // (L, C)
    float* fcw;      // (L, FF, C)
    float* fcb;      // (L, FF)
    float* fcprojw;  // (L, C, FF)
    float* fcprojb;  // (L, C)
    float* ln2w;     // (L, C)
    float* ln2b;     // (L, C)
    float* poolw;    // (C, C)
    float* poolb;    // (C)
    float* clsw;     // (NC, C)
    float* clsb;     // (NC)
} ParameterTensors;

// LoRA adapters on query, key and value of every layer, as PEFT's: W x + (alpha / r) B (A x)
#define NUM_LORA_TENSORS 2
static const ParameterSpec LORA_SPECS[NUM_LORA_TENSORS] = {
    // attention.self.{query,key,value}.lora_A.default.weight, then lora_B's
    {"lora_a", {D_L, D_3, D_R, D_C}, 1, 1 << STRATEGY_LORA},
    {"lora_b", {D_L, D_3, D_C, D_R}, 1, 1 << STRATEGY_LORA},
};
typedef struct {
    float* lora_a; // (L, 3, r, C)
    float* lora_b; // (L, 3, C, r)
} LoraTensors;

// The nn.Linear weights, (OC, C) or (L, OC, C): the CPU forward reads each packed
// (matmul_pack_weight), from a copy made when the weight changes, not on every call
// (bert_pack_weights)
#define NUM_LINEAR_WEIGHTS 6
static const char* LINEAR_WEIGHTS[NUM_LINEAR_WEIGHTS] = {
    "qkvw", "attprojw", "fcw", "fcprojw", "poolw", "clsw"
};

// A buffer: activations kept from forward for backward, and scratch. Both back ends allocate
// them from these tables (a back end's own buffers, as the GPU's attention statistics, are its
// own).
typedef struct {
    const char* name;
    int shape[MAX_DIMS];
} BufferSpec;

#define NUM_ACTIVATION_TENSORS 23
static const BufferSpec ACTIVATION_SPECS[NUM_ACTIVATION_TENSORS] = {
    {"encoded",  {D_B, D_T, D_C}},            // embeddings before their LayerNorm
    {"emb_mean", {D_B, D_T}},
    {"emb_rstd", {D_B, D_T}},
    {"hs",       {D_L1, D_B, D_T, D_C}},      // each layer's input; hs[L]: the encoder's
    {"qkv",      {D_L, D_B, D_T, D_3C}},
    {"att",      {D_L, D_B, D_NH, D_T, D_T}}, // softmax before dropout (GPU -K 2: none)
    {"atty",     {D_L, D_B, D_T, D_C}},       // attention output, heads concatenated
    {"r1",       {D_L, D_B, D_T, D_C}},       // dropout(attention dense) + layer input
    {"ln1",      {D_L, D_B, D_T, D_C}},
    {"ln1_mean", {D_L, D_B, D_T}},
    {"ln1_rstd", {D_L, D_B, D_T}},
    {"fch",      {D_L, D_B, D_T, D_FF}},      // before GELU
    {"fch_gelu", {D_L, D_B, D_T, D_FF}},
    {"r2",       {D_L, D_B, D_T, D_C}},       // dropout(output dense) + ln1
    {"ln2_mean", {D_L, D_B, D_T}},
    {"ln2_rstd", {D_L, D_B, D_T}},
    {"lora_u",   {D_L, D_3, D_B, D_T, D_R}},  // LoRA's A x (size 0 without LoRA)
    {"cls",      {D_B, D_C}},                 // hs[L] at [CLS]
    {"pooled",   {D_B, D_C}},                 // tanh(dense(cls))
    {"pooled_d", {D_B, D_C}},                 // dropout(pooled): the classifier's input
    {"logits",   {D_B, D_NC}},
    {"probs",    {D_B, D_NC}},
    {"losses",   {D_B}},
};
typedef struct {
    float* encoded;  // (B, T, C)
    float* emb_mean; // (B, T)
    float* emb_rstd; // (B, T)
    float* hs;       // (L+1, B, T, C)
    float* qkv;      // (L, B, T, 3*C)
    float* att;      // (L, B, NH, T, T)
    float* atty;     // (L, B, T, C)
    float* r1;       // (L, B, T, C)
    float* ln1;      // (L, B, T, C)
    float* ln1_mean; // (L, B, T)
    float* ln1_rstd; // (L, B, T)
    float* fch;      // (L, B, T, FF)
    float* fch_gelu; // (L, B, T, FF)
    float* r2;       // (L, B, T, C)
    float* ln2_mean; // (L, B, T)
    float* ln2_rstd; // (L, B, T)
    float* lora_u;   // (L, 3, B, T, r)
    float* cls;      // (B, C)
    float* pooled;   // (B, C)
    float* pooled_d; // (B, C)
    float* logits;   // (B, NC)
    float* probs;    // (B, NC)
    float* losses;   // (B)
} ActivationTensors;

// scratch for one layer at a time in forward and backward
#define NUM_SCRATCH_TENSORS 11
static const BufferSpec SCRATCH_SPECS[NUM_SCRATCH_TENSORS] = {
    {"tmp",     {D_B, D_T, D_C}},  // a dense output before its dropout
    {"dh",      {D_B, D_T, D_C}},  // the gradient flowing down the residual stream
    {"dr",      {D_B, D_T, D_C}},  // the gradient of a residual sum
    {"dln1",    {D_B, D_T, D_C}},
    {"datty",   {D_B, D_T, D_C}},
    {"dqkv",    {D_B, D_T, D_3C}},
    {"dfch",    {D_B, D_T, D_FF}},
    {"xd",      {D_B, D_T, D_C}},  // LoRA's dropped-out input, and its gradient
    {"du",      {D_B, D_T, D_R}},
    {"dsmall",  {D_4, D_B, D_C}},  // pooler and classifier gradients
    {"dlogits", {D_B, D_NC}},
};
typedef struct {
    float* tmp;     // (B, T, C)
    float* dh;      // (B, T, C)
    float* dr;      // (B, T, C)
    float* dln1;    // (B, T, C)
    float* datty;   // (B, T, C)
    float* dqkv;    // (B, T, 3*C)
    float* dfch;    // (B, T, FF)
    float* xd;      // (B, T, C)
    float* du;      // (B, T, r)
    float* dsmall;  // (4, B, C)
    float* dlogits; // (B, NC)
} ScratchTensors;

// One row per parameter tensor of a built model: its size and what the strategy does with it.
typedef struct {
    const char* name;
    size_t size;
    int trainable;
    int decay;
} TensorInfo;

typedef struct {
    BertConfig config;
    int strategy;
    ParameterTensors params;
    TensorInfo param_info[NUM_PARAMETER_TENSORS];
    float* params_memory;
    size_t num_parameters;
    ParameterTensors grads; // NULL for tensors that do not train
    float* grads_memory;
    float* m_memory;        // AdamW moments, trainable tensors only, in table order, then LoRA's
    float* v_memory;
    // LoRA (strategy lora only)
    int lora_r;
    float lora_alpha;
    float lora_dropout;
    LoraTensors lora;
    LoraTensors lora_grads;
    TensorInfo lora_info[NUM_LORA_TENSORS];
    float* lora_memory;
    float* lora_grads_memory;
    size_t num_lora_parameters;
    // activations and scratch, allocated once for the largest batch (B_max, T_max)
    int B_max, T_max;
    ActivationTensors acts;
    float* acts_memory;
    ScratchTensors scratch;
    float* scratch_memory;
    // the CPU forward's copies of the linear weights, packed (bert_pack_weights); other rows NULL
    ParameterTensors packed;                 // e.g. qkvw (L, 3*C / NR, C, NR)
    float* packed_memory;
    int packed_fresh[NUM_PARAMETER_TENSORS]; // 1: the packed copy holds the weight's values
    int packs;                               // tensors packed so far (a test counts them)
    // the current batch, on the host
    int B, T;
    int* ids;     // (B_max * T_max)
    int* types;   // (B_max * T_max) token types, 0 until a loader of sentence pairs fills them
    int* lengths; // (B_max)
    int* labels;  // (B_max)
    int N;        // the batch's real tokens: the rows of each per-token tensor (the CPU packs)
    int* rows;    // (B_max * T_max) packed row n is padded row rows[n] (batch_pack)
    int* starts;  // (B_max) sequence b starts at packed row starts[b]
    // this batch as a slice of a global batch split across ranks (bertc/dist.h): its first
    // example's place there, which keys its dropout masks (bert_slice_stream), and the global
    // batch's size, which the loss is the mean over. 0 and 0: the whole batch (one process)
    int b0, B_global;
    float mean_loss; // with ranks, this slice's share of the global mean (the shares sum to it)
    // training settings and state
    float dropout;  // hidden, attention and classifier dropout (0.1 in BERT)
    uint64_t seed;
    int step;       // optimizer steps taken; also numbers the dropout streams
    int precision;  // matrix products: 0 fp32, 1 bf16 (the GPU's -c; the CPU is fp32 only)
} Bert;

// dropout sites: a fixed number per layer, plus the embeddings' (layer -1) and the classifier's
// (layer L)
enum {
    SITE_ATT = 0, SITE_ATTPROJ, SITE_FCPROJ, SITE_LORA_Q, SITE_LORA_K, SITE_LORA_V, SITES_PER_LAYER
};
static inline uint64_t bert_stream(const Bert* model, int layer, int site) {
    uint64_t where = (uint64_t)(layer + 1) * SITES_PER_LAYER + site;
    return dropout_stream(model->seed, (uint64_t)model->step, where);
}
// A site's stream for this batch's slice of the global batch: a mask element is keyed by its index
// in the global batch's padded layout, an example's elements T * C for a token's mask, NH * T * T
// for attention's (layer >= 0, SITE_ATT) and C for the classifier's (layer L). dropout_uniform
// hashes stream + index, so the slice's offset, b0 examples, is an offset of the stream: a rank
// draws exactly the masks one process draws for the same examples. Both back ends call this.
static inline uint64_t bert_slice_stream(const Bert* model, int layer, int site) {
    const BertConfig* cfg = &model->config;
    uint64_t T = (uint64_t)model->T, per_example = T * cfg->C;
    if (layer == cfg->L) { per_example = cfg->C; }
    else if (layer >= 0 && site == SITE_ATT) { per_example = (uint64_t)cfg->NH * T * T; }
    return bert_stream(model, layer, site) + (uint64_t)model->b0 * per_example;
}


// ----------------------------------------------------------------------------
// metrics: accuracy and support-weighted precision / recall / F1, as scikit-learn's
// precision_recall_fscore_support(average="weighted", zero_division=0)

typedef struct {
    float loss;             // mean cross-entropy per example
    float accuracy;
    float precision;        // weighted by support
    float recall;
    float f1;
    int NC;
    int* confusion;         // (NC, NC) rows: true label, columns: prediction
    float* class_precision; // (NC)
    float* class_recall;    // (NC)
    float* class_f1;        // (NC)
    int* support;           // (NC)
} Metrics;

// the prediction of one row of logits: the first largest
static inline int argmax(const float* z, int n) {
    int best = 0;
    for (int c = 1; c < n; c++) { if (z[c] > z[best]) { best = c; } }
    return best;
}

// ----------------------------------------------------------------------------
// what train_bert.c defines for the program (trainer.h) and the GPU back end

// the model: from a model file (to fine-tune) or a checkpoint (to classify); training memory;
// the batch buffers
void bert_build_from_file(Bert* model, const char* path);
void bert_build_from_checkpoint(Bert* model, const char* path);
void bert_init_training(Bert* model);
void bert_alloc_batch(Bert* model, int B_max, int T_max);
size_t bert_num_trainable(const Bert* model);
void bert_free(Bert* model);
// the weights were read anew (a checkpoint, a state): the CPU forward's packed copies are stale
void bert_weights_changed(Bert* model);
// a step: the batch is in model->ids / lengths (B, T); update returns the gradient norm before
// clipping
void bert_forward(Bert* model, int B, int T, const int* labels, int train);
void bert_zero_grad(Bert* model);
void bert_backward(Bert* model);
float bert_update(Bert* model, float lr, float weight_decay, float max_norm);
// the layers the probe (trainer.h) runs on cached features
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    float* wt_scratch, int N, int C, int OC);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC);
void dropout_forward(float* out, const float* inp, const float* residual, const int* rows, size_t N,
                     size_t C, float p, uint64_t stream);
float crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels,
                           int B, int NC);
void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int B_mean,
                           int NC);
// the metrics, from predictions or from a confusion matrix; the report names the NC classes
// by `names`
void metrics_init(Metrics* m, int NC);
void metrics_free(Metrics* m);
void metrics_compute(Metrics* m, const int* preds, const int* labels, int N);
void metrics_from_confusion(Metrics* m, int N);
void confusion_add(int* confusion, const float* logits, const int* labels, int B, int NC);
void metrics_print_report(const Metrics* m, const char* split, const char* const* names);
