/*
dev/bench_epoch.c: the C half of `make bench` (dev/bench_epoch.py runs the Hugging Face Trainer beside it).
The start of a real training epoch of train_bert.c as the trainer runs it: the first `steps` steps of the
shuffled training order of epoch 1 (seed 42, batch B), each forward, backward, clip + AdamW, then one
evaluation pass over the validation split. Prints one BENCH line (JSON): ms per step, the evaluation's
seconds, the epoch they imply (every step of the epoch at the mean step time, plus the evaluation), and the
real and padded tokens per step. Then a per-layer table: each layer function timed alone at the shapes of
one of those batches, times the calls a step makes, beside the measured step (what is left is the glue:
zeroing, copies, the loop).

    make dev/bench_epoch && OMP_NUM_THREADS=2 ./dev/bench_epoch MODEL.bin DATA_DIR full|frozen|lora [steps] [B]

A benchmark, not a test: the numbers depend on the machine, so name it when you quote them.
*/
#define TESTING
#include "../train_bert.c"

// ----------------------------------------------------------------------------
// the per-layer table

#define LAYER_REPEATS 5

typedef struct {
    const char* name;
    double ms;    // one call, the median of LAYER_REPEATS
    int calls;    // per training step
} LayerTime;

static int cmp_double_(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

// the median time of one call of the statement, in ms, after one untimed call
#define TIME_MS(out, stmt)                                                          \
    do {                                                                            \
        double t_[LAYER_REPEATS];                                                   \
        stmt;                                                                       \
        for (int r_ = 0; r_ < LAYER_REPEATS; r_++) {                                \
            double t0_ = now_seconds();                                             \
            stmt;                                                                   \
            t_[r_] = (now_seconds() - t0_) * 1e3;                                   \
        }                                                                           \
        qsort(t_, LAYER_REPEATS, sizeof(double), cmp_double_);                      \
        (out) = t_[LAYER_REPEATS / 2];                                              \
    } while (0)

// Each layer of a step at the batch's shapes (N real tokens of B sequences padded to T), on the model's own
// buffers after a real forward and backward (so the inputs are real values). Counts follow bert_forward and
// bert_backward for the strategy: frozen runs no backward below the classifier, LoRA none below layer 0's
// adapters and no weight gradients of the base.
static int layer_table_(Bert* m, LayerTime* rows) {
    const BertConfig* cfg = &m->config;
    int N = m->N, B = m->B, T = m->T, C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF;
    int full = m->strategy == STRATEGY_FULL, lora = m->strategy == STRATEGY_LORA, bw = !(m->strategy == STRATEGY_FROZEN);
    ActivationTensors a = m->acts;
    ScratchTensors s = m->scratch;
    ParameterTensors w = m->params;
    LayerActivations la = layer_activations(&a, 0, B, T, C, NH, FF);
    float* dw = (float*)callocCheck((size_t)FF * C, sizeof(float)); // a stand-in weight gradient
    float* db = (float*)callocCheck((size_t)(FF > 3 * C ? FF : 3 * C), sizeof(float));
    uint64_t st = bert_stream(m, 0, SITE_ATT);
    int n = 0;
    double t;
    // forward
    TIME_MS(t, matmul_forward(la.qkv, la.x, w.qkvw, w.qkvb, s.wt, N, C, 3 * C));
    rows[n++] = (LayerTime){"matmul fwd qkv (incl. transpose)", t, L};
    TIME_MS(t, matmul_forward(s.tmp, la.atty, w.attprojw, w.attprojb, s.wt, N, C, C));
    rows[n++] = (LayerTime){"matmul fwd attproj", t, L};
    TIME_MS(t, matmul_forward(la.fch, la.ln1, w.fcw, w.fcb, s.wt, N, C, FF));
    rows[n++] = (LayerTime){"matmul fwd fc", t, L};
    TIME_MS(t, matmul_forward(s.tmp, la.fch_gelu, w.fcprojw, w.fcprojb, s.wt, N, FF, C));
    rows[n++] = (LayerTime){"matmul fwd fcproj", t, L};
    TIME_MS(t, transpose_(s.wt, w.fcw, FF, C));
    rows[n++] = (LayerTime){"  of which: transpose of fc's weight", t, 0};
    TIME_MS(t, attention_forward(la.atty, la.att, la.qkv, m->lengths, m->starts, B, T, C, NH, m->dropout, st));
    rows[n++] = (LayerTime){"attention fwd", t, L};
    TIME_MS(t, layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, la.r1, w.ln1w, w.ln1b, N, C, cfg->eps));
    rows[n++] = (LayerTime){"layernorm fwd", t, 2 * L + 1};
    TIME_MS(t, dropout_forward(la.r1, s.tmp, la.x, m->rows, N, C, m->dropout, st));
    rows[n++] = (LayerTime){"dropout (+ residual) fwd", t, 2 * L + 1};
    TIME_MS(t, gelu_forward(la.fch_gelu, la.fch, (size_t)N * FF));
    rows[n++] = (LayerTime){"gelu fwd", t, L};
    TIME_MS(t, embedding_forward(a.encoded, m->ids, m->types, w.wte, w.wpe, w.wtt, m->rows, N, T,
                                 C));
    rows[n++] = (LayerTime){"embedding fwd", t, 1};
    if (lora) {
        TIME_MS(t, lora_forward(la.qkv, 3 * C, a.lora_u, s.xd, la.x, m->lora.lora_a, m->lora.lora_b, N, C, C,
                                m->lora_r, 4.0f, m->lora_dropout, st, m->rows));
        rows[n++] = (LayerTime){"lora fwd (one of q, k, v)", t, 3 * L};
    }
    // backward (frozen: the classifier's alone, a few microseconds)
    if (bw) {
        TIME_MS(t, matmul_backward(s.dln1, full ? dw : NULL, full ? db : NULL, s.dqkv, la.x, w.qkvw, N, C, 3 * C));
        rows[n++] = (LayerTime){"matmul bwd qkv", t, L};
        TIME_MS(t, matmul_backward(s.datty, full ? dw : NULL, full ? db : NULL, s.tmp, la.atty, w.attprojw, N, C, C));
        rows[n++] = (LayerTime){"matmul bwd attproj", t, L};
        TIME_MS(t, matmul_backward(s.dln1, full ? dw : NULL, full ? db : NULL, s.dfch, la.ln1, w.fcw, N, C, FF));
        rows[n++] = (LayerTime){"matmul bwd fc", t, L};
        TIME_MS(t, matmul_backward(s.dfch, full ? dw : NULL, full ? db : NULL, s.tmp, la.fch_gelu, w.fcprojw, N, FF,
                                   C));
        rows[n++] = (LayerTime){"matmul bwd fcproj", t, L};
        TIME_MS(t, attention_backward(s.dqkv, s.datty, la.qkv, la.att, m->lengths, m->starts, B, T, C, NH,
                                      m->dropout, st));
        rows[n++] = (LayerTime){"attention bwd", t, L};
        TIME_MS(t, layernorm_backward(s.dr, full ? dw : NULL, full ? db : NULL, s.dh, la.r2, w.ln2w, la.ln2_mean,
                                      la.ln2_rstd, N, C));
        rows[n++] = (LayerTime){"layernorm bwd", t, 2 * L + full};
        TIME_MS(t, dropout_backward(s.tmp, s.dr, m->rows, N, C, m->dropout, st));
        rows[n++] = (LayerTime){"dropout bwd", t, 2 * L + full};
        TIME_MS(t, gelu_backward(s.dfch, la.fch, s.dfch, (size_t)N * FF));
        rows[n++] = (LayerTime){"gelu bwd", t, L};
        TIME_MS(t, memset(s.dfch, 0, (size_t)N * FF * sizeof(float)));
        rows[n++] = (LayerTime){"zeroing (one N x FF gradient)", t, L};
        if (lora) {
            TIME_MS(t, lora_backward(s.dh, m->lora_grads.lora_a, m->lora_grads.lora_b, s.du, s.xd, s.dqkv, 3 * C,
                                     a.lora_u, la.x, m->lora.lora_a, m->lora.lora_b, N, C, C, m->lora_r, 4.0f,
                                     m->lora_dropout, st, m->rows));
            rows[n++] = (LayerTime){"lora bwd (one of q, k, v)", t, 3 * L};
        }
        if (full) { // into the model's own gradients: the timed steps are over
            ParameterTensors g = m->grads;
            TIME_MS(t, embedding_backward(g.wte, g.wpe, g.wtt, s.tmp, m->ids, m->types, m->rows, N,
                                          T, C));
            rows[n++] = (LayerTime){"embedding bwd", t, 1};
        }
    }
    // the optimizer over every trainable parameter
    TIME_MS(t, bert_grad_norm(m));
    rows[n++] = (LayerTime){"grad norm", t, 1};
    OptTensor ot[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    int no = bert_opt_tensors_(m, ot);
    size_t total = 0;
    for (int k = 0; k < no; k++) { total += ot[k].size; }
    float* p = (float*)callocCheck(total, sizeof(float));
    float* g = (float*)callocCheck(total, sizeof(float));
    float* mm = (float*)callocCheck(total, sizeof(float));
    float* vv = (float*)callocCheck(total, sizeof(float));
    TIME_MS(t, adamw_update(p, g, mm, vv, total, 5e-5f, ADAMW_BETA1, ADAMW_BETA2, ADAMW_EPS, 0.0f,
                            1.0f, 5e-4f, 0.03f));
    rows[n++] = (LayerTime){"adamw (every trainable parameter)", t, 1};
    free(p); free(g); free(mm); free(vv); free(dw); free(db);
    return n;
}

// ----------------------------------------------------------------------------
// the matrix work of a step on the real tokens: 2 flops a multiply-add, forward and the backward products
// the strategy runs (attention's q k^T and a v counted too)
static double step_gflop_(const Bert* m, double N, double S2) {
    const BertConfig* c = &m->config;
    double C = c->C, FF = c->FF, L = c->L;
    double linear = 2.0 * N * (3 * C * C + C * C + 2 * C * FF); // per layer
    double att = 2.0 * 2.0 * S2 * C;                              // q k^T and a v, over sum of len^2
    double fwd = L * (linear + att);
    double bwd = m->strategy == STRATEGY_FULL ? 2.0 * fwd : m->strategy == STRATEGY_LORA ? 2.0 * fwd - L * linear / 2
                                                                                       : 0.0;
    return (fwd + bwd) / 1e9;
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s model.bin data_dir full|frozen|lora [steps] [B]\n", argv[0]);
        return 1;
    }
    int steps = argc > 4 ? atoi(argv[4]) : 50, B = argc > 5 ? atoi(argv[5]) : 32;
    Bert m;
    memset(&m, 0, sizeof(m));
    m.strategy = -1;
    for (int s = 0; s < NUM_STRATEGIES; s++) { if (strcmp(argv[3], STRATEGY_NAMES[s]) == 0) { m.strategy = s; } }
    if (m.strategy < 0 || steps < 1 || B < 1) { fprintf(stderr, "bad arguments\n"); return 1; }
    m.seed = 42; m.dropout = 0.1f; m.lora_r = 8; m.lora_alpha = 32.0f; m.lora_dropout = 0.1f;
    bert_build_from_file(&m, argv[1]);
    bert_init_training(&m);
    Dataset splits[2]; // train, validation
    const char* names[2] = {"emotion_train.bin", "emotion_validation.bin"};
    for (int k = 0; k < 2; k++) {
        char path[4200];
        path_join(path, sizeof(path), argv[2], names[k]);
        dataset_load(&splits[k], path, m.config.V, m.config.NC, m.config.P);
    }
    Dataset train = splits[0], val = splits[1];
    int T_max = train.T_max > val.T_max ? train.T_max : val.T_max;
    bert_alloc_batch(&m, B, T_max);
    bert_alloc_activations(&m, B, T_max);
    int threads = 1;
#ifdef OMP
    threads = omp_get_max_threads();
#endif
    // the trainer's first epoch: the shuffle of (seed 42, epoch 1)
    DataLoader loader;
    loader_init(&loader, &train, B, 42);
    loader_start_epoch(&loader, 1, 1);
    int Bb = 0, T = 0;
    double real = 0.0, padded = 0.0, s2 = 0.0, t_steps = 0.0;
    for (int s = -2; s < steps; s++) { // two untimed steps first (page faults, thread start)
        if (!loader_next_batch(&loader, m.ids, m.lengths, m.labels, m.config.pad_id, &Bb, &T)) { break; }
        double t0 = now_seconds();
        bert_forward(&m, Bb, T, m.labels, 1);
        bert_zero_grad(&m);
        bert_backward(&m);
        bert_update(&m, 5e-5f, 0.0f, 1.0f);
        if (s >= 0) {
            t_steps += now_seconds() - t0;
            real += m.N;
            padded += (double)Bb * T;
            for (int b = 0; b < Bb; b++) { s2 += (double)m.lengths[b] * m.lengths[b]; }
        }
    }
    double step_ms = t_steps * 1e3 / steps;
    Metrics vm;
    metrics_init(&vm, m.config.NC);
    double t0 = now_seconds();
    evaluate_(&CPU_BACKEND, &m, &val, B, &vm);
    double eval_s = now_seconds() - t0;
    int steps_per_epoch = (train.N + B - 1) / B;
    double gflop = step_gflop_(&m, real / steps, s2 / steps);
    printf("BENCH {\"who\": \"ours\", \"model\": \"%s\", \"strategy\": \"%s\", \"threads\": %d, \"B\": %d, "
           "\"steps\": %d, \"step_ms\": %.2f, \"eval_s\": %.3f, \"epoch_s\": %.2f, \"real_tokens\": %.1f, "
           "\"padded_tokens\": %.1f, \"gflop_step\": %.3f, \"gflops\": %.2f}\n", m.config.name,
           STRATEGY_NAMES[m.strategy], threads, B, steps, step_ms, eval_s, steps_per_epoch * step_ms / 1e3 + eval_s,
           real / steps, padded / steps, gflop, gflop / (step_ms / 1e3));
    // the per-layer table, at the shapes of a step near the mean: the last batch timed
    bert_forward(&m, Bb, T, m.labels, 1);
    bert_zero_grad(&m);
    bert_backward(&m);
    LayerTime rows[40];
    int n = layer_table_(&m, rows);
    double sum = 0.0;
    printf("LAYERS %s %s, threads %d, one batch of B %d T %d N %d (ms: one call, x calls a step)\n", m.config.name,
           STRATEGY_NAMES[m.strategy], threads, Bb, T, m.N);
    for (int i = 0; i < n; i++) {
        printf("LAYER %-44s %8.3f ms x %3d = %8.2f ms\n", rows[i].name, rows[i].ms, rows[i].calls,
               rows[i].ms * rows[i].calls);
        sum += rows[i].ms * rows[i].calls;
    }
    printf("LAYER %-44s %27.2f ms (the mean step: %.2f ms)\n", "sum of the layers", sum, step_ms);
    metrics_free(&vm);
    loader_free(&loader);
    dataset_free(&train);
    dataset_free(&val);
    bert_free(&m);
    return 0;
}
