/*
dev/fuzz/fuzz_loaders.c: a libFuzzer harness for every reader of untrusted bytes. The first byte of
an input picks the reader, the rest is the file (or text) it reads:
  0  a model file        bert_build_from_file
  1  a checkpoint alone  bert_build_from_checkpoint (classify mode)
  2  a split             dataset_load for the micro model, then every batch of an epoch
  3  a training state    train_state_load into the micro LoRA model, then the loader at its position
  4  text                tokenizer_encode_bytes with the real vocabulary (FUZZ_VOCAB, default data/vocab.txt)
A rejected input is an ordinary outcome: built with -DFUZZING, error_exit longjmps back here (and
the file it left open is closed). What the harness catches is what the sanitizers report (ASan,
UBSan) and broken invariants of an accepted input (abort).

    make fuzz FUZZ_SECONDS=600        (make fuzz-ci: 60 seconds; the corpus grows in out/fuzz_corpus)
*/
#define TESTING
#include "../../train_bert.c"
#include "micro.h"

jmp_buf fuzz_escape;
static char input_path_[64], model_path_[64];
static Bert state_model_;     // the micro LoRA model the states load into
static Tokenizer tok_;

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    (void)argc; (void)argv;
    snprintf(input_path_, sizeof(input_path_), "/tmp/fuzz_input_%d.bin", (int)getpid());
    snprintf(model_path_, sizeof(model_path_), "/tmp/fuzz_micro_model_%d.bin", (int)getpid());
    micro_model_write(model_path_);
    micro_lora_model(&state_model_, model_path_);
    const char* vocab = getenv("FUZZ_VOCAB") != NULL ? getenv("FUZZ_VOCAB") : "data/vocab.txt";
    tokenizer_init(&tok_, vocab, 1);
    return 0;
}

static void write_input_(const uint8_t* data, size_t size) {
    FILE* fp = fopen(input_path_, "wb");
    if (fp == NULL || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) { abort(); }
}

static void require_(int ok) { if (!ok) { abort(); } } // an invariant of an accepted input

static void fuzz_one_(uint8_t selector, const uint8_t* data, size_t size) {
    if (selector == 4) {
        int ids[512];
        int n = tokenizer_encode_bytes(&tok_, (const char*)data, size, ids, 512);
        require_(n >= 2 && n <= 512 && ids[0] == tok_.cls_id && ids[n - 1] == tok_.sep_id);
        for (int i = 0; i < n; i++) { require_(ids[i] >= 0 && ids[i] < tok_.V); }
        return;
    }
    write_input_(data, size);
    if (selector == 0 || selector == 1) {
        Bert m;
        memset(&m, 0, sizeof(m));
        if (selector == 0) {
            bert_build_from_file(&m, input_path_); } else { bert_build_from_checkpoint(&m, input_path_);
        }
        require_(m.num_parameters > 0 && (m.strategy != STRATEGY_LORA || m.num_lora_parameters > 0));
        bert_free(&m);
    } else if (selector == 2) {
        Dataset ds;
        dataset_load(&ds, input_path_, MICRO.V, MICRO.NC, MICRO.P);
        DataLoader loader;
        loader_init(&loader, &ds, 4, 42);
        loader_start_epoch(&loader, 1, 1);
        int* ids = (int*)mallocCheck((size_t)4 * ds.T_max * sizeof(int));
        int* types = (int*)mallocCheck((size_t)4 * ds.T_max * sizeof(int));
        int lengths[4], labels[4], B, T, seen = 0;
        while (loader_next_batch_types(&loader, ids, types, lengths, labels, MICRO.pad_id, &B,
                                       &T)) {
            for (int i = 0; i < B * T; i++) { require_(ids[i] >= 0 && ids[i] < MICRO.V); }
            for (int i = 0; i < B * T; i++) { require_(types[i] == 0 || types[i] == 1); }
            seen += B;
        }
        require_(seen == ds.N);
        for (int k = 0; ds.label_names != NULL && k < ds.NC; k++) {
            require_(ds.label_names[k][0] != '\0');
        }
        free(ids);
        free(types);
        loader_free(&loader);
        dataset_free(&ds);
    } else if (selector == 3) {
        TrainProgress pr;
        EarlyStopping es = {3, 0, 0.0f, 0, 0};
        EpochResult* hist = train_state_load(input_path_, &state_model_, MICRO_SETTINGS, &pr, &es);
        // resume as the trainer does: the loader at the state's position, over MICRO_N examples
        static int lengths_[MICRO_N], labels_[MICRO_N], ids_[MICRO_N * 2];
        static size_t starts_[MICRO_N];
        for (int n = 0; n < MICRO_N; n++) {
            lengths_[n] = 2; labels_[n] = 0; ids_[2 * n] = 2; ids_[2 * n + 1] = 3; starts_[n] = 2 * n;
        }
        Dataset ds = {.N = MICRO_N, .T_max = 2, .NC = MICRO.NC, .V = MICRO.V, .lengths = lengths_,
                      .labels = labels_, .ids = ids_, .starts = starts_};
        DataLoader loader;
        loader_init(&loader, &ds, 4, 42);
        loader_start_epoch(&loader, pr.epoch, 1);
        loader.pos = pr.pos;
        int ids[8], lengths[4], labels[4], B, T;
        while (loader_next_batch(&loader, ids, lengths, labels, 0, &B, &T)) { require_(B >= 1 && B <= 4 && T == 2); }
        loader_free(&loader);
        arrfree(hist);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) { return 0; }
    if (setjmp(fuzz_escape) == 0) {
        fuzz_one_(data[0] % 5, data + 1, size - 1);
    }
    for (int i = 0; i < 16; i++) { // a rejected input may have left its file open
        if (fuzz_open_files[i] != NULL) { fclose(fuzz_open_files[i]); fuzz_open_files[i] = NULL; }
    }
    pending_tmp_[0] = '\0';
    pending_fp_ = NULL; // closed above, through fuzz_open_files
    return 0;
}
