/*
bertc/formats.h: the binary files' magic numbers, versions and named header slots, and the
header reader. Every file starts with HEADER_INTS int32: [0] the magic, [1] the version, then
the slots below (floats as float32 bits). docs/formats.md describes each file field by field.

prepro_emotion.py defines the same names with the same values (its "file formats" section), and
tests/test_formats.py checks that the two agree, so a slot is named, never a bare index.

Defines: HEADER_INTS, *_MAGIC, *_VERSION, the slot enums, header_read, header_read_versions,
header_label_names, bits_to_float, float_to_bits.
Used by: train_bert.c (model files), bertc/dataloader.h (splits), trainer.h (checkpoints,
training states), bertc/testing.h (reference states), and through prepro_emotion.py the dev/ scripts.
*/
#pragma once
#include <stdint.h>
#include "utils.h"

#define HEADER_INTS 256 // every binary file starts with this many int32

#define MODEL_MAGIC 20261127 // model files and checkpoints
#define MODEL_VERSION 1      // version 1: the first layout
#define SPLIT_MAGIC 20261128 // tokenized dataset splits
#define SPLIT_VERSION 2      // version 2: token types after the ids, label names (1: types all 0)
#define REF_MAGIC 20261129   // PyTorch reference states (dev/reference.py, for test_bert)
#define REF_VERSION 2        // version 2: token types (B, T) after the ids (1: the first layout)
#define TOKREF_MAGIC 20261130 // Hugging Face token ids (dev/tokenizer_reference.py, for test_tokenizer)
#define TOKREF_VERSION 2     // version 2: sentence pairs after the single texts (1: single only)
#define STATE_MAGIC 20261131 // resumable training states
#define STATE_VERSION 2      // version 2: adds STATE_TRAIN_SECONDS, STATE_EPOCH_SECONDS (1: the first layout)
#define METRICS_MAGIC 20261132 // scikit-learn metrics (dev/metrics_reference.py, for test_bert)
#define METRICS_VERSION 1

// slots every file shares
enum HeaderSlot {
    H_MAGIC = 0,
    H_VERSION = 1,
};

// model file (prepro_emotion.py) and checkpoint (train_bert): the config, then checkpoint fields
enum ModelSlot {
    MODEL_V = 2,           // vocabulary size
    MODEL_P = 3,           // max position embeddings
    MODEL_TV = 4,          // token type vocabulary
    MODEL_C = 5,           // hidden size
    MODEL_L = 6,           // layers
    MODEL_NH = 7,          // attention heads
    MODEL_FF = 8,          // intermediate size
    MODEL_NC = 9,          // labels
    MODEL_EPS = 10,        // layer-norm epsilon, float32 bits
    MODEL_ACT = 11,        // 1 = exact erf GELU (the only one supported)
    MODEL_PAD_ID = 12,     // id of [PAD]
    MODEL_LOWER = 13,      // the tokenizer lower-cases (1) or not (0)
    MODEL_KIND = 14,       // 0 = a plain model file, 1 = a train_bert checkpoint (the slots below)
    CKPT_STRATEGY = 15,    // 0 full, 1 frozen, 2 lora
    CKPT_LORA_R = 16,      // LoRA rank, 0 unless lora
    CKPT_LORA_ALPHA = 17,  // LoRA alpha, float32 bits, 0 unless lora
    CKPT_EPOCH = 18,       // the epoch it was written after
    CKPT_STEP = 19,        // optimizer steps taken
    MODEL_LABEL_BYTES = 20, // bytes of label names at H_LABEL_NAMES, 0 = none (emotion's six)
    MODEL_NAME = 32,       // [32..95]: the model's name, 256 bytes of NUL-terminated ASCII
};
#define MODEL_NAME_INTS 64
#define MODEL_KIND_PLAIN 0
#define MODEL_KIND_CHECKPOINT 1

// tokenized split (prepro_emotion.py): lengths, labels and ids follow
enum SplitSlot {
    SPLIT_N = 2,           // examples
    SPLIT_T_MAX = 3,       // longest example, [CLS] and [SEP] included
    SPLIT_NC = 4,          // labels
    SPLIT_V = 5,           // vocabulary size of the tokenizer
    SPLIT_NTOK = 6,        // tokens in all (sum of lengths)
    SPLIT_MAX_LEN = 7,     // the truncation length used
    SPLIT_LABEL_BYTES = 8, // version 2: bytes of label names at H_LABEL_NAMES, 0 = none
};

// label names, in a model file's or a split's header: NC NUL-terminated UTF-8 names in class id
// order, their byte count in MODEL_LABEL_BYTES / SPLIT_LABEL_BYTES. Emotion's files have zeros.
#define H_LABEL_NAMES 96        // header ints [96..255]
#define H_LABEL_NAMES_INTS 160  // 640 bytes

// resumable training state (trainer.h)
enum StateSlot {
    STATE_STEP = 2,            // optimizer steps taken
    STATE_EPOCH = 3,           // the epoch in progress, 1-based
    STATE_POS = 4,             // examples of it already trained on
    STATE_NSTEPS = 5,          // steps of it so far
    STATE_DONE = 6,            // 1 = training has ended; only the test split remains
    STATE_LOSS_SUM = 7,        // [7..8] float64 bits: sum of this epoch's step losses so far
    STATE_HAS_BEST = 9,        // early stopping: an epoch has been scored
    STATE_BEST_F1 = 10,        // float32 bits
    STATE_BEST_EPOCH = 11,
    STATE_BAD_EPOCHS = 12,     // epochs since the best one
    STATE_NHIST = 13,          // rows of per-epoch history at the end of the file
    STATE_NPARAMS = 14,        // model parameters
    STATE_NLORA = 15,          // LoRA parameters
    STATE_NTRAIN = 16,         // trainable parameters: the length of AdamW's m and v
    STATE_TRAIN_SECONDS = 17,  // [17..18] float64 bits: seconds of training so far, across resumes
    STATE_SETTINGS = 20,       // [20..32]: the settings a resume must repeat (trainer.h)
    STATE_EPOCH_SECONDS = 33,  // [33..34] float64 bits: seconds of the epoch in progress so far
};
#define STATE_NUM_SETTINGS 13
#define STATE_HISTORY_INTS 10 // int32 per history row

// PyTorch reference state (dev/reference.py): one batch, its logits, loss, gradients and 10 AdamW losses
enum RefSlot {
    REF_B = 2,             // batch size
    REF_T = 3,             // padded length
    REF_NC = 4,            // labels
    REF_STRATEGY = 5,      // 0 full, 1 frozen, 2 lora
    REF_LORA_R = 6,
    REF_LORA_ALPHA = 7,    // float32 bits
    REF_NSTEPS = 8,        // optimizer steps recorded
    REF_NPARAMS = 9,       // model parameters (must equal the model file's)
    REF_NLORA = 10,        // LoRA parameters
    REF_LR = 11,           // float32 bits
    REF_TOTAL_STEPS = 12,  // length of the linear schedule
    REF_WARMUP = 13,
    REF_WEIGHT_DECAY = 14, // float32 bits
    REF_MAX_NORM = 15,     // float32 bits
};

static inline float bits_to_float(int32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
static inline int32_t float_to_bits(float f) { int32_t bits; memcpy(&bits, &f, 4); return bits; }

// Read the header every binary starts with and check its magic and that its version is one of
// oldest..version (a reader that still takes older layouts); `what` names the kind of file
// ("model file"), `hint` says how to fix a bad one. Returns the file size in bytes.
static inline long header_read_versions(FILE* fp, const char* path, int32_t* header, int32_t magic,
                                        int32_t oldest, int32_t version, const char* what,
                                        const char* hint) {
    long fsize = file_size(fp, path);
    if (fsize < (long)(HEADER_INTS * sizeof(int32_t))) {
        error_exit("%s is too small to be a %s (%ld bytes)\n---> HINT: %s", path, what, fsize, hint);
    }
    freadCheck(header, sizeof(int32_t), HEADER_INTS, fp, path);
    if (header[H_MAGIC] != magic) {
        error_exit("bad magic in %s %s (got %d, want %d)\n---> HINT: %s", what, path, header[H_MAGIC], magic, hint);
    }
    if (header[H_VERSION] < oldest || header[H_VERSION] > version) {
        char want[32];
        if (oldest == version) { snprintf(want, sizeof(want), "%d", version); }
        else { snprintf(want, sizeof(want), "%d..%d", oldest, version); }
        error_exit("bad version in %s %s (got %d, want %s)\n---> HINT: %s", what, path,
                   header[H_VERSION], want, hint);
    }
    return fsize;
}

// header_read_versions for a reader of one version only
static inline long header_read(FILE* fp, const char* path, int32_t* header, int32_t magic,
                               int32_t version, const char* what, const char* hint) {
    return header_read_versions(fp, path, header, magic, version, version, what, hint);
}

// The label names of a header whose slot `bytes_slot` counts them: copies the block into text
// (H_LABEL_NAMES_INTS * 4 bytes) and points names[0..NC-1] into it. Returns 0 where the file has
// none (the count is 0), 1 otherwise; anything but NC non-empty NUL-terminated names filling the
// count exits.
static inline int header_label_names(const int32_t* header, int bytes_slot, int NC, char* text,
                                     const char** names, const char* path, const char* hint) {
    int nbytes = header[bytes_slot];
    if (nbytes == 0) { return 0; }
    if (nbytes < 0 || nbytes > H_LABEL_NAMES_INTS * 4) {
        error_exit("%s: header says its label names take %d bytes, want 0..%d\n---> HINT: %s", path,
                   nbytes, H_LABEL_NAMES_INTS * 4, hint);
    }
    memcpy(text, &header[H_LABEL_NAMES], H_LABEL_NAMES_INTS * 4);
    int k = 0, start = 0, ok = text[nbytes - 1] == '\0';
    for (int i = 0; i < nbytes && ok; i++) {
        if (text[i] != '\0') { continue; }
        ok = i > start && k < NC;
        if (ok) { names[k++] = text + start; }
        start = i + 1;
    }
    if (!ok || k != NC) {
        error_exit("%s: label names are not %d non-empty NUL-terminated names in %d bytes\n"
                   "---> HINT: %s", path, NC, nbytes, hint);
    }
    return 1;
}

// a float64 kept in two header slots
static inline double header_get_f64(const int32_t* header,
                                    int slot) { double d; memcpy(&d, &header[slot], 8); return d; }
static inline void header_set_f64(int32_t* header, int slot, double d) { memcpy(&header[slot], &d, 8); }
