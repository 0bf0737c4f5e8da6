# bert.c: BERT fine-tuning in C and CUDA.
#   make setup        install what is missing (apt: libstb-dev; pip: requirements.txt), then `make data`
#   make train_bert   the CPU trainer            ./train_bert -h
#   make test         every test that runs without a GPU (and compiles the CUDA code if nvcc exists)
# `make` alone builds with only a C compiler; OpenMP, stb_ds and nvcc are detected below.

CC ?= gcc
CFLAGS ?= -O3 -march=native
CFLAGS += -Wall -Wextra
# on x86 with AVX-512, let gcc use 512-bit vectors (it prefers 256 by default on some CPUs)
ifeq ($(shell $(CC) -mprefer-vector-width=512 -x c -E /dev/null >/dev/null 2>&1 && echo ok),ok)
  CFLAGS += -mprefer-vector-width=512
endif
LDLIBS = -lm
PYTHON ?= python3
SHARED ?= ../shared
NVCC ?= nvcc
# the emotion splits shipped in shared/ (offline); without them prepro fetches dair-ai/emotion
EMOTION_DIR := $(wildcard $(SHARED)/data/emotion)
DATA_FLAGS := $(if $(EMOTION_DIR),--data-dir $(EMOTION_DIR),)

# ---------------------------------------------------------------------------
# what this machine has

ifeq ($(NO_OMP), 1)
  $(info ✗ OpenMP: off (NO_OMP=1), the CPU trainer runs on one thread)
else ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo ok),ok)
  CFLAGS += -fopenmp -DOMP
  $(info ✓ OpenMP found: the CPU trainer uses every core (set OMP_NUM_THREADS to change))
else
  $(info ✗ OpenMP not found: one thread only. Debian: apt-get install libgomp1 (gcc) or libomp-dev (clang))
endif
ifeq ($(shell echo '\#include <stb/stb_ds.h>' | $(CC) -E -x c - >/dev/null 2>&1 && echo ok),ok)
  $(info ✓ stb_ds found)
else
  $(info ✗ stb_ds not found: train_bert will not build. Debian: apt-get install libstb-dev (or run make setup))
endif
ifneq ($(shell command -v $(NVCC) 2>/dev/null),)
  HAS_NVCC = 1
  $(info ✓ nvcc found: make train_bertcu test_bertcu build the GPU trainer)
else
  $(info ✗ nvcc not found: the GPU trainer is skipped. Install the CUDA toolkit to build it)
endif

CPU_TARGETS = train_bert test_bert test_tokenizer
.PHONY: all setup deps data reference test test-python test-c cuda-check compare bench clean
all: $(CPU_TARGETS)

# ---------------------------------------------------------------------------
# C programs

train_bert: train_bert.c tokenizer.h unicode_tables.h
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test_bert: test_bert.c train_bert.c tokenizer.h unicode_tables.h
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test_tokenizer: test_tokenizer.c tokenizer.h unicode_tables.h
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# ---------------------------------------------------------------------------
# set-up, data and the PyTorch reference

deps:
	@if ! echo '#include <stb/stb_ds.h>' | $(CC) -E -x c - >/dev/null 2>&1; then \
		echo "installing libstb-dev (stb_ds)"; apt-get update -qq && apt-get install -y -qq libstb-dev; fi
	$(PYTHON) -m pip install -q -r requirements.txt

setup: deps
	$(MAKE) data

# splits and data/model.bin: bert-base-uncased, or all-MiniLM-L6-v2 when the hub is unreachable
data: data/model.bin
data/model.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py $(DATA_FLAGS)

REF_STATES = data/ref_tiny_full.bin data/ref_minilm_full.bin data/ref_metrics.bin data/tokenizer_ref.bin
reference: $(REF_STATES)
data/ref_tiny_model.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py --random-init tiny --no-splits --model-out $@
data/ref_minilm_model.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py --model minilm --no-splits --model-out $@
data/ref_%_full.bin: data/ref_%_model.bin dev/reference.py data/model.bin
	$(PYTHON) dev/reference.py --model-bin $< --name $* --data data
data/ref_metrics.bin: dev/metrics_reference.py
	$(PYTHON) dev/metrics_reference.py --out $@
data/tokenizer_ref.bin: dev/tokenizer_reference.py
	$(PYTHON) dev/tokenizer_reference.py --out $@

# ---------------------------------------------------------------------------
# tests

test: test-python test-c cuda-check
	@echo "all tests passed"

test-python: data
	$(PYTHON) -m pytest -q tests

test-c: $(CPU_TARGETS) reference
	./test_tokenizer
	./test_bert

clean:
	rm -f $(CPU_TARGETS) train_bertcu test_bertcu dev/bench_step *.out

# ---------------------------------------------------------------------------
# the GPU trainer (needs nvcc and cuBLAS; runs on sm_90 by default, override NVCC_ARCH)

NVCC_ARCH ?= sm_90
NVCCFLAGS = -O3 -std=c++17 -Xcompiler -Wall,-Wextra,-fopenmp -DOMP
CU_HEADERS = $(wildcard cuda/*.cuh)
train_bertcu: train_bert.cu train_bert.c tokenizer.h unicode_tables.h $(CU_HEADERS)
	$(NVCC) $(NVCCFLAGS) -arch=$(NVCC_ARCH) $< -o $@ -lcublas -lm
test_bertcu: test_bert.cu train_bert.cu train_bert.c tokenizer.h unicode_tables.h $(CU_HEADERS)
	$(NVCC) $(NVCCFLAGS) -arch=$(NVCC_ARCH) $< -o $@ -lcublas -lm

# every .cu file must compile for Hopper and Ampere with warnings on, even where no GPU runs
CU_SOURCES = train_bert.cu test_bert.cu
cuda-check:
ifeq ($(HAS_NVCC),1)
	@for f in $(CU_SOURCES); do for arch in sm_90 sm_80; do \
		echo "nvcc -arch=$$arch $$f"; \
		$(NVCC) $(NVCCFLAGS) -arch=$$arch -c $$f -o /dev/null 2>&1 | tee cuda-check.out; \
		if [ -s cuda-check.out ]; then echo "✗ $$f: nvcc printed warnings or errors"; rm -f cuda-check.out; exit 1; fi; \
	done; done; rm -f cuda-check.out
	$(MAKE) -B -C dev/cuda ARCH=sm_90 && $(MAKE) -B -C dev/cuda ARCH=sm_80 && $(MAKE) -C dev/cuda clean
else
	@echo "✗ nvcc not found: CUDA compile check skipped"
endif

# ---------------------------------------------------------------------------
# benchmarks (dev/): numbers, not tests

dev/bench_step: dev/bench_step.c train_bert.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
data/bench_bert_base.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py --random-init bert-base --no-splits --model-out $@
bench: dev/bench_step data/model.bin data/bench_bert_base.bin
	$(PYTHON) dev/bench_step.py --model data/model.bin --model data/bench_bert_base.bin
compare: train_bert data/model.bin
	$(PYTHON) dev/compare.py

# ---------------------------------------------------------------------------
# text in, models out: classify mode, dev/export_hf.py, TensorBoard events, progress line, resume
# (tests/test_text_in_models_out.py runs ./train_bert on the tiny model; `make test` includes it)

test-python: train_bert data/ref_tiny_model.bin
.PHONY: test-features
test-features: train_bert data/ref_tiny_model.bin
	$(PYTHON) -m pytest -q tests/test_text_in_models_out.py
