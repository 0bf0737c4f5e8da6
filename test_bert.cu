/*
Tests train_bert.cu against PyTorch and against train_bert.c, on the GPU.

1. The device dropout generator equals train_bert.c's (host check, then on the device).
2. For each reference state of dev/reference.py (as test_bert.c): logits, loss, every trainable
   gradient and the losses of 10 AdamW steps, in fp32 and in bf16 (looser, documented below).
3. fp32 forward + backward twice on the same batch: bit-identical gradients (no races).
4. The GPU and the CPU trainer side by side on real batches with dropout 0.1 and the same seed
   (the masks are identical by construction): per-step losses, norms and the final weights.
5. Checkpoints cross over: a GPU checkpoint loads on the CPU and the reverse.

Run: make test_bertcu && ./test_bertcu [data dir]
Last line: "N passed, N failed"; the exit code is non-zero on any failure.
*/
#define TESTING_CU
#include "train_bert.cu"

static int passed = 0, failed = 0;

static void check_(int ok, const char* what) {
    if (ok) { passed++; } else { failed++; }
    printf("%s %s\n", ok ? "OK  " : "FAIL", what);
}

// abs + rel * |ref| elementwise, as test_bert.c; prints the first pairs and the max diff
static int compare_tensor_(const char* label, const float* got, const float* ref, size_t n, float abs_tol, float rel_tol, int print_first) {
    float max_diff = 0.0f;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float diff = fabsf(got[i] - ref[i]);
        if (!(diff <= abs_tol + rel_tol * fabsf(ref[i]))) { bad++; }
        if (diff > max_diff || isnan(diff)) { max_diff = isnan(diff) ? INFINITY : diff; }
    }
    for (int i = 0; i < print_first && (size_t)i < n; i++) { printf("    %s[%d] %+.6e %+.6e\n", label, i, got[i], ref[i]); }
    printf("TENSOR %s %-12s max diff %.2e  (%zu elements, %zu outside %.0e + %.0e |ref|)\n", bad == 0 ? "OK " : "BAD", label,
           max_diff, n, bad, abs_tol, rel_tol);
    return bad == 0;
}

// ||got - ref|| / ||ref|| <= tol: for bf16, where single elements near zero mean nothing
static int compare_norm_(const char* label, const float* got, const float* ref, size_t n, double tol) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) { double d = (double)got[i] - ref[i]; num += d * d; den += (double)ref[i] * ref[i]; }
    double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    int ok = rel <= tol; // NaN fails
    printf("TENSOR %s %-12s rel err %.2e  (%zu elements, tol %.0e)\n", ok ? "OK " : "BAD", label, rel, n, tol);
    return ok;
}

// ----------------------------------------------------------------------------
// reference states (README.md, "File formats", "Reference state"), read as test_bert.c reads them

#define STATE_MAGIC 20261129
#define STATE_VERSION 1

typedef struct {
    int B, T, NC, strategy, r, nsteps, total_steps, warmup;
    float alpha, lr, weight_decay, max_norm;
    size_t num_params, num_lora;
    int* ids; int* lengths; int* labels;
    float* lora_init; float* logits; float loss; float* grads; float* lora_grads; float* losses;
} RefState;

static void state_load_(RefState* st, const char* path) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    freadCheck(h, sizeof(int32_t), HEADER_INTS, fp, path);
    if (h[0] != STATE_MAGIC || h[1] != STATE_VERSION) {
        fprintf(stderr, "Error: %s is not a reference state of version %d\n---> HINT: run `make reference`\n", path, STATE_VERSION);
        exit(EXIT_FAILURE);
    }
    st->B = h[2]; st->T = h[3]; st->NC = h[4]; st->strategy = h[5]; st->r = h[6]; st->alpha = bits_to_float_(h[7]);
    st->nsteps = h[8]; st->num_params = (size_t)h[9]; st->num_lora = (size_t)h[10]; st->lr = bits_to_float_(h[11]);
    st->total_steps = h[12]; st->warmup = h[13]; st->weight_decay = bits_to_float_(h[14]); st->max_norm = bits_to_float_(h[15]);
    size_t BT = (size_t)st->B * st->T;
    st->ids = (int*)mallocCheck(BT * sizeof(int));
    st->lengths = (int*)mallocCheck(st->B * sizeof(int));
    st->labels = (int*)mallocCheck(st->B * sizeof(int));
    st->lora_init = (float*)mallocCheck(st->num_lora * sizeof(float));
    st->logits = (float*)mallocCheck((size_t)st->B * st->NC * sizeof(float));
    st->grads = (float*)mallocCheck(st->num_params * sizeof(float));
    st->lora_grads = (float*)mallocCheck(st->num_lora * sizeof(float));
    st->losses = (float*)mallocCheck(st->nsteps * sizeof(float));
    freadCheck(st->ids, sizeof(int), BT, fp, path);
    freadCheck(st->lengths, sizeof(int), st->B, fp, path);
    freadCheck(st->labels, sizeof(int), st->B, fp, path);
    freadCheck(st->lora_init, sizeof(float), st->num_lora, fp, path);
    freadCheck(st->logits, sizeof(float), (size_t)st->B * st->NC, fp, path);
    freadCheck(&st->loss, sizeof(float), 1, fp, path);
    freadCheck(st->grads, sizeof(float), st->num_params, fp, path);
    freadCheck(st->lora_grads, sizeof(float), st->num_lora, fp, path);
    freadCheck(st->losses, sizeof(float), st->nsteps, fp, path);
    char extra;
    if (fread(&extra, 1, 1, fp) != 0) { fprintf(stderr, "Error: %s is longer than its header says\n", path); exit(EXIT_FAILURE); }
    fcloseCheck(fp, path);
}

static void state_free_(RefState* st) {
    free(st->ids); free(st->lengths); free(st->labels); free(st->lora_init); free(st->logits);
    free(st->grads); free(st->lora_grads); free(st->losses);
}

// a fresh GPU model from the model file, set up as the state says, dropout 0
static void model_from_state_(BertGPU* model, const char* model_path, const RefState* st, int precision) {
    memset(model, 0, sizeof(*model));
    model->precision = precision;
    model->cpu.strategy = st->strategy;
    model->cpu.seed = 42;
    model->cpu.lora_r = st->strategy == STRATEGY_LORA ? st->r : 8;
    model->cpu.lora_alpha = st->alpha;
    bert_build_from_file(model, model_path);
    bert_init_training(model);
    if (st->strategy == STRATEGY_LORA) {
        memcpy(model->cpu.lora_memory, st->lora_init, st->num_lora * sizeof(float));
        bert_upload_weights(model);
    }
    bert_alloc_activations(model, st->B, st->T);
    memcpy(model->cpu.ids, st->ids, (size_t)st->B * st->T * sizeof(int));
    memcpy(model->cpu.lengths, st->lengths, st->B * sizeof(int));
}

// Tolerances. fp32: test_bert.c's CPU passes at logits 1e-6 + 1e-5 |ref|, gradients 1e-6 + 1e-4 |ref|,
// loss 1e-6. cuBLAS and the warp reductions sum in other orders, so each is 10x looser here:
// still far below any real bug (a wrong mask or index moves values by 1e-2 and more).
// bf16: operands rounded to 8 bits of mantissa: relative L2 error per tensor instead of elementwise.
#define FP32_LOGIT_ABS 1e-5f
#define FP32_LOGIT_REL 1e-4f
#define FP32_GRAD_ABS 1e-5f
#define FP32_GRAD_REL 1e-3f
#define FP32_LOSS_ABS 1e-5f
#define FP32_STEPS_ABS 1e-5f
#define FP32_STEPS_REL 1e-5f
#define BF16_LOGIT_REL 3e-2
#define BF16_GRAD_REL 6e-2
#define BF16_LOSS_ABS 2e-2f
#define BF16_STEPS_REL 2e-2f

static void test_state_(const char* model_path, const char* state_path, int precision) {
    printf("\n== %s (model %s, %s)\n", state_path, model_path, cu::precision_name(precision));
    int bf16 = precision == cu::PRECISION_BF16;
    RefState st;
    state_load_(&st, state_path);
    BertGPU model;
    model_from_state_(&model, model_path, &st, precision);
    char what[2048];
    snprintf(what, sizeof(what), "%s [%s]: parameter count matches the reference", state_path, cu::precision_name(precision));
    check_(model.cpu.num_parameters == st.num_params, what);

    bert_forward(&model, st.B, st.T, st.labels, 1);
    float* logits = (float*)mallocCheck((size_t)st.B * st.NC * sizeof(float));
    cudaCheck(cudaMemcpy(logits, model.acts.logits, (size_t)st.B * st.NC * sizeof(float), cudaMemcpyDeviceToHost));
    snprintf(what, sizeof(what), "%s [%s]: logits", state_path, cu::precision_name(precision));
    size_t nlog = (size_t)st.B * st.NC;
    check_(bf16 ? compare_norm_("logits", logits, st.logits, nlog, BF16_LOGIT_REL)
                : compare_tensor_("logits", logits, st.logits, nlog, FP32_LOGIT_ABS, FP32_LOGIT_REL, 3), what);
    snprintf(what, sizeof(what), "%s [%s]: loss %.6f vs %.6f", state_path, cu::precision_name(precision), model.cpu.mean_loss, st.loss);
    check_(fabsf(model.cpu.mean_loss - st.loss) <= (bf16 ? BF16_LOSS_ABS : FP32_LOSS_ABS), what);

    bert_zero_grad(&model);
    bert_backward(&model);
    float* grads = (float*)mallocCheck(st.num_params * sizeof(float));
    float* lora_grads = (float*)mallocCheck((st.num_lora > 0 ? st.num_lora : 1) * sizeof(float));
    bert_download_grads(&model, grads, lora_grads);
    int all_ok = 1;
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        const TensorInfo* info = &model.cpu.param_info[i];
        if (info->trainable) {
            char label[32];
            snprintf(label, sizeof(label), "d%s", info->name);
            all_ok &= bf16 ? compare_norm_(label, grads + offset, st.grads + offset, info->size, BF16_GRAD_REL)
                           : compare_tensor_(label, grads + offset, st.grads + offset, info->size, FP32_GRAD_ABS, FP32_GRAD_REL, 0);
        } else if (((float**)&model.grads)[i] != NULL) {
            all_ok = 0; // frozen: no gradient memory at all
        }
        offset += info->size;
    }
    if (st.strategy == STRATEGY_LORA) {
        size_t na = model.cpu.lora_info[0].size, nb = model.cpu.lora_info[1].size;
        snprintf(what, sizeof(what), "%s: LoRA parameter count %zu matches", state_path, model.cpu.num_lora_parameters);
        check_(model.cpu.num_lora_parameters == st.num_lora, what);
        all_ok &= bf16 ? compare_norm_("dlora_a", lora_grads, st.lora_grads, na, BF16_GRAD_REL)
                       : compare_tensor_("dlora_a", lora_grads, st.lora_grads, na, FP32_GRAD_ABS, FP32_GRAD_REL, 0);
        all_ok &= bf16 ? compare_norm_("dlora_b", lora_grads + na, st.lora_grads + na, nb, BF16_GRAD_REL)
                       : compare_tensor_("dlora_b", lora_grads + na, st.lora_grads + na, nb, FP32_GRAD_ABS, FP32_GRAD_REL, 0);
    }
    snprintf(what, sizeof(what), "%s [%s]: every trainable gradient", state_path, cu::precision_name(precision));
    check_(all_ok, what);

    // fp32 has no races: the same forward + backward gives the same bits
    if (!bf16) {
        float* grads2 = (float*)mallocCheck(st.num_params * sizeof(float));
        bert_forward(&model, st.B, st.T, st.labels, 1);
        bert_zero_grad(&model);
        bert_backward(&model);
        bert_download_grads(&model, grads2, lora_grads);
        snprintf(what, sizeof(what), "%s: a second forward + backward gives bit-identical gradients", state_path);
        check_(memcmp(grads, grads2, st.num_params * sizeof(float)) == 0, what);
        free(grads2);
    }

    // 10 AdamW steps on the same batch, each loss computed before its update
    float losses[64];
    int nsteps = st.nsteps < 64 ? st.nsteps : 64;
    for (int s = 0; s < nsteps; s++) {
        bert_forward(&model, st.B, st.T, st.labels, 1);
        losses[s] = model.cpu.mean_loss;
        bert_zero_grad(&model);
        bert_backward(&model);
        bert_update(&model, lr_at_step(st.lr, s, st.warmup, st.total_steps), 0.9f, 0.999f, 1e-8f, st.weight_decay, st.max_norm);
    }
    for (int s = 0; s < nsteps; s++) { printf("    step %d loss %.6f ref %.6f\n", s, losses[s], st.losses[s]); }
    snprintf(what, sizeof(what), "%s [%s]: %d optimizer-step losses", state_path, cu::precision_name(precision), nsteps);
    check_(bf16 ? compare_tensor_("losses", losses, st.losses, nsteps, 0.0f, BF16_STEPS_REL, 0)
                : compare_tensor_("losses", losses, st.losses, nsteps, FP32_STEPS_ABS, FP32_STEPS_REL, 0), what);
    free(logits); free(grads); free(lora_grads);
    bert_free(&model);
    state_free_(&st);
}

// ----------------------------------------------------------------------------
// the dropout generator: host copies, then the device kernel, against train_bert.c

static void test_dropout_host_(void) {
    printf("\n== dropout generator (host side of the device code)\n");
    int same = 1;
    for (uint64_t k = 0; k < 100000; k++) {
        uint64_t x = k * 0x9e3779b97f4a7c15ULL + (k << 7);
        if (mix64_cu(x) != mix64_(x)) { same = 0; }
        uint64_t st = dropout_stream(42 + k % 5, k % 1000, k % 77);
        if (dropout_stream_cu(42 + k % 5, k % 1000, k % 77) != st) { same = 0; }
        if (dropout_uniform_cu(st, k * 31) != dropout_uniform(st, k * 31)) { same = 0; }
    }
    check_(same, "mix64_cu / dropout_stream_cu / dropout_uniform_cu equal train_bert.c's bit for bit");
}

static void test_dropout_device_(void) {
    printf("\n== dropout on the device\n");
    size_t N = 1 << 20;
    float* x = (float*)mallocCheck(N * sizeof(float));
    float* r = (float*)mallocCheck(N * sizeof(float));
    float* want = (float*)mallocCheck(N * sizeof(float));
    float* got = (float*)mallocCheck(N * sizeof(float));
    for (size_t i = 0; i < N; i++) { x[i] = 1.0f + (float)(i % 7); r[i] = 0.25f * (float)(i % 3); }
    uint64_t stream = dropout_stream(42, 3, 5);
    dropout_forward(want, x, r, N, 0.1f, stream);
    float *dx, *dr, *dout;
    cudaCheck(cudaMalloc(&dx, N * sizeof(float)));
    cudaCheck(cudaMalloc(&dr, N * sizeof(float)));
    cudaCheck(cudaMalloc(&dout, N * sizeof(float)));
    cudaCheck(cudaMemcpy(dx, x, N * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(dr, r, N * sizeof(float), cudaMemcpyHostToDevice));
    cu::dropout_forward(dout, dx, dr, N, 0.1f, stream);
    cudaCheck(cudaMemcpy(got, dout, N * sizeof(float), cudaMemcpyDeviceToHost));
    check_(memcmp(got, want, N * sizeof(float)) == 0, "device dropout_forward (with residual) equals the CPU bit for bit");
    memset(want, 0, N * sizeof(float));
    dropout_backward(want, x, N, 0.1f, stream);
    cudaCheck(cudaMemset(dout, 0, N * sizeof(float)));
    cu::dropout_backward(dout, dx, N, 0.1f, stream);
    cudaCheck(cudaMemcpy(got, dout, N * sizeof(float), cudaMemcpyDeviceToHost));
    check_(memcmp(got, want, N * sizeof(float)) == 0, "device dropout_backward equals the CPU bit for bit");
    cudaCheck(cudaFree(dx)); cudaCheck(cudaFree(dr)); cudaCheck(cudaFree(dout));
    free(x); free(r); free(want); free(got);
}

// ----------------------------------------------------------------------------
// the two trainers side by side: same model file, data, seed, dropout 0.1, strategy

#define SIDE_STEPS 6
static void test_side_by_side_(const char* model_path, const Dataset* train, int strategy, int precision) {
    printf("\n== GPU (%s) and CPU trainers, %s, dropout 0.1, %d steps\n", cu::precision_name(precision), STRATEGY_NAMES[strategy], SIDE_STEPS);
    int B = 16, bf16 = precision == cu::PRECISION_BF16;
    Bert cpu;
    memset(&cpu, 0, sizeof(cpu));
    cpu.strategy = strategy; cpu.seed = 42; cpu.dropout = 0.1f; cpu.lora_r = 8; cpu.lora_alpha = 32.0f; cpu.lora_dropout = 0.1f;
    bert_build_from_file(&cpu, model_path);
    bert_init_training(&cpu);
    bert_alloc_activations(&cpu, B, train->T_max);
    BertGPU gpu;
    memset(&gpu, 0, sizeof(gpu));
    gpu.precision = precision;
    gpu.cpu.strategy = strategy; gpu.cpu.seed = 42; gpu.cpu.dropout = 0.1f; gpu.cpu.lora_r = 8; gpu.cpu.lora_alpha = 32.0f;
    gpu.cpu.lora_dropout = 0.1f;
    bert_build_from_file(&gpu, model_path);
    bert_init_training(&gpu);
    bert_alloc_activations(&gpu, B, train->T_max);
    DataLoader lc, lg;
    loader_init(&lc, train, B, 42);
    loader_init(&lg, train, B, 42);
    loader_start_epoch(&lc, 1, 1);
    loader_start_epoch(&lg, 1, 1);
    float lcpu[SIDE_STEPS], lgpu[SIDE_STEPS], ncpu[SIDE_STEPS], ngpu[SIDE_STEPS];
    int Bb, T, Bg, Tg, total = 100;
    for (int s = 0; s < SIDE_STEPS; s++) {
        loader_next_batch(&lc, cpu.ids, cpu.lengths, cpu.labels, cpu.config.pad_id, &Bb, &T);
        loader_next_batch(&lg, gpu.cpu.ids, gpu.cpu.lengths, gpu.cpu.labels, gpu.cpu.config.pad_id, &Bg, &Tg);
        float lr = lr_at_step(1e-3f, s, 0, total); // large, so the weights move visibly
        bert_forward(&cpu, Bb, T, cpu.labels, 1);
        bert_zero_grad(&cpu);
        bert_backward(&cpu);
        ncpu[s] = bert_update(&cpu, lr, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f);
        lcpu[s] = cpu.mean_loss;
        bert_forward(&gpu, Bg, Tg, gpu.cpu.labels, 1);
        bert_zero_grad(&gpu);
        bert_backward(&gpu);
        ngpu[s] = bert_update(&gpu, lr, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f);
        lgpu[s] = gpu.cpu.mean_loss;
        printf("    step %d (B %d, T %d) loss gpu %.6f cpu %.6f | norm gpu %.6f cpu %.6f\n", s, Bb, T, lgpu[s], lcpu[s], ngpu[s], ncpu[s]);
    }
    char what[256];
    snprintf(what, sizeof(what), "%s [%s]: per-step losses with dropout match the CPU", STRATEGY_NAMES[strategy], cu::precision_name(precision));
    check_(compare_tensor_("losses", lgpu, lcpu, SIDE_STEPS, bf16 ? 0.0f : 1e-5f, bf16 ? 2e-2f : 1e-4f, 0), what);
    snprintf(what, sizeof(what), "%s [%s]: per-step gradient norms with dropout match the CPU", STRATEGY_NAMES[strategy], cu::precision_name(precision));
    check_(compare_tensor_("norms", ngpu, ncpu, SIDE_STEPS, bf16 ? 0.0f : 1e-5f, bf16 ? 5e-2f : 1e-3f, 0), what);
    bert_download_weights(&gpu);
    snprintf(what, sizeof(what), "%s [%s]: weights after %d steps match the CPU", STRATEGY_NAMES[strategy], cu::precision_name(precision), SIDE_STEPS);
    int ok = compare_norm_("params", gpu.cpu.params_memory, cpu.params_memory, cpu.num_parameters, bf16 ? 1e-3 : 1e-5);
    if (strategy == STRATEGY_LORA) {
        ok &= compare_norm_("lora", gpu.cpu.lora_memory, cpu.lora_memory, cpu.num_lora_parameters, bf16 ? 5e-2 : 1e-4);
    }
    check_(ok, what);
    loader_free(&lc);
    loader_free(&lg);
    bert_free(&cpu);
    bert_free(&gpu);
}

// ----------------------------------------------------------------------------
// checkpoints across the two trainers

static void test_checkpoint_cross_(const char* model_path, const char* state_path, int strategy) {
    printf("\n== checkpoints GPU <-> CPU (%s)\n", STRATEGY_NAMES[strategy]);
    RefState st;
    state_load_(&st, state_path);
    st.strategy = strategy;
    BertGPU gpu;
    model_from_state_(&gpu, model_path, &st, cu::PRECISION_FP32);
    gpu.cpu.dropout = 0.1f;
    for (int s = 0; s < 2; s++) { // two steps so the weights differ from the model file
        bert_forward(&gpu, st.B, st.T, st.labels, 1);
        bert_zero_grad(&gpu);
        bert_backward(&gpu);
        bert_update(&gpu, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f);
    }
    bert_forward(&gpu, st.B, st.T, st.labels, 0);
    size_t nlog = (size_t)st.B * st.NC;
    float* glogits = (float*)mallocCheck(nlog * sizeof(float));
    cudaCheck(cudaMemcpy(glogits, gpu.acts.logits, nlog * sizeof(float), cudaMemcpyDeviceToHost));
    const char* path = "test_checkpoint_gpu.bin.out";
    bert_save_checkpoint(&gpu, path, 3);
    // the CPU loads it and computes the same logits (to fp32 rounding)
    Bert cpu;
    memset(&cpu, 0, sizeof(cpu));
    cpu.strategy = strategy; cpu.seed = 42; cpu.lora_r = strategy == STRATEGY_LORA ? st.r : 8; cpu.lora_alpha = st.alpha;
    bert_build_from_file(&cpu, model_path);
    bert_init_training(&cpu);
    bert_alloc_activations(&cpu, st.B, st.T);
    memcpy(cpu.ids, st.ids, (size_t)st.B * st.T * sizeof(int));
    memcpy(cpu.lengths, st.lengths, st.B * sizeof(int));
    bert_load_checkpoint(&cpu, path);
    bert_forward(&cpu, st.B, st.T, st.labels, 0);
    char what[256];
    snprintf(what, sizeof(what), "%s: a GPU checkpoint loads on the CPU to the same logits", STRATEGY_NAMES[strategy]);
    check_(compare_tensor_("logits", glogits, cpu.acts.logits, nlog, FP32_LOGIT_ABS, FP32_LOGIT_REL, 2), what);
    // and back: the CPU writes, a fresh GPU model reads the very same bits
    bert_save_checkpoint(&cpu, path, 4);
    BertGPU back;
    model_from_state_(&back, model_path, &st, cu::PRECISION_FP32);
    bert_load_checkpoint(&back, path);
    float* hostw = (float*)mallocCheck(cpu.num_parameters * sizeof(float));
    cudaCheck(cudaMemcpy(hostw, back.params_memory, cpu.num_parameters * sizeof(float), cudaMemcpyDeviceToHost));
    int same = memcmp(hostw, cpu.params_memory, cpu.num_parameters * sizeof(float)) == 0;
    if (strategy == STRATEGY_LORA) {
        float* hl = (float*)mallocCheck(cpu.num_lora_parameters * sizeof(float));
        cudaCheck(cudaMemcpy(hl, back.lora_memory, cpu.num_lora_parameters * sizeof(float), cudaMemcpyDeviceToHost));
        same &= memcmp(hl, cpu.lora_memory, cpu.num_lora_parameters * sizeof(float)) == 0;
        free(hl);
    }
    snprintf(what, sizeof(what), "%s: a CPU checkpoint loads on the GPU bit for bit", STRATEGY_NAMES[strategy]);
    check_(same, what);
    remove(path);
    free(glogits); free(hostw);
    bert_free(&gpu);
    bert_free(&back);
    bert_free(&cpu);
    state_free_(&st);
}

// ----------------------------------------------------------------------------

static int file_exists_(const char* path) { struct stat sb; return stat(path, &sb) == 0; }

int main(int argc, char** argv) {
    const char* data = argc > 1 ? argv[1] : "data";
    char model_path[1024], state_path[1024], path[1024];
    test_dropout_host_(); // needs no device
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        check_(0, "a CUDA device is present (every other test needs one)");
        printf("\n%d passed, %d failed\n", passed, failed);
        return 1;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    test_dropout_device_();
    const char* models[] = {"tiny", "minilm"};
    const char* states[] = {"full", "frozen", "lora", "full_b1", "full_pad"};
    for (int prec = 0; prec < 2; prec++) {
        for (int m = 0; m < 2; m++) {
            snprintf(model_path, sizeof(model_path), "%s/ref_%s_model.bin", data, models[m]);
            if (!file_exists_(model_path)) { printf("\n(skipping %s: %s is missing)\n", models[m], model_path); continue; }
            for (int s = 0; s < 5; s++) {
                if (m == 1 && s >= 3) { continue; } // the batch variants are made for tiny only
                snprintf(state_path, sizeof(state_path), "%s/ref_%s_%s.bin", data, models[m], states[s]);
                test_state_(model_path, state_path, prec);
            }
        }
    }
    snprintf(model_path, sizeof(model_path), "%s/ref_tiny_model.bin", data);
    Bert probe;
    memset(&probe, 0, sizeof(probe));
    bert_build_from_file(&probe, model_path);
    snprintf(path, sizeof(path), "%s/emotion_train.bin", data);
    Dataset train;
    dataset_load(&train, path, &probe.config);
    for (int prec = 0; prec < 2; prec++) {
        for (int s = 0; s < 3; s++) { test_side_by_side_(model_path, &train, s, prec); }
    }
    for (int s = 0; s < 3; s++) {
        snprintf(state_path, sizeof(state_path), "%s/ref_tiny_%s.bin", data, STRATEGY_NAMES[s]);
        test_checkpoint_cross_(model_path, state_path, s);
    }
    dataset_free(&train);
    bert_free(&probe);

    printf("\noverall okay: %d\n", failed == 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
