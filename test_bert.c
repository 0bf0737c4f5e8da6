/*
Tests train_bert.c against PyTorch, and its parts against what they must do.

The reference states come from dev/reference.py (Hugging Face BertForSequenceClassification,
PEFT for LoRA, dropout 0): for each one we check the logits, the loss, the gradient of every
trainable tensor and the losses of 10 AdamW steps. Then unit checks that can fail: the tensor
tables, the blocked matmul against the naive loop (bit for bit), dropout, the loader, metrics
against scikit-learn, early stopping, checkpoints, the training state, TensorBoard records, and
bad input files of every kind (each must be rejected with a message naming the file). The
command-line checks (flags, resume, overwrite protection, divergence) are in tests/test_reliability.py.

Run: make test_bert && ./test_bert [data dir] [tiny]      (make reference writes the states first)
     ./test_bert data matmul                              (the matmul checks alone: seconds, no data needed)
Last line: "N passed, N failed"; the exit code is non-zero on any failure.
*/
#define TESTING
#include "train_bert.c"
#include "bertc/testing.h" // defines: check, compare_tensor, RefState, ref_state_load, expect_failure, write_corrupt
_Static_assert(NUM_STRATEGIES == REF_NUM_STRATEGIES, "reference states number strategies as we do");

// a fresh model from the model file, set up as the reference state says, dropout 0
static void model_from_state_(Bert* model, const char* model_path, const RefState* st) {
    memset(model, 0, sizeof(*model));
    model->strategy = st->strategy;
    model->seed = 42;
    model->lora_r = st->strategy == STRATEGY_LORA ? st->r : 8;
    model->lora_alpha = st->alpha;
    bert_build_from_file(model, model_path);
    bert_init_training(model);
    if (st->strategy == STRATEGY_LORA) { memcpy(model->lora_memory, st->lora_init, st->num_lora * sizeof(float)); }
    bert_alloc_batch(model, st->B, st->T);
    bert_alloc_activations(model, st->B, st->T);
    memcpy(model->ids, st->ids, (size_t)st->B * st->T * sizeof(int));
    memcpy(model->types, st->types, (size_t)st->B * st->T * sizeof(int));
    memcpy(model->lengths, st->lengths, st->B * sizeof(int));
}

// Tolerances: float32 through up to 6 layers of 384-wide sums, against PyTorch's own float32 (MKL)
// sums. Gradients of tiny tensors near zero need the absolute term. The largest difference seen
// on this machine is 2.4e-7.
#define LOGIT_ABS 1e-6f
#define LOGIT_REL 1e-5f
#define GRAD_ABS 1e-6f
#define GRAD_REL 1e-4f
#define LOSS_ABS 1e-6f

static void test_state_(const char* model_path, const char* state_path) {
    printf("\n== %s (model %s)\n", state_path, model_path);
    char what[2048];
    RefState st;
    snprintf(what, sizeof(what), "%s: the reference state can be read", state_path);
    if (!ref_state_load(&st, state_path)) { check(0, what); return; }
    Bert model;
    model_from_state_(&model, model_path, &st);
    snprintf(what, sizeof(what), "%s: parameter count matches the reference", state_path);
    check(model.num_parameters == st.num_params, what);

    bert_forward(&model, st.B, st.T, st.labels, 1);
    snprintf(what, sizeof(what), "%s: logits", state_path);
    check(compare_tensor("logits", model.acts.logits, st.logits, (size_t)st.B * st.NC, LOGIT_ABS, LOGIT_REL, 3), what);
    snprintf(what, sizeof(what), "%s: loss %.6f vs %.6f", state_path, model.mean_loss, st.loss);
    check(fabsf(model.mean_loss - st.loss) <= LOSS_ABS, what);

    bert_zero_grad(&model);
    bert_backward(&model);
    int all_ok = 1;
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        const TensorInfo* info = &model.param_info[i];
        const float* g = ((float**)&model.grads)[i];
        if (info->trainable) {
            char label[32];
            snprintf(label, sizeof(label), "d%s", info->name);
            all_ok &= compare_tensor(label, g, st.grads + offset, info->size, GRAD_ABS, GRAD_REL, 0);
        } else {
            // frozen: the reference has no gradient there either, and we computed none
            for (size_t k = 0; k < info->size; k++) {
                if (st.grads[offset + k] != 0.0f) {
                    all_ok = 0; printf("reference has a gradient for frozen %s\n", info->name); break;
                }
            }
            if (g != NULL) { all_ok = 0; }
        }
        offset += info->size;
    }
    if (st.strategy == STRATEGY_LORA) {
        snprintf(what, sizeof(what), "%s: LoRA parameter count %zu matches", state_path, model.num_lora_parameters);
        check(model.num_lora_parameters == st.num_lora, what);
        size_t na = model.lora_info[0].size, nb = model.lora_info[1].size;
        all_ok &= compare_tensor("dlora_a", model.lora_grads.lora_a, st.lora_grads, na, GRAD_ABS, GRAD_REL, 0);
        all_ok &= compare_tensor("dlora_b", model.lora_grads.lora_b, st.lora_grads + na, nb, GRAD_ABS, GRAD_REL, 0);
    }
    snprintf(what, sizeof(what), "%s: every trainable gradient", state_path);
    check(all_ok, what);

    // 10 AdamW steps on the same batch, each loss computed before its update
    float losses[64];
    for (int s = 0; s < st.nsteps; s++) {
        bert_forward(&model, st.B, st.T, st.labels, 1);
        losses[s] = model.mean_loss;
        bert_zero_grad(&model);
        bert_backward(&model);
        bert_update(&model, lr_at_step(st.lr, s, st.warmup, st.total_steps), st.weight_decay,
                    st.max_norm);
    }
    for (int s = 0; s < st.nsteps; s++) { printf("    step %d loss %.6f ref %.6f\n", s, losses[s], st.losses[s]); }
    snprintf(what, sizeof(what), "%s: %d optimizer-step losses", state_path, st.nsteps);
    check(compare_tensor("losses", losses, st.losses, st.nsteps, 1e-6f, 1e-6f, 0), what);
    bert_free(&model);
    ref_state_free(&st);
}

// ----------------------------------------------------------------------------
// the tensor tables

// Packed tokens: a ragged batch (lengths 1, T and two between, padded to T) against its sequences run one at a
// time (B 1, T its length: no padding anywhere). With dropout 0 the batch's mean loss is the mean of theirs and B
// times its gradients is the sum of theirs, to float rounding (only the order of the sums over rows differs).
// Every strategy; the PyTorch states above check the padded-batch results themselves (ref_tiny_full_pad).
static void test_packed_ragged_(const char* model_path, int strategy) {
    printf("\n== packed tokens, a ragged batch against its sequences alone (%s)\n", STRATEGY_NAMES[strategy]);
    enum { B = 4, T = 12 };
    const int lengths[B] = {1, T, 5, 9}, labels[B] = {0, 3, 5, 1};
    Bert model;
    memset(&model, 0, sizeof(model));
    model.strategy = strategy;
    model.seed = 42;
    model.lora_r = 8;
    model.lora_alpha = 32.0f;
    bert_build_from_file(&model, model_path);
    bert_init_training(&model);
    bert_alloc_batch(&model, B, T);
    bert_alloc_activations(&model, B, T);
    int ids[B][T];
    uint64_t x = 12345;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            int id = 1000 + (int)((x >> 33) % (uint64_t)(model.config.V - 1000));
            ids[b][t] = t >= lengths[b] ? model.config.pad_id : t == 0 ? 101 : id;
        }
    }
    // the batch, packed
    size_t ng = (size_t)bert_num_trainable(&model) - model.num_lora_parameters, nl = model.num_lora_parameters;
    memcpy(model.ids, ids, sizeof(ids));
    memcpy(model.lengths, lengths, sizeof(lengths));
    bert_zero_grad(&model);
    bert_forward(&model, B, T, labels, 1);
    check(model.N == 1 + T + 5 + 9, "the batch's per-token tensors hold its 27 real tokens, not B * T = 48 rows");
    float batch_loss = model.mean_loss;
    bert_backward(&model);
    float* g_batch = (float*)mallocCheck((ng + nl + 1) * sizeof(float));
    memcpy(g_batch, model.grads_memory, ng * sizeof(float));
    if (nl > 0) { memcpy(g_batch + ng, model.lora_grads_memory, nl * sizeof(float)); }
    for (size_t i = 0; i < ng + nl; i++) { g_batch[i] *= B; }
    // each sequence alone; the gradients add up
    bert_zero_grad(&model);
    float loss_sum = 0.0f;
    for (int b = 0; b < B; b++) {
        memcpy(model.ids, ids[b], lengths[b] * sizeof(int));
        model.lengths[0] = lengths[b];
        bert_forward(&model, 1, lengths[b], &labels[b], 1);
        loss_sum += model.mean_loss;
        bert_backward(&model);
    }
    char what[160];
    snprintf(what, sizeof(what), "mean loss %.7f equals the sequences' mean %.7f", batch_loss, loss_sum / B);
    check(fabsf(batch_loss - loss_sum / B) <= 1e-6f, what);
    int ok = compare_tensor("B * grads", g_batch, model.grads_memory, ng, 1e-6f, 1e-5f, 3);
    if (nl > 0) { ok &= compare_tensor("B * LoRA grads", g_batch + ng, model.lora_grads_memory, nl, 1e-6f, 1e-5f, 3); }
    check(ok, "B times the batch's gradients equal the sum of the sequences' (every trainable tensor)");
    free(g_batch);
    bert_free(&model);
}

static void test_tables_(void) {
    printf("\n== tensor tables\n");
    // bert-base-uncased: the reference notebook's counts
    BertConfig cfg = {.V = 30522, .P = 512, .TV = 2, .C = 768, .L = 12, .NH = 12, .FF = 3072, .NC = 6};
    TensorInfo info[NUM_PARAMETER_TENSORS], lora[NUM_LORA_TENSORS];
    size_t total[NUM_STRATEGIES] = {0};
    for (int s = 0; s < NUM_STRATEGIES; s++) {
        fill_in_parameter_sizes(info, &cfg, s);
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { if (info[i].trainable) { total[s] += info[i].size; } }
    }
    fill_in_lora_sizes(lora, &cfg, 8);
    printf("trainable: full %zu, frozen %zu, lora %zu + %zu\n", total[0], total[1], total[2],
           lora[0].size + lora[1].size);
    check(total[STRATEGY_FULL] == 109486854,
          "bert-base full: 109,486,854 trainable parameters (the reference's count)");
    check(total[STRATEGY_FROZEN] == 4614, "bert-base frozen: 4,614 (the classifier)");
    check(total[STRATEGY_LORA] + lora[0].size + lora[1].size == 446982, "bert-base lora r 8: 442,368 adapters + 4,614");
    int decay_ok = 1;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        const char* name = PARAMETER_SPECS[i].name;
        int bias_or_ln = name[strlen(name) - 1] == 'b' || strncmp(name, "ln", 2) == 0 || strncmp(name, "embln", 5) == 0;
        if (PARAMETER_SPECS[i].decay == bias_or_ln) {
            decay_ok = 0; printf("decay flag of %s\n", PARAMETER_SPECS[i].name);
        }
    }
    check(decay_ok, "weight decay on every tensor but biases and LayerNorm (the Trainer's rule)");
    size_t a[NUM_ACTIVATION_TENSORS];
    fill_in_buffer_sizes(a, ACTIVATION_SPECS, NUM_ACTIVATION_TENSORS, &cfg, 32, 64, 0);
    check(a[5] == (size_t)12 * 32 * 12 * 64 * 64 && a[16] == 0,
          "activation sizes: att (L, B, NH, T, T); lora_u 0 without LoRA");
}

// ----------------------------------------------------------------------------
// the matmul against the triple loop it blocks

static float* matmul_rand_(size_t n, uint64_t stream) {
    float* x = (float*)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { x[i] = dropout_uniform(stream, i) - 0.5f; }
    return x;
}

// out (M, N) += a (M, K) @ b (K, N) as the textbook loop: each output starts from out and adds k = 0, 1, ... in
// order, the order the blocked kernel promises, so the two must agree to the bit, not within a tolerance.
// k is the middle loop, as in the kernel, so that out += a * b is an elementwise update, which gcc contracts into
// one FMA (with -march on an FMA machine; -ffp-contract=fast is its default) exactly where it does in the kernel.
// With k innermost gcc vectorises the dot product as all the products first, then an ordered sum: the same order,
// but each product rounded on its own, so the last bit differs from an FMA.
static void matmul_naive_(float* out, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t b_rs,
                          size_t b_cs, int M, int K, int N) {
    for (int i = 0; i < M; i++) {
        for (int k = 0; k < K; k++) {
            float aik = a[i * a_rs + k * a_cs];
            for (int j = 0; j < N; j++) { out[(size_t)i * N + j] += aik * b[k * b_rs + j * b_cs]; }
        }
    }
}

// matmul_forward and matmul_backward on one shape against matmul_naive_; the gradients start nonzero (they
// accumulate). Returns 1 if every output has the same bits.
static int matmul_case_(int N, int C, int OC, int with_bias) {
    float* inp = matmul_rand_((size_t)N * C, 1);
    float* w = matmul_rand_((size_t)OC * C, 2);
    float* bias = with_bias ? matmul_rand_(OC, 3) : NULL;
    float* dout = matmul_rand_((size_t)N * OC, 4);
    float* wt = (float*)mallocCheck((size_t)OC * C * sizeof(float));
    float* out = (float*)mallocCheck((size_t)N * OC * sizeof(float));
    float* ref = (float*)mallocCheck((size_t)N * OC * sizeof(float));
    float* dinp = matmul_rand_((size_t)N * C, 5);
    float* dinp_ref = matmul_rand_((size_t)N * C, 5);
    float* dw = matmul_rand_((size_t)OC * C, 6);
    float* dw_ref = matmul_rand_((size_t)OC * C, 6);
    matmul_forward(out, inp, w, bias, wt, N, C, OC);
    for (size_t i = 0; i < (size_t)N * OC; i++) { ref[i] = with_bias ? bias[i % OC] : 0.0f; }
    matmul_naive_(ref, inp, C, 1, w, 1, C, N, C, OC);                  // inp @ W^T: b[k, o] = W[o, k]
    matmul_backward(dinp, dw, NULL, dout, inp, w, N, C, OC);
    matmul_naive_(dinp_ref, dout, OC, 1, w, C, 1, N, OC, C);           // dinp += dout @ W
    matmul_naive_(dw_ref, dout, 1, OC, inp, C, 1, OC, N, C);           // dW += dout^T @ inp, dout read by columns
    int same = memcmp(out, ref, (size_t)N * OC * sizeof(float)) == 0;
    // the same product from the weight packed once (the model's forward)
    float* wp = (float*)mallocCheck(matmul_packed_size(OC, C) * sizeof(float));
    matmul_pack_weight(wp, w, OC, C);
    matmul_forward_packed(out, inp, wp, bias, N, C, OC);
    same &= memcmp(out, ref, (size_t)N * OC * sizeof(float)) == 0;
    free(wp);
    same &= memcmp(dinp, dinp_ref, (size_t)N * C * sizeof(float)) == 0;
    same &= memcmp(dw, dw_ref, (size_t)OC * C * sizeof(float)) == 0;
    if (!same) {
        compare_tensor("out", out, ref, (size_t)N * OC, 0.0f, 0.0f, 0);
        compare_tensor("dinp", dinp, dinp_ref, (size_t)N * C, 0.0f, 0.0f, 0);
        compare_tensor("dweight", dw, dw_ref, (size_t)OC * C, 0.0f, 0.0f, 0);
    }
    free(inp); free(w); free(bias); free(dout); free(wt); free(out); free(ref);
    free(dinp); free(dinp_ref); free(dw); free(dw_ref);
    return same;
}

static void test_matmul_(void) {
    printf("\n== matmul (blocked and packed) against the naive loop, bit for bit\n");
    printf("tiles %d x %d, K blocks of %d, out blocks of %d x %d\n", MM_MR, MM_NR, MM_KC, MM_MC, MM_NC);
    // (N, C, OC): every dim of the three products (forward M N K = N OC C, dinp N C OC, dweight OC C N) takes
    // 1, 7, 37, 300 and 769: below, at and past one micro-tile, K block and out block, none a multiple of them
    int shapes[][3] = {{1, 1, 1}, {7, 37, 300}, {37, 300, 7}, {300, 7, 769}, {769, 300, 37}, {37, 769, 300},
                       {300, 769, 1}, {1, 300, 769}, {300, 384, 769}};
    int nshapes = sizeof(shapes) / sizeof(shapes[0]);
    char what[160];
    for (int s = 0; s < nshapes; s++) {
        int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        snprintf(what, sizeof(what), "matmul N %d C %d OC %d: forward (with bias, and packed), "
                 "dinp and dweight (dout^T) bit-identical to the naive loop", N, C, OC);
        check(matmul_case_(N, C, OC, 1), what);
    }
    check(matmul_case_(37, 300, 769, 0), "matmul without bias: forward starts from 0, bit-identical");
#ifdef OMP
    // the bits must not depend on the thread count either (resumes on another machine)
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    int one = matmul_case_(300, 384, 769, 1) && matmul_case_(769, 300, 37, 1);
    omp_set_num_threads(threads > 1 ? threads : 2);
    int more = matmul_case_(300, 384, 769, 1) && matmul_case_(769, 300, 37, 1);
    omp_set_num_threads(threads);
    check(one && more, "matmul bit-identical to the naive loop on 1 thread and on several");
#endif
}

// ----------------------------------------------------------------------------
// dropout, the loader, metrics, early stopping

static void test_dropout_(void) {
    printf("\n== dropout\n");
    size_t N = 1 << 20;
    float* x = (float*)mallocCheck(N * sizeof(float));
    float* y = (float*)mallocCheck(N * sizeof(float));
    float* dx = (float*)callocCheck(N, sizeof(float));
    for (size_t i = 0; i < N; i++) { x[i] = 1.0f + (float)(i % 7); }
    float p = 0.1f;
    uint64_t stream = dropout_stream(42, 3, 5);
    dropout_forward(y, x, NULL, NULL, N, 1, p, stream);
    size_t kept = 0;
    int scaled = 1;
    for (size_t i = 0; i < N; i++) {
        if (y[i] != 0.0f) { kept++; if (fabsf(y[i] - x[i] / (1.0f - p)) > 1e-6f * x[i]) { scaled = 0; } }
    }
    double frac = (double)kept / N;
    // binomial std of the kept fraction: sqrt(p (1-p) / N) = 3e-4; allow 5 sigma
    printf("kept fraction %.5f (want %.2f)\n", frac, 1.0 - p);
    check(fabs(frac - (1.0 - p)) < 1.5e-3, "dropout keeps about 1 - p of the values");
    check(scaled, "dropout scales kept values by 1 / (1 - p)");
    // backward reuses the same mask: dx = dy * mask / (1 - p) with dy = 1
    float* ones = (float*)mallocCheck(N * sizeof(float));
    for (size_t i = 0; i < N; i++) { ones[i] = 1.0f; }
    dropout_backward(dx, ones, NULL, N, 1, p, stream);
    int same_mask = 1;
    for (size_t i = 0; i < N; i++) { if ((dx[i] != 0.0f) != (y[i] != 0.0f)) { same_mask = 0; break; } }
    check(same_mask, "dropout backward regenerates the forward mask");
    float* y2 = (float*)mallocCheck(N * sizeof(float));
    dropout_forward(y2, x, NULL, NULL, N, 1, p, dropout_stream(42, 4, 5));
    size_t differ = 0;
    for (size_t i = 0; i < N; i++) { differ += (y2[i] != 0.0f) != (y[i] != 0.0f); }
    check(differ > N / 10, "a different step draws a different mask");
    dropout_forward(y2, x, NULL, NULL, N, 1, 0.0f, stream);
    check(memcmp(y2, x, N * sizeof(float)) == 0, "dropout with p = 0 is the identity");
    free(x); free(y); free(dx); free(ones); free(y2);
}

static void test_loader_(const Dataset* ds, int pad_id) {
    printf("\n== loader on %d examples\n", ds->N);
    int B = 16;
    DataLoader loader;
    loader_init(&loader, ds, B, 42);
    int* ids = (int*)mallocCheck((size_t)B * ds->T_max * sizeof(int));
    int* types = (int*)mallocCheck((size_t)B * ds->T_max * sizeof(int));
    int lengths[16], labels[16];
    int* seen = (int*)callocCheck(ds->N, sizeof(int));
    int* first_order = (int*)mallocCheck(ds->N * sizeof(int));
    int ok_every = 1, ok_pad = 1, ok_last = 1, ok_sizes = 1;
    for (int epoch = 1; epoch <= 2; epoch++) {
        memset(seen, 0, ds->N * sizeof(int));
        loader_start_epoch(&loader, epoch, 1);
        if (epoch == 1) { memcpy(first_order, loader.order, ds->N * sizeof(int)); }
        int Bb, T, nb = 0, total = 0;
        while (loader_next_batch_types(&loader, ids, types, lengths, labels, pad_id, &Bb, &T)) {
            int maxlen = 0;
            for (int b = 0; b < Bb; b++) {
                int n = loader.order[loader.pos - Bb + b];
                seen[n]++;
                if (lengths[b] > maxlen) { maxlen = lengths[b]; }
                if (labels[b] != ds->labels[n] || lengths[b] != ds->lengths[n]) { ok_every = 0; }
                for (int t = 0; t < T; t++) {
                    int want = t < lengths[b] ? ds->ids[ds->starts[n] + t] : pad_id;
                    if (ids[b * T + t] != want) { ok_pad = 0; }
                    int want_type = t < lengths[b] ? ds->types[ds->starts[n] + t] : 0;
                    if (types[b * T + t] != want_type) { ok_pad = 0; }
                }
            }
            if (T != maxlen) { ok_pad = 0; }
            if (Bb != B && total + Bb != ds->N) { ok_sizes = 0; }
            total += Bb;
            nb++;
        }
        for (int n = 0; n < ds->N; n++) { if (seen[n] != 1) { ok_every = 0; } }
        if (nb != (ds->N + B - 1) / B) { ok_last = 0; }
    }
    int differs = memcmp(first_order, loader.order, ds->N * sizeof(int)) != 0;
    check(ok_every, "the loader visits every example exactly once per epoch, with its label and length");
    check(ok_pad, "each batch is padded with the pad id (type 0) to its own longest example");
    check(ok_last && ok_sizes, "only the last batch is partial, and it is kept");
    check(differs, "the order is reshuffled every epoch");
    loader.pos = ds->N + 5;
    int Bb, T;
    check(loader_next_batch(&loader, ids, lengths, labels, pad_id, &Bb, &T) == 0,
          "a position past the end ends the epoch");
    free(ids); free(types); free(seen); free(first_order);
    loader_free(&loader);
}

// metrics against scikit-learn: dev/metrics_reference.py writes predictions, labels and sklearn's
// accuracy, weighted precision / recall / F1, per-class values and the confusion matrix
static void test_metrics_(const char* path) {
    printf("\n== metrics against scikit-learn (%s)\n", path);
    if (access(path, R_OK) != 0) { check(0, "data/ref_metrics.bin can be read (make reference)"); return; }
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    header_read(fp, path, h, METRICS_MAGIC, METRICS_VERSION, "metrics reference", "run `make reference`");
    int ncases = h[2];
    for (int c = 0; c < ncases; c++) {
        int32_t nh[2];
        freadCheck(nh, sizeof(int32_t), 2, fp, path);
        int N = nh[0], NC = nh[1];
        int* preds = (int*)mallocCheck(N * sizeof(int));
        int* labels = (int*)mallocCheck(N * sizeof(int));
        float ref[4];
        float* per_class = (float*)mallocCheck(3 * NC * sizeof(float));
        int* conf = (int*)mallocCheck((size_t)NC * NC * sizeof(int));
        freadCheck(preds, sizeof(int), N, fp, path);
        freadCheck(labels, sizeof(int), N, fp, path);
        freadCheck(ref, sizeof(float), 4, fp, path);
        freadCheck(per_class, sizeof(float), 3 * NC, fp, path);
        freadCheck(conf, sizeof(int), (size_t)NC * NC, fp, path);
        Metrics m;
        metrics_init(&m, NC);
        metrics_compute(&m, preds, labels, N);
        float got[4] = {m.accuracy, m.precision, m.recall, m.f1};
        char what[2048];
        snprintf(what, sizeof(what), "case %d (N %d): accuracy, weighted precision, recall, F1", c, N);
        check(compare_tensor("metrics", got, ref, 4, 1e-6f, 0.0f, 4), what);
        float* gpc = (float*)mallocCheck(3 * NC * sizeof(float));
        memcpy(gpc, m.class_precision, NC * sizeof(float));
        memcpy(gpc + NC, m.class_recall, NC * sizeof(float));
        memcpy(gpc + 2 * NC, m.class_f1, NC * sizeof(float));
        snprintf(what, sizeof(what), "case %d: per-class precision, recall, F1", c);
        check(compare_tensor("per_class", gpc, per_class, 3 * NC, 1e-6f, 0.0f, 0), what);
        snprintf(what, sizeof(what), "case %d: confusion matrix", c);
        check(memcmp(conf, m.confusion, (size_t)NC * NC * sizeof(int)) == 0, what);
        metrics_free(&m);
        free(preds); free(labels); free(per_class); free(conf); free(gpc);
    }
    fcloseCheck(fp, path);
}

static void test_early_stopping_(void) {
    printf("\n== early stopping\n");
    // a scripted run: improvements at epochs 1, 2, 5; a tie (epoch 3) is no improvement
    float f1[] = {0.50f, 0.60f, 0.60f, 0.59f, 0.61f, 0.61f, 0.60f, 0.605f, 0.70f};
    int want_best[] = {1, 1, 0, 0, 1, 0, 0, 0};
    EarlyStopping es = {.patience = 3};
    int stopped_at = -1, ok = 1;
    for (int e = 0; e < 9; e++) {
        int best = early_stopping_update(&es, f1[e], e + 1);
        if (e < 8 && best != want_best[e]) { ok = 0; }
        if (early_stopping_should_stop(&es)) { stopped_at = e + 1; break; }
    }
    printf("stopped at epoch %d, best epoch %d, best F1 %.3f\n", stopped_at, es.best_epoch, es.best_f1);
    check(ok, "a strictly higher F1 is an improvement, a tie is not");
    check(stopped_at == 8 && es.best_epoch == 5, "patience 3 stops three epochs after the last improvement");
    EarlyStopping off = {.patience = 0};
    for (int e = 0; e < 9; e++) { early_stopping_update(&off, 0.1f, e + 1); }
    check(!early_stopping_should_stop(&off), "patience 0 never stops");
    EarlyStopping nan = {.patience = 3};
    check(!early_stopping_update(&nan, NAN, 1) && !nan.has_best, "a NaN F1 is never the best epoch");
}

// ----------------------------------------------------------------------------
// checkpoints and the training state

// two steps with dropout, so that the weights differ from the model file
static void train_two_steps_(Bert* model, const RefState* st) {
    model->dropout = 0.1f;
    for (int s = 0; s < 2; s++) {
        bert_forward(model, st->B, st->T, st->labels, 1);
        bert_zero_grad(model);
        bert_backward(model);
        bert_update(model, 1e-3f, 0.0f, 1.0f);
    }
}

static void test_checkpoint_(const char* model_path, const char* state_path, int strategy) {
    printf("\n== checkpoint round trip (%s)\n", STRATEGY_NAMES[strategy]);
    RefState st;
    if (!ref_state_load(&st, state_path)) {
        check(0, "the reference state for the checkpoint test can be read"); return;
    }
    st.strategy = strategy;
    Bert model;
    model_from_state_(&model, model_path, &st);
    train_two_steps_(&model, &st);
    bert_forward(&model, st.B, st.T, st.labels, 0);
    float logits[64];
    memcpy(logits, model.acts.logits, (size_t)st.B * st.NC * sizeof(float));
    char path[] = "/tmp/test_bert_checkpoint_XXXXXX", tmp_path[64];
    scratch_path(path);
    bert_save_checkpoint(&model, path, 7);
    snprintf(tmp_path, sizeof(tmp_path), "%s.%ld.tmp", path, (long)getpid());
    check(access(tmp_path, F_OK) != 0, "the checkpoint's temp file was renamed away");
    Bert loaded;
    model_from_state_(&loaded, model_path, &st);
    bert_load_checkpoint(&loaded, path, 7, model.step);
    bert_forward(&loaded, st.B, st.T, st.labels, 0);
    char what[256];
    snprintf(what, sizeof(what), "%s checkpoint reloads to bit-identical logits", STRATEGY_NAMES[strategy]);
    check(memcmp(logits, loaded.acts.logits, (size_t)st.B * st.NC * sizeof(float)) == 0, what);
    Bert inference = {0};
    bert_build_from_checkpoint(&inference, path);
    snprintf(what, sizeof(what), "%s checkpoint alone builds the model with its strategy and weights",
             STRATEGY_NAMES[strategy]);
    int same = memcmp(inference.params_memory, model.params_memory, model.num_parameters * sizeof(float)) == 0;
    check(inference.strategy == strategy && same && inference.num_lora_parameters == model.num_lora_parameters, what);
    remove(path);
    bert_free(&inference);
    bert_free(&model);
    bert_free(&loaded);
    ref_state_free(&st);
}

// ----------------------------------------------------------------------------
// the forward's packed weights: made once, again after an update for what trains, never if frozen

// the linear weights an update changes under a strategy (bert_pack_weights packs them again)
static int trained_linear_weights_(const Bert* m) {
    int n = 0;
    for (int k = 0; k < NUM_LINEAR_WEIGHTS; k++) {
        size_t layers;
        int OC, C;
        n += m->param_info[linear_weight_(k, &m->config, &layers, &OC, &C)].trainable;
    }
    return n;
}

static void test_packed_weights_(const char* model_path, const char* state_path, int strategy) {
    const char* name = STRATEGY_NAMES[strategy];
    printf("\n== packed weights follow the updates (%s)\n", name);
    RefState st;
    if (!ref_state_load(&st, state_path)) {
        check(0, "the reference state for the packed-weights test can be read"); return;
    }
    st.strategy = strategy;
    Bert model;
    model_from_state_(&model, model_path, &st);
    size_t nlogits = (size_t)st.B * st.NC;
    char what[256];
    bert_forward(&model, st.B, st.T, st.labels, 0);
    bert_forward(&model, st.B, st.T, st.labels, 0);
    snprintf(what, sizeof(what), "%s: the first forward packs the %d linear weights, the next none "
             "(%d)", name, NUM_LINEAR_WEIGHTS, model.packs);
    check(model.packs == NUM_LINEAR_WEIGHTS, what);
    train_two_steps_(&model, &st);
    int trained = trained_linear_weights_(&model);
    bert_forward(&model, st.B, st.T, st.labels, 0);
    bert_forward(&model, st.B, st.T, st.labels, 0);
    // packed at the second training forward, after the first update, and at the first one after
    int want = NUM_LINEAR_WEIGHTS + 2 * trained;
    snprintf(what, sizeof(what), "%s: packed again after each update, only the %d that train "
             "(%d packs, want %d)", name, trained, model.packs, want);
    check(model.packs == want, what);
    float logits[64];
    memcpy(logits, model.acts.logits, nlogits * sizeof(float));
    // a model built from the updated weights (it packs them at its first forward): the same bits
    Bert rebuilt;
    model_from_state_(&rebuilt, model_path, &st);
    memcpy(rebuilt.params_memory, model.params_memory, model.num_parameters * sizeof(float));
    if (strategy == STRATEGY_LORA) {
        memcpy(rebuilt.lora_memory, model.lora_memory, model.num_lora_parameters * sizeof(float));
    }
    bert_forward(&rebuilt, st.B, st.T, st.labels, 0);
    snprintf(what, sizeof(what), "%s: the updated model's logits equal a model's built from its "
             "weights", name);
    check(memcmp(logits, rebuilt.acts.logits, nlogits * sizeof(float)) == 0, what);
    // a checkpoint read into a model that has run a forward: its packed copies are made again
    Bert loaded;
    model_from_state_(&loaded, model_path, &st);
    bert_forward(&loaded, st.B, st.T, st.labels, 0);
    char path[] = "/tmp/test_bert_packed_XXXXXX";
    scratch_path(path);
    bert_save_checkpoint(&model, path, 1);
    bert_load_checkpoint(&loaded, path, 1, model.step);
    bert_forward(&loaded, st.B, st.T, st.labels, 0);
    snprintf(what, sizeof(what), "%s: a checkpoint loaded after a forward gives its logits (%d "
             "packs)", name, loaded.packs);
    int same = memcmp(logits, loaded.acts.logits, nlogits * sizeof(float)) == 0;
    check(same && loaded.packs == 2 * NUM_LINEAR_WEIGHTS, what);
    remove(path);
    bert_free(&model);
    bert_free(&rebuilt);
    bert_free(&loaded);
    ref_state_free(&st);
}

// a small training state with consistent counters: 2 epochs of 3 steps done (batch 16, 48 examples)
static const char* state_model_path_;
static int32_t state_settings_[STATE_NUM_SETTINGS] = {STRATEGY_LORA, 42, 16, 5, 48, 4, 0, 0, 0, 0, 0, 0, 0};

static void state_model_(Bert* m) {
    memset(m, 0, sizeof(*m));
    m->strategy = STRATEGY_LORA;
    m->lora_r = 4;
    m->lora_alpha = 8.0f;
    bert_build_from_file(m, state_model_path_);
    bert_init_training(m);
}

static void load_state_(const char* path) {
    Bert m;
    state_model_(&m);
    TrainProgress pr;
    EarlyStopping es;
    train_state_load(path, &m, state_settings_, &pr, &es);
}

static void test_train_state_(const char* model_path) {
    printf("\n== training state\n");
    state_model_path_ = model_path;
    Bert a, b;
    state_model_(&a);
    state_model_(&b);
    size_t ntrain = bert_num_trainable(&a);
    for (size_t i = 0; i < ntrain; i++) {
        a.m_memory[i] = 0.001f * (float)(i % 97); a.v_memory[i] = 1e-6f * (float)(i % 89);
    }
    for (size_t i = 0; i < a.num_lora_parameters; i++) { a.lora_memory[i] = 0.01f * (float)(i % 13); }
    a.params_memory[5] = 42.0f;
    a.step = 7; // 2 epochs of 3 steps, then 1 step into the third
    TrainProgress pr = {3, 16, 1, 0.75, 2.5, 10.0, 0}, pr2 = {0};
    EarlyStopping es = {2, 1, 0.75f, 1, 1}, es2 = {0};
    EpochResult hist[2] = {{1, 3, 1, 1.5f, 1.2f, 0.6f, 0.6f, 0.6f, 0.75f, 2.0f},
                           {2, 6, 0, 1.0f, 1.1f, 0.5f, 0.5f, 0.5f, 0.7f, 2.0f}};
    char path[] = "/tmp/test_bert_state_XXXXXX";
    scratch_path(path);
    train_state_save(path, &a, state_settings_, &pr, &es, hist, 2);
    EpochResult* hist2 = train_state_load(path, &b, state_settings_, &pr2, &es2);
    int ok = b.step == 7 && pr2.epoch == 3 && pr2.pos == 16 && pr2.nsteps == 1 && pr2.loss_sum == 0.75 &&
             pr2.epoch_seconds == 2.5 && pr2.train_seconds == 10.0 && !pr2.done && es2.has_best == 1 &&
             es2.best_f1 == 0.75f && es2.best_epoch == 1 && es2.bad_epochs == 1 && arrlen(hist2) == 2 &&
             hist2[1].step == 6 && hist2[0].f1 == 0.75f && hist2[0].train_loss == 1.5f &&
             memcmp(a.params_memory, b.params_memory, a.num_parameters * sizeof(float)) == 0 &&
             memcmp(a.lora_memory, b.lora_memory, a.num_lora_parameters * sizeof(float)) == 0 &&
             memcmp(a.m_memory, b.m_memory, ntrain * sizeof(float)) == 0 && memcmp(a.v_memory, b.v_memory,
                                                                                   ntrain * sizeof(float)) == 0;
    check(ok, "training state: save, load, same weights, moments, counters, times and history");
    arrfree(hist2);

    // every counter checked against the others: each corruption must be refused with a message
    printf("\n== corrupted training states are refused\n");
    struct { int slot; int32_t value; const char* want; const char* what; } bad[] = {
        {STATE_POS, -1, "position", "position -1 (was a heap overflow in the loader)"},
        {STATE_POS, -1000, "position", "position -1000"},
        {STATE_POS, 1000, "position", "position past the epoch"},
        {STATE_EPOCH, 0, "epoch", "epoch 0"},
        {STATE_EPOCH, 2147483647, "epoch", "epoch 2^31 - 1"},
        {STATE_STEP, -5, "step", "step -5 (was lr -inf and a NaN loss)"},
        {STATE_STEP, 2147483647, "step", "step 2^31 - 1"},
        {STATE_NSTEPS, 99, "steps into an epoch", "more steps than an epoch has"},
        {STATE_DONE, 7, "done", "done flag 7"},
        {STATE_HAS_BEST, 0, "has_best", "no best epoch after two"},
        {STATE_BEST_EPOCH, 5, "best F1", "best epoch in the future"},
        {STATE_BAD_EPOCHS, -3, "best F1", "negative bad epochs"},
        {STATE_BEST_F1, 0x7fc00000, "best F1", "NaN best F1"},
        {STATE_LOSS_SUM + 1, 0x7ff80000, "loss sum", "NaN loss sum"},
        {STATE_TRAIN_SECONDS + 1, 0xfff00000, "times", "-inf training seconds"},
        {STATE_NHIST, 100, "history rows", "100 history rows"},
        {STATE_NHIST, 1, "bytes", "a history row count that does not match the file"},
        {STATE_SETTINGS + SET_B, 8, "batch size (-b)", "another batch size"},
        {STATE_LOSS_SUM + 1, 0, "loss sum 0 after 1 steps", "a loss sum of 0 after a step (its low half is 0)"},
        {STATE_SETTINGS + SET_FIRST_FLOAT, 0x3a83126f, "learning rate (-l) (0.001 there, 0 now)",
         "another learning rate, printed as floats (were bits: 981668463 there)"},
        {STATE_SETTINGS + SET_FIRST_FLOAT + 5, 0x3dcccccd, "LoRA alpha (-a) (0.1 there, 0 now)",
         "another LoRA alpha, printed as floats"},
    };
    char bad_path[] = "/tmp/test_bert_badstate_XXXXXX";
    scratch_path(bad_path);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_corrupt(path, bad_path, 0, (long)bad[i].slot * 4, bad[i].value);
        char what[256];
        snprintf(what, sizeof(what), "state with %s", bad[i].what);
        expect_failure(load_state_, bad_path, bad[i].want, 1, what);
    }
    // a NaN in the weights, in the first moments, a negative second moment
    long tensors = HEADER_INTS * 4;
    size_t nbase = a.num_parameters + a.num_lora_parameters;
    write_corrupt(path, bad_path, 0, tensors + 12, 0x7fc00000);
    expect_failure(load_state_, bad_path, "parameter element 3 is nan", 1, "state with a NaN weight");
    write_corrupt(path, bad_path, 0, tensors + (long)nbase * 4 + 8, 0x7f800000);
    expect_failure(load_state_, bad_path, "first moment", 1, "state with an infinite AdamW moment");
    write_corrupt(path, bad_path, 0, tensors + (long)(nbase + ntrain) * 4 + 8, float_to_bits(-1.0f));
    expect_failure(load_state_, bad_path, "negative second moment", 1, "state with a negative second moment");
    write_corrupt(path, bad_path, 1000, -1, 0);
    expect_failure(load_state_, bad_path, "bytes", 1, "a truncated state");
    remove(bad_path);
    remove(path);
    bert_free(&a);
    bert_free(&b);
}

// ----------------------------------------------------------------------------
// bad model, checkpoint and split files

static const char* bad_ckpt_base_;
static int bad_V_, bad_NC_, bad_P_;
static void load_split_(const char* path) { Dataset ds; dataset_load(&ds, path, bad_V_, bad_NC_, bad_P_); }
static void load_model_(const char* path) { Bert m = {0}; bert_build_from_file(&m, path); }
static void load_checkpoint_alone_(const char* path) { Bert m = {0}; bert_build_from_checkpoint(&m, path); }
static void load_split_within_20s_(const char* path) { alarm(20); load_split_(path); } // SIGALRM: the test fails
static void load_model_within_20s_(const char* path) { alarm(20); load_model_(path); }
static void reload_checkpoint_(const char* path) { // into a full model of bad_ckpt_base_, as the end of a run does
    Bert m = {0};
    bert_build_from_file(&m, bad_ckpt_base_);
    bert_init_training(&m);
    bert_load_checkpoint(&m, path, 1, 0);
}

static void test_bad_inputs_(const char* split_path, const char* model_path, const BertConfig* cfg) {
    printf("\n== bad input files are rejected\n");
    bad_V_ = cfg->V; bad_NC_ = cfg->NC; bad_P_ = cfg->P;
    bad_ckpt_base_ = model_path;
    Dataset ds;
    dataset_load(&ds, split_path, cfg->V, cfg->NC, cfg->P);
    int N = ds.N;
    dataset_free(&ds);
    char bad[] = "/tmp/test_bert_bad_XXXXXX";
    scratch_path(bad);
    // splits
    write_corrupt(split_path, bad, 5000, -1, 0);
    expect_failure(load_split_, bad, "bytes", 1, "a truncated split file");
    write_corrupt(split_path, bad, 0, 0, 12345);
    expect_failure(load_split_, bad, "bad magic", 1, "a split file with a wrong magic");
    write_corrupt(split_path, bad, 0, 4, 99);
    expect_failure(load_split_, bad, "bad version", 1, "a split file with a wrong version");
    write_corrupt(split_path, bad, 0, (long)(HEADER_INTS + 2 * N + 3) * 4, cfg->V);
    expect_failure(load_split_, bad, "outside the vocabulary", 1, "a token id >= V");
    write_corrupt(split_path, bad, 0, (long)(HEADER_INTS + N) * 4, cfg->NC);
    expect_failure(load_split_, bad, "label", 1, "a label >= NC");
    write_corrupt(split_path, bad, 0, (long)HEADER_INTS * 4, 100000);
    expect_failure(load_split_, bad, "length", 1, "a length > T_max");
    write_corrupt(split_path, bad, 0, SPLIT_N * 4, -3);
    expect_failure(load_split_, bad, "positive", 1, "a negative number of examples");
    write_corrupt(split_path, bad, 0, SPLIT_NTOK * 4, 2147483647);
    expect_failure(load_split_, bad, "bytes", 1, "a token count of 2^31 - 1");
    // the truncation length: at least T_max (and 2), at most the model's P (all four were accepted before)
    int32_t max_lens[] = {-1, 0, 1, INT32_MAX};
    for (int i = 0; i < 4; i++) {
        write_corrupt(split_path, bad, 0, SPLIT_MAX_LEN * 4, max_lens[i]);
        char what[128];
        snprintf(what, sizeof(what), "a split file with max length %d", max_lens[i]);
        expect_failure(load_split_, bad, "max length", 1, what);
    }
    // a FIFO is refused at once, never opened to wait for a writer (the child is killed after 20 s if it waits)
    char fifo[] = "/tmp/test_bert_fifo_XXXXXX";
    scratch_path(fifo);
    remove(fifo);
    check(mkfifo(fifo, 0600) == 0, "mkfifo for the FIFO checks");
    expect_failure(load_split_within_20s_, fifo, "not a regular file (a FIFO)", 1, "a split file that is a FIFO");
    expect_failure(load_model_within_20s_, fifo, "not a regular file (a FIFO)", 1, "a model file that is a FIFO");
    remove(fifo);
    // model files: each config field out of its range, a size product that would wrap, non-finite numbers
    struct { int slot; int32_t value; const char* want; const char* what; } fields[] = {
        {MODEL_V, 0, "field V", "V 0"}, {MODEL_C, -64, "field C", "negative C"}, {MODEL_L, 100000, "field L",
                                                                                  "L 100000"},
        {MODEL_NH, 7, "multiple", "C not a multiple of NH"}, {MODEL_NC, 1, "field NC", "one label"},
        {MODEL_PAD_ID, 30522, "pad id", "pad id = V"}, {MODEL_ACT, 2, "activation", "another activation"},
        {MODEL_EPS, 0x7f800000, "eps", "eps +inf (passed the old check)"}, {MODEL_EPS, 0x7fc00000, "eps", "eps NaN"},
        {MODEL_C, 1 << 30, "field C", "C 2^30 (the size product wrapped around before)"},
        {MODEL_TV, 1073711261, "field TV", "TV 1,073,711,261 (the size product wrapped around before)"},
        {MODEL_KIND, 5, "kind", "kind 5"},
        {MODEL_V, INT32_MIN, "field V", "V -2^31 (its V - 1 bound overflowed: found by make fuzz)"},
        {MODEL_P, 1, "field P is 1, want 3..", "P 1 (the tokenizer failed later, without naming the file)"},
        {MODEL_P, 2, "field P is 2, want 3..", "P 2: no room for a word between [CLS] and [SEP] (was accepted)"},
        {MODEL_LABEL_BYTES, 5, "label names are not 6", "label names that are not 6 names"},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        write_corrupt(model_path, bad, 0, (long)fields[i].slot * 4, fields[i].value);
        char what[256];
        snprintf(what, sizeof(what), "a model file with %s", fields[i].what);
        expect_failure(load_model_, bad, fields[i].want, 1, what);
    }
    write_corrupt(model_path, bad, 100000, -1, 0);
    expect_failure(load_model_, bad, "bytes", 1, "a truncated model file");
    write_corrupt(model_path, bad, 0, 0, 7);
    expect_failure(load_model_, bad, "bad magic", 1, "a model file with a wrong magic");
    write_corrupt(model_path, bad, 0, HEADER_INTS * 4 + 40, 0x7fc00000);
    expect_failure(load_model_, bad, "is nan", 1, "a model file with a NaN weight");
    write_corrupt(model_path, bad, 0, HEADER_INTS * 4 + 44, 0xff800000);
    expect_failure(load_model_, bad, "is -inf", 1, "a model file with a -inf weight");

    // checkpoints: a real one from a LoRA model, then its header changed
    Bert m = {0};
    m.strategy = STRATEGY_LORA; m.lora_r = 4; m.lora_alpha = 8.0f;
    bert_build_from_file(&m, model_path);
    bert_init_training(&m);
    char ckpt[] = "/tmp/test_bert_bad_ckpt_XXXXXX";
    scratch_path(ckpt);
    bert_save_checkpoint(&m, ckpt, 1);
    write_corrupt(ckpt, bad, 0, CKPT_STRATEGY * 4, STRATEGY_FULL);
    expect_failure(load_checkpoint_alone_, bad, "LoRA rank 4", 1,
                   "a LoRA checkpoint whose header says full (adapters were ignored)");
    write_corrupt(ckpt, bad, 0, CKPT_LORA_R * 4, 0);
    expect_failure(load_checkpoint_alone_, bad, "LoRA rank", 1, "a LoRA checkpoint of rank 0");
    write_corrupt(ckpt, bad, 0, CKPT_LORA_ALPHA * 4, 0x7fc00000);
    expect_failure(load_checkpoint_alone_, bad, "alpha", 1, "a LoRA checkpoint with alpha NaN");
    write_corrupt(ckpt, bad, 0, CKPT_STRATEGY * 4, 9);
    expect_failure(load_checkpoint_alone_, bad, "strategy", 1, "a checkpoint of strategy 9");
    write_corrupt(ckpt, bad, 0, CKPT_LORA_ALPHA * 4, float_to_bits(1e-30f));
    expect_failure(load_checkpoint_alone_, bad, "alpha 1e-30", 1,
                   "a LoRA checkpoint with alpha 1e-30 (outside -a's range)");
    write_corrupt(ckpt, bad, 0, MODEL_P * 4, 2);
    expect_failure(load_checkpoint_alone_, bad, "field P is 2", 1, "a checkpoint with P 2, named in the message");
    expect_failure(load_model_, ckpt, "LoRA checkpoint", 1, "training from a LoRA checkpoint would drop its adapters");
    expect_failure(load_checkpoint_alone_, model_path, "not a train_bert checkpoint", 1,
                   "classify mode with a plain model file");
    bert_free(&m);
    // the end-of-run reload: every header slot must match the model (before, only V, C, L, NC were compared)
    Bert full = {0};
    bert_build_from_file(&full, model_path);
    bert_init_training(&full);
    bert_save_checkpoint(&full, ckpt, 1);
    // a full checkpoint stores alpha 0: any other value is corruption (NaN, Inf, -1 and 1e-30 were accepted)
    int32_t alphas[] = {0x7fc00000, 0x7f800000, float_to_bits(-1.0f), float_to_bits(1e-30f)};
    for (int i = 0; i < 4; i++) {
        write_corrupt(ckpt, bad, 0, CKPT_LORA_ALPHA * 4, alphas[i]);
        char what[128];
        snprintf(what, sizeof(what), "a full checkpoint with alpha %g", bits_to_float(alphas[i]));
        expect_failure(load_checkpoint_alone_, bad, "alpha", 1, what);
    }
    // the best checkpoint reloaded at the end of a run must be the epoch and step the run wrote it at
    write_corrupt(ckpt, bad, 0, CKPT_EPOCH * 4, -1);
    expect_failure(reload_checkpoint_, bad, "of epoch -1", 1, "a best checkpoint of epoch -1 (was taken)");
    write_corrupt(ckpt, bad, 0, CKPT_EPOCH * 4, 2);
    expect_failure(reload_checkpoint_, bad, "of epoch 2", 1,
                   "a best checkpoint of another epoch: the last one copied over it (was taken)");
    write_corrupt(ckpt, bad, 0, CKPT_STEP * 4, 12);
    expect_failure(reload_checkpoint_, bad, "step 12", 1, "a best checkpoint of another step");
    write_corrupt(ckpt, bad, 0, MODEL_P * 4, cfg->P - 1);
    expect_failure(reload_checkpoint_, bad, "does not belong", 1, "a best checkpoint with another P");
    write_corrupt(ckpt, bad, 0, HEADER_INTS * 4 + 8, 0x7f800000);
    expect_failure(reload_checkpoint_, bad, "is inf", 1, "a best checkpoint with an infinite weight");
    bert_free(&full);
    remove(ckpt);
    remove(bad);
}

// A model file that names its labels (prepro writes them for a dataset of your own): kept as read
static void test_model_label_names_(const char* model_path) {
    long n;
    char* buf = file_read_all(model_path, &n);
    const char text[] = "a\0bb\0c\0d\0e\0f"; // the tiny model's six; sizeof has the last NUL
    int32_t* h = (int32_t*)buf;
    h[MODEL_LABEL_BYTES] = (int32_t)sizeof(text);
    memcpy(&h[H_LABEL_NAMES], text, sizeof(text));
    char path[] = "/tmp/test_bert_named_XXXXXX";
    scratch_path(path);
    FILE* fp;
    fopenCheck(&fp, path, "wb");
    fwriteCheck(buf, 1, n, fp, path);
    fcloseCheck(fp, path);
    Bert m = {0};
    bert_build_from_file(&m, path);
    int same = memcmp(m.config.label_text, text, sizeof(text)) == 0;
    check(m.config.label_bytes == (int)sizeof(text) && same, "a model file's label names are read");
    bert_free(&m);
    free(buf);
    remove(path);
}

// A split of version 2 (dev/reference.py's 32 sentence pairs): token types and label names
static void test_pair_split_(const char* path, const BertConfig* cfg) {
    printf("\n== a split of sentence pairs (version 2): %s\n", path);
    if (access(path, R_OK) != 0) {
        check(0, "the pair split can be read (make reference)");
        return;
    }
    Dataset ds;
    dataset_load(&ds, path, cfg->V, cfg->NC, cfg->P);
    const char* want[] = {"sadness", "joy", "love", "anger", "fear", "surprise"};
    int names_ok = ds.label_names != NULL && ds.NC == 6;
    for (int k = 0; names_ok && k < 6; k++) { names_ok = strcmp(ds.label_names[k], want[k]) == 0; }
    check(names_ok, "the label names are read, in class id order");
    long ones = 0;
    for (size_t i = 0; i < ds.starts[ds.N - 1] + ds.lengths[ds.N - 1]; i++) { ones += ds.types[i]; }
    check(ds.max_type == 1 && ones > 0 && ds.types[0] == 0, "token types are read: 0 on a, 1 on b");
    test_loader_(&ds, cfg->pad_id);
    long ntok = (long)(ds.starts[ds.N - 1] + ds.lengths[ds.N - 1]);
    long types_at = (HEADER_INTS + 2L * ds.N + ntok) * 4;
    char bad[] = "/tmp/test_bert_pairs_XXXXXX";
    scratch_path(bad);
    bad_V_ = cfg->V; bad_NC_ = cfg->NC; bad_P_ = cfg->P;
    struct { long offset; int32_t value; const char* want; const char* what; } fields[] = {
        {types_at + 8, 2, "token type 2", "a token type 2"},
        {SPLIT_LABEL_BYTES * 4, 5, "label names are not 6", "label names cut short"},
        {SPLIT_LABEL_BYTES * 4, 100000, "label names take 100000 bytes",
         "label names longer than the header"},
        {H_LABEL_NAMES * 4, 0, "label names are not 6", "an empty label name"},
        {H_VERSION * 4, 3, "want 1..2", "a split of version 3"},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        write_corrupt(path, bad, 0, fields[i].offset, fields[i].value);
        expect_failure(load_split_, bad, fields[i].want, 1, fields[i].what);
    }
    write_corrupt(path, bad, types_at + 4 * ntok - 4, -1, 0);
    expect_failure(load_split_, bad, "bytes", 1, "a pair split without its last token type");
    remove(bad);
    dataset_free(&ds);
}

// CRC-32C check value (RFC 3720), and one TFRecord read back by hand: length, masked CRCs, the Event bytes
static void test_events_(void) {
    printf("\n== TensorBoard records\n");
    check(crc32c((const uint8_t*)"123456789", 9) == 0xe3069283u, "crc32c check value");
    char dir[] = "/tmp/test_bert_events_XXXXXX";
    if (mkdtemp(dir) == NULL) { check(0, "mkdtemp"); return; }
    EventWriter w;
    events_open(&w, dir);
    long start = ftell(w.fp);
    events_add_scalar(&w, "eval/f1", 7, 0.5f);
    events_close(&w);
    FILE* fp;
    fopenCheck(&fp, w.path, "rb");
    uint8_t buf[256];
    fseek(fp, start, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    uint64_t len;
    memcpy(&len, buf, 8);
    uint32_t crc_len, crc_data = 0;
    memcpy(&crc_len, buf + 8, 4);
    int ok = n == 12 + len + 4;
    if (ok) { memcpy(&crc_data, buf + 12 + len, 4); }
    ok = ok && crc_len == crc32c_masked(buf, 8) && crc_data == crc32c_masked(buf + 12, len);
    // step 7 as a varint after the 9 bytes of wall_time, the tag after the Summary and Value heads; the float closes it
    float v;
    memcpy(&v, buf + 12 + len - 4, 4);
    ok = ok && buf[12 + 9] == (2 << 3) && buf[12 + 10] == 7 && v == 0.5f && memcmp(buf + 12 + 17, "eval/f1", 7) == 0;
    check(ok, "a TensorBoard scalar record: length, masked CRCs, step and value");
    remove(w.path);
    rmdir(dir);
}

// ----------------------------------------------------------------------------
// the run's own reliability: temp names, the save thread's errors, signals

// a temp file is path.<pid>.tmp: two processes writing one path never share one (they fought over path.tmp)
static void test_atomic_names_(void) {
    printf("\n== atomic writes\n");
    char path[] = "/tmp/test_bert_atomic_XXXXXX", want[128];
    scratch_path(path);
    snprintf(want, sizeof(want), "%s.%ld.tmp", path, (long)getpid());
    FILE* fp = atomic_open(path);
    check(strcmp(pending_tmp_, want) == 0 && access(want, F_OK) == 0, "a temp file's name is unique to its process");
    fputs("x", fp);
    atomic_commit(fp, path);
    check(access(want, F_OK) != 0 && access(path, F_OK) == 0 && pending_fp_ == NULL, "and it is renamed away");
    remove(path);
}

// The GPU back end's save thread: a failed write (here: a directory that does not exist) ends the thread with the
// message in the job, its temp file removed; the process goes on (it called exit() from the thread before).
static void test_save_thread_error_(const char* model_path) {
    printf("\n== a failed save on the thread is recorded, not exited\n");
    Bert m = {0};
    bert_build_from_file(&m, model_path);
    bert_init_training(&m);
    SaveJob j;
    memset(&j, 0, sizeof(j));
    j.model = m;
    j.last_path = "/nonexistent_test_bert_dir/checkpoint_last.bin";
    j.history = (EpochResult*)mallocCheck(sizeof(EpochResult));
    pthread_t t;
    check(pthread_create(&t, NULL, save_thread_, &j) == 0 && pthread_join(t, NULL) == 0, "the save thread ran");
    check(j.failed && strstr(j.error, "could not open /nonexistent_test_bert_dir/checkpoint_last.bin.") != NULL &&
          j.history == NULL && error_trap_ == NULL, "its error is in the job, the process goes on");
    printf("    error: %s\n", j.error);
    bert_free(&m);
}

// SIGTERM sets the flag and restores the default actions, so the next SIGINT ends the process at once
static void test_stop_signals_(void) {
    printf("\n== SIGINT and SIGTERM\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        stop_handlers_install_();
        raise(SIGTERM);
        if (stop_signal_ != SIGTERM) { _exit(2); }
        raise(SIGINT); // the default action: the child ends here
        _exit(3);
    }
    int status;
    waitpid(pid, &status, 0);
    check(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT,
          "the first signal is noted (the run stops at a step boundary), a second one ends the process at once");
}

// exp_ and the GELU built on it against double precision: exp_ within 2e-7 relative over its range, GELU
// forward and backward within 3e-7 of the exact (erf, not PyTorch's approximation) times max(1, |x|)
static void test_gelu_(void) {
    double worst_exp = 0.0, worst_fwd = 0.0, worst_bwd = 0.0;
    enum { G = 20001 };
    float* x = (float*)mallocCheck(G * sizeof(float));
    float* y = (float*)mallocCheck(G * sizeof(float));
    float* dy = (float*)mallocCheck(G * sizeof(float));
    for (int i = 0; i < G; i++) {
        float v = -87.0f + 175.0f * i / (G - 1);
        double rel = fabs((double)exp_(v) - exp((double)v)) / exp((double)v);
        worst_exp = rel > worst_exp ? rel : worst_exp;
        x[i] = -12.0f + 24.0f * i / (G - 1);
        dy[i] = 1.0f;
    }
    gelu_forward(y, x, G);
    gelu_backward(dy, x, dy, G);
    for (int i = 0; i < G; i++) {
        double v = x[i], cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
        double scale = fabs(v) > 1.0 ? fabs(v) : 1.0;
        double ef = fabs(y[i] - v * cdf) / scale, eb = fabs(dy[i] - (cdf + v * exp(-0.5 * v * v) / sqrt(2 * M_PI)));
        worst_fwd = ef > worst_fwd ? ef : worst_fwd;
        worst_bwd = eb / scale > worst_bwd ? eb / scale : worst_bwd;
    }
    printf("  exp_ relative error %.2e; GELU forward %.2e, backward %.2e (scaled by max(1, |x|))\n", worst_exp,
           worst_fwd, worst_bwd);
    check(worst_exp <= 2e-7, "exp_ within 2e-7 relative of exp over [-87, 88]");
    check(worst_fwd <= 3e-7 && worst_bwd <= 3e-7, "GELU forward and backward within 3e-7 of exact over [-12, 12]");
    // the ends of the range: the gradient is 1 (x large) or 0 (x very negative), NaN stays NaN
    float big[4] = {3.4e38f, -3.4e38f, 1e36f, NAN}, gy[4], gd[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    gelu_forward(gy, big, 4);
    gelu_backward(gd, big, gd, 4);
    check(gd[0] == 1.0f && gd[1] == 0.0f && gd[2] == 1.0f && isnan(gd[3]) && isnan(gy[3]) && gy[0] == 3.4e38f,
          "GELU at +-3.4e38, 1e36 and NaN: gradients 1, 0, 1, NaN");
    check(exp_(-1000.0f) == 0.0f && exp_(-INFINITY) == 0.0f && !isnan(exp_(NAN)),
          "exp_ below -87 is 0, and defined at NaN");
    free(x); free(y); free(dy);
}

// attention_forward and _backward against the plain loops in double: head sizes that are and are not a
// multiple of the 16 sums kept in a register, sequences shorter and longer than 16 keys, packed and padded,
// with dropout and without
static double attention_case_(int hs, int packed, float p) {
    enum { B = 3, T = 37, NH = 2 };
    int C = NH * hs, lengths[B] = {1, 17, T}, starts[B] = {0, 1, 18}; // packed rows: 1 + 17 + 37
    int N = packed ? 55 : B * T;
    const int* st = packed ? starts : NULL;
    uint64_t stream = 7;
    size_t nq = (size_t)N * 3 * C, na = (size_t)B * NH * T * T;
    float* qkv = matmul_rand_(nq, 11); // in [-1, 1)
    float* dout = matmul_rand_((size_t)N * C, 12);
    float* out = (float*)mallocCheck((size_t)N * C * sizeof(float));
    float* att = (float*)mallocCheck(na * sizeof(float));
    float* dqkv = (float*)callocCheck(nq, sizeof(float));
    double* ref_out = (double*)callocCheck((size_t)N * C, sizeof(double));
    double* ref_dqkv = (double*)callocCheck(nq, sizeof(double));
    double* s = (double*)mallocCheck(T * sizeof(double));
    double* datt = (double*)mallocCheck(T * sizeof(double));
    attention_forward(out, att, qkv, lengths, st, B, T, C, NH, p, stream);
    attention_backward(dqkv, dout, qkv, att, lengths, st, B, T, C, NH, p, stream);
    double scale = 1.0 / sqrt((double)hs), worst = 0.0;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int len = lengths[b], nrows = packed ? len : T;
            size_t base = seq_start(b, T, st);
            for (int t = 0; t < nrows; t++) {
                const float* q = qkv + (base + t) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0.0, dot = 0.0;
                for (int t2 = 0; t2 < len; t2++) {
                    const float* k = qkv + (base + t2) * 3 * C + C + h * hs;
                    s[t2] = 0.0;
                    for (int i = 0; i < hs; i++) { s[t2] += (double)q[i] * k[i]; }
                    s[t2] *= scale;
                    mx = s[t2] > mx ? s[t2] : mx;
                }
                for (int t2 = 0; t2 < len; t2++) { s[t2] = exp(s[t2] - mx); sum += s[t2]; }
                size_t row = (((size_t)b * NH + h) * T + t) * T;
                const float* d = dout + (base + t) * C + h * hs;
                for (int t2 = 0; t2 < len; t2++) {
                    s[t2] /= sum;
                    double m = p > 0.0f ? (dropout_uniform(stream, row + t2) >= p ? 1.0 / (1.0 - p) : 0.0)
                                        : 1.0;
                    const float* v = qkv + (base + t2) * 3 * C + 2 * C + h * hs;
                    datt[t2] = 0.0;
                    for (int i = 0; i < hs; i++) {
                        ref_out[(base + t) * C + h * hs + i] += s[t2] * m * v[i];
                        ref_dqkv[(base + t2) * 3 * C + 2 * C + h * hs + i] += s[t2] * m * d[i];
                        datt[t2] += m * d[i] * v[i];
                    }
                    dot += datt[t2] * s[t2];
                }
                for (int t2 = 0; t2 < len; t2++) {
                    double ds = s[t2] * (datt[t2] - dot) * scale;
                    const float* k = qkv + (base + t2) * 3 * C + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        ref_dqkv[(base + t) * 3 * C + h * hs + i] += ds * k[i];
                        ref_dqkv[(base + t2) * 3 * C + C + h * hs + i] += ds * q[i];
                    }
                }
            }
        }
    }
    // the largest difference over the largest value, each of out and dqkv, on the rows attention computes
    // (the real ones, all T when padded): single-precision sums of 37 keys land near 1e-7
    double err[2] = {0.0, 0.0}, top[2] = {0.0, 0.0};
    for (int b = 0; b < B; b++) {
        int nrows = packed ? lengths[b] : T;
        size_t base = seq_start(b, T, st);
        for (size_t r = base; r < base + nrows; r++) {
            for (int i = 0; i < 3 * C; i++) {
                int o = i < C; // out has C columns, dqkv 3C
                double got = o ? out[r * C + i] : 0.0, want = o ? ref_out[r * C + i] : 0.0;
                err[0] = fmax(err[0], fabs(got - want));
                top[0] = fmax(top[0], fabs(want));
                err[1] = fmax(err[1], fabs(dqkv[r * 3 * C + i] - ref_dqkv[r * 3 * C + i]));
                top[1] = fmax(top[1], fabs(ref_dqkv[r * 3 * C + i]));
            }
        }
    }
    worst = fmax(err[0] / top[0], err[1] / top[1]);
    free(qkv); free(dout); free(out); free(att); free(dqkv); free(ref_out); free(ref_dqkv); free(s);
    free(datt);
    return worst;
}

static void test_attention_(void) {
    printf("\n== attention forward and backward against plain loops in double\n");
    int sizes[] = {8, 16, 20, 32, 64};
    char what[160];
    for (int k = 0; k < 5; k++) {
        for (int packed = 0; packed < 2; packed++) {
            for (int d = 0; d < 2; d++) {
                float p = d ? 0.1f : 0.0f;
                double worst = attention_case_(sizes[k], packed, p);
                snprintf(what, sizeof(what), "attention head size %d, %s, dropout %.1f: out and dqkv within "
                         "1e-6 of double (worst %.1e, of the largest |value|)", sizes[k],
                         packed ? "packed" : "padded", p, worst);
                check(worst <= 1e-6, what);
            }
        }
    }
}

// ./test_bert [data dir] [tiny]: with "tiny", the MiniLM reference states are skipped (make test-sanitize);
// ./test_bert data matmul runs the matmul checks alone
int main(int argc, char** argv) {
    const char* data = argc > 1 ? argv[1] : "data";
    if (argc > 2 && strcmp(argv[2], "matmul") == 0) { test_matmul_(); return tests_summary(); } // seconds, no data
    if (argc > 2 && strcmp(argv[2], "gelu") == 0) { test_gelu_(); return tests_summary(); }
    int nmodels = argc > 2 && strcmp(argv[2], "tiny") == 0 ? 1 : 2;
    char model_path[1024], state_path[1024], path[1024];
    if (argc > 2 && strcmp(argv[2], "packed") == 0) { // the packed weights' checks alone
        snprintf(model_path, sizeof(model_path), "%s/ref_tiny_model.bin", data);
        for (int s = 0; s < NUM_STRATEGIES; s++) {
            snprintf(state_path, sizeof(state_path), "%s/ref_tiny_%s.bin", data, STRATEGY_NAMES[s]);
            test_packed_weights_(model_path, state_path, s);
        }
        return tests_summary();
    }
    const char* models[] = {"tiny", "minilm"};
    // pairs: [CLS] a [SEP] b [SEP] with type 1 on b, so wtt's second row gets its gradient too
    const char* states[] = {"full", "frozen", "lora", "full_pairs", "full_b1", "full_pad",
                            "lora_pairs"};
    for (int m = 0; m < nmodels; m++) {
        snprintf(model_path, sizeof(model_path), "%s/ref_%s_model.bin", data, models[m]);
        for (int s = 0; s < 7; s++) {
            if (m == 1 && s >= 4) { continue; } // the other batch variants are made for tiny only
            snprintf(state_path, sizeof(state_path), "%s/ref_%s_%s.bin", data, models[m], states[s]);
            test_state_(model_path, state_path);
        }
    }
    test_tables_();
    test_matmul_();
    test_gelu_();
    test_attention_();
    test_dropout_();
    snprintf(model_path, sizeof(model_path), "%s/ref_tiny_model.bin", data);
    for (int s = 0; s < NUM_STRATEGIES; s++) { test_packed_ragged_(model_path, s); }
    Bert model = {0};
    bert_build_from_file(&model, model_path);
    const BertConfig* cfg = &model.config;
    snprintf(path, sizeof(path), "%s/emotion_train.bin", data);
    Dataset train;
    dataset_load(&train, path, cfg->V, cfg->NC, cfg->P);
    test_loader_(&train, cfg->pad_id);
    check(train.label_names == NULL && train.max_type == 0,
          "a split of version 1 loads: no names, types 0");
    snprintf(path, sizeof(path), "%s/ref_tiny_pairs_split.bin", data);
    test_pair_split_(path, cfg);
    test_model_label_names_(model_path);
    snprintf(path, sizeof(path), "%s/ref_metrics.bin", data);
    test_metrics_(path);
    test_early_stopping_();
    for (int s = 0; s < NUM_STRATEGIES; s++) {
        snprintf(state_path, sizeof(state_path), "%s/ref_tiny_%s.bin", data, STRATEGY_NAMES[s]);
        test_checkpoint_(model_path, state_path, s);
        test_packed_weights_(model_path, state_path, s);
    }
    snprintf(path, sizeof(path), "%s/emotion_validation.bin", data);
    test_bad_inputs_(path, model_path, cfg);
    test_events_();
    test_train_state_(model_path);
    test_atomic_names_();
    test_save_thread_error_(model_path);
    test_stop_signals_();
    dataset_free(&train);
    bert_free(&model);
    return tests_summary();
}
