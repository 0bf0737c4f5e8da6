/*
trainer.h: the training program around the model, written once for both binaries. The flags
and their checks, the settings table, data loading, the epoch and step loop, evaluation, early
stopping, checkpoints, the training state and resume, log.tsv, TensorBoard events, the progress
line, the cached-feature probe (-F) and classify mode (-C / -t).

The model math comes from a Backend: train_bert.c's is the CPU reference itself (bert_forward,
bert_backward, bert_update), train_bert.cu's runs the same functions on the GPU. So train_bert
and train_bertcu have the same flags, files and output lines by construction; a back end only
adds its own flags (the GPU's -c, -K). A GPU back end's checkpoints are written on a thread
(SaveJob).

Defines: Backend, Settings, bert_save_checkpoint, bert_load_checkpoint, train_state_save,
train_state_load, trainer_main.
Uses: train_bert.h (the model: Bert, Metrics and train_bert.c's functions), bertc/ (what knows
nothing of BERT), tokenizer.h (classify mode). Used by: train_bert.c and train_bert.cu (their
main), the tests.
*/
#pragma once
#include <stddef.h>
#include <limits.h>
#include <float.h>
#include <ctype.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <poll.h>
#include <errno.h>
#include <stb/stb_ds.h>
#include "train_bert.h"      // defines: Bert, Metrics, the model functions this program calls
#include "bertc/utils.h"
#include "bertc/dataloader.h" // defines: Dataset, dataset_load, DataLoader, loader_next_batch
#include "bertc/schedule.h"   // defines: lr_at_step, EarlyStopping
#include "bertc/logger.h"     // defines: EpochResult, TensorBoard events, log.tsv
#include "bertc/dist.h"       // defines: dist_rank, dist_size, dist_sum_*, dist_agree (ranks, MPI)
#include "tokenizer.h"        // defines: tokenizer_init, tokenizer_encode_bytes, tokenizer_free
                              // (classify mode)

// The class names of a model: its own (a model file from your own data names them, and so do
// its checkpoints), else the emotion dataset's six (its files name none), else "label k".
static const char* LABEL_NAMES[] = {"sadness", "joy", "love", "anger", "fear", "surprise"};
#define LABELS_MAX 1024 // the most labels a model file may have (train_bert.c checks its header)
static const char* const* label_names_(const BertConfig* cfg) {
    static char buf[LABELS_MAX][16];
    static const char* names[LABELS_MAX];
    int NC = cfg->NC < LABELS_MAX ? cfg->NC : LABELS_MAX;
    if (cfg->label_bytes > 0) { // NC NUL-terminated names, checked when the model was read
        const char* p = cfg->label_text;
        for (int c = 0; c < NC; c++) { names[c] = p; p += strlen(p) + 1; }
        return names;
    }
    if (NC == 6) { return LABEL_NAMES; }
    for (int c = 0; c < NC; c++) {
        snprintf(buf[c], sizeof(buf[c]), "label %d", c);
        names[c] = buf[c];
    }
    return names;
}

// ----------------------------------------------------------------------------
// a back end: where the model math runs. Every entry is a function on both back ends; on the CPU
// most are train_bert.c's own, and the copies between back end and host do nothing (the host
// model is the CPU's model).

#define STEPS_MAX 256 // training steps whose loss and norm a back end keeps until read_steps

struct Settings;
typedef struct {
    const char* name;   // "cpu" or "cuda"
    int on_gpu;         // its own flags (FlagSpec.gpu_only) are accepted
    // after the flags are parsed: take the back end's own flags (the GPU's -K), check the device
    void (*init)(const struct Settings* s);
    // activations, scratch and (on a device) copies of the weights, for batches up to (B_max,
    // T_max)
    void (*setup)(Bert* model, int B_max, int T_max);
    // the model functions, as train_bert.c's: the batch is in model->ids / lengths (B, T)
    void (*forward)(Bert* model, int B, int T, const int* labels, int train);
    void (*zero_grad)(Bert* model);
    void (*backward)(Bert* model);
    // one AdamW step (bert_update). Its loss and gradient norm wait in the back end (on the GPU, on
    // the device: no copy back inside a step) until read_steps reads the last n (at most STEPS_MAX)
    // steps' in one go
    void (*update)(Bert* model, float lr, float weight_decay, float max_norm);
    void (*read_steps)(Bert* model, int n, float* loss, float* norm);
    // the last forward's logits (B, NC) and pooled output (B, C), on the host
    const float* (*logits)(Bert* model, int B);
    const float* (*pooled)(Bert* model, int B);
    // evaluation: after each forward with labels, add its predictions to a confusion matrix and its
    // loss to a sum (first = 1 starts them); read both once, at the end
    void (*eval_add)(Bert* model, int B, int first);
    void (*eval_read)(Bert* model, int* confusion, double* loss_sum);
    // weights and AdamW moments from the back end to the host model and back (checkpoints, states,
    // resume)
    void (*to_host)(Bert* model);
    void (*from_host)(Bert* model);
    void (*free)(Bert* model);
    // one line for the settings table: the device, threads or precision
    void (*describe)(const Bert* model, char* out, size_t n);
} Backend;

// ----------------------------------------------------------------------------
// settings: every flag, its check and its help line come from one table

typedef struct Settings {
    const char* strategy;    // -s
    const char* model_path;  // -m
    const char* data_dir;    // -d
    const char* out_dir;     // -o
    int epochs, B, warmup, patience, seed, max_steps, lora_r;
    float lr, weight_decay, max_norm, dropout, lora_alpha, lora_dropout;
    int print_every, progress_every, save_every, resume, overwrite, probe;
    const char* classify_path, *classify_text, *classify_pair, *vocab_path; // classify mode
    int print_logits;
    const char* precision;   // -c (GPU)
    int kernels;             // -K (GPU)
    int save_thread;         // -W (GPU): checkpoints written on a thread
    int exit_after, nan_at;  // tests only
    // derived by settings_parse
    int strategy_id, precision_id, lr_given, strategy_given;
    int argc;                // the command line, for the resume command an interrupted run prints
    char** argv;
} Settings;

static const Settings DEFAULT_SETTINGS = {
    .strategy = "full", .model_path = "data/model.bin", .data_dir = "data", .out_dir = "out",
    .epochs = 50, .B = 32, .warmup = 0, .patience = 3, .seed = 42, .max_steps = -1, .lora_r = 8,
    .lr = 5e-5f, .weight_decay = 0.0f, .max_norm = 1.0f, .dropout = 0.1f, .lora_alpha = 32.0f,
    .lora_dropout = 0.1f, .print_every = 1, .progress_every = 100, .save_every = 0, .resume = 0,
    .overwrite = 0, .probe = 0, .classify_path = NULL, .classify_text = NULL, .classify_pair = NULL,
    .vocab_path = "data/vocab.txt", .print_logits = 0, .precision = "fp32", .kernels = 1,
    .save_thread = 1, .exit_after = -1, .nan_at = -1, .strategy_id = 0, .precision_id = 0,
    .lr_given = 0, .strategy_given = 0, .argc = 0, .argv = NULL,
};
#define PROBE_LR 1e-2f // the probe's default learning rate (-F 1 without -l), chosen on validation
                       // F1: docs/results.md

typedef struct {
    char flag;
    char type;        // 'i' int, 'f' float, 's' string
    size_t offset;    // of the field in Settings
    double lo, hi;    // accepted range of a number, inclusive
    int minus_one;    // -1 is also accepted: "off" or "no limit"
    int gpu_only;     // only train_bertcu has it
    const char* help;
} FlagSpec;

#define S_(field) offsetof(Settings, field)
static const FlagSpec FLAG_SPECS[] = {
    {'s', 's', S_(strategy), 0, 0, 0, 0, "strategy: full | frozen (classifier only) | lora"},
    {'m', 's', S_(model_path), 0, 0, 0, 0,
     "model file (prepro_emotion.py), or a full / frozen checkpoint"},
    {'d', 's', S_(data_dir), 0, 0, 0, 0, "directory of emotion_{train,validation,test}.bin"},
    {'o', 's', S_(out_dir), 0, 0, 0, 0,
     "output directory: checkpoints, state.bin, log.tsv, TensorBoard events"},
    {'e', 'i', S_(epochs), 1, 10000, 0, 0, "epochs; also the length of the linear lr decay"},
    {'b', 'i', S_(B), 1, 4096, 0, 0,
     "batch size. 32 is the reference run's global batch: 16 per GPU on 2 GPUs\n"
     "              (its logs show 500 steps per epoch)"},
    {'l', 'f', S_(lr), 1e-12, 10, 0, 0, "learning rate (with -F 1: default 1e-2)"},
    {'w', 'f', S_(weight_decay), 0, 1, 0, 0, "AdamW weight decay (not on biases and LayerNorm)"},
    {'g', 'f', S_(max_norm), 0, 1e6, 0, 0, "max gradient norm for clipping, 0 = no clipping"},
    {'u', 'i', S_(warmup), 0, 1e9, 0, 0, "warmup steps of the linear schedule"},
    {'q', 'f', S_(dropout), 0, 0.99, 0, 0, "dropout: hidden, attention and classifier"},
    {'p', 'i', S_(patience), 0, 10000, 0, 0,
     "early stopping patience in epochs (validation F1), 0 = never stop"},
    {'r', 'i', S_(seed), 0, INT_MAX, 0, 0, "random seed: shuffle, dropout masks, LoRA init"},
    {'x', 'i', S_(max_steps), 1, INT_MAX, 1, 0, "stop after this many steps, -1 = no limit"},
    {'k', 'i', S_(lora_r), 1, 4096, 0, 0, "LoRA rank (at most the hidden size)"},
    {'a', 'f', S_(lora_alpha), LORA_ALPHA_MIN, LORA_ALPHA_MAX, 0, 0,
     "LoRA alpha (scale alpha / r)"},
    {'z', 'f', S_(lora_dropout), 0, 0.99, 0, 0, "LoRA dropout"},
    {'F', 'i', S_(probe), 0, 1, 0, 0,
     "1 = with -s frozen, a linear probe: the pooled features are computed once\n"
     "              (dropout off), then the classifier trains on them in seconds"},
    {'f', 'i', S_(print_every), 1, INT_MAX, 0, 0, "print a step line every this many steps"},
    {'P', 'i', S_(progress_every), 0, INT_MAX, 0, 0,
     "progress line every this many steps when stdout is not a\n"
     "              terminal (redrawn in place on one), 0 = off"},
    {'S', 'i', S_(save_every), 0, INT_MAX, 0, 0,
     "also save the training state every this many steps, 0 = at epoch ends only"},
    {'R', 'i', S_(resume), 0, 1, 0, 0,
     "1 = resume from <output dir>/state.bin, with the flags of the interrupted run"},
    {'O', 'i', S_(overwrite), 0, 1, 0, 0,
     "1 = replace an earlier run's results in the output directory (0: refuse)"},
    {'C', 's', S_(classify_path), 0, 0, 0, 0,
     "classify mode: a checkpoint (out/checkpoint_best.bin)"},
    {'t', 's', S_(classify_text), 0, 0, 0, 0,
     "classify mode: the text, or - for one text per line of stdin"},
    {'T', 's', S_(classify_pair), 0, 0, 0, 0,
     "classify mode, sentence pairs: the second text of -t's, or with -t -, - for\n"
     "              stdin lines of two texts separated by a tab"},
    {'v', 's', S_(vocab_path), 0, 0, 0, 0, "classify mode: the vocabulary"},
    {'y', 'i', S_(print_logits), 0, 1, 0, 0, "classify mode: 1 = also print the logits"},
    {'c', 's', S_(precision), 0, 0, 0, 1,
     "precision: fp32 (TF32 off, matches the CPU) | bf16 (bf16 matrix products)"},
    {'K', 'i', S_(kernels), 1, 4, 0, 1,
     "kernel set: 1 the first versions | 2 the fused ones | 3 the fused ones\n"
     "              on packed tokens, no padding | 4 set 3 with cuBLASLt bias\n"
     "              epilogues (2 to 4 not yet measured; dev/cuda/README.md)"},
    {'W', 'i', S_(save_thread), 0, 1, 0, 1,
     "1 = write checkpoints and the state on a thread while training goes\n"
     "              on | 0 = in line (the files are the same)"},
    {'X', 'i', S_(exit_after), 1, INT_MAX, 1, 0,
     "tests only: exit (code 3) right after this step, as if killed"},
    {'N', 'i', S_(nan_at), 1, INT_MAX, 1, 0,
     "tests only: report this step's gradient norm as NaN, as a diverging run would"},
};
#define NUM_FLAGS ((int)(sizeof(FLAG_SPECS) / sizeof(FLAG_SPECS[0])))
static const char* PRECISION_NAMES[] = {"fp32", "bf16"};

static inline void usage_(const Backend* be, FILE* out) {
    fprintf(out, "Usage:   ./train_bert%s [options]\n", be->on_gpu ? "cu" : "");
    fprintf(out,
            "Fine-tunes BERT on the emotion dataset%s; the defaults are the reference run's "
            "Hugging Face\n"
            "Trainer recipe. Classify mode: -C checkpoint -t text.\nOptions:\n",
            be->on_gpu ? " on the GPU" : "");
    for (int i = 0; i < NUM_FLAGS; i++) {
        const FlagSpec* f = &FLAG_SPECS[i];
        if (f->gpu_only && !be->on_gpu) { continue; }
        const char* field = (const char*)&DEFAULT_SETTINGS + f->offset;
        char def[64];
        if (f->type == 'i') { snprintf(def, sizeof(def), "%d", *(const int*)field); }
        else if (f->type == 'f') { snprintf(def, sizeof(def), "%g", *(const float*)field);
        } else {
            snprintf(def, sizeof(def), "%s",
                     *(const char* const*)field ? *(const char* const*)field : "none");
        }
        char range[64] = "";
        if (f->type != 's') { // "; 1 to 4096", "; at least 1" where the top is a type's limit
            int open = f->hi >= 1e9;
            int n = open ? snprintf(range, sizeof(range), "; at least %g", f->lo)
                         : snprintf(range, sizeof(range), "; %g to %g", f->lo, f->hi);
            if (f->minus_one) { snprintf(range + n, sizeof(range) - n, ", or -1"); }
        }
        const char* arg = f->type == 'i' ? "<int>   " : f->type == 'f' ? "<float> " : "<string>";
        fprintf(out, "  -%c %s %s (default %s%s)\n", f->flag, arg, f->help, def, range);
    }
    fprintf(out, "  -h           this help\n");
}

static inline void flag_error_(const Backend* be, const char* fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static inline void flag_error_(const Backend* be, const char* fmt, ...) {
    char what[512];
    FORMAT_MESSAGE(what, fmt);
    error_exit("%s\n---> HINT: ./train_bert%s -h lists every flag and its range", what,
               be->on_gpu ? "cu" : "");
}

// A number as people write it in decimal, nothing else: an integer is -?[0-9]+, a float also takes
// a fraction and an exponent (5e-5, .5, 1.). strtod alone would take " 5", "+5", "0x10", "0x1p-3",
// "inf" and "nan". Never "-0", and a float must be 0 or in float's normal range (1e-40 would be a
// subnormal float, 1e-50 a silent 0).
static inline int number_parse_(const char* v, int is_int, double* x) {
    const char* p = v + (v[0] == '-');
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++) { digits++; }
    if (!is_int && *p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) { digits++; }
    }
    if (digits == 0) { return 0; }
    if (!is_int && (*p == 'e' || *p == 'E')) {
        p += (p[1] == '+' || p[1] == '-') ? 2 : 1;
        if (!(*p >= '0' && *p <= '9')) { return 0; }
        while (*p >= '0' && *p <= '9') { p++; }
    }
    if (*p != '\0') { return 0; }
    char* end;
    errno = 0;
    *x = is_int ? (double)strtol(v, &end, 10) : strtod(v, &end);
    if (errno != 0 || *end != '\0' || !isfinite(*x) || (v[0] == '-' && *x == 0.0)) { return 0; }
    return is_int || *x == 0.0 || (fabs(*x) >= FLT_MIN && fabs(*x) <= FLT_MAX);
}

// Parse and check every flag: numbers must be plain decimal (number_parse_), finite and in range;
// choices must be one of theirs. Anything else is one clear error and exit 1; -h prints the help
// and exits 0.
static inline void settings_parse(Settings* s, int argc, char** argv, const Backend* be) {
    *s = DEFAULT_SETTINGS;
    s->argc = argc;
    s->argv = argv;
    // flags come in pairs, "-x value"; a back end's own flags (gpu_only) exist only where it runs
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (strcmp(a, "-h") == 0) { usage_(be, stdout); exit(EXIT_SUCCESS); }
        const FlagSpec* f = NULL;
        for (int k = 0; k < NUM_FLAGS; k++) {
            if (a[0] == '-' && a[1] == FLAG_SPECS[k].flag && a[2] == '\0' &&
                (!FLAG_SPECS[k].gpu_only || be->on_gpu)) {
                f = &FLAG_SPECS[k];
            }
        }
        if (f == NULL) { flag_error_(be, "unknown option '%s'", a); }
        if (i + 1 >= argc) { flag_error_(be, "option %s needs a value", a); }
        const char* v = argv[++i];
        char* field = (char*)s + f->offset;
        if (f->type == 's') {
            if (v[0] == '\0') { flag_error_(be, "option %s needs a non-empty value", a); }
            if (f->flag == 's') { s->strategy_given = 1; }
            *(const char**)field = v;
            continue;
        }
        // a number: all of the value must be a plain decimal number ("12abc" is no 12), in the
        // flag's range
        double x;
        int ok = number_parse_(v, f->type == 'i', &x) &&
                 ((x >= f->lo && x <= f->hi) || (f->minus_one && x == -1.0));
        if (!ok) {
            char range[128];
            snprintf(range, sizeof(range), "%s%g..%g", f->minus_one ? "-1 or " : "", f->lo, f->hi);
            flag_error_(
                be, "option %s %s: want %s in %s", a, v,
                f->type == 'i'
                    ? "a plain decimal integer"
                    : "a plain decimal number (as 5e-5 or 0.1; 0 or in float's normal range)",
                range);
        }
        if (f->type == 'i') { *(int*)field = (int)x; } else { *(float*)field = (float)x; }
        if (f->flag == 'l') { s->lr_given = 1; }
    }
    // the choices, and the combinations that make no sense
    s->strategy_id = -1;
    for (int k = 0; k < NUM_STRATEGIES; k++) {
        if (strcmp(s->strategy, STRATEGY_NAMES[k]) == 0) { s->strategy_id = k; }
    }
    if (s->strategy_id < 0) {
        flag_error_(be, "unknown strategy '%s' (full, frozen or lora)", s->strategy);
    }
    s->precision_id = -1;
    for (int k = 0; k < 2; k++) {
        if (strcmp(s->precision, PRECISION_NAMES[k]) == 0) { s->precision_id = k; }
    }
    if (s->precision_id < 0) {
        flag_error_(be, "unknown precision '%s' (fp32 or bf16)", s->precision);
    }
    if (s->classify_pair != NULL && s->classify_text == NULL) {
        flag_error_(be, "-T (a pair's second text) is for classify mode, with -C and -t");
    }
    if (s->classify_pair != NULL && (strcmp(s->classify_text, "-") == 0) !=
                                        (strcmp(s->classify_pair, "-") == 0)) {
        flag_error_(be, "-t - and -T - go together: with -t -, each stdin line holds a pair's two "
                        "texts separated by a tab");
    }
    if ((s->classify_path == NULL) != (s->classify_text == NULL)) {
        flag_error_(be, "classify mode needs both -C and -t");
    }
    if (s->probe && s->strategy_id != STRATEGY_FROZEN) {
        flag_error_(be, "the probe (-F 1) is for -s frozen");
    }
    if (s->probe && (s->resume || s->save_every > 0)) {
        flag_error_(be, "the probe (-F 1) takes seconds: it neither saves nor resumes a training "
                        "state (-S, -R)");
    }
    if (s->probe && !s->lr_given) { s->lr = PROBE_LR; }
}

// ----------------------------------------------------------------------------
// the settings table printed at the start of a run

typedef struct { char label[32]; char value[4300]; } TableRow;

static inline void table_add_(TableRow** rows, const char* label, const char* fmt,
                              ...) __attribute__((format(printf, 3, 4)));
static inline void table_add_(TableRow** rows, const char* label, const char* fmt, ...) {
    TableRow r;
    snprintf(r.label, sizeof(r.label), "%s", label);
    FORMAT_MESSAGE(r.value, fmt);
    arrput(*rows, r);
}

// rows, then a rule; the value column is as wide as its widest value, so every row lines up
static inline void table_print_(TableRow* rows) {
    int width = 50;
    for (int i = 0; i < arrlen(rows); i++) {
        int n = (int)strlen(rows[i].value);
        if (n > width) { width = n; }
    }
    char rule[4400];
    snprintf(rule, sizeof(rule), "+------------------------+-");
    memset(rule + 27, '-', width);
    snprintf(rule + 27 + width, 4, "-+");
    printf("%s\n", rule);
    for (int i = 0; i < arrlen(rows); i++) {
        if (rows[i].label[0] == '-') { printf("%s\n", rule); continue; }
        printf("| %-22s | %-*s |\n", rows[i].label, width, rows[i].value);
    }
    printf("%s\n", rule);
}

static inline void settings_print_(const Settings* s, const Bert* model, const Backend* be,
                                   const Dataset* splits, int T_max, int total_steps) {
    const BertConfig* cfg = &model->config;
    char device[256];
    be->describe(model, device, sizeof(device));
    TableRow* rows = NULL;
    table_add_(&rows, "strategy", "%s%s", s->strategy,
               s->probe ? " (probe on cached features, -F 1)" : "");
    table_add_(&rows, "model file", "%s", s->model_path);
    table_add_(&rows, "model", "%s", cfg->name);
    table_add_(&rows, "data directory", "%s", s->data_dir);
    table_add_(&rows, "output directory", "%s", s->out_dir);
    table_add_(&rows, "epochs (max)", "%d", s->epochs);
    table_add_(&rows, "batch size", "%d", s->B);
    table_add_(&rows, "learning rate", "%g", s->lr);
    table_add_(&rows, "schedule", "linear to 0 over %d steps, warmup %d", total_steps, s->warmup);
    table_add_(&rows, "AdamW", "betas (%g, %g), eps %g, weight decay %g", ADAMW_BETA1, ADAMW_BETA2,
               ADAMW_EPS, s->weight_decay);
    table_add_(&rows, "max grad norm", "%g%s", s->max_norm,
               s->max_norm > 0.0f ? "" : " (no clipping)");
    table_add_(&rows, "dropout", "%g", s->dropout);
    table_add_(&rows, "early stop patience", "%d%s", s->patience, s->patience > 0 ? "" : " (off)");
    table_add_(&rows, "seed", "%d", s->seed);
    if (s->max_steps > 0) { table_add_(&rows, "max steps", "%d", s->max_steps); }
    else { table_add_(&rows, "max steps", "no limit"); }
    if (s->save_every > 0) {
        table_add_(&rows, "state every", "%d steps and at epoch ends", s->save_every);
    } else {
        table_add_(&rows, "state every", "epoch end");
    }
    table_add_(&rows, "resume", "%s", s->resume ? "yes, from state.bin" : "no");
    if (s->strategy_id == STRATEGY_LORA) {
        table_add_(&rows, "LoRA r, alpha, dropout", "%d, %g, %g", s->lora_r, s->lora_alpha,
                   s->lora_dropout);
    }
    table_add_(&rows, "back end", "%s", device);
    if (dist_size() > 1) {
        table_add_(&rows, "ranks (MPI)", "%d, each a slice of every batch; rank 0 writes",
                   dist_size());
    }
    table_add_(&rows, "-", " ");
    table_add_(&rows, "V, P, C, L, NH, FF, NC", "%d, %d, %d, %d, %d, %d, %d", cfg->V, cfg->P,
               cfg->C, cfg->L, cfg->NH, cfg->FF, cfg->NC);
    table_add_(&rows, "parameters", "%zu", model->num_parameters);
    table_add_(&rows, "trainable parameters", "%zu", bert_num_trainable(model));
    table_add_(&rows, "train / val / test", "%d / %d / %d", splits[0].N, splits[1].N, splits[2].N);
    table_add_(&rows, "T_max", "%d", T_max);
    table_print_(rows);
    arrfree(rows);
}

// ----------------------------------------------------------------------------
// pieces of the loop

// a missing input file is the usual first-run mistake: say how to make it
static inline void require_file_(const char* path, const char* hint) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        error_exit("cannot read %s: %s\n---> HINT: %s", path, strerror(errno), hint);
    }
    if (S_ISDIR(sb.st_mode)) {
        error_exit("%s is a directory, not a file\n---> HINT: %s", path, hint);
    }
    // a FIFO would block the open for ever; a device or socket is no input file either
    if (!S_ISREG(sb.st_mode)) {
        error_exit("%s is not a regular file (a FIFO, device or socket)\n---> HINT: %s", path,
                   hint);
    }
}

// One run per output directory: an exclusive flock on out_dir/lock, taken before anything there is
// read or written and held until the process ends (the kernel drops it however the process ends,
// kill -9 included). The file holds its holder's pid, for the message a second run gets. It is
// never removed: a run that removed it could let two later runs lock two different files. Returns
// the descriptor that holds the lock.
static inline int output_dir_lock_(const char* out_dir) {
    char path[4200];
    path_join(path, sizeof(path), out_dir, "lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0) { error_exit("could not open the lock file %s: %s", path, strerror(errno)); }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) { error_exit("could not lock %s: %s", path, strerror(errno)); }
        char pid[32] = {0};
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == '\0')) { pid[--n] = '\0'; }
        error_exit("output directory %s is in use: process %s holds its lock (%s)\n"
                   "---> HINT: wait for that run to end (or stop it), or choose another -o",
                   out_dir, n > 0 ? pid : "(unknown)", path);
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, n, 0) != n) {
        error_exit("could not write %s: %s", path, strerror(errno));
    }
    return fd;
}

// A fresh run never silently replaces an earlier run's results: with results in out_dir it stops,
// unless resuming (-R 1) or told to overwrite (-O 1), which first removes the old ones. The
// directory is locked first (output_dir_lock_), so no other run can be using it. Returns the lock's
// descriptor.
static inline int output_dir_claim_(const char* out_dir, int resume, int overwrite) {
    struct stat sb;
    if (stat(out_dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        error_exit("output directory %s is a file", out_dir);
    }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        error_exit("could not create output directory %s: %s", out_dir, strerror(errno));
    }
    int lock_fd = output_dir_lock_(out_dir);
    if (resume) { return lock_fd; }
    const char* results[] = {"log.tsv", "state.bin", "checkpoint_best.bin", "checkpoint_last.bin"};
    char path[4200];
    for (int i = 0; i < 4; i++) {
        path_join(path, sizeof(path), out_dir, results[i]);
        if (access(path, F_OK) != 0) { continue; }
        if (!overwrite) {
            error_exit("%s holds an earlier run's results (%s)\n"
                       "---> HINT: resume it with -R 1, choose another -o, or replace it with -O 1",
                       out_dir, path);
        }
        if (remove(path) != 0) { error_exit("could not remove %s: %s", path, strerror(errno)); }
    }
    return lock_fd;
}

// ----------------------------------------------------------------------------
// checkpoints

// the header of model (a model file's, with the checkpoint slots filled in)
static inline void bert_checkpoint_header_(const Bert* model, int32_t* h, int epoch) {
    const BertConfig* cfg = &model->config;
    memset(h, 0, HEADER_INTS * sizeof(int32_t));
    h[H_MAGIC] = MODEL_MAGIC; h[H_VERSION] = MODEL_VERSION;
    h[MODEL_V] = cfg->V; h[MODEL_P] = cfg->P; h[MODEL_TV] = cfg->TV; h[MODEL_C] = cfg->C;
    h[MODEL_L] = cfg->L; h[MODEL_NH] = cfg->NH; h[MODEL_FF] = cfg->FF; h[MODEL_NC] = cfg->NC;
    h[MODEL_EPS] = float_to_bits(cfg->eps);
    h[MODEL_LABEL_BYTES] = cfg->label_bytes; // the label names, as the model file has them
    memcpy(&h[H_LABEL_NAMES], cfg->label_text, (size_t)cfg->label_bytes);
    h[MODEL_ACT] = 1; h[MODEL_PAD_ID] = cfg->pad_id; h[MODEL_LOWER] = cfg->lower;
    h[MODEL_KIND] = MODEL_KIND_CHECKPOINT; h[CKPT_STRATEGY] = model->strategy;
    h[CKPT_LORA_R] = model->strategy == STRATEGY_LORA ? model->lora_r : 0;
    h[CKPT_LORA_ALPHA] = float_to_bits(model->strategy == STRATEGY_LORA ? model->lora_alpha : 0.0f);
    h[CKPT_EPOCH] = epoch; h[CKPT_STEP] = model->step;
    memcpy(&h[MODEL_NAME], cfg->name, MODEL_NAME_INTS * 4);
}

// the host weights of model (back ends copy theirs to the host first) into a checkpoint at path
static inline void bert_save_checkpoint(const Bert* model, const char* path, int epoch) {
    int32_t h[HEADER_INTS];
    bert_checkpoint_header_(model, h, epoch);
    FILE* fp = atomic_open(path);
    fwriteCheck(h, sizeof(int32_t), HEADER_INTS, fp, path);
    fwriteCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    if (model->strategy == STRATEGY_LORA) {
        fwriteCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
    }
    atomic_commit(fp, path);
}

// Load a checkpoint written by bert_save_checkpoint into a model of the same config and strategy
// (the best epoch's, at the end of a run): every config slot, the strategy, LoRA rank and alpha
// must equal the model's, the epoch and step the run wrote it at (so a file replaced since, by
// another checkpoint of the run or anything else, is refused), the size must be exact and every
// weight finite.
static inline void bert_load_checkpoint(Bert* model, const char* path, int epoch, int step) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS], want[HEADER_INTS];
    long fsize = header_read(fp, path, h, MODEL_MAGIC, MODEL_VERSION, "checkpoint",
                             "it must come from this run's settings");
    bert_checkpoint_header_(model, want, 0);
    for (int i = MODEL_V; i <= CKPT_LORA_ALPHA; i++) {
        if (h[i] != want[i]) {
            error_exit("checkpoint %s does not belong to this %s model: header slot %d is %d, the "
                       "model has %d",
                       path, STRATEGY_NAMES[model->strategy], i, h[i], want[i]);
        }
    }
    if (h[CKPT_EPOCH] != epoch || h[CKPT_STEP] != step) {
        error_exit("checkpoint %s is of epoch %d, step %d; this run wrote it at epoch %d, step %d\n"
                   "---> HINT: it was replaced or changed after the run wrote it",
                   path, h[CKPT_EPOCH], h[CKPT_STEP], epoch, step);
    }
    size_t n =
        model->num_parameters + (model->strategy == STRATEGY_LORA ? model->num_lora_parameters : 0);
    if ((size_t)fsize != sizeof(h) + n * sizeof(float)) {
        error_exit("checkpoint %s has %ld bytes; this model and strategy need %zu", path, fsize,
                   sizeof(h) + n * sizeof(float));
    }
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    check_finite(model->params_memory, model->num_parameters, path, "parameter");
    bert_weights_changed(model); // the CPU forward's packed copies are stale
    if (model->strategy == STRATEGY_LORA) {
        freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
        check_finite(model->lora_memory, model->num_lora_parameters, path, "LoRA parameter");
    }
    fcloseCheck(fp, path);
}

// ----------------------------------------------------------------------------
// the training state (docs/formats.md, "Training state")

typedef struct {
    int epoch;            // the epoch in progress, 1-based
    int pos;              // examples of it already trained on (the loader's position)
    int nsteps;           // steps of it so far
    double loss_sum;      // sum of their losses, for the epoch's mean train loss
    double epoch_seconds; // time spent on it so far
    double train_seconds; // time of the whole run so far, across resumes
    int done;             // training has ended (max steps, last epoch or early stopping); only the
                          // test split remains
} TrainProgress;

// The settings a state only resumes under, header slots [20..32] (floats as their bits).
static const char* STATE_SETTING_NAMES[STATE_NUM_SETTINGS] = {"strategy (-s)", "seed (-r)",
    "batch size (-b)", "epochs (-e)", "number of train examples", "LoRA rank (-k)",
    "learning rate (-l)", "warmup (-u)", "weight decay (-w)", "max grad norm (-g)", "dropout (-q)",
    "LoRA alpha (-a)", "LoRA dropout (-z)"};
enum { SET_STRATEGY = 0, SET_SEED, SET_B, SET_EPOCHS, SET_N }; // the ones the checks below use
enum { SET_FIRST_FLOAT = 6, SET_WARMUP = 7 }; // from the learning rate on, floats (as bits), but
                                              // for warmup

// Written to a temp file and renamed (atomic_open), so a kill at any moment leaves the previous
// state or the new one.
static inline void train_state_save(const char* path, const Bert* model, const int32_t* settings,
                                    const TrainProgress* pr, const EarlyStopping* es,
                                    const EpochResult* history, int nhistory) {
    int32_t h[HEADER_INTS] = {0};
    size_t ntrain = bert_num_trainable(model);
    h[H_MAGIC] = STATE_MAGIC; h[H_VERSION] = STATE_VERSION;
    h[STATE_STEP] = model->step; h[STATE_EPOCH] = pr->epoch; h[STATE_POS] = pr->pos;
    h[STATE_NSTEPS] = pr->nsteps; h[STATE_DONE] = pr->done;
    header_set_f64(h, STATE_LOSS_SUM, pr->loss_sum);
    header_set_f64(h, STATE_TRAIN_SECONDS, pr->train_seconds);
    header_set_f64(h, STATE_EPOCH_SECONDS, pr->epoch_seconds);
    h[STATE_HAS_BEST] = es->has_best; h[STATE_BEST_F1] = float_to_bits(es->best_f1);
    h[STATE_BEST_EPOCH] = es->best_epoch; h[STATE_BAD_EPOCHS] = es->bad_epochs;
    h[STATE_NHIST] = nhistory; h[STATE_NPARAMS] = (int32_t)model->num_parameters;
    h[STATE_NLORA] = (int32_t)model->num_lora_parameters; h[STATE_NTRAIN] = (int32_t)ntrain;
    memcpy(&h[STATE_SETTINGS], settings, STATE_NUM_SETTINGS * sizeof(int32_t));
    FILE* fp = atomic_open(path);
    fwriteCheck(h, sizeof(int32_t), HEADER_INTS, fp, path);
    fwriteCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    if (model->num_lora_parameters > 0) {
        fwriteCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
    }
    fwriteCheck(model->m_memory, sizeof(float), ntrain, fp, path);
    fwriteCheck(model->v_memory, sizeof(float), ntrain, fp, path);
    for (int i = 0; i < nhistory; i++) {
        const EpochResult* r = &history[i];
        int32_t row[STATE_HISTORY_INTS] = {r->epoch, r->step, r->best, float_to_bits(r->train_loss),
            float_to_bits(r->val_loss), float_to_bits(r->accuracy), float_to_bits(r->precision),
            float_to_bits(r->recall), float_to_bits(r->f1), float_to_bits(r->seconds)};
        fwriteCheck(row, sizeof(int32_t), STATE_HISTORY_INTS, fp, path);
    }
    atomic_commit(fp, path);
}

// a state field that breaks a rule: the state is corrupt, or not from this program
static inline void state_fail_(const char* path, const char* fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static inline void state_fail_(const char* path, const char* fmt, ...) {
    char what[512];
    FORMAT_MESSAGE(what, fmt);
    error_exit("training state %s is corrupt or not from train_bert: %s\n"
               "---> HINT: start afresh without -R, or with another -o", path, what);
}
#define STATE_REQUIRE(cond, path, ...) \
    do { \
        if (!(cond)) { state_fail_(path, __VA_ARGS__); } \
    } while (0)

static inline int finite_in_(double x, double lo, double hi) {
    return isfinite(x) && x >= lo && x <= hi;
}

// Read a state into a model set up by bert_init_training with the same settings. Every counter
// is checked against the others and the settings, every float for being finite and in range.
// Returns the per-epoch history (an stb_ds list).
static inline EpochResult* train_state_load(const char* path, Bert* model, const int32_t* settings,
                                            TrainProgress* pr, EarlyStopping* es) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    long fsize = header_read(fp, path, h, STATE_MAGIC, STATE_VERSION, "training state",
                             "start afresh without -R, or with another -o");
    for (int i = 0; i < STATE_NUM_SETTINGS; i++) {
        if (h[STATE_SETTINGS + i] == settings[i]) { continue; }
        char there[32], now[32];
        if (i >= SET_FIRST_FLOAT && i != SET_WARMUP) { // floats, as their bits
            snprintf(there, sizeof(there), "%g", bits_to_float(h[STATE_SETTINGS + i]));
            snprintf(now, sizeof(now), "%g", bits_to_float(settings[i]));
        } else {
            snprintf(there, sizeof(there), "%d", h[STATE_SETTINGS + i]);
            snprintf(now, sizeof(now), "%d", settings[i]);
        }
        error_exit("%s was written with another %s (%s there, %s now)\n"
                   "---> HINT: resume with the flags of the interrupted run",
                   path, STATE_SETTING_NAMES[i], there, now);
    }
    // the settings match this run's, so these are valid: steps per epoch and the schedule's length
    int epochs = settings[SET_EPOCHS], B = settings[SET_B], N = settings[SET_N];
    int spe = (N + B - 1) / B;
    size_t ntrain = bert_num_trainable(model);
    int nhist = h[STATE_NHIST];
    STATE_REQUIRE(nhist >= 0 && nhist <= epochs, path, "%d history rows for %d epochs", nhist,
                  epochs);
    size_t nfloats = model->num_parameters + model->num_lora_parameters + 2 * ntrain;
    size_t want =
        sizeof(h) + nfloats * sizeof(float) + (size_t)nhist * STATE_HISTORY_INTS * sizeof(int32_t);
    if ((size_t)h[STATE_NPARAMS] != model->num_parameters ||
        (size_t)h[STATE_NLORA] != model->num_lora_parameters || (size_t)h[STATE_NTRAIN] != ntrain ||
        (size_t)fsize != want) {
        error_exit("training state %s has %ld bytes and %d/%d/%d parameters; "
                   "this model needs %zu bytes and %zu/%zu/%zu",
                   path, fsize, h[STATE_NPARAMS], h[STATE_NLORA], h[STATE_NTRAIN], want,
                   model->num_parameters, model->num_lora_parameters, ntrain);
    }
    model->step = h[STATE_STEP];
    pr->epoch = h[STATE_EPOCH];
    pr->pos = h[STATE_POS];
    pr->nsteps = h[STATE_NSTEPS];
    pr->done = h[STATE_DONE];
    pr->loss_sum = header_get_f64(h, STATE_LOSS_SUM);
    pr->train_seconds = header_get_f64(h, STATE_TRAIN_SECONDS);
    pr->epoch_seconds = header_get_f64(h, STATE_EPOCH_SECONDS);
    es->has_best = h[STATE_HAS_BEST]; es->best_f1 = bits_to_float(h[STATE_BEST_F1]);
    es->best_epoch = h[STATE_BEST_EPOCH]; es->bad_epochs = h[STATE_BAD_EPOCHS];
    // the counters: a state is written at an epoch end (pos 0, the next epoch) or every -S steps
    // within one
    STATE_REQUIRE(pr->done == 0 || pr->done == 1, path, "done flag %d", pr->done);
    STATE_REQUIRE(pr->epoch >= 1 && pr->epoch <= epochs + 1 && (pr->epoch <= epochs || pr->done),
                  path, "epoch %d of %d", pr->epoch, epochs);
    STATE_REQUIRE(nhist == pr->epoch - 1, path, "%d history rows at epoch %d", nhist, pr->epoch);
    STATE_REQUIRE(pr->nsteps >= 0 && pr->nsteps <= spe && !(pr->done && pr->nsteps > 0), path,
                  "%d steps into an epoch of %d", pr->nsteps, spe);
    long pos_want = (long)pr->nsteps * B < N ? (long)pr->nsteps * B : N;
    STATE_REQUIRE(pr->pos == pos_want, path, "position %d after %d steps of batch %d", pr->pos,
                  pr->nsteps, B);
    if (pr->done) {
        STATE_REQUIRE(model->step >= 0 && model->step <= (pr->epoch - 1) * spe, path, "step %d",
                      model->step);
    } else {
        STATE_REQUIRE(model->step == (pr->epoch - 1) * spe + pr->nsteps, path,
                      "step %d at epoch %d, %d steps into it", model->step, pr->epoch, pr->nsteps);
    }
    // cross-entropy is positive: a step's mean loss is 0 only where every example's probability
    // rounds to 1 in float32, which a whole stretch of steps with dropout does not reach; a sum of
    // 0 after steps is no sum we wrote
    STATE_REQUIRE(finite_in_(pr->loss_sum, 0.0, 1e30) &&
                      (pr->nsteps > 0 ? pr->loss_sum > 0.0 : pr->loss_sum == 0.0),
                  path, "loss sum %g after %d steps", pr->loss_sum, pr->nsteps);
    STATE_REQUIRE(finite_in_(pr->train_seconds, 0.0, 1e12) &&
                      finite_in_(pr->epoch_seconds, 0.0, 1e12),
                  path, "times %g and %g seconds", pr->train_seconds, pr->epoch_seconds);
    // early stopping: the best epoch is one of the history's, and bad epochs count the ones since
    STATE_REQUIRE(es->has_best == (nhist > 0), path, "has_best %d with %d epochs", es->has_best,
                  nhist);
    if (es->has_best) {
        STATE_REQUIRE(finite_in_(es->best_f1, 0.0, 1.0) && es->best_epoch >= 1 &&
                          es->best_epoch <= nhist && es->bad_epochs == nhist - es->best_epoch,
                      path, "best F1 %g at epoch %d, %d epochs since, of %d", es->best_f1,
                      es->best_epoch, es->bad_epochs, nhist);
    }
    // the tensors, each finite; second moments are never negative
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    check_finite(model->params_memory, model->num_parameters, path, "parameter");
    bert_weights_changed(model); // the CPU forward's packed copies are stale
    if (model->num_lora_parameters > 0) {
        freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
        check_finite(model->lora_memory, model->num_lora_parameters, path, "LoRA parameter");
    }
    freadCheck(model->m_memory, sizeof(float), ntrain, fp, path);
    check_finite(model->m_memory, ntrain, path, "AdamW first moment");
    freadCheck(model->v_memory, sizeof(float), ntrain, fp, path);
    check_finite(model->v_memory, ntrain, path, "AdamW second moment");
    for (size_t i = 0; i < ntrain; i++) {
        STATE_REQUIRE(model->v_memory[i] >= 0.0f, path, "negative second moment");
    }
    EpochResult* history = NULL;
    for (int i = 0; i < nhist; i++) {
        int32_t row[STATE_HISTORY_INTS];
        freadCheck(row, sizeof(int32_t), STATE_HISTORY_INTS, fp, path);
        EpochResult r = {row[0], row[1], row[2], bits_to_float(row[3]), bits_to_float(row[4]),
            bits_to_float(row[5]), bits_to_float(row[6]), bits_to_float(row[7]),
            bits_to_float(row[8]), bits_to_float(row[9])};
        int prev_step = i > 0 ? history[i - 1].step : 0;
        STATE_REQUIRE(r.epoch == i + 1 && r.step >= prev_step && r.step <= model->step &&
                          (r.best == 0 || r.best == 1),
                      path, "history row %d: epoch %d, step %d, best %d", i, r.epoch, r.step,
                      r.best);
        STATE_REQUIRE(finite_in_(r.train_loss, 0.0, 1e30) && finite_in_(r.val_loss, 0.0, 1e30) &&
                          finite_in_(r.accuracy, 0.0, 1.0) && finite_in_(r.precision, 0.0, 1.0) &&
                          finite_in_(r.recall, 0.0, 1.0) && finite_in_(r.f1, 0.0, 1.0) &&
                          finite_in_(r.seconds, 0.0, 1e12),
                      path, "history row %d has a value out of range", i);
        arrput(history, r);
    }
    if (es->has_best) {
        STATE_REQUIRE(history[es->best_epoch - 1].best == 1 &&
                          history[es->best_epoch - 1].f1 == es->best_f1,
                      path, "the best epoch %d is not marked best in the history", es->best_epoch);
    }
    fcloseCheck(fp, path);
    return history;
}

// ----------------------------------------------------------------------------
// evaluation

// Evaluate on a whole split in order, dropout off: loss, accuracy, weighted precision / recall /
// F1. With ranks, each forwards its slice of every batch and the confusion matrices and loss sums
// are summed.
static inline void evaluate_(const Backend* be, Bert* model, const Dataset* ds, int B, Metrics* m) {
    DataLoader loader;
    loader_init(&loader, ds, B, 0);
    loader_split(&loader, dist_rank(), dist_size());
    loader_start_epoch(&loader, 0, 0);
    int Bb, T, n = 0;
    double loss = 0.0;
    while (loader_next_batch_types(&loader, model->ids, model->types, model->lengths, model->labels,
                             model->config.pad_id, &Bb, &T)) {
        model->b0 = loader.b0;
        model->B_global = 0; // the slice's own mean loss, for eval_add's sum
        be->forward(model, Bb, T, model->labels, 0);
        be->eval_add(model, Bb, n == 0);
        n += Bb;
    }
    be->eval_read(model, m->confusion, &loss);
    dist_sum_ints(m->confusion, (size_t)m->NC * m->NC);
    dist_sum_doubles(&loss, 1);
    metrics_from_confusion(m, ds->N);
    m->loss = (float)(loss / ds->N);
    loader_free(&loader);
}

// progress within an epoch: redrawn in place on a terminal, a plain line every `every` steps
// otherwise
static inline void progress_print_(int tty, int every, int epoch, int done, int total, int examples,
                                   double seconds) {
    if (!tty && (every <= 0 || done % every != 0)) { return; }
    double rate = seconds > 0.0 ? examples / seconds : 0.0;
    double eta = done > 0 ? seconds / done * (total - done) : 0.0;
    printf("%sprogress | epoch %d | step %d/%d (%.1f%%) | %.1f examples/s | ETA %02d:%02d:%02d%s",
           tty ? "\r\033[K" : "", epoch, done, total, 100.0 * done / total, rate, (int)eta / 3600,
           (int)eta / 60 % 60, (int)eta % 60, tty ? "" : "\n");
    fflush(stdout);
}

// stdout carries the results (the epoch lines, the test report, classify's labels): a failed write
// there, as on a full disk, is an error, not a silent loss (the stream remembers it; line buffering
// already tried to write)
static inline void stdout_check_(void) { fflushCheck(stdout, "standard output"); }

// A run whose loss, gradient norm or validation loss stops being finite has diverged: stop before
// anything is written, so the last good checkpoint and state stay, and exit non-zero.
// ----------------------------------------------------------------------------
// the probe (-F 1 with -s frozen): the encoder is frozen and, with dropout off, deterministic, so
// its pooled features are computed once per split; the classifier then trains on them, with its own
// dropout, through the CPU reference's layers and AdamW on the host copy of the model

typedef struct {
    float* feats[3];  // (N, C) pooled features of train, validation, test
    float* x;         // (B, C) a batch of features, then dropout(features)
    float* logits;    // (B, NC)
    float* probs;     // (B, NC)
    float* losses;    // (B)
    float* dlogits;   // (B, NC)
    float* wt;        // (C * NC) the classifier's weight transposed
} Probe;

static inline void probe_init_(Probe* pr, const Backend* be, Bert* model, const Dataset* splits,
                               int B) {
    int C = model->config.C, NC = model->config.NC;
    double t0 = now_seconds();
    for (int k = 0; k < 3; k++) {
        pr->feats[k] = (float*)mallocCheck(size_mul((size_t)splits[k].N, (size_t)C, "features") *
                                           sizeof(float));
        DataLoader loader;
        loader_init(&loader, &splits[k], B, 0);
        loader_start_epoch(&loader, 0, 0);
        int Bb, T, n = 0;
        while (loader_next_batch_types(&loader, model->ids, model->types, model->lengths,
                                       model->labels, model->config.pad_id, &Bb, &T)) {
            be->forward(model, Bb, T, NULL, 0);
            memcpy(pr->feats[k] + (size_t)n * C, be->pooled(model, Bb),
                   (size_t)Bb * C * sizeof(float));
            n += Bb;
        }
        loader_free(&loader);
    }
    pr->x = (float*)mallocCheck((size_t)B * C * sizeof(float));
    pr->logits = (float*)mallocCheck((size_t)B * NC * sizeof(float));
    pr->probs = (float*)mallocCheck((size_t)B * NC * sizeof(float));
    pr->losses = (float*)mallocCheck((size_t)B * sizeof(float));
    pr->dlogits = (float*)mallocCheck((size_t)B * NC * sizeof(float));
    pr->wt = (float*)mallocCheck((size_t)C * NC * sizeof(float));
    printf(
        "probe: pooled features of %d + %d + %d examples computed once, dropout off, in %.1f s\n",
        splits[0].N, splits[1].N, splits[2].N, now_seconds() - t0);
}

// the classifier on rows (Bb) of a split's features: logits in pr->logits; with labels, the mean
// loss
static inline float probe_forward_(Probe* pr, Bert* model, int split, const int* rows, int Bb,
                                   const int* labels, int train) {
    int C = model->config.C, NC = model->config.NC;
    for (int b = 0; b < Bb; b++) {
        memcpy(pr->x + (size_t)b * C, pr->feats[split] + (size_t)rows[b] * C, C * sizeof(float));
    }
    // the full model's classifier dropout site, so the masks are the ones -s frozen draws
    dropout_forward(pr->x, pr->x, NULL, NULL, Bb, C, train ? model->dropout : 0.0f,
                    bert_stream(model, model->config.L, 0));
    matmul_forward(pr->logits, pr->x, model->params.clsw, model->params.clsb, pr->wt, Bb, C, NC);
    return labels != NULL ? crossentropy_forward(pr->losses, pr->probs, pr->logits, labels, Bb, NC)
                          : 0.0f;
}

// one training step of the classifier (as bert_backward's frozen branch, then bert_update); returns
// the norm
static inline float probe_step_(Probe* pr, Bert* model, const int* rows, int Bb, const int* labels,
                                float lr, const Settings* s) {
    int C = model->config.C, NC = model->config.NC;
    model->mean_loss = probe_forward_(pr, model, 0, rows, Bb, labels, 1);
    crossentropy_backward(pr->dlogits, pr->probs, labels, Bb, Bb, NC);
    bert_zero_grad(model);
    matmul_backward(NULL, model->grads.clsw, model->grads.clsb, pr->dlogits, pr->x,
                    model->params.clsw, Bb, C, NC);
    return bert_update(model, lr, s->weight_decay, s->max_norm);
}

static inline void probe_evaluate_(Probe* pr, Bert* model, const Dataset* ds, int split, int B,
                                   Metrics* m) {
    int* preds = (int*)mallocCheck(ds->N * sizeof(int));
    int* rows = (int*)mallocCheck(B * sizeof(int));
    double loss = 0.0;
    for (int n = 0; n < ds->N; n += B) {
        int Bb = ds->N - n < B ? ds->N - n : B;
        for (int b = 0; b < Bb; b++) { rows[b] = n + b; }
        loss += (double)probe_forward_(pr, model, split, rows, Bb, ds->labels + n, 0) * Bb;
        for (int b = 0; b < Bb; b++) {
            preds[n + b] = argmax(pr->logits + (size_t)b * model->config.NC, model->config.NC);
        }
    }
    metrics_compute(m, preds, ds->labels, ds->N);
    m->loss = (float)(loss / ds->N);
    free(preds);
    free(rows);
}

static inline void probe_free_(Probe* pr) {
    for (int k = 0; k < 3; k++) { free(pr->feats[k]); }
    free(pr->x);
    free(pr->logits);
    free(pr->probs);
    free(pr->losses);
    free(pr->dlogits);
    free(pr->wt);
}

// ----------------------------------------------------------------------------
// saving: the checkpoints and the training state. A GPU back end writes them from its host copies,
// which do not change until the next copy back (sync_to_host_), so the files are written on a
// thread while training goes on (at bert-base a save is ~1.7 GB, about as long as a whole epoch at
// the GPU's goal). The thread is joined before the next copy back, before the test reloads the best
// checkpoint, before -X exits, when the run diverges (so the last good files are complete) and at
// the end. The CPU back end's host copies are its weights: it writes in line, as does the probe.
// Each file is still written to a temp file and renamed. The thread never ends the process: a write
// error there (error_exit, through its ErrorTrap) removes the temp file and ends the thread with
// the message in SaveJob.error, and the main thread prints it and exits 1 when it next joins the
// thread (save_wait_).

typedef struct {
    Bert model;              // a shallow copy: the step and sizes of the moment, the host copies'
                             // pointers
    const char* last_path;   // each NULL where this save has no such file
    const char* best_path;
    const char* state_path;
    int epoch;               // the checkpoints' epoch
    const int32_t* settings; // the state's
    TrainProgress pr;
    EarlyStopping es;
    EpochResult* history;    // a copy (malloc), nhistory rows
    int nhistory;
    int failed;              // the thread's write failed: error holds error_exit's message
    char error[8192];
} SaveJob;

static inline void save_job_run_(SaveJob* j) {
    if (j->last_path != NULL) { bert_save_checkpoint(&j->model, j->last_path, j->epoch); }
    if (j->best_path != NULL) { bert_save_checkpoint(&j->model, j->best_path, j->epoch); }
    if (j->state_path != NULL) {
        train_state_save(j->state_path, &j->model, j->settings, &j->pr, &j->es, j->history,
                         j->nhistory);
    }
    free(j->history);
    j->history = NULL;
}

static inline void* save_thread_(void* job) {
    SaveJob* j = (SaveJob*)job;
    ErrorTrap trap;
    error_trap_ = &trap;
    if (setjmp(trap.env) == 0) {
        save_job_run_(j);
    } else { // error_exit jumped here: the temp file is gone; the main thread reports the message
        j->failed = 1;
        snprintf(j->error, sizeof(j->error), "%s", trap.message);
        free(j->history);
        j->history = NULL;
    }
    error_trap_ = NULL;
    return NULL;
}

// ----------------------------------------------------------------------------
// training: a run is the model, the data, early stopping, the history and the files it writes

typedef struct {
    const Settings* s;
    const Backend* be;
    Bert model;
    Dataset splits[3];       // train, validation, test
    int T_max;               // the longest example of the three
    int steps_per_epoch;
    int total_steps;         // the linear schedule's length: epochs * steps_per_epoch
    DataLoader loader;       // the train split, reshuffled every epoch
    EarlyStopping es;
    EpochResult* history;    // stb_ds list, one row per finished epoch
    TrainProgress pr;        // where the run stands (at the start: where a resumed run left off)
    int32_t state_settings[STATE_NUM_SETTINGS]; // what a resume must repeat
    int done;                // training has ended: only the test split remains
    Probe probe;             // -F 1 only
    char last_path[4200], best_path[4200], state_path[4200], log_path[4200];
    FILE* log;
    EventWriter events;
    int tty;                 // stdout is a terminal: the progress line redraws in place
    double start;            // when this process started training (earlier processes' time is in
                             // pr)
    // steps whose loss and norm are not yet checked, summed and logged (flush_steps_)
    struct { int step; float lr, loss, norm; } pending[STEPS_MAX];
    int npending;
    double line_time;        // when the last step line was printed (or the epoch started)
    int line_step;           // and at which step
    // the save being written on a thread (GPU back ends; see SaveJob)
    int save_async;          // 1: saves go on a thread
    int saving;              // 1: save_thread is writing save
    pthread_t save_thread;
    SaveJob save;
    int lock_fd;             // holds the output directory's lock (output_dir_lock_); -1: not here
    int writes;              // this process writes the output directory: rank 0 of the ranks
} Run;

// a copy of the back end's weights and moments on the host, unless the host copy is the truth (the
// probe)
static inline void sync_to_host_(Run* run) {
    if (!run->s->probe) { run->be->to_host(&run->model); }
}

// the save in flight, if any, written to the end; a save that failed on the thread stops the run
// here
static inline void save_wait_(Run* run) {
    if (!run->saving) { return; }
    int rc = pthread_join(run->save_thread, NULL);
    run->saving = 0;
    if (rc != 0) {
        error_exit("could not join the thread writing the checkpoints: %s", strerror(rc));
    }
    if (run->save.failed) {
        error_exit("%s\n  (on the thread writing the checkpoints and state, -W 1; training stopped "
                   "at step %d)",
                   run->save.error, run->model.step);
    }
}

// error_exit's hook during a run: an error on the main thread waits for a save in flight before the
// process ends, so exit() never tears down what the thread is using (and its files are complete, or
// removed)
static Run* live_run_;
static void save_wait_at_exit_(void) {
    Run* run = live_run_;
    if (run == NULL || !run->saving) { return; }
    pthread_join(run->save_thread, NULL);
    run->saving = 0;
    if (run->save.failed) { fprintf(stderr, "Error: %s\n", run->save.error); }
}

// a non-finite loss or norm: stop with a message, once the save in flight (the last good files) is
// complete
static inline void diverged_(Run* run, const char* what, float value, int step) {
    save_wait_(run);
    printf("\n");
    error_exit("the %s became %g at step %d: training diverged; nothing was saved after the last "
               "good epoch\n"
               "---> HINT: %s keeps the last good checkpoints and state.bin; try a smaller -l or "
               "clipping (-g)",
               what, value, step, run->s->out_dir);
}

// the host copy of the back end's weights and moments, once the save in flight no longer reads the
// last one
static inline void save_sync_(Run* run) {
    save_wait_(run);
    sync_to_host_(run);
}

// Save the host copies (save_sync_ first): the checkpoints (last_path, best_path; NULL: not this
// time) of `epoch` and the state (state_path, with progress pr), on a thread (save_async) or now.
static inline void save_start_(Run* run, const char* last_path, const char* best_path,
                               const char* state_path, int epoch, const TrainProgress* pr) {
    save_wait_(run);
    if (!run->writes) { return; } // the other ranks hold the same weights, and rank 0 saves them
    SaveJob* j = &run->save;
    memset(j, 0, sizeof(*j));
    j->model = run->model;
    j->last_path = last_path; j->best_path = best_path; j->state_path = state_path;
    j->epoch = epoch;
    j->settings = run->state_settings;
    j->pr = *pr;
    j->es = run->es;
    j->nhistory = (int)arrlen(run->history);
    j->history =
        (EpochResult*)mallocCheck((j->nhistory > 0 ? j->nhistory : 1) * sizeof(EpochResult));
    if (j->nhistory > 0) { memcpy(j->history, run->history, j->nhistory * sizeof(EpochResult)); }
    if (run->save_async && pthread_create(&run->save_thread, NULL, save_thread_, j) == 0) {
        run->saving = 1;
        return;
    }
    save_job_run_(j); // on the CPU (or where no thread can start): now
}

// seconds of training so far, across resumes
static inline double run_seconds_(const Run* run) {
    return run->pr.train_seconds + now_seconds() - run->start;
}

// ----------------------------------------------------------------------------
// SIGINT and SIGTERM: the handler only notes the signal. The loop looks at each step boundary and
// each epoch's end (run_stop_): it saves the state there, as -S would, says how to resume and exits
// 128 + the signal (130, 143). The handler restores the default actions at once, so a second signal
// ends the process there and then (a save then in progress leaves its temp file behind, never a
// half-written state.bin).

static volatile sig_atomic_t stop_signal_;
static struct sigaction default_action_; // SIG_DFL, for the handler to restore (sigaction is
                                         // async-signal-safe)
static struct sigaction ignore_action_;  // SIG_IGN

static void stop_handler_(int sig) {
    stop_signal_ = sig;
    sigaction(SIGINT, &default_action_, NULL);
    sigaction(SIGTERM, &default_action_, NULL);
    // Ctrl-C also ends a `| tee`: the lines still to come then fail (unchecked while stopping)
    // instead of SIGPIPE killing the run before it has saved
    sigaction(SIGPIPE, &ignore_action_, NULL);
}

// only where the signal is not already ignored (a background job's SIGINT is): an ignored signal
// stays ignored
static inline void stop_handlers_install_(void) {
    default_action_.sa_handler = SIG_DFL;
    sigemptyset(&default_action_.sa_mask);
    ignore_action_.sa_handler = SIG_IGN;
    sigemptyset(&ignore_action_.sa_mask);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop_handler_;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; // reads and writes the signal interrupts go on
    int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
            sigaction(sigs[i], &sa, NULL);
        }
    }
}

// Whether to stop at this step boundary: with ranks, all stop at the same one, if a signal reached
// any (mpirun passes SIGINT and SIGTERM on to every rank, but not at the same instant).
static inline int stop_requested_(void) {
    int sig = dist_max_int(stop_signal_);
    if (sig != 0) { stop_signal_ = sig; }
    return sig != 0;
}

// an argument as a POSIX shell reads it back: bare where that is safe, else in single quotes
static inline void shell_quote_print_(FILE* out, const char* a) {
    int bare = a[0] != '\0';
    for (const char* p = a; *p; p++) {
        bare = bare && (isalnum((unsigned char)*p) || strchr("_./:=,+@%-", *p));
    }
    if (bare) { fputs(a, out); return; }
    fputc('\'', out);
    for (const char* p = a; *p; p++) {
        if (*p == '\'') {
            fputs("'\\''", out);
        } else {
            fputc(*p, out);
        }
    }
    fputc('\'', out);
}

// this run's command line with -R 1 (without its own -R or -O: a resume needs no -O)
static inline void resume_command_print_(FILE* out, const Settings* s) {
    if (dist_size() > 1) { fprintf(out, " mpirun -np %d", dist_size()); } // any count would do
    for (int i = 0; i < s->argc; i++) {
        const char* a = s->argv[i];
        if (i % 2 == 1 && (strcmp(a, "-R") == 0 || strcmp(a, "-O") == 0)) {
            i++;
            continue;
        } // flags are pairs
        fputc(' ', out);
        shell_quote_print_(out, a);
    }
    fprintf(out, " -R 1\n");
}

// Stop on a signal: save the state of this step boundary (now; NULL: the save just started holds
// the point to resume from), wait until it is complete, say how to resume, and exit 130 (SIGINT) or
// 143 (SIGTERM).
static inline void run_stop_(Run* run, const TrainProgress* now) {
    if (now != NULL && !run->s->probe) {
        save_sync_(run);
        save_start_(run, NULL, NULL, run->state_path, 0, now);
    }
    save_wait_(run);
    dist_barrier(); // rank 0's state is complete before any rank's exit can end the job
    int sig = stop_signal_;
    if (!run->writes) { exit(128 + sig); }
    printf("%s", run->tty ? "\r\033[K" : "");
    fflush(stdout);
    fprintf(stderr, "stopped by %s after step %d: ", sig == SIGINT ? "SIGINT" : "SIGTERM",
            run->model.step);
    if (run->s->probe) {
        fprintf(stderr, "the probe keeps no state; run it again\n");
    } else {
        fprintf(stderr,
                "the state is saved in %s\n---> HINT: resume bit for bit with:", run->state_path);
        resume_command_print_(stderr, run->s);
    }
    exit(128 + sig);
}

// A split must fit the model beyond its sizes (dataset_load checks those): sentence pairs need a
// second token type, and the labels must be the model's, by name where the files name them (a
// split and a model file from different prepro runs would otherwise train on shuffled classes).
static inline void split_check_model_(const Dataset* ds, const char* path, const BertConfig* cfg,
                                      const char* model_path) {
    if (ds->max_type >= cfg->TV) {
        error_exit("%s has sentence pairs (token type %d); model %s has %d token type%s", path,
                   ds->max_type, model_path, cfg->TV, cfg->TV == 1 ? "" : "s");
    }
    int split_named = ds->label_names != NULL, model_named = cfg->label_bytes > 0;
    if (split_named != model_named) {
        error_exit("%s %s label names and model %s %s\n---> HINT: use the model file prepro "
                   "wrote with these splits", path, split_named ? "has" : "has no", model_path,
                   model_named ? "has" : "has none");
    }
    const char* const* names = label_names_(cfg);
    for (int c = 0; split_named && c < cfg->NC; c++) {
        if (strcmp(ds->label_names[c], names[c]) != 0) {
            error_exit("%s names label %d '%s'; model %s names it '%s'\n---> HINT: use the model "
                       "file prepro wrote with these splits", path, c, ds->label_names[c],
                       model_path, names[c]);
        }
    }
}

// a checksum of the weights and AdamW moments, which every rank must hold alike
static inline uint64_t weights_checksum_(const Bert* model) {
    uint64_t h = dist_checksum(DIST_CHECKSUM_START, &model->step, sizeof(model->step));
    h = dist_checksum(h, model->params_memory, model->num_parameters * sizeof(float));
    h = dist_checksum(h, model->lora_memory, model->num_lora_parameters * sizeof(float));
    size_t ntrain = bert_num_trainable(model);
    h = dist_checksum(h, model->m_memory, ntrain * sizeof(float));
    return dist_checksum(h, model->v_memory, ntrain * sizeof(float));
}

// With ranks (bertc/dist.h): every rank must have the same flags, model and splits (checksums, or a
// rank would train on something else), and every batch at least one example a rank, so that each
// rank has a slice to compute (the global batch, the epoch's last and every evaluation batch).
static inline void ranks_check_(const Run* run) {
    const Settings* s = run->s;
    int K = dist_size();
    uint64_t h = DIST_CHECKSUM_START;
    for (int i = 1; i < s->argc; i++) { h = dist_checksum(h, s->argv[i], strlen(s->argv[i]) + 1); }
    dist_agree(h, "command line (the flags)");
    h = dist_checksum(weights_checksum_(&run->model), &run->model.config, sizeof(BertConfig));
    dist_agree(h, "model file (its config, label names and weights, or LoRA's start)");
    h = DIST_CHECKSUM_START;
    for (int k = 0; k < 3; k++) {
        const Dataset* ds = &run->splits[k];
        h = dist_checksum(h, ds->lengths, ds->N * sizeof(int));
        h = dist_checksum(h, ds->labels, ds->N * sizeof(int));
        size_t ntok = ds->starts[ds->N - 1] + (size_t)ds->lengths[ds->N - 1];
        h = dist_checksum(h, ds->ids, ntok * sizeof(int));
        h = dist_checksum(h, ds->types, ntok * sizeof(int));
    }
    dist_agree(h, "data splits");
    for (int k = 0; k < 3; k++) {
        int N = run->splits[k].N, last = N % s->B == 0 ? s->B : N % s->B;
        if (s->B < K || last < K) {
            error_exit("%d ranks need at least %d examples in every batch; -b %d on %d examples "
                       "leaves %d in the last\n---> HINT: use fewer ranks or another -b",
                       K, K, s->B, N, N < s->B ? N : last);
        }
    }
}

// The model from the model file with the strategy's training state, the three splits checked
// against it, the output directory claimed, the settings table, then (with -R 1) the state of an
// interrupted run.
static inline void run_init_(Run* run, const Settings* s, const Backend* be) {
    memset(run, 0, sizeof(*run));
    run->s = s;
    run->be = be;
    run->save_async = be->on_gpu && !s->probe && s->save_thread; // see SaveJob
    const char* data_hint = "run `make data` (python prepro_emotion.py) first";
    Bert* model = &run->model;
    model->strategy = s->strategy_id;
    model->seed = (uint64_t)s->seed;
    model->dropout = s->dropout;
    model->lora_r = s->lora_r;
    model->lora_alpha = s->lora_alpha;
    model->lora_dropout = s->lora_dropout;
    model->precision = s->precision_id;
    require_file_(s->model_path, data_hint);
    bert_build_from_file(model, s->model_path);
    const BertConfig* cfg = &model->config;
    if (s->strategy_id == STRATEGY_LORA && s->lora_r > cfg->C) {
        error_exit("LoRA rank %d is larger than the hidden size %d of %s (-k)", s->lora_r, cfg->C,
                   s->model_path);
    }
    bert_init_training(model);
    const char* split_names[3] = {"train", "validation", "test"};
    for (int k = 0; k < 3; k++) {
        char name[64], path[4200];
        snprintf(name, sizeof(name), "emotion_%s.bin", split_names[k]);
        path_join(path, sizeof(path), s->data_dir, name);
        require_file_(path, data_hint);
        dataset_load(&run->splits[k], path, cfg->V, cfg->NC, cfg->P);
        split_check_model_(&run->splits[k], path, cfg, s->model_path);
        if (run->splits[k].T_max > run->T_max) { run->T_max = run->splits[k].T_max; }
    }
    if (dist_size() > 1) { ranks_check_(run); }
    // one allocation for the largest batch, on the host and in the back end
    bert_alloc_batch(model, s->B, run->T_max);
    be->setup(model, s->B, run->T_max);
    run->writes = dist_rank() == 0;
    run->lock_fd = run->writes ? output_dir_claim_(s->out_dir, s->resume, s->overwrite) : -1;
    run->steps_per_epoch = (run->splits[0].N + s->B - 1) / s->B;
    if ((long long)s->epochs * run->steps_per_epoch > INT_MAX / 2) {
        error_exit("-e %d epochs of %d steps is too many steps", s->epochs, run->steps_per_epoch);
    }
    run->total_steps = s->epochs * run->steps_per_epoch;
    settings_print_(s, model, be, run->splits, run->T_max, run->total_steps);
    path_join(run->last_path, sizeof(run->last_path), s->out_dir, "checkpoint_last.bin");
    path_join(run->best_path, sizeof(run->best_path), s->out_dir, "checkpoint_best.bin");
    path_join(run->state_path, sizeof(run->state_path), s->out_dir, "state.bin");
    path_join(run->log_path, sizeof(run->log_path), s->out_dir, "log.tsv");
    loader_init(&run->loader, &run->splits[0], s->B, (uint64_t)s->seed);
    loader_split(&run->loader, dist_rank(), dist_size());
    run->es.patience = s->patience;
    run->pr.epoch = 1;
    int lora = s->strategy_id == STRATEGY_LORA;
    int32_t settings[STATE_NUM_SETTINGS] = {s->strategy_id, s->seed, s->B, s->epochs,
        run->splits[0].N, lora ? s->lora_r : 0, float_to_bits(s->lr), s->warmup,
        float_to_bits(s->weight_decay), float_to_bits(s->max_norm), float_to_bits(s->dropout),
        float_to_bits(lora ? s->lora_alpha : 0.0f), float_to_bits(lora ? s->lora_dropout : 0.0f)};
    memcpy(run->state_settings, settings, sizeof(settings));
    if (s->resume) {
        require_file_(run->state_path,
                      "start without -R 1 (the interrupted run saved no state yet), or fix -o");
        run->history =
            train_state_load(run->state_path, model, run->state_settings, &run->pr, &run->es);
        if (dist_size() > 1) {
            dist_agree(weights_checksum_(model), "training state (weights and moments)");
        }
        be->from_host(model);
        printf("resumed from %s: step %d, epoch %d, %d examples into it%s\n", run->state_path,
               model->step, run->pr.epoch, run->pr.pos,
               run->pr.done ? ", training had finished" : "");
    }
    run->done = run->pr.done;
    if (s->probe) { probe_init_(&run->probe, be, model, run->splits, s->B); }
    if (run->writes) {
        // log.tsv is rewritten from the history, so a resumed run's log is an uninterrupted one's
        run->log = log_open(run->log_path, run->history, (int)arrlen(run->history));
        // TensorBoard, with the Trainer's tags. A resumed run starts a new file that tells
        // TensorBoard to drop what the interrupted run logged after the state.
        events_open(&run->events, s->out_dir);
        if (s->resume) { events_add_restart(&run->events, model->step + 1); }
    }
    run->tty = isatty(fileno(stdout));
    run->start = now_seconds();
}

// The pending steps' loss and norm (from the device, where the back end keeps them): a diverged
// step stops the run before anything is written (the last good files stay); then the epoch's loss
// sum, TensorBoard's per-step scalars, and the step line, whose time is the mean per step since the
// last one. Runs every -f steps, every STEPS_MAX steps, before a state is saved and at the epoch's
// end, so a step never waits for the device.
static inline void flush_steps_(Run* run, int epoch) {
    const Settings* s = run->s;
    Bert* model = &run->model;
    int n = run->npending;
    if (n == 0) { return; }
    if (!s->probe) { // the probe's steps ran on the host: their numbers are in pending already
        float loss[STEPS_MAX], norm[STEPS_MAX];
        run->be->read_steps(model, n, loss, norm);
        dist_sum_floats(loss, n); // each rank's share of the global batch's mean loss
        for (int i = 0; i < n; i++) {
            run->pending[i].loss = loss[i];
            run->pending[i].norm = norm[i];
        }
        model->mean_loss = loss[n - 1];
    }
    for (int i = 0; i < n; i++) {
        int step = run->pending[i].step;
        float loss = run->pending[i].loss,
              norm = step == s->nan_at ? NAN : run->pending[i].norm; // -N: tests only
        if (!isfinite(loss)) { diverged_(run, "training loss", loss, step); }
        if (!isfinite(norm)) { diverged_(run, "gradient norm", norm, step); }
        run->pr.loss_sum += loss;
        if (run->writes) {
            events_add_scalar(&run->events, "train/loss", step, loss);
            events_add_scalar(&run->events, "train/learning_rate", step, run->pending[i].lr);
            events_add_scalar(&run->events, "train/grad_norm", step, norm);
        }
        if (step % s->print_every == 0) {
            double now = now_seconds();
            printf("%sstep %d/%d | epoch %d | loss %.4f | norm %.4f | lr %.2e | %.1f ms\n",
                   run->tty ? "\r\033[K" : "", step, run->total_steps, epoch, loss, norm,
                   run->pending[i].lr, (now - run->line_time) * 1000.0 / (step - run->line_step));
            run->line_time = now;
            run->line_step = step;
        }
    }
    run->npending = 0;
}

// One epoch of steps: forward, backward, clip + AdamW at the scheduled learning rate; every -f
// steps the step line and TensorBoard's per-step scalars (flush_steps_), the state every -S steps.
// A resumed epoch skips what was trained (the order is a function of (seed, epoch)). Leaves the
// epoch's step count and loss sum in run->pr.
static inline void run_epoch_(Run* run, int epoch) {
    const Settings* s = run->s;
    Bert* model = &run->model;
    double epoch_start = now_seconds();
    loader_start_epoch(&run->loader, epoch, 1);
    if (epoch != run->pr.epoch) { // a fresh epoch (run->pr holds a resumed one's counters)
        TrainProgress fresh = {epoch, 0, 0, 0.0, 0.0, run->pr.train_seconds, 0};
        run->pr = fresh;
    }
    run->loader.pos = run->pr.pos;
    double epoch_before = run->pr.epoch_seconds; // time spent on it before a resume
    int first_pos = run->loader.pos, Bb, T;
    int epoch_steps = run->steps_per_epoch; // for the progress line: -x may end the epoch early
    if (s->max_steps > 0 && model->step - run->pr.nsteps + epoch_steps > s->max_steps) {
        epoch_steps = s->max_steps - (model->step - run->pr.nsteps);
    }
    run->line_time = epoch_start;
    run->line_step = model->step;
    while (loader_next_batch_types(&run->loader, model->ids, model->types, model->lengths,
                                   model->labels, model->config.pad_id, &Bb, &T)) {
        float step_lr = lr_at_step(s->lr, model->step, s->warmup, run->total_steps);
        float norm = NAN; // the back end's: read with its loss by flush_steps_
        if (s->probe) {
            norm = probe_step_(&run->probe, model, run->loader.order + run->loader.pos - Bb, Bb,
                               model->labels, step_lr, s);
        } else {
            model->b0 = run->loader.b0; // this rank's slice of the global batch (one process: all)
            model->B_global = run->loader.batch;
            run->be->forward(model, Bb, T, model->labels, 1);
            run->be->zero_grad(model);
            run->be->backward(model);
            run->be->update(model, step_lr, s->weight_decay, s->max_norm);
        }
        // the probe's loss and norm; a back end's wait in it until flush_steps_ reads them
        run->pending[run->npending].step = model->step;
        run->pending[run->npending].lr = step_lr;
        run->pending[run->npending].loss = model->mean_loss;
        run->pending[run->npending].norm = norm;
        run->npending++;
        run->pr.nsteps++;
        int last = s->max_steps > 0 && model->step >= s->max_steps;
        int save = s->save_every > 0 && model->step % s->save_every == 0;
        if (model->step % s->print_every == 0 || run->npending == STEPS_MAX || last || save ||
            model->step == s->exit_after) {
            flush_steps_(run, epoch);
        }
        progress_print_(run->tty, s->progress_every, epoch, run->pr.nsteps, epoch_steps,
                        run->loader.pos - first_pos, now_seconds() - epoch_start);
        if (last) { run->done = 1; break; }
        // where the run stands at this step boundary, as a state saved within the epoch records it
        TrainProgress now = run->pr;
        now.pos = run->loader.pos;
        now.epoch_seconds = epoch_before + now_seconds() - epoch_start;
        now.train_seconds = run_seconds_(run);
        if (save) {
            save_sync_(run);
            save_start_(run, NULL, NULL, run->state_path, 0, &now);
        }
        if (model->step == s->exit_after) { // tests only (-X): as if killed right after this step
                                            // (and its save)
            save_wait_(run);
            dist_barrier(); // rank 0's save is complete before any rank's exit ends the job
            printf("%sexiting after step %d (-X)\n", run->tty ? "\r\033[K" : "", model->step);
            fflush(stdout);
            _exit(3);
        }
        // SIGINT or SIGTERM (now's loss sum is complete: -S and -X flushed, or this does)
        if (stop_requested_()) {
            flush_steps_(run, epoch);
            now.loss_sum = run->pr.loss_sum;
            run_stop_(run, &now);
        }
    }
    flush_steps_(run, epoch);
    if (run->tty) { printf("\r\033[K"); }
    run->pr.epoch_seconds = epoch_before + now_seconds() - epoch_start;
}

// The end of an epoch: validation, early stopping, the checkpoints (last, and best if it improved
// F1), the epoch line, log.tsv, TensorBoard, and the state the next epoch would resume from.
static inline void run_epoch_end_(Run* run, int epoch) {
    const Settings* s = run->s;
    Bert* model = &run->model;
    double t0 = now_seconds();
    Metrics val;
    metrics_init(&val, model->config.NC);
    if (s->probe) { probe_evaluate_(&run->probe, model, &run->splits[1], 1, s->B, &val); }
    else { evaluate_(run->be, model, &run->splits[1], s->B, &val); }
    if (!isfinite(val.loss)) { diverged_(run, "validation loss", val.loss, model->step); }
    int nsteps = run->pr.nsteps > 0 ? run->pr.nsteps : 1;
    EpochResult rec = {epoch, model->step, 0, (float)(run->pr.loss_sum / nsteps), val.loss,
        val.accuracy, val.precision, val.recall, val.f1,
        (float)(run->pr.epoch_seconds + now_seconds() - t0)};
    metrics_free(&val);
    rec.best = early_stopping_update(&run->es, rec.f1, epoch);
    save_sync_(run);
    printf("epoch %d | train loss %.4f | val loss %.4f | acc %.4f | precision %.4f | recall %.4f"
           " | F1 (weighted) %.4f | %.1f s%s\n",
           epoch, rec.train_loss, rec.val_loss, rec.accuracy, rec.precision, rec.recall, rec.f1,
           rec.seconds, rec.best ? " | best" : "");
    const char* tags[] = {"train/epoch_loss", "eval/loss", "eval/accuracy", "eval/precision",
                          "eval/recall",      "eval/f1",   "train/epoch"};
    float values[] = {rec.train_loss, rec.val_loss, rec.accuracy, rec.precision,
                      rec.recall,     rec.f1,       (float)epoch};
    if (run->writes) {
        log_epoch(run->log, run->log_path, &rec);
        for (int i = 0; i < 7; i++) {
            events_add_scalar(&run->events, tags[i], model->step, values[i]);
        }
    }
    // the ranks' weights stay equal only if every all-reduce gave every rank the same sums
    if (dist_size() > 1) {
        dist_agree(weights_checksum_(model), "weights and moments at the epoch's end");
    }
    arrput(run->history, rec);
    if (early_stopping_should_stop(&run->es)) {
        printf("early stopping: no F1 improvement for %d epochs (best %.4f at epoch %d)\n",
               s->patience, run->es.best_f1, run->es.best_epoch);
        run->done = 1;
    }
    // the checkpoints (last, and best if F1 improved) and the state the next epoch resumes from
    // (the probe takes seconds: it keeps no state), on a thread where the back end is a GPU
    TrainProgress next = {
        epoch + 1, 0, 0, 0.0, 0.0, run_seconds_(run), run->done || epoch == s->epochs};
    save_start_(run, run->last_path, rec.best ? run->best_path : NULL,
                s->probe ? NULL : run->state_path, epoch, &next);
    stdout_check_(); // after the save: error_exit waits for it, so a lost stdout costs no epoch
}

// The best checkpoint by validation F1 on the test split: the report, log.tsv's test line,
// TensorBoard, and the one summary line that dev/compare.py reads.
static inline void run_test_(Run* run) {
    const Settings* s = run->s;
    Bert* model = &run->model;
    double train_seconds = run_seconds_(run);
    save_wait_(run);
    int best = run->es.best_epoch;
    if (!run->es.has_best || best < 1 || best > (int)arrlen(run->history)) {
        error_exit("no epoch was scored, so %s has no best checkpoint to test", s->out_dir);
    }
    dist_barrier(); // rank 0 has written the best checkpoint that every rank now reads
    bert_load_checkpoint(model, run->best_path, best, run->history[best - 1].step);
    if (!s->probe) { run->be->from_host(model); }
    printf("loaded the best checkpoint (epoch %d, validation F1 %.4f) from %s\n",
           run->es.best_epoch, run->es.best_f1, run->best_path);
    Metrics test;
    metrics_init(&test, model->config.NC);
    if (s->probe) { probe_evaluate_(&run->probe, model, &run->splits[2], 2, s->B, &test); }
    else { evaluate_(run->be, model, &run->splits[2], s->B, &test); }
    metrics_print_report(&test, "test", label_names_(&model->config));
    const char* tags[] = {"test/loss", "test/accuracy", "test/precision", "test/recall", "test/f1"};
    float values[] = {test.loss, test.accuracy, test.precision, test.recall, test.f1};
    if (run->writes) {
        log_test(run->log, run->log_path, run->es.best_epoch, model->step, test.loss,
                 test.accuracy, test.precision, test.recall, test.f1, train_seconds);
        for (int i = 0; i < 5; i++) {
            events_add_scalar(&run->events, tags[i], model->step, values[i]);
        }
    }
    printf(
        "summary | strategy %s | trainable %zu | epochs %d | best epoch %d | train runtime %.1f s"
        " | test acc %.4f | precision %.4f | recall %.4f | F1 %.4f | loss %.4f\n",
        s->probe ? "probe" : STRATEGY_NAMES[model->strategy], bert_num_trainable(model),
        (int)arrlen(run->history), run->es.best_epoch, train_seconds, test.accuracy, test.precision,
        test.recall, test.f1, test.loss);
    metrics_free(&test);
    stdout_check_();
}

static inline void run_free_(Run* run) {
    save_wait_(run);
    error_exit_hook_ = NULL;
    live_run_ = NULL;
    if (run->writes) {
        fcloseCheck(run->log, run->log_path);
        events_close(&run->events);
    }
    arrfree(run->history);
    if (run->s->probe) { probe_free_(&run->probe); }
    loader_free(&run->loader);
    for (int k = 0; k < 3; k++) { dataset_free(&run->splits[k]); }
    run->be->free(&run->model);
    bert_free(&run->model);
    if (run->lock_fd >= 0) { close(run->lock_fd); } // the output directory is free for the next run
}

// the whole run: epochs of steps until the last epoch or early stopping, then the test split
static inline int train_main_(const Settings* s, const Backend* be) {
    Run run;
    run_init_(&run, s, be);
    live_run_ = &run; // from here, an error waits for a save in flight before the process ends
    error_exit_hook_ = save_wait_at_exit_;
    stop_handlers_install_(); // from here, SIGINT and SIGTERM stop at a step boundary with the
                              // state saved
    for (int epoch = run.pr.epoch; epoch <= s->epochs && !run.done; epoch++) {
        run_epoch_(&run, epoch);
        run_epoch_end_(&run, epoch);
        // the state just saved resumes with the next epoch
        if (stop_requested_()) { run_stop_(&run, NULL); }
    }
    run_test_(&run);
    run_free_(&run);
    return 0;
}

// ----------------------------------------------------------------------------
// classify mode: one line per text, "label | name prob | ...", dropout off. Texts from stdin go
// through the model in batches of up to -b, packed (only their real tokens computed), and their
// lines come out in input order. The tokenizer truncates to the model's P positions, as
// prepro_emotion.py does.

// stdin, line by line, through its own buffer: unlike stdio, it can tell whether a next line is
// already there without waiting for it. A batch takes the lines at hand and waits for input only
// while it holds none, so a line typed at a terminal (or sent down a pipe by a server) is answered
// at once, and a file is read -b lines a forward.
typedef struct {
    char* buf;
    size_t start, len, cap; // the unread bytes are buf[start, len)
    int eof;
} LineReader;

// read what stdin has into the buffer, blocking only if wait; returns the number of bytes read (0
// at end of input or, without wait, when nothing is there yet). A read error is an error, not an
// end of input.
static inline size_t reader_fill_(LineReader* r, int wait) {
    if (r->eof) { return 0; }
    if (!wait) {
        struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
        if (poll(&pfd, 1, 0) <= 0) { return 0; } // nothing yet (or poll refused: read at the next
                                                 // batch)
    }
    if (r->start > 0) { // move the unread bytes to the front
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    if (r->len == r->cap) {
        r->cap = r->cap == 0 ? 65536 : 2 * r->cap;
        r->buf = (char*)reallocCheck(r->buf, r->cap);
    }
    ssize_t got;
    while ((got = read(STDIN_FILENO, r->buf + r->len, r->cap - r->len)) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) { // a non-blocking stdin from the caller: wait
                                                       // for it
            struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
            poll(&pfd, 1, -1);
        } else if (errno != EINTR) {
            break;
        }
    }
    if (got < 0) {
        error_exit(
            "could not read the texts from stdin: %s\n---> HINT: give -t - a file or a pipe, e.g. "
            "-t - < texts.txt",
            strerror(errno));
    }
    if (got == 0) { r->eof = 1; }
    r->len += (size_t)got;
    return (size_t)got;
}

// the next line (without its \n or \r\n) in *line, n bytes: 1, or 0 when no whole line is at hand
// (wait 0) or the input has ended (wait 1). A last line without its \n counts at the end of input.
static inline int reader_line_(LineReader* r, int wait, const char** line, size_t* n) {
    while (1) {
        char* begin = r->buf + r->start;
        char* nl = r->len > r->start ? (char*)memchr(begin, '\n', r->len - r->start) : NULL;
        if (nl != NULL || (r->eof && r->len > r->start)) {
            size_t got = nl != NULL ? (size_t)(nl - begin) : r->len - r->start;
            r->start += got + (nl != NULL);
            while (got > 0 && begin[got - 1] == '\r') { got--; }
            *line = begin;
            *n = got;
            return 1;
        }
        if (r->eof) { return 0; }
        // without wait: nothing at hand yet
        if (reader_fill_(r, wait) == 0 && !r->eof) { return 0; }
    }
}

// one line per text of the batch (Bb texts, their logits z (Bb, NC)), out before the next batch is
// read; a failed write is an error, since the results would be lost
static inline void classify_print_(const float* z_all, int Bb, const BertConfig* cfg,
                                   int print_logits) {
    int NC = cfg->NC;
    const char* const* names = label_names_(cfg);
    for (int b = 0; b < Bb; b++) {
        const float* z = z_all + (size_t)b * NC;
        int best = argmax(z, NC);
        float sum = 0.0f;
        for (int c = 0; c < NC; c++) { sum += expf(z[c] - z[best]); }
        printf("%s", names[best]);
        for (int c = 0; c < NC; c++) { printf(" | %s %.4f", names[c], expf(z[c] - z[best]) / sum); }
        printf("\n");
        if (print_logits) {
            printf("logits");
            for (int c = 0; c < NC; c++) { printf(" %.9g", z[c]); }
            printf("\n");
        }
    }
    stdout_check_();
}

static inline int classify_main_(const Settings* s, const Backend* be) {
    // stdin (-t -) is looked at before any file is opened: a closed stdin's descriptor 0 would be
    // reused by one
    struct stat sb;
    int from_stdin = strcmp(s->classify_text, "-") == 0;
    if (from_stdin && fstat(STDIN_FILENO, &sb) != 0) {
        error_exit("-t -: standard input is closed");
    }
    if (from_stdin && S_ISDIR(sb.st_mode)) { error_exit("-t -: standard input is a directory"); }
    Bert model;
    memset(&model, 0, sizeof(model));
    require_file_(s->classify_path,
                  "pass a checkpoint written by train_bert (out/checkpoint_best.bin)");
    bert_build_from_checkpoint(&model, s->classify_path);
    model.precision = s->precision_id;
    const BertConfig* cfg = &model.config;
    if (s->strategy_given && model.strategy != s->strategy_id) {
        error_exit("%s is a %s checkpoint, not %s", s->classify_path,
                   STRATEGY_NAMES[model.strategy], s->strategy);
    }
    require_file_(s->vocab_path,
                  "pass the model's vocab.txt with -v (make data writes data/vocab.txt)");
    Tokenizer tok;
    tokenizer_init(&tok, s->vocab_path, cfg->lower);
    if (tok.V != cfg->V) {
        error_exit("vocabulary %s has %d tokens, the model has V %d\n---> HINT: pass the model's "
                   "vocab.txt with -v",
                   s->vocab_path, tok.V, cfg->V);
    }
    int pairs = s->classify_pair != NULL;
    if (pairs && cfg->TV < 2) {
        error_exit("-T: %s has %d token type; sentence pairs need 2", s->classify_path, cfg->TV);
    }
    int B = from_stdin ? s->B : 1, P = cfg->P;
    bert_alloc_batch(&model, B, P);
    be->setup(&model, B, P);
    fprintf(stderr, "classify | %s checkpoint %s (%s) | vocab %s | batches of up to %d\n",
            STRATEGY_NAMES[model.strategy], s->classify_path, cfg->name, s->vocab_path, B);
    int* enc = (int*)mallocCheck((size_t)B * P * sizeof(int)); // each text's ids, row b of P
    int* enc_types = (int*)callocCheck((size_t)B * P, sizeof(int)); // and token types (pairs)
    LineReader reader;
    memset(&reader, 0, sizeof(reader));
    int done = 0;
    long texts = 0, forwards = 0;
    double t0 = now_seconds();
    while (!done) {
        int Bb = 0, T = 0;
        while (Bb < B) { // the texts at hand, at least one
            const char* text = s->classify_text;
            size_t n = strlen(text);
            if (from_stdin && !reader_line_(&reader, Bb == 0, &text, &n)) {
                done = Bb == 0 || reader.eof;
                break;
            }
            // NUL bytes inside a line are dropped by the tokenizer, as Hugging Face's does
            int* ids = enc + (size_t)Bb * P;
            if (!pairs) {
                model.lengths[Bb] = tokenizer_encode_bytes(&tok, text, n, ids, P);
            } else { // the second text: -T's, or a stdin line's after its first tab
                const char* b = s->classify_pair;
                size_t nb = strlen(b), na = n;
                if (from_stdin) {
                    const char* tab = (const char*)memchr(text, '\t', n);
                    if (tab == NULL) {
                        error_exit("-T -: stdin line %ld has no tab between a pair's two texts",
                                   texts + Bb + 1);
                    }
                    na = (size_t)(tab - text);
                    b = tab + 1;
                    nb = n - na - 1;
                }
                model.lengths[Bb] = tokenizer_encode_pair_bytes(&tok, text, na, b, nb, ids,
                                                                enc_types + (size_t)Bb * P, P);
            }
            T = model.lengths[Bb] > T ? model.lengths[Bb] : T;
            Bb++;
            if (!from_stdin) { done = 1; break; }
        }
        if (Bb == 0) { break; }
        for (int b = 0; b < Bb; b++) { // the batch as the loader lays it out: (Bb, T), padded
            for (int t = 0; t < T; t++) {
                model.ids[b * T + t] = t < model.lengths[b] ? enc[(size_t)b * P + t] : cfg->pad_id;
                model.types[b * T + t] = t < model.lengths[b] ? enc_types[(size_t)b * P + t] : 0;
            }
        }
        be->forward(&model, Bb, T, NULL, 0);
        classify_print_(be->logits(&model, Bb), Bb, cfg, s->print_logits);
        texts += Bb;
        forwards++;
    }
    double secs = now_seconds() - t0;
    fprintf(stderr, "classify | %ld texts in %ld forwards, %.3f s (%.1f texts/s)\n", texts,
            forwards, secs, secs > 0.0 ? texts / secs : 0.0);
    free(reader.buf);
    free(enc);
    free(enc_types);
    tokenizer_free(&tok);
    be->free(&model);
    bert_free(&model);
    return 0;
}

// The program: parse and check the flags, then classify or train. stdout is line-buffered, so
// `./train_bert | tee log` shows the settings table and step lines as they happen.
// Under mpirun (bertc/dist.h) every rank runs this; rank 0 alone prints (the others' stdout goes to
// /dev/null: they compute the same lines) and writes the output directory.
static inline int trainer_main(int argc, char** argv, const Backend* be) {
    dist_init(&argc, &argv);
    if (dist_rank() > 0 && freopen("/dev/null", "w", stdout) == NULL) {
        error_exit("could not send rank %d's standard output to /dev/null", dist_rank());
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    Settings s;
    settings_parse(&s, argc, argv, be);
    if (dist_size() > 1 && (s.classify_path != NULL || s.probe)) {
        error_exit("%d ranks: only training splits its batches across ranks; classify mode and "
                   "the probe (-F 1) run in one process\n"
                   "---> HINT: run it without mpirun", dist_size());
    }
    be->init(&s);
    int rc = s.classify_path != NULL ? classify_main_(&s, be) : train_main_(&s, be);
    dist_finalize();
    return rc;
}
