# bert.c: BERT fine-tuning in C and CUDA.
#   make setup        install what is missing (apt: libstb-dev, clang for the fuzzer; pip: requirements.txt), then make data
#   make              the CPU programs, and the GPU ones where nvcc is found
#   make test         every test that runs without a GPU: Python, C, sanitizers, the GPU code emulated on the CPU,
#                     a fuzz run, the CUDA compile-and-link check, the GPU check's dry run
#   make train_bert   the CPU trainer            ./train_bert -h
#   make train_bertcu the GPU trainer (nvcc)     ./train_bertcu -h
# Building needs a C compiler and stb_ds (libstb-dev); OpenMP and nvcc are used when found, NO_OMP=1 turns OpenMP off.

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
CLANG ?= clang
# the emotion splits shipped in shared/ (offline); without them prepro fetches dair-ai/emotion
EMOTION_DIR := $(wildcard $(SHARED)/data/emotion)
DATA_FLAGS := $(if $(EMOTION_DIR),--data-dir $(EMOTION_DIR),)

# ---------------------------------------------------------------------------
# what this machine has

ifeq ($(NO_OMP), 1)
  $(info ✗ OpenMP: off (NO_OMP=1), the trainers' CPU loops run on one thread)
  OMP_FLAGS = -Wno-unknown-pragmas
  NVCC_HOST = -Wall,-Wextra,-Wno-unknown-pragmas
else ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo ok),ok)
  OMP_FLAGS = -fopenmp -DOMP
  NVCC_HOST = -Wall,-Wextra,-fopenmp -DOMP
  $(info ✓ OpenMP found: the CPU trainer uses every core (set OMP_NUM_THREADS to change))
else
  OMP_FLAGS = -Wno-unknown-pragmas
  NVCC_HOST = -Wall,-Wextra,-Wno-unknown-pragmas
  $(info ✗ OpenMP not found: one thread only. Debian: apt-get install libgomp1 (gcc) or libomp-dev (clang))
endif
ifeq ($(shell echo '\#include <stb/stb_ds.h>' | $(CC) $(STB_INC) -E -x c - >/dev/null 2>&1 && echo ok),ok)
  $(info ✓ stb_ds found)
else
  $(info ✗ stb_ds not found: nothing will build. Debian: apt-get install libstb-dev (or run make setup))
endif
ifneq ($(shell command -v $(NVCC) 2>/dev/null),)
  HAS_NVCC = 1
  $(info ✓ nvcc found: make builds train_bertcu and test_bertcu too)
else
  $(info ✗ nvcc not found: the GPU trainer is skipped. Install the CUDA toolkit to build it)
endif

CPU_TARGETS = train_bert test_bert test_tokenizer
GPU_TARGETS = train_bertcu test_bertcu
.PHONY: all setup deps data reference test test-python test-c test-sanitize test-emu test-emu-skipped fuzz fuzz-ci bench-step \
	cuda-check compare bench clean gpu-carry gpu-programs gpu-dry-run test-mpi
all: $(CPU_TARGETS) $(if $(HAS_NVCC),$(GPU_TARGETS),)

# ---------------------------------------------------------------------------
# C programs

HEADERS = $(wildcard bertc/*.h) train_bert.h trainer.h tokenizer.h unicode_tables.h
train_bert: train_bert.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMP_FLAGS) -o $@ $< $(LDLIBS)

test_bert: test_bert.c train_bert.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMP_FLAGS) -o $@ $< $(LDLIBS)

test_tokenizer: test_tokenizer.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# MPI (USE_MPI=1): train_bert built with mpicc splits each batch across the ranks of `mpirun -np K`
# (bertc/dist.h); the default build has no MPI. Debian: apt-get install libopenmpi-dev openmpi-bin.
# train_bert_mpi: that build beside the plain one, for tests/test_mpi.py (built wherever mpicc is)
MPICC ?= mpicc
ifeq ($(USE_MPI), 1)
  CC = $(MPICC)
  CFLAGS += -DUSE_MPI
  $(info ✓ MPI (USE_MPI=1): mpirun -np K ./train_bert splits each batch across K ranks)
endif
MPI_BIN = $(if $(shell command -v $(MPICC) 2>/dev/null),train_bert_mpi,)
train_bert_mpi: train_bert.c $(HEADERS)
	$(MPICC) $(CFLAGS) -DUSE_MPI $(OMP_FLAGS) -o $@ $< $(LDLIBS)
dev/bench_allreduce: dev/bench_allreduce.c $(HEADERS)
	$(MPICC) $(CFLAGS) -DUSE_MPI -o $@ $< $(LDLIBS)
test-mpi: train_bert train_bert_mpi data/ref_tiny_model.bin
	$(PYTHON) -m pytest -q -rs tests/test_mpi.py

# ---------------------------------------------------------------------------
# the GPU programs: one build path (nvcc, cuBLAS and cuBLASLt) for the trainer, its tests, the debug builds
# compute-sanitizer runs, the benchmark and the dev/cuda notebooks; dev/gpu_check.sh builds through these rules.
# NVCC_ARCH (sm_90; sm_80 for Ampere) picks the card, GPU_OUT a folder for the binaries (cuda-check builds each
# architecture into build/cuda-check/ARCH/), STB_INC where stb_ds is on a machine without libstb-dev (the lent
# GPU machine: STB_INC="-isystem gpu_carry").

NVCC_ARCH ?= sm_90
GPU_OUT ?=
NVCCFLAGS = -O3 -std=c++17 $(STB_INC) -Xcompiler $(NVCC_HOST)
CU_LIBS = -lcublas -lcublasLt -lm
CU_HEADERS = $(wildcard cuda/*.cuh)
CU_DEPS = train_bert.cu train_bert.c $(HEADERS) $(CU_HEADERS)
NVCC_BUILD = @mkdir -p $(@D) && echo "nvcc -arch=$(NVCC_ARCH) $< -> $@" && $(NVCC) $(NVCCFLAGS) -arch=$(NVCC_ARCH)
# debug builds for compute-sanitizer: a device synchronise and check after every kernel (-DCUDA_DEBUG), line info
DEBUG = -DCUDA_DEBUG -lineinfo
NOTEBOOKS = layernorm attention gelu adamw crossentropy global_norm embedding bias matmul
GPU_PROGRAMS = $(addprefix $(GPU_OUT),train_bertcu test_bertcu train_bertcu_debug test_bertcu_debug dev/bench_gpu \
	$(addprefix dev/cuda/,$(NOTEBOOKS)))
gpu-programs: $(GPU_PROGRAMS)
$(GPU_OUT)train_bertcu: $(CU_DEPS)
	$(NVCC_BUILD) $< -o $@ $(CU_LIBS)
$(GPU_OUT)test_bertcu: test_bert.cu $(CU_DEPS)
	$(NVCC_BUILD) $< -o $@ $(CU_LIBS)
$(GPU_OUT)train_bertcu_debug: $(CU_DEPS)
	$(NVCC_BUILD) $(DEBUG) $< -o $@ $(CU_LIBS)
$(GPU_OUT)test_bertcu_debug: test_bert.cu $(CU_DEPS)
	$(NVCC_BUILD) $(DEBUG) $< -o $@ $(CU_LIBS)
$(GPU_OUT)dev/bench_gpu: dev/bench_gpu.cu $(CU_DEPS)
	$(NVCC_BUILD) $< -o $@ $(CU_LIBS)
$(GPU_OUT)dev/cuda/%: dev/cuda/%.cu dev/cuda/common.h $(CU_DEPS)
	$(NVCC_BUILD) $< -o $@ $(CU_LIBS)

# Every GPU program compiled and linked for Hopper and Ampere, with warnings on, even where no GPU runs (a compile
# alone would not see a missing library). Any line nvcc or the linker prints fails the check.
cuda-check:
ifeq ($(HAS_NVCC),1)
	@for arch in sm_90 sm_80; do echo "cuda-check: every GPU program for $$arch (build/cuda-check/$$arch)"; \
		out=$$($(MAKE) -s -B -j2 --no-print-directory NVCC_ARCH=$$arch GPU_OUT=build/cuda-check/$$arch/ \
			gpu-programs 2>&1 | grep -v -e '^✓' -e '^✗' -e '^nvcc -arch'); \
		if [ -n "$$out" ] || [ ! -x build/cuda-check/$$arch/train_bertcu ]; then echo "$$out"; \
			echo "✗ cuda-check ($$arch): nvcc or the linker printed warnings or errors"; exit 1; fi; done
	@rm -rf build/cuda-check; echo "cuda-check: all GPU programs compiled and linked for sm_90 and sm_80"
else
	@echo "✗ nvcc not found: CUDA compile check skipped"
endif

# ---------------------------------------------------------------------------
# set-up, data and the PyTorch reference

deps:
	@if ! echo '#include <stb/stb_ds.h>' | $(CC) -E -x c - >/dev/null 2>&1; then \
		echo "installing libstb-dev (stb_ds)"; apt-get update -qq && apt-get install -y -qq libstb-dev; fi
	@if ! printf 'int LLVMFuzzerTestOneInput(const char* d, long n) { return 0; }' | \
		$(CLANG) -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then \
		echo "installing clang and its runtime (libFuzzer, for make fuzz)"; \
		apt-get update -qq && apt-get install -y -qq clang libclang-rt-dev; fi
	@if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then \
		echo "installing Open MPI (make USE_MPI=1, tests/test_mpi.py)"; \
		apt-get update -qq && apt-get install -y -qq libopenmpi-dev openmpi-bin; fi
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
	$(PYTHON) dev/tokenizer_reference.py --out $@ --vocab $(SHARED)/data/bert-base-uncased/vocab.txt \
		--data $(SHARED)/data/emotion

# ---------------------------------------------------------------------------
# tests

# dev/emu's fiber switch is x86-64 assembly: on other machines make test says so instead of running test-emu
EMU_TEST = $(if $(filter x86_64,$(shell uname -m)),test-emu,test-emu-skipped)
test: test-python test-c test-sanitize $(EMU_TEST) fuzz-ci cuda-check gpu-dry-run
	@echo "all tests passed"
test-emu-skipped:
	@echo "test-emu SKIPPED: the CUDA emulator (dev/emu) runs on x86-64 only, this machine is $$(uname -m)"

# pytest: prepro, the file formats, text in / models out, reliability (each trainer test also
# runs ./train_bertcu where a GPU is present, and says it skipped elsewhere)
test-python: data train_bert data/ref_tiny_model.bin $(MPI_BIN)
	$(PYTHON) -m pytest -q -rs tests

test-c: $(CPU_TARGETS) reference
	./test_tokenizer $(SHARED)/data/bert-base-uncased/vocab.txt data/tokenizer_ref.bin
	./test_bert

# The C tests (the tiny model's states: MiniLM adds time, not code) and short tiny-model runs of each
# strategy, the probe, classify, resume and every reliability case, built with AddressSanitizer and
# UndefinedBehaviorSanitizer; any report fails the run.
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -Wall -Wextra \
	-Wno-unknown-pragmas
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
%_asan: %.c train_bert.c $(HEADERS)
	$(CC) $(SAN_FLAGS) -o $@ $< $(LDLIBS)
test-sanitize: train_bert_asan test_bert_asan test_tokenizer_asan reference data/ref_tiny_model.bin
	$(SAN_ENV) ./test_tokenizer_asan $(SHARED)/data/bert-base-uncased/vocab.txt data/tokenizer_ref.bin
	$(SAN_ENV) ./test_bert_asan data tiny
	$(SAN_ENV) TRAIN_BERT=$(CURDIR)/train_bert_asan $(PYTHON) -m pytest -q -p no:cacheprovider \
		tests/test_reliability.py tests/test_text_in_models_out.py -k "not gpu and not export and not plot"

# The GPU code without a GPU (dev/emu): test_bert.cu, train_bert.cu and cuda/*.cuh, unmodified but for the
# launch syntax (dev/emu/cu2cpp.py), compiled as C++ against a CPU emulation of CUDA and cuBLAS
# (dev/emu/cuda_runtime.h). test_bertcu's checks on the tiny model: once optimised, once with ASan and
# UBSan and the block's threads in reverse order (a missing barrier then reads other values), once with each warp
# running ahead (EMU_ORDER=warps); the trainer tests against train_bertcu_emu, at its default kernel set 1 and at
# kernel set 4 (dev/emu/train_bertcu_k4: set 3 and cuBLASLt), the save thread, signal and lock tests against
# train_bertcu_emu_asan; the dev/cuda notebooks' validation in all three orders.
EMU_SOURCES = test_bert.cu train_bert.cu $(CU_HEADERS) train_bert.c $(HEADERS)
# -fsanitize=alignment: a vector load or store (float4, ...) at an address not aligned to its size stops the run, as
# cudaErrorMisalignedAddress stops a card (x86 itself would accept it)
EMU_FLAGS = -std=c++17 -g -Wall -Wextra -Wno-unknown-pragmas -Idev/emu -fsanitize=alignment \
	-fno-sanitize-recover=alignment
build/emu/.stamp: $(EMU_SOURCES) dev/emu/cu2cpp.py
	$(PYTHON) dev/emu/cu2cpp.py build/emu $(EMU_SOURCES)
	@touch $@
test_bertcu_emu: build/emu/.stamp $(wildcard dev/emu/*.h)
	$(CXX) $(EMU_FLAGS) -O2 -x c++ build/emu/test_bert.cu -o $@ -lm
test_bertcu_emu_asan: build/emu/.stamp $(wildcard dev/emu/*.h)
	$(CXX) $(EMU_FLAGS) $(SAN_FLAGS) -O2 -x c++ build/emu/test_bert.cu -o $@ -lm
train_bertcu_emu: build/emu/.stamp $(wildcard dev/emu/*.h)
	$(CXX) $(EMU_FLAGS) -O2 -x c++ build/emu/train_bert.cu -o $@ -lm
# the emulated GPU trainer under ASan/UBSan, for the save thread, signal and lock tests (a save failing on the thread
# gave heap-use-after-free reports here while the thread called exit()). LeakSanitizer is off for it: after the
# fibers' stack switches ASan no longer knows the main stack, so any exit reports false leaks.
EMU_ASAN_ENV = ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
EMU_ASAN_TESTS = gpu and (save_failing or full_disk or signal_stops or one_run)
train_bertcu_emu_asan: build/emu/.stamp $(wildcard dev/emu/*.h)
	$(CXX) $(EMU_FLAGS) $(SAN_FLAGS) -O2 -x c++ build/emu/train_bert.cu -o $@ -lm
dev/emu/test_emu: dev/emu/test_emu.cu $(wildcard dev/emu/*.h) dev/emu/cu2cpp.py
	$(PYTHON) dev/emu/cu2cpp.py build/emu dev/emu/test_emu.cu
	$(CXX) $(EMU_FLAGS) -O1 -x c++ build/emu/dev/emu/test_emu.cu -o $@
test-emu: dev/emu/test_emu test_bertcu_emu test_bertcu_emu_asan train_bertcu_emu train_bertcu_emu_asan data reference \
		data/ref_tiny_model.bin
	./dev/emu/test_emu 2> /dev/null
	@mkdir -p out; echo "test_bertcu emulated three ways, trainer tests on train_bertcu_emu, dev/cuda notebooks:"; \
		echo "logs in out/*emu*.log"
	@(./test_bertcu_emu data tiny > out/test_bertcu_emu.log 2>&1 && \
		EMU_ORDER=warps ./test_bertcu_emu data tiny > out/test_bertcu_emu_warps.log 2>&1 && \
		TRAIN_BERTCU=$(CURDIR)/train_bertcu_emu $(PYTHON) -m pytest -q -p no:cacheprovider -k gpu \
		tests/test_reliability.py tests/test_text_in_models_out.py > out/pytest_emu.log 2>&1 && \
		TRAIN_BERTCU=$(CURDIR)/dev/emu/train_bertcu_k4 $(PYTHON) -m pytest -q -p no:cacheprovider -k gpu \
		tests/test_reliability.py tests/test_text_in_models_out.py > out/pytest_emu_k4.log 2>&1 && \
		$(EMU_ASAN_ENV) TRAIN_BERTCU=$(CURDIR)/train_bertcu_emu_asan $(PYTHON) -m pytest -q -p no:cacheprovider \
		-k "$(EMU_ASAN_TESTS)" tests/test_reliability.py > out/pytest_emu_asan.log 2>&1) & pid=$$!; \
	$(SAN_ENV) EMU_ORDER=reverse ./test_bertcu_emu_asan data tiny > out/test_bertcu_emu_asan.log 2>&1; r2=$$?; \
	rm -f out/notebooks_emu.log; r3=0; for order in forward reverse warps; do \
		EMU_ORDER=$$order $(MAKE) -s -C dev/cuda check-emu >> out/notebooks_emu.log 2>&1 || r3=1; done; \
	wait $$pid; r1=$$?; \
	for f in out/test_bertcu_emu.log out/test_bertcu_emu_warps.log out/test_bertcu_emu_asan.log; do \
		echo "$$f:"; grep -E "^FAIL|\[emu\]|ERROR|runtime error" $$f | head -n 20; tail -n 1 $$f; done; \
	for f in out/pytest_emu.log out/pytest_emu_k4.log out/pytest_emu_asan.log; do echo "$$f:"; tail -n 3 $$f; done; \
	echo "out/notebooks_emu.log (dev/cuda; forward, reverse, warps order):"; \
	grep -E "FAIL|check-emu" out/notebooks_emu.log; \
	[ $$r1 -eq 0 ] && [ $$r2 -eq 0 ] && [ $$r3 -eq 0 ]

# Fuzzing (libFuzzer through clang): the model, checkpoint, split and state readers and the tokenizer,
# from a seed corpus of valid files (dev/fuzz/make_seeds.c). fuzz-ci runs FUZZ_SECONDS (CI: 60);
# `make fuzz FUZZ_SECONDS=3600` runs longer and keeps the corpus it grows in out/fuzz_corpus.
FUZZ_SECONDS ?= 60
dev/fuzz/fuzz_loaders: dev/fuzz/fuzz_loaders.c train_bert.c $(HEADERS)
	$(CLANG) -g -O1 -DFUZZING -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wno-unknown-pragmas \
		-o $@ $< -lm
dev/fuzz/make_seeds: dev/fuzz/make_seeds.c train_bert.c $(HEADERS)
	$(CC) -O1 -Wall -Wextra -Wno-unknown-pragmas -o $@ $< -lm
fuzz fuzz-ci: dev/fuzz/fuzz_loaders dev/fuzz/make_seeds data/vocab.txt
	rm -rf out/fuzz_seeds && mkdir -p out/fuzz_seeds out/fuzz_corpus && ./dev/fuzz/make_seeds out/fuzz_seeds
	ASAN_OPTIONS=detect_leaks=0 FUZZ_VOCAB=data/vocab.txt ./dev/fuzz/fuzz_loaders -max_total_time=$(FUZZ_SECONDS) \
		-detect_leaks=0 -max_len=65536 -artifact_prefix=out/fuzz_ -print_final_stats=1 out/fuzz_corpus out/fuzz_seeds \
		> out/fuzz.log 2>&1; \
		rc=$$?; tail -n 15 out/fuzz.log; exit $$rc

clean:
	rm -rf build
	rm -f train_bert_mpi dev/bench_allreduce
	rm -f $(CPU_TARGETS) $(GPU_PROGRAMS) *_emu dev/emu/test_emu *_asan dev/bench_step dev/bench_epoch dev/bench_matmul \
		dev/fuzz/fuzz_loaders dev/fuzz/make_seeds *.out

# ---------------------------------------------------------------------------
# benchmarks and the experiment (dev/): numbers, not tests

# dev/bench_matmul: the CPU matmul against its predecessor on BERT's layer shapes ([N tokens] [repeats])
dev/bench_step dev/bench_epoch dev/bench_matmul: dev/%: dev/%.c train_bert.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMP_FLAGS) -o $@ $< $(LDLIBS)
data/bench_bert_base.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py --random-init bert-base --no-splits --model-out $@
# an epoch's start beside the Hugging Face Trainer (dev/bench_epoch.py); bench-step: one batch beside PyTorch
bench: dev/bench_epoch dev/bench_matmul data/model.bin data/bench_bert_base.bin
	$(PYTHON) dev/bench_epoch.py --models data/model.bin,data/bench_bert_base.bin
bench-step: dev/bench_step data/model.bin data/bench_bert_base.bin
	$(PYTHON) dev/bench_step.py --model data/model.bin --model data/bench_bert_base.bin
# the three strategies with the default recipe, resumable: run it again after an interruption
compare: train_bert data/model.bin
	$(PYTHON) dev/compare.py

# ---------------------------------------------------------------------------
# what the lent GPU machine needs beside the working tree (dev/gpu_check.sh, dev/gpu_experiment.sh):
# one ignored folder to carry, about 49 MB: the splits, the vocabulary, MiniLM packed as bf16, stb_ds.h, and make
# (should a fresh image lack it). gpu-dry-run: everything the GPU check does there, here, up to the first device call
gpu-carry: data/model.bin data/ref_minilm_model.bin
	mkdir -p gpu_carry/data gpu_carry/stb gpu_carry/bin
	cp data/emotion_train.bin data/emotion_validation.bin data/emotion_test.bin data/vocab.txt gpu_carry/data/
	$(PYTHON) dev/pack_bf16.py pack data/ref_minilm_model.bin gpu_carry/data/minilm_bf16.bin
	cp /usr/include/stb/stb_ds.h gpu_carry/stb/
	cp "$$(command -v make)" gpu_carry/bin/make
	du -sh gpu_carry
gpu-dry-run: data/model.bin data/ref_minilm_model.bin
	bash dev/gpu_check.sh --dry-run
	bash dev/gpu_experiment.sh --dry-run
