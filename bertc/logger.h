/*
bertc/logger.h: what a run writes while it goes, besides stdout: TensorBoard event files (written
by hand: TFRecord framing, CRC-32C, hand-encoded protobuf; no TensorFlow needed), and log.tsv,
one machine-readable line per epoch and one for test. Every write is checked: a full disk stops
the run with a message instead of leaving a silently truncated file.

Defines: crc32c, EventWriter, events_open, events_add_scalar, events_add_restart, events_close,
log_open, log_epoch, log_test.
Used by: trainer.h; the tests read the files back (tests/test_text_in_models_out.py uses
tensorboard's own reader).
*/
#pragma once
#include <unistd.h>
#include "utils.h"

// ----------------------------------------------------------------------------
// one epoch's line of log.tsv (and of the training state's history, trainer.h)

typedef struct {
    int epoch;       // 1-based
    int step;        // optimizer steps at the end of the epoch
    int best;        // it improved the validation F1
    float train_loss;
    float val_loss, accuracy, precision, recall, f1; // validation, weighted
    float seconds;   // the epoch's training and evaluation time
} EpochResult;

// ----------------------------------------------------------------------------
// TensorBoard event files: a TFRecord stream of Event protobufs.
// https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/util/event.proto
// Each record: uint64 length, uint32 masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes.

// CRC-32C (Castagnoli), bit by bit: slow, but the records are a few dozen bytes
static inline uint32_t crc32c(const uint8_t* data, size_t n) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) { crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u))); }
    }
    return crc ^ 0xffffffffu;
}

// TFRecord's masking, so that a CRC of data containing CRCs stays well distributed
static inline uint32_t crc32c_masked(const uint8_t* data, size_t n) {
    uint32_t crc = crc32c(data, n);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// protobuf wire format: varints, and (field << 3 | wire type) keys
static inline size_t pb_varint_(uint8_t* out, uint64_t x) {
    size_t n = 0;
    while (x >= 0x80) { out[n++] = (uint8_t)(x | 0x80); x >>= 7; }
    out[n++] = (uint8_t)x;
    return n;
}
static inline size_t pb_bytes_(uint8_t* out, int field, const void* data, size_t len) { // wire type 2
    size_t n = pb_varint_(out, (uint64_t)field << 3 | 2);
    n += pb_varint_(out + n, len);
    memcpy(out + n, data, len);
    return n + len;
}

typedef struct {
    FILE* fp;
    char path[4200];
} EventWriter;

static inline void events_write_record_(EventWriter* w, const uint8_t* data, size_t len) {
    uint8_t head[12];
    uint64_t len64 = len;
    memcpy(head, &len64, 8); // little-endian, as every file here
    uint32_t crc = crc32c_masked(head, 8);
    memcpy(head + 8, &crc, 4);
    fwriteCheck(head, 1, 12, w->fp, w->path);
    fwriteCheck(data, 1, len, w->fp, w->path);
    crc = crc32c_masked(data, len);
    fwriteCheck(&crc, 4, 1, w->fp, w->path);
    fflushCheck(w->fp, w->path); // TensorBoard can follow the run, and a full disk is noticed at once
}

// Event { double wall_time = 1; int64 step = 2; oneof { string file_version = 3; Summary summary = 5;
// SessionLog session_log = 7; } }
static inline size_t event_head_(uint8_t* out, double wall_time, int64_t step) {
    size_t n = 0;
    out[n++] = 1 << 3 | 1; // wall_time, fixed64
    memcpy(out + n, &wall_time, 8);
    n += 8;
    out[n++] = 2 << 3 | 0; // step, varint
    return n + pb_varint_(out + n, (uint64_t)step);
}

// a new events.out.tfevents.<seconds>.bert_c.<pid> file in dir, starting with the file_version event
static inline void events_open(EventWriter* w, const char* dir) {
    char name[128];
    snprintf(name, sizeof(name), "events.out.tfevents.%ld.bert_c.%ld", (long)time(NULL), (long)getpid());
    path_join(w->path, sizeof(w->path), dir, name);
    fopenCheck(&w->fp, w->path, "wb");
    uint8_t buf[64];
    size_t n = event_head_(buf, wall_seconds(), 0);
    n += pb_bytes_(buf + n, 3, "brain.Event:2", 13);
    events_write_record_(w, buf, n);
}

// Summary { repeated Value value = 1; }, Value { string tag = 1; float simple_value = 2; }
static inline void events_add_scalar(EventWriter* w, const char* tag, int64_t step, float value) {
    uint8_t val[320], summary[340], buf[400];
    size_t tag_len = strlen(tag) < 256 ? strlen(tag) : 256;
    size_t nv = pb_bytes_(val, 1, tag, tag_len);
    val[nv++] = 2 << 3 | 5; // simple_value, fixed32
    memcpy(val + nv, &value, 4);
    nv += 4;
    size_t ns = pb_bytes_(summary, 1, val, nv);
    size_t n = event_head_(buf, wall_seconds(), step);
    n += pb_bytes_(buf + n, 5, summary, ns);
    events_write_record_(w, buf, n);
}

// SessionLog { status = START (1) }: TensorBoard then drops what an earlier, interrupted run logged at
// steps >= step (EventAccumulator's purge_orphaned_data), as TensorFlow does on a restart
static inline void events_add_restart(EventWriter* w, int64_t step) {
    uint8_t buf[64], slog[2] = {1 << 3 | 0, 1};
    size_t n = event_head_(buf, wall_seconds(), step);
    n += pb_bytes_(buf + n, 7, slog, 2);
    events_write_record_(w, buf, n);
}

static inline void events_close(EventWriter* w) { fcloseCheck(w->fp, w->path); }

// ----------------------------------------------------------------------------
// log.tsv: rewritten from the history when a run starts or resumes, so a resumed run's log
// equals an uninterrupted one's; then one line per epoch, and the test line at the end

#define LOG_HEADER "split\tepoch\tstep\ttrain_loss\tloss\taccuracy\tprecision\trecall\tf1\tseconds\tbest\n"

static inline void log_epoch(FILE* log, const char* path, const EpochResult* r) {
    fprintf(log, "validation\t%d\t%d\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t%d\n", r->epoch, r->step, r->train_loss,
            r->val_loss, r->accuracy, r->precision, r->recall, r->f1, r->seconds, r->best);
    fflushCheck(log, path);
}

static inline FILE* log_open(const char* path, const EpochResult* history, int nhistory) {
    FILE* log;
    fopenCheck(&log, path, "w");
    fprintf(log, LOG_HEADER);
    for (int i = 0; i < nhistory; i++) { log_epoch(log, path, &history[i]); }
    fflushCheck(log, path);
    return log;
}

// the test split's line: the best epoch, steps taken, and the run's training seconds
static inline void log_test(FILE* log, const char* path, int best_epoch, int step, float loss, float accuracy,
                            float precision, float recall, float f1, double train_seconds) {
    fprintf(log, "test\t%d\t%d\t\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t1\n", best_epoch, step, loss, accuracy, precision,
            recall, f1, train_seconds);
    fflushCheck(log, path);
}
