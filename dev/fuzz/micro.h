/*
dev/fuzz/micro.h: a micro BERT (V 32, C 8, one layer) and the settings of its training state, shared
by the fuzz harness and the program that writes its seed corpus, so that the seeds are valid inputs
of the readers the harness calls. Include after train_bert.c.
*/
#pragma once

#define MICRO_N 10 // train examples the state's settings name (batch 4: 3 steps per epoch)
static const BertConfig MICRO = {.V = 32, .P = 16, .TV = 2, .C = 8, .L = 1, .NH = 2, .FF = 16, .NC = 6, .eps = 1e-12f,
                                 .pad_id = 0, .lower = 1, .name = "micro"};
// strategy lora, seed 42, batch 4, 3 epochs, MICRO_N examples, rank 2, lr / warmup / decay / norm / dropout 0, alpha 4
static const int32_t MICRO_SETTINGS[STATE_NUM_SETTINGS] = {STRATEGY_LORA, 42, 4, 3, MICRO_N, 2, 0, 0, 0, 0, 0,
                                                           0x40800000, 0};

// a model file of MICRO with small deterministic weights
static void micro_model_write(const char* path) {
    Bert m;
    memset(&m, 0, sizeof(m));
    m.config = MICRO;
    fill_in_parameter_sizes(m.param_info, &MICRO, STRATEGY_FULL);
    int32_t h[HEADER_INTS];
    bert_checkpoint_header_(&m, h, 0);
    for (int i = MODEL_KIND; i <= CKPT_STEP; i++) { h[i] = 0; } // a plain model file
    FILE* fp;
    fopenCheck(&fp, path, "wb");
    fwriteCheck(h, sizeof(int32_t), HEADER_INTS, fp, path);
    uint64_t stream = dropout_stream(7, 7, 7);
    size_t k = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        for (size_t j = 0; j < m.param_info[i].size; j++, k++) {
            float w = 0.04f * (dropout_uniform(stream, k) - 0.5f);
            fwriteCheck(&w, sizeof(float), 1, fp, path);
        }
    }
    fcloseCheck(fp, path);
}

// a LoRA model of MICRO set up for training, as train_state_load wants it
static void micro_lora_model(Bert* m, const char* model_path) {
    memset(m, 0, sizeof(*m));
    m->strategy = STRATEGY_LORA;
    m->lora_r = 2;
    m->lora_alpha = 4.0f;
    m->seed = 42;
    bert_build_from_file(m, model_path);
    bert_init_training(m);
}
