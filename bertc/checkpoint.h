/*
bertc/checkpoint.h: what a run keeps on disk. Checkpoints are model files (the layout
prepro_emotion.py writes) with the strategy in their header and, for LoRA, the adapters after
the parameters. The training state is everything a run needs to continue bit for bit: weights,
AdamW moments, counters, early stopping and the per-epoch history. Dropout masks depend on
(seed, step) and the shuffle on (seed, epoch), so besides tensors the state is a few counters.
Both are written atomically (bertc/utils.h) and every field is checked when read back.

Defines: EarlyStopping, early_stopping_update, early_stopping_should_stop, EpochResult,
TrainProgress, bert_save_checkpoint, bert_load_checkpoint, train_state_save, train_state_load.
Used by: bertc/trainer.h and the tests. Include after train_bert.c's model definition (Bert).
*/
#pragma once

// ----------------------------------------------------------------------------
// early stopping, as the Trainer's EarlyStoppingCallback with metric_for_best_model f1:
// a strictly higher validation F1 is an improvement; stop after `patience` epochs without one

typedef struct {
    int patience;   // 0 = never stop
    int has_best;
    float best_f1;
    int best_epoch;
    int bad_epochs; // epochs since the best one
} EarlyStopping;

// returns 1 if this epoch is the new best. A non-finite F1 never is.
static inline int early_stopping_update(EarlyStopping* es, float f1, int epoch) {
    if (isfinite(f1) && (!es->has_best || f1 > es->best_f1)) {
        es->has_best = 1;
        es->best_f1 = f1;
        es->best_epoch = epoch;
        es->bad_epochs = 0;
        return 1;
    }
    es->bad_epochs++;
    return 0;
}

static inline int early_stopping_should_stop(const EarlyStopping* es) {
    return es->patience > 0 && es->bad_epochs >= es->patience;
}

// ----------------------------------------------------------------------------
// checkpoints

// the header of model (a model file's, with the checkpoint slots filled in)
static inline void bert_checkpoint_header_(const Bert* model, int32_t* h, int epoch) {
    const BertConfig* cfg = &model->config;
    memset(h, 0, HEADER_INTS * sizeof(int32_t));
    h[H_MAGIC] = MODEL_MAGIC; h[H_VERSION] = MODEL_VERSION;
    h[MODEL_V] = cfg->V; h[MODEL_P] = cfg->P; h[MODEL_TV] = cfg->TV; h[MODEL_C] = cfg->C; h[MODEL_L] = cfg->L;
    h[MODEL_NH] = cfg->NH; h[MODEL_FF] = cfg->FF; h[MODEL_NC] = cfg->NC; h[MODEL_EPS] = float_to_bits(cfg->eps);
    h[MODEL_ACT] = 1; h[MODEL_PAD_ID] = cfg->pad_id; h[MODEL_LOWER] = cfg->lower;
    h[MODEL_KIND] = MODEL_KIND_CHECKPOINT;
    h[CKPT_STRATEGY] = model->strategy;
    h[CKPT_LORA_R] = model->strategy == STRATEGY_LORA ? model->lora_r : 0;
    h[CKPT_LORA_ALPHA] = float_to_bits(model->strategy == STRATEGY_LORA ? model->lora_alpha : 0.0f);
    h[CKPT_EPOCH] = epoch;
    h[CKPT_STEP] = model->step;
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
            error_exit("checkpoint %s does not belong to this %s model: header slot %d is %d, the model has %d",
                       path, STRATEGY_NAMES[model->strategy], i, h[i], want[i]);
        }
    }
    if (h[CKPT_EPOCH] != epoch || h[CKPT_STEP] != step) {
        error_exit("checkpoint %s is of epoch %d, step %d; this run wrote it at epoch %d, step %d\n"
                   "---> HINT: it was replaced or changed after the run wrote it", path, h[CKPT_EPOCH], h[CKPT_STEP],
                   epoch, step);
    }
    size_t n = model->num_parameters + (model->strategy == STRATEGY_LORA ? model->num_lora_parameters : 0);
    if ((size_t)fsize != sizeof(h) + n * sizeof(float)) {
        error_exit("checkpoint %s has %ld bytes; this model and strategy need %zu", path, fsize,
                   sizeof(h) + n * sizeof(float));
    }
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    check_finite_(model->params_memory, model->num_parameters, path, "parameter");
    bert_weights_changed(model); // the CPU forward's packed copies are stale
    if (model->strategy == STRATEGY_LORA) {
        freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
        check_finite_(model->lora_memory, model->num_lora_parameters, path, "LoRA parameter");
    }
    fcloseCheck(fp, path);
}

// ----------------------------------------------------------------------------
// the training state (docs/formats.md, "Training state")

typedef struct {
    int epoch;       // 1-based
    int step;        // optimizer steps at the end of the epoch
    int best;        // it improved the validation F1
    float train_loss;
    float val_loss, accuracy, precision, recall, f1; // validation, weighted
    float seconds;   // the epoch's training and evaluation time
} EpochResult;

typedef struct {
    int epoch;            // the epoch in progress, 1-based
    int pos;              // examples of it already trained on (the loader's position)
    int nsteps;           // steps of it so far
    double loss_sum;      // sum of their losses, for the epoch's mean train loss
    double epoch_seconds; // time spent on it so far
    double train_seconds; // time of the whole run so far, across resumes
    int done;             // training has ended (max steps, last epoch or early stopping); only the test split remains
} TrainProgress;

// The settings a state only resumes under, header slots [20..32] (floats as their bits).
static const char* STATE_SETTING_NAMES[STATE_NUM_SETTINGS] = {"strategy (-s)", "seed (-r)", "batch size (-b)",
    "epochs (-e)", "number of train examples", "LoRA rank (-k)", "learning rate (-l)", "warmup (-u)",
    "weight decay (-w)", "max grad norm (-g)", "dropout (-q)", "LoRA alpha (-a)", "LoRA dropout (-z)"};
enum { SET_STRATEGY = 0, SET_SEED, SET_B, SET_EPOCHS, SET_N }; // the ones the checks below use
enum { SET_FIRST_FLOAT = 6, SET_WARMUP = 7 }; // from the learning rate on, floats (as bits), but for warmup

// Written to a temp file and renamed (atomic_open), so a kill at any moment leaves the previous state or the new one.
static inline void train_state_save(const char* path, const Bert* model, const int32_t* settings,
                                    const TrainProgress* pr,
                                    const EarlyStopping* es, const EpochResult* history, int nhistory) {
    int32_t h[HEADER_INTS] = {0};
    size_t ntrain = bert_num_trainable(model);
    h[H_MAGIC] = STATE_MAGIC; h[H_VERSION] = STATE_VERSION;
    h[STATE_STEP] = model->step; h[STATE_EPOCH] = pr->epoch; h[STATE_POS] = pr->pos; h[STATE_NSTEPS] = pr->nsteps;
    h[STATE_DONE] = pr->done;
    header_set_f64(h, STATE_LOSS_SUM, pr->loss_sum);
    header_set_f64(h, STATE_TRAIN_SECONDS, pr->train_seconds);
    header_set_f64(h, STATE_EPOCH_SECONDS, pr->epoch_seconds);
    h[STATE_HAS_BEST] = es->has_best; h[STATE_BEST_F1] = float_to_bits(es->best_f1);
    h[STATE_BEST_EPOCH] = es->best_epoch; h[STATE_BAD_EPOCHS] = es->bad_epochs;
    h[STATE_NHIST] = nhistory;
    h[STATE_NPARAMS] = (int32_t)model->num_parameters; h[STATE_NLORA] = (int32_t)model->num_lora_parameters;
    h[STATE_NTRAIN] = (int32_t)ntrain;
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
static inline void state_fail_(const char* path, const char* fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static inline void state_fail_(const char* path, const char* fmt, ...) {
    char what[512];
    FORMAT_MESSAGE(what, fmt);
    error_exit("training state %s is corrupt or not from train_bert: %s\n"
               "---> HINT: start afresh without -R, or with another -o", path, what);
}
#define STATE_REQUIRE(cond, path, ...) do { if (!(cond)) { state_fail_(path, __VA_ARGS__); } } while (0)

static inline int finite_in_(double x, double lo, double hi) { return isfinite(x) && x >= lo && x <= hi; }

// Read a state into a model set up by bert_init_training with the same settings. Every counter
// is checked against the others and the settings, every float for being finite and in range.
// Returns the per-epoch history (an stb_ds list).
static inline EpochResult* train_state_load(const char* path, Bert* model, const int32_t* settings, TrainProgress* pr,
                                            EarlyStopping* es) {
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
                   "---> HINT: resume with the flags of the interrupted run", path, STATE_SETTING_NAMES[i], there, now);
    }
    // the settings match this run's, so these are valid: steps per epoch and the schedule's length
    int epochs = settings[SET_EPOCHS], B = settings[SET_B], N = settings[SET_N];
    int spe = (N + B - 1) / B;
    size_t ntrain = bert_num_trainable(model);
    int nhist = h[STATE_NHIST];
    STATE_REQUIRE(nhist >= 0 && nhist <= epochs, path, "%d history rows for %d epochs", nhist, epochs);
    size_t nfloats = model->num_parameters + model->num_lora_parameters + 2 * ntrain;
    size_t want = sizeof(h) + nfloats * sizeof(float) + (size_t)nhist * STATE_HISTORY_INTS * sizeof(int32_t);
    if ((size_t)h[STATE_NPARAMS] != model->num_parameters || (size_t)h[STATE_NLORA] != model->num_lora_parameters ||
        (size_t)h[STATE_NTRAIN] != ntrain || (size_t)fsize != want) {
        error_exit("training state %s has %ld bytes and %d/%d/%d parameters; "
                   "this model needs %zu bytes and %zu/%zu/%zu", path, fsize, h[STATE_NPARAMS], h[STATE_NLORA],
                   h[STATE_NTRAIN], want, model->num_parameters,
                   model->num_lora_parameters, ntrain);
    }
    model->step = h[STATE_STEP];
    pr->epoch = h[STATE_EPOCH]; pr->pos = h[STATE_POS]; pr->nsteps = h[STATE_NSTEPS]; pr->done = h[STATE_DONE];
    pr->loss_sum = header_get_f64(h, STATE_LOSS_SUM);
    pr->train_seconds = header_get_f64(h, STATE_TRAIN_SECONDS);
    pr->epoch_seconds = header_get_f64(h, STATE_EPOCH_SECONDS);
    es->has_best = h[STATE_HAS_BEST]; es->best_f1 = bits_to_float(h[STATE_BEST_F1]);
    es->best_epoch = h[STATE_BEST_EPOCH]; es->bad_epochs = h[STATE_BAD_EPOCHS];
    // the counters: a state is written at an epoch end (pos 0, the next epoch) or every -S steps within one
    STATE_REQUIRE(pr->done == 0 || pr->done == 1, path, "done flag %d", pr->done);
    STATE_REQUIRE(pr->epoch >= 1 && pr->epoch <= epochs + 1 && (pr->epoch <= epochs || pr->done), path,
                  "epoch %d of %d", pr->epoch, epochs);
    STATE_REQUIRE(nhist == pr->epoch - 1, path, "%d history rows at epoch %d", nhist, pr->epoch);
    STATE_REQUIRE(pr->nsteps >= 0 && pr->nsteps <= spe && !(pr->done && pr->nsteps > 0), path,
                  "%d steps into an epoch of %d", pr->nsteps, spe);
    long pos_want = (long)pr->nsteps * B < N ? (long)pr->nsteps * B : N;
    STATE_REQUIRE(pr->pos == pos_want, path, "position %d after %d steps of batch %d", pr->pos, pr->nsteps, B);
    if (pr->done) {
        STATE_REQUIRE(model->step >= 0 && model->step <= (pr->epoch - 1) * spe, path, "step %d", model->step);
    } else {
        STATE_REQUIRE(model->step == (pr->epoch - 1) * spe + pr->nsteps, path, "step %d at epoch %d, %d steps into it",
                      model->step, pr->epoch, pr->nsteps);
    }
    // cross-entropy is positive: a step's mean loss is 0 only where every example's probability rounds to 1 in
    // float32, which a whole stretch of steps with dropout does not reach; a sum of 0 after steps is no sum we wrote
    STATE_REQUIRE(finite_in_(pr->loss_sum, 0.0, 1e30) && (pr->nsteps > 0 ? pr->loss_sum > 0.0 : pr->loss_sum == 0.0),
                  path, "loss sum %g after %d steps", pr->loss_sum, pr->nsteps);
    STATE_REQUIRE(finite_in_(pr->train_seconds, 0.0, 1e12) && finite_in_(pr->epoch_seconds, 0.0, 1e12), path,
                  "times %g and %g seconds", pr->train_seconds, pr->epoch_seconds);
    // early stopping: the best epoch is one of the history's, and bad epochs count the ones since
    STATE_REQUIRE(es->has_best == (nhist > 0), path, "has_best %d with %d epochs", es->has_best, nhist);
    if (es->has_best) {
        STATE_REQUIRE(finite_in_(es->best_f1, 0.0, 1.0) && es->best_epoch >= 1 && es->best_epoch <= nhist &&
                      es->bad_epochs == nhist - es->best_epoch, path, "best F1 %g at epoch %d, %d epochs since, of %d",
                      es->best_f1, es->best_epoch, es->bad_epochs, nhist);
    }
    // the tensors, each finite; second moments are never negative
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    check_finite_(model->params_memory, model->num_parameters, path, "parameter");
    bert_weights_changed(model); // the CPU forward's packed copies are stale
    if (model->num_lora_parameters > 0) {
        freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
        check_finite_(model->lora_memory, model->num_lora_parameters, path, "LoRA parameter");
    }
    freadCheck(model->m_memory, sizeof(float), ntrain, fp, path);
    check_finite_(model->m_memory, ntrain, path, "AdamW first moment");
    freadCheck(model->v_memory, sizeof(float), ntrain, fp, path);
    check_finite_(model->v_memory, ntrain, path, "AdamW second moment");
    for (size_t i = 0; i < ntrain; i++) { STATE_REQUIRE(model->v_memory[i] >= 0.0f, path, "negative second moment"); }
    EpochResult* history = NULL;
    for (int i = 0; i < nhist; i++) {
        int32_t row[STATE_HISTORY_INTS];
        freadCheck(row, sizeof(int32_t), STATE_HISTORY_INTS, fp, path);
        EpochResult r = {row[0], row[1], row[2], bits_to_float(row[3]), bits_to_float(row[4]), bits_to_float(row[5]),
                         bits_to_float(row[6]), bits_to_float(row[7]), bits_to_float(row[8]), bits_to_float(row[9])};
        int prev_step = i > 0 ? history[i - 1].step : 0;
        STATE_REQUIRE(r.epoch == i + 1 && r.step >= prev_step && r.step <= model->step && (r.best == 0 || r.best == 1),
                      path, "history row %d: epoch %d, step %d, best %d", i, r.epoch, r.step, r.best);
        STATE_REQUIRE(finite_in_(r.train_loss, 0.0, 1e30) && finite_in_(r.val_loss, 0.0, 1e30) &&
                      finite_in_(r.accuracy, 0.0, 1.0) && finite_in_(r.precision, 0.0, 1.0) &&
                      finite_in_(r.recall, 0.0, 1.0) && finite_in_(r.f1, 0.0, 1.0) && finite_in_(r.seconds, 0.0, 1e12),
                      path, "history row %d has a value out of range", i);
        arrput(history, r);
    }
    if (es->has_best) {
        STATE_REQUIRE(history[es->best_epoch - 1].best == 1 && history[es->best_epoch - 1].f1 == es->best_f1, path,
                      "the best epoch %d is not marked best in the history", es->best_epoch);
    }
    fcloseCheck(fp, path);
    return history;
}
