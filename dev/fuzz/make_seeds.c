/*
dev/fuzz/make_seeds.c: writes the seed corpus of dev/fuzz/fuzz_loaders.c into a directory: one
valid file for each reader (a model file, a LoRA and a full checkpoint, a split, a training state
with history) and a few texts for the tokenizer, each prefixed by the byte that selects its reader.

    make dev/fuzz/make_seeds && ./dev/fuzz/make_seeds out/fuzz_seeds      (make fuzz does this)
*/
#define TESTING
#include "../../train_bert.c"
#include "micro.h"

// dir/name = selector byte + the bytes of src
// a split of MICRO_N examples: the header, lengths, labels, ids and (version 2) types
static void write_split_(const char* path, const int32_t* h, const int* lengths, const int* labels,
                         const int* ids, const int* types, int ntok) {
    FILE* fp;
    fopenCheck(&fp, path, "wb");
    fwriteCheck(h, sizeof(int32_t), HEADER_INTS, fp, path);
    fwriteCheck(lengths, sizeof(int), MICRO_N, fp, path);
    fwriteCheck(labels, sizeof(int), MICRO_N, fp, path);
    fwriteCheck(ids, sizeof(int), ntok, fp, path);
    if (types != NULL) { fwriteCheck(types, sizeof(int), ntok, fp, path); }
    fcloseCheck(fp, path);
}

static void seed_(const char* dir, const char* name, uint8_t selector, const char* src) {
    char path[4200];
    path_join(path, sizeof(path), dir, name);
    long n;
    char* buf = file_read_all(src, &n);
    FILE* out;
    fopenCheck(&out, path, "wb");
    fwriteCheck(&selector, 1, 1, out, path);
    fwriteCheck(buf, 1, n, out, path);
    fcloseCheck(out, path);
    free(buf);
}

static void text_seed_(const char* dir, const char* name, const char* text) {
    char path[4200];
    path_join(path, sizeof(path), dir, name);
    FILE* out;
    fopenCheck(&out, path, "wb");
    uint8_t selector = 4;
    fwriteCheck(&selector, 1, 1, out, path);
    fwriteCheck(text, 1, strlen(text), out, path);
    fcloseCheck(out, path);
}

int main(int argc, char** argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s <seed dir>\n", argv[0]); return 1; }
    const char* dir = argv[1];
    char model[4200], tmp[4200];
    path_join(model, sizeof(model), dir, "micro_model.tmpfile");
    path_join(tmp, sizeof(tmp), dir, "scratch.tmpfile");
    micro_model_write(model);
    seed_(dir, "model", 0, model);
    // a LoRA checkpoint and a full one
    Bert m;
    micro_lora_model(&m, model);
    m.step = 6;
    bert_save_checkpoint(&m, tmp, 2);
    seed_(dir, "checkpoint_lora", 1, tmp);
    Bert f;
    memset(&f, 0, sizeof(f));
    bert_build_from_file(&f, model);
    bert_save_checkpoint(&f, tmp, 1);
    seed_(dir, "checkpoint_full", 1, tmp);
    // a split of MICRO_N examples of lengths 2..6
    int32_t h[HEADER_INTS] = {0};
    int lengths[MICRO_N], labels[MICRO_N], ids[64], ntok = 0;
    for (int n = 0; n < MICRO_N; n++) {
        lengths[n] = 2 + n % 5;
        labels[n] = n % MICRO.NC;
        for (int t = 0; t < lengths[n]; t++) { ids[ntok++] = t == 0 ? 2 : 3 + (n + t) % 29; }
    }
    h[H_MAGIC] = SPLIT_MAGIC; h[H_VERSION] = 1; h[SPLIT_N] = MICRO_N; h[SPLIT_T_MAX] = 6;
    h[SPLIT_NC] = MICRO.NC; h[SPLIT_V] = MICRO.V; h[SPLIT_NTOK] = ntok; h[SPLIT_MAX_LEN] = 16;
    write_split_(tmp, h, lengths, labels, ids, NULL, ntok);
    seed_(dir, "split", 2, tmp);
    // the same as sentence pairs (version 2): token types after the ids, label names in the header
    int types[64];
    for (int n = 0, i = 0; n < MICRO_N; n++) {
        for (int t = 0; t < lengths[n]; t++, i++) { types[i] = t >= lengths[n] / 2; }
    }
    h[H_VERSION] = SPLIT_VERSION;
    char names[H_LABEL_NAMES_INTS * 4] = {0};
    int nbytes = 0;
    for (int k = 0; k < MICRO.NC; k++) {
        nbytes += snprintf(names + nbytes, 16, "label %d", k) + 1;
    }
    h[SPLIT_LABEL_BYTES] = nbytes;
    memcpy(&h[H_LABEL_NAMES], names, sizeof(names));
    write_split_(tmp, h, lengths, labels, ids, types, ntok);
    seed_(dir, "split_pairs", 2, tmp);
    // a training state: 2 epochs done, 1 step into the third, best at epoch 1
    m.step = 7;
    TrainProgress pr = {3, 4, 1, 0.5, 1.0, 3.0, 0};
    EarlyStopping es = {3, 1, 0.5f, 1, 1};
    EpochResult hist[2] = {{1, 3, 1, 1.5f, 1.4f, 0.4f, 0.3f, 0.4f, 0.5f, 1.0f},
                           {2, 6, 0, 1.2f, 1.3f, 0.4f, 0.3f, 0.4f, 0.45f, 1.0f}};
    for (size_t i = 0; i < bert_num_trainable(&m); i++) { m.v_memory[i] = 1e-6f; }
    train_state_save(tmp, &m, MICRO_SETTINGS, &pr, &es, hist, 2);
    seed_(dir, "state", 3, tmp);
    text_seed_(dir, "text_plain", "i feel wonderful today, don't you?");
    text_seed_(dir, "text_unicode", "Caf\xc3\xa9 cr\xc3\xa8me \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x8a [CLS] [MASK]x");
    text_seed_(dir, "text_invalid", "\xff\xfe\xc0\xaf\xed\xa0\x80 abc\x01\x7f");
    remove(model);
    remove(tmp);
    bert_free(&m);
    bert_free(&f);
    printf("seeds written to %s\n", dir);
    return 0;
}
