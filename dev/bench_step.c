/*
Times one training step of train_bert.c (forward, backward, AdamW) on a fixed batch of real
emotion examples: the C half of dev/bench_step.py, which runs PyTorch on the same batch.
A benchmark, not a test: it prints the median of several repeats.

    ./dev/bench_step MODEL.bin SPLIT.bin STRATEGY B REPEATS   (built by make bench)
*/
#define TESTING
#include "../train_bert.c"

static int cmp_double_(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s model.bin split.bin full|frozen|lora B repeats\n", argv[0]); return 1; }
    int B = atoi(argv[4]), repeats = atoi(argv[5]);
    Bert model;
    memset(&model, 0, sizeof(model));
    model.strategy = -1;
    for (int s = 0; s < 3; s++) { if (strcmp(argv[3], STRATEGY_NAMES[s]) == 0) { model.strategy = s; } }
    if (model.strategy < 0 || B < 1 || repeats < 1) { fprintf(stderr, "bad arguments\n"); return 1; }
    model.seed = 42;
    model.dropout = 0.1f;
    model.lora_r = 8;
    model.lora_alpha = 32.0f;
    model.lora_dropout = 0.1f;
    bert_build_from_file(&model, argv[1]);
    bert_init_training(&model);
    Dataset ds;
    dataset_load(&ds, argv[2], model.config.V, model.config.NC, model.config.P);
    // the first B examples of the split, in order: the same batch dev/bench_step.py takes
    DataLoader loader;
    loader_init(&loader, &ds, B, 42);
    loader_start_epoch(&loader, 0, 0);
    int Bb, T;
    bert_alloc_batch(&model, B, ds.T_max);
    bert_alloc_activations(&model, B, ds.T_max);
    loader_next_batch(&loader, model.ids, model.lengths, model.labels, model.config.pad_id, &Bb, &T);
    double* ms = (double*)mallocCheck(repeats * sizeof(double));
    for (int r = -2; r < repeats; r++) { // two warm-up steps
        double t0 = now_seconds();
        bert_forward(&model, Bb, T, model.labels, 1);
        bert_zero_grad(&model);
        bert_backward(&model);
        bert_update(&model, 5e-5f, 0.0f, 1.0f);
        if (r >= 0) { ms[r] = (now_seconds() - t0) * 1e3; }
    }
    qsort(ms, repeats, sizeof(double), cmp_double_);
    int threads = 1;
#ifdef OMP
    threads = omp_get_max_threads();
#endif
    printf("C step | %s | %s | B %d T %d | threads %d | median %.1f ms | min %.1f ms | max %.1f ms\n",
           model.config.name,
           argv[3], Bb, T, threads, ms[repeats / 2], ms[0], ms[repeats - 1]);
    free(ms);
    loader_free(&loader);
    dataset_free(&ds);
    bert_free(&model);
    return 0;
}
