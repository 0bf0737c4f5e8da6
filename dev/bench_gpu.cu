/*
Times train_bertcu's training step and evaluation on real emotion batches: for each strategy, precision and kernel
set, `steps` steps (forward, backward, clip + AdamW) after 10 untimed ones, then one evaluation pass over the
validation split; prints one line per configuration with the mean step, the epoch it implies (500 steps at batch
32 plus the evaluation) and the device memory in use. The steps run as the trainer runs them at -f 100: the loss
and norm stay on the device and are read every 100 steps, so the host queues work ahead; the clock stops after a
final device synchronise. No checkpoints or logs are written: the timing is the model's.
A benchmark, not a test: dev/gpu_check.sh runs it beside the Hugging Face Trainer (dev/bench_trainer.py).

    make dev/bench_gpu
    ./dev/bench_gpu MODEL.bin DATA_DIR [steps] [B]
*/
#define TESTING_CU
#include "../train_bert.cu"

int main(int argc, char** argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s model.bin data_dir [steps] [B]\n", argv[0]); return 1; }
    int steps = argc > 3 ? atoi(argv[3]) : 60, B = argc > 4 ? atoi(argv[4]) : 32;
    cu::device_check();
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    char path[4200];
    Bert probe;
    memset(&probe, 0, sizeof(probe));
    bert_build_from_file(&probe, argv[1]);
    Dataset train, val;
    path_join(path, sizeof(path), argv[2], "emotion_train.bin");
    dataset_load(&train, path, probe.config.V, probe.config.NC, probe.config.P);
    path_join(path, sizeof(path), argv[2], "emotion_validation.bin");
    dataset_load(&val, path, probe.config.V, probe.config.NC, probe.config.P);
    int T_max = train.T_max > val.T_max ? train.T_max : val.T_max;
    int steps_per_epoch = (train.N + B - 1) / B;
    printf("bench_gpu | %s | %s | B %d | %d timed steps after 10 | epoch = %d steps + one validation pass\n",
           prop.name, probe.config.name, B, steps, steps_per_epoch);
    for (int strategy = 0; strategy < NUM_STRATEGIES; strategy++) {
        for (int precision = 0; precision < 2; precision++) {
            for (int kernels = 1; kernels <= 4; kernels++) {
                Bert m;
                memset(&m, 0, sizeof(m));
                m.strategy = strategy; m.seed = 42; m.dropout = 0.1f; m.lora_r = 8; m.lora_alpha = 32.0f;
                m.lora_dropout = 0.1f; m.precision = precision;
                cu::kernel_set = kernels;
                bert_build_from_file(&m, argv[1]);
                bert_init_training(&m);
                bert_alloc_batch(&m, B, T_max);
                cu::bert_setup(&m, B, T_max);
                DataLoader loader;
                loader_init(&loader, &train, B, 42);
                loader_start_epoch(&loader, 1, 1);
                float loss[STEPS_MAX], norm[STEPS_MAX];
                int Bb = 0, T = 0, waiting = 0;
                double t_start = 0.0;
                for (int s = -10; s < steps; s++) {
                    if (s == 0) { // the clock starts with nothing in flight
                        cu::bert_read_steps(&m, waiting, loss, norm);
                        waiting = 0;
                        cudaCheck(cudaDeviceSynchronize());
                        t_start = now_seconds();
                    }
                    if (!loader_next_batch(&loader, m.ids, m.lengths, m.labels, m.config.pad_id, &Bb, &T)) {
                        loader_start_epoch(&loader, 2, 1);
                        loader_next_batch(&loader, m.ids, m.lengths, m.labels, m.config.pad_id, &Bb, &T);
                    }
                    cu::bert_forward(&m, Bb, T, m.labels, 1);
                    cu::bert_zero_grad(&m);
                    cu::bert_backward(&m);
                    cu::bert_update(&m, 5e-5f, 0.0f, 1.0f);
                    if (++waiting == 100 || s == steps - 1) { // as the trainer at -f 100
                        cu::bert_read_steps(&m, waiting, loss, norm);
                        waiting = 0;
                    }
                }
                cudaCheck(cudaDeviceSynchronize());
                double step_ms = (now_seconds() - t_start) * 1e3 / steps;
                Metrics vm;
                metrics_init(&vm, m.config.NC);
                double t0 = now_seconds();
                evaluate_(&CUDA_BACKEND, &m, &val, B, &vm);
                cudaCheck(cudaDeviceSynchronize());
                double eval_s = now_seconds() - t0;
                size_t free_b, total_b;
                cudaCheck(cudaMemGetInfo(&free_b, &total_b));
                printf("BENCH {\"who\": \"ours\", \"strategy\": \"%s\", \"precision\": \"%s\", \"kernels\": %d, "
                       "\"step_ms\": %.3f, \"steps_per_s\": %.3f, \"eval_s\": %.3f, \"epoch_s\": %.3f, "
                       "\"mem_mib\": %.0f, \"device\": \"%s\"}\n", STRATEGY_NAMES[strategy],
                       cu::precision_name(precision), kernels, step_ms, 1000.0 / step_ms, eval_s,
                       steps_per_epoch * step_ms / 1000.0 + eval_s, (total_b - free_b) / 1048576.0, prop.name);
                fflush(stdout);
                metrics_free(&vm);
                loader_free(&loader);
                cu::bert_free(&m);
                bert_free(&m);
            }
        }
    }
    dataset_free(&train);
    dataset_free(&val);
    bert_free(&probe);
    return 0;
}
