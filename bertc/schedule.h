/*
bertc/schedule.h: the Trainer's recipe over time, for any model: the learning rate of each step
(linear decay after an optional warmup) and early stopping on the validation F1.

Defines: lr_at_step, EarlyStopping, early_stopping_update, early_stopping_should_stop.
Used by: trainer.h, the tests.
*/
#pragma once
#include <math.h>

// the linear schedule (transformers' get_linear_schedule_with_warmup): the lr of the update at
// 0-based step
static inline float lr_at_step(float lr, int step, int warmup, int total) {
    if (step < warmup) { return lr * (float)step / (float)warmup; }
    float frac = (float)(total - step) / (float)(total - warmup > 0 ? total - warmup : 1);
    return lr * (frac > 0.0f ? frac : 0.0f);
}

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
