# bert.c: BERT fine-tuning in C and CUDA.
#   make setup        install what is missing (apt: libstb-dev, clang, Open MPI; pip:
#                     requirements.txt), then make data
#   make              the CPU programs, and the GPU ones where nvcc is found (NO_OMP=1: no OpenMP)
#   make test         the quick tests: pytest, the tokenizer, the C tests on the tiny model,
#                     test_bertcu on the CUDA emulator in one thread order
#   make test-all     every test that runs without a GPU (CI): make test's in full, the sanitizers,
#                     the other emulator orders, a fuzz run, cuda-check, check-headers, gpu-dry-run
#   make train_bert   the CPU trainer            ./train_bert -h
#   make train_bertcu the GPU trainer (nvcc)     ./train_bertcu -h
#   make -B train_bert USE_MPI=1   with MPI: mpirun -np K ./train_bert splits each batch across K
#   make -B train_bertcu USE_MPI=1 the same on K GPUs, one a rank, the gradients summed by NCCL
#                     (-B: make does not see a flag change; train_bert_mpi, train_bertcu_mpi build beside)
# Building needs a C compiler and stb_ds (libstb-dev); OpenMP and nvcc are used when found.

CC ?= gcc
CFLAGS ?= -O3 -march=native
CFLAGS += -Wall -Wextra
LDLIBS = -lm
PYTHON ?= python3
SHARED ?= ../shared
NVCC ?= nvcc
CLANG ?= clang
# the emotion splits shipped in shared/ (offline); without them prepro fetches dair-ai/emotion
DATA_FLAGS := $(if $(wildcard $(SHARED)/data/emotion),--data-dir $(SHARED)/data/emotion,)

include dev/detect.mk # what this machine has: OpenMP, stb_ds, nvcc, the emulator

CPU_TARGETS = train_bert test_bert test_tokenizer
GPU_TARGETS = train_bertcu test_bertcu
.PHONY: all setup deps data reference test test-all test-python test-c test-sanitize test-emu \
	fuzz fuzz-ci cuda-check check-headers compare bench bench-step clean gpu-carry gpu-programs \
	gpu-dry-run test-mpi
all: $(CPU_TARGETS) $(if $(HAS_NVCC),$(GPU_TARGETS),)

# ---------------------------------------------------------------------------
# C programs, and the CPU benchmarks (dev/bench_matmul: the CPU matmul against its predecessor)

HEADERS = $(wildcard bertc/*.h) train_bert.h trainer.h tokenizer.h unicode_tables.h
$(CPU_TARGETS) dev/bench_step dev/bench_epoch dev/bench_matmul: %: %.c train_bert.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMP_FLAGS) -o $@ $< $(LDLIBS)

include dev/mpi.mk # USE_MPI=1; train_bert_mpi, and the NCCL flags of train_bertcu_mpi: the builds for mpirun -np K
MPI_BIN = $(if $(shell command -v $(MPICC) 2>/dev/null),train_bert_mpi \
	$(if $(HAS_EMU),train_bertcu_emu_mpi),)
test-mpi: train_bert $(MPI_BIN) data/ref_tiny_model.bin
	$(PYTHON) -m pytest -q -rs tests/test_mpi.py

# ---------------------------------------------------------------------------
# the GPU programs, one build path (nvcc, cuBLAS, cuBLASLt); dev/gpu_check.sh builds through it.
# NVCC_ARCH (sm_90; sm_80 for Ampere) picks the card, GPU_OUT a folder for the binaries, STB_INC
# where stb_ds is on a machine without libstb-dev (the lent GPU machine: -isystem gpu_carry).

NVCC_ARCH ?= sm_90
NVCCFLAGS = -O3 -std=c++17 $(STB_INC) -Xcompiler $(NVCC_HOST)
CU_DEPS = train_bert.cu train_bert.c $(HEADERS) $(wildcard cuda/*.cuh)
NOTEBOOKS = $(addprefix dev/cuda/,layernorm attention gelu adamw crossentropy global_norm \
	embedding bias matmul)
GPU_PROGRAMS = $(addprefix $(GPU_OUT),$(GPU_TARGETS) train_bertcu_debug test_bertcu_debug \
	dev/bench_gpu $(NOTEBOOKS))
gpu-programs: $(GPU_PROGRAMS)
# debug builds for compute-sanitizer: a device synchronise and check after every kernel, line info
%_debug: NVCC_DEBUG = -DCUDA_DEBUG -lineinfo
NVCC_BUILD = @mkdir -p $(@D) && echo "nvcc -arch=$(NVCC_ARCH) $< -> $@" && $(NVCC) $(NVCCFLAGS) \
	-arch=$(NVCC_ARCH) $(NVCC_DEBUG) $< -o $@ -lcublas -lcublasLt -lm $(NVCC_EXTRA)
$(GPU_OUT)train_bertcu_mpi: NVCC_EXTRA = $(NVCC_NCCL)
$(addprefix $(GPU_OUT),train_bertcu train_bertcu_debug train_bertcu_mpi): train_bert.cu $(CU_DEPS)
	$(NVCC_BUILD)
$(GPU_OUT)test_bertcu $(GPU_OUT)test_bertcu_debug: test_bert.cu $(CU_DEPS)
	$(NVCC_BUILD)
$(addprefix $(GPU_OUT),dev/bench_gpu $(NOTEBOOKS)): $(GPU_OUT)%: %.cu dev/cuda/common.h $(CU_DEPS)
	$(NVCC_BUILD)

# every GPU program compiled and linked for sm_90 and sm_80, each into build/cuda-check/ARCH/
cuda-check:
	@$(if $(HAS_NVCC),bash dev/cuda_check.sh,echo "✗ nvcc not found: CUDA compile check skipped")

# each bertc/*.h compiled alone with the C compiler, each cuda/*.cuh alone with nvcc (where found)
check-headers:
	@CC="$(CC)" CFLAGS="$(CFLAGS) $(OMP_FLAGS)" NVCC="$(if $(HAS_NVCC),$(NVCC))" \
		NVCCFLAGS="$(NVCCFLAGS) -arch=$(NVCC_ARCH)" bash dev/check_headers.sh

# ---------------------------------------------------------------------------
# set-up, data and the PyTorch reference

deps:
	@CC="$(CC)" CLANG="$(CLANG)" PYTHON="$(PYTHON)" bash dev/install_deps.sh
setup: deps
	$(MAKE) data

# splits and data/model.bin: bert-base-uncased, or all-MiniLM-L6-v2 when the hub is unreachable
data: data/model.bin
data/model.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py $(DATA_FLAGS)

# the models alone: a random-init tiny BERT, MiniLM, and a random-init bert-base for the benchmarks
data/ref_tiny_model.bin: PREPRO_MODEL = --random-init tiny
data/ref_minilm_model.bin: PREPRO_MODEL = --model minilm
data/bench_bert_base.bin: PREPRO_MODEL = --random-init bert-base
data/ref_tiny_model.bin data/ref_minilm_model.bin data/bench_bert_base.bin: prepro_emotion.py
	$(PYTHON) prepro_emotion.py $(PREPRO_MODEL) --no-splits --model-out $@
# the PyTorch states the tests compare against
reference: data/ref_tiny_full.bin data/ref_minilm_full.bin data/ref_metrics.bin \
	data/tokenizer_ref.bin
data/ref_%_full.bin: data/ref_%_model.bin dev/reference.py data/model.bin
	$(PYTHON) dev/reference.py --model-bin $< --name $* --data data
data/ref_metrics.bin: dev/metrics_reference.py
	$(PYTHON) dev/metrics_reference.py --out $@
# the tokenizer's cases: shared/'s vocab and emotion texts where they are, else the vocab make data wrote
# (beside data/model.bin) and dair-ai/emotion from the hub (cached by make setup's own fetch)
TOKENIZER_VOCAB := $(or $(wildcard $(SHARED)/data/bert-base-uncased/vocab.txt),data/vocab.txt)
data/tokenizer_ref.bin: dev/tokenizer_reference.py $(if $(filter data/%,$(TOKENIZER_VOCAB)),data/model.bin)
	$(PYTHON) dev/tokenizer_reference.py --out $@ --vocab $(TOKENIZER_VOCAB) \
		$(if $(DATA_FLAGS),--data $(SHARED)/data/emotion,--data-from-hub)

# ---------------------------------------------------------------------------
# tests

# make test, the quick tier: pytest, the tokenizer, test_bert on the tiny model's states (MiniLM's
# add time, not code, and take minutes to write), test_bertcu on the CUDA emulator in its default
# thread order. make test-all (CI): every test; check-headers last.
QUICK_REFS = data/ref_tiny_full.bin data/ref_metrics.bin data/tokenizer_ref.bin
TOKENIZER_ARGS = $(TOKENIZER_VOCAB) data/tokenizer_ref.bin
test: test-python $(CPU_TARGETS) $(QUICK_REFS) $(if $(HAS_EMU),test_bertcu_emu)
	./test_tokenizer $(TOKENIZER_ARGS)
	./test_bert data tiny
	bash dev/emu/run_tests.sh forward
	@echo "quick tests passed (make test-all runs every test)"
test-all: $(if $(HAS_EMU),train_bertcu_emu) test-python test-c test-sanitize test-emu fuzz-ci \
		cuda-check gpu-dry-run check-headers
	@echo "all tests passed"

# pytest: prepro, the file formats, text in / models out, reliability (each trainer test also
# runs ./train_bertcu where a GPU is present, and says it skipped elsewhere)
test-python: data train_bert data/ref_tiny_model.bin $(MPI_BIN)
	$(PYTHON) -m pytest -q -rs tests

test-c: $(CPU_TARGETS) reference
	./test_tokenizer $(TOKENIZER_ARGS)
	./test_bert

# The C tests (the tiny model's states) and short tiny-model runs of each strategy, the probe,
# classify, resume and every reliability case, built with ASan and UBSan; any report fails the run.
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Wno-unknown-pragmas
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
%_asan: %.c train_bert.c $(HEADERS)
	$(CC) $(SAN_FLAGS) -o $@ $< $(LDLIBS)
test-sanitize: train_bert_asan test_bert_asan test_tokenizer_asan reference data/ref_tiny_model.bin
	$(SAN_ENV) ./test_tokenizer_asan $(TOKENIZER_ARGS)
	$(SAN_ENV) ./test_bert_asan data tiny
	$(SAN_ENV) TRAIN_BERT=$(CURDIR)/train_bert_asan $(PYTHON) -m pytest -q -p no:cacheprovider \
		tests/test_reliability.py tests/test_text_in_models_out.py \
		-k "not gpu and not export and not plot"

# The GPU code without a GPU: the .cu files built as C++ against dev/emu's CPU emulation of CUDA
# and cuBLAS (dev/emu/emu.mk); dev/emu/run_tests.sh runs them.
include dev/emu/emu.mk # EMU_PROGRAMS (test_bertcu_emu, train_bertcu_emu, their ASan builds)
test-emu: $(if $(HAS_EMU),dev/emu/test_emu $(EMU_PROGRAMS)) data reference data/ref_tiny_model.bin
	bash dev/emu/run_tests.sh

# Fuzzing (libFuzzer through clang): the model, checkpoint, split and state readers and the
# tokenizer, from a seed corpus of valid files (dev/fuzz/make_seeds.c). fuzz-ci runs FUZZ_SECONDS
# (CI: 60); `make fuzz FUZZ_SECONDS=3600` runs longer and keeps its corpus in out/fuzz_corpus.
FUZZ_SECONDS ?= 60
include dev/fuzz/fuzz.mk # dev/fuzz/fuzz_loaders (clang, libFuzzer) and make_seeds
fuzz fuzz-ci: dev/fuzz/fuzz_loaders dev/fuzz/make_seeds data/vocab.txt
	bash dev/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build
	rm -f $(CPU_TARGETS) $(GPU_PROGRAMS) $(EMU_PROGRAMS) dev/emu/test_emu *_asan *.out \
		train_bert_mpi train_bertcu_mpi train_bertcu_emu_mpi dev/fuzz/fuzz_loaders dev/fuzz/make_seeds \
		$(addprefix dev/bench_,step epoch matmul allreduce)

# ---------------------------------------------------------------------------
# benchmarks and the experiment (dev/): numbers, not tests

# an epoch's start beside the Hugging Face Trainer; bench-step: one batch beside PyTorch
bench: dev/bench_epoch dev/bench_matmul data/model.bin data/bench_bert_base.bin
	$(PYTHON) dev/bench_epoch.py --models data/model.bin,data/bench_bert_base.bin
bench-step: dev/bench_step data/model.bin data/bench_bert_base.bin
	$(PYTHON) dev/bench_step.py --model data/model.bin --model data/bench_bert_base.bin
# the three strategies with the default recipe, resumable: run it again after an interruption
compare: train_bert data/model.bin
	$(PYTHON) dev/compare.py

# ---------------------------------------------------------------------------
# the lent GPU machine: gpu-carry fills the folder it needs beside the tree; gpu-dry-run does here
# what dev/gpu_check.sh and dev/gpu_experiment.sh do there, up to the first device call
gpu-carry: data/model.bin data/ref_minilm_model.bin
	PYTHON=$(PYTHON) bash dev/gpu_carry.sh
gpu-dry-run: data/model.bin data/ref_minilm_model.bin
	bash dev/gpu_check.sh --dry-run
	bash dev/gpu_experiment.sh --dry-run
