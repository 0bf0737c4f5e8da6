# dev/detect.mk: what this machine has, for the Makefile (included at its top). Each finding is
# printed once, with what to install where something is missing; nothing here builds anything.
# Sets: CFLAGS (vector width), HAS_OMP and OMP_FLAGS, NVCC_HOST, HAS_NVCC, HAS_EMU.

# on x86 with AVX-512, let gcc use 512-bit vectors (it prefers 256 by default on some CPUs)
ifeq ($(shell $(CC) -mprefer-vector-width=512 -x c -E /dev/null >/dev/null 2>&1 && echo ok),ok)
  CFLAGS += -mprefer-vector-width=512
endif

OMP_TEST = echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null
ifeq ($(NO_OMP), 1)
  $(info ✗ OpenMP: off (NO_OMP=1), the trainers' CPU loops run on one thread)
else ifeq ($(shell $(OMP_TEST) && echo ok),ok)
  HAS_OMP = 1
  $(info ✓ OpenMP found: the CPU trainer uses every core (set OMP_NUM_THREADS to change))
else
  $(info ✗ OpenMP not found: one thread only. Debian: apt-get install libgomp1 (gcc), libomp-dev)
endif
OMP_FLAGS = $(if $(HAS_OMP),-fopenmp -DOMP,-Wno-unknown-pragmas)
NVCC_HOST = -Wall,-Wextra,$(if $(HAS_OMP),-fopenmp -DOMP,-Wno-unknown-pragmas)

STB_TEST = echo '\#include <stb/stb_ds.h>' | $(CC) $(STB_INC) -E -x c - >/dev/null 2>&1
ifeq ($(shell $(STB_TEST) && echo ok),ok)
  $(info ✓ stb_ds found)
else
  $(info ✗ stb_ds not found: nothing will build. Debian: apt-get install libstb-dev)
endif

ifneq ($(shell command -v $(NVCC) 2>/dev/null),)
  HAS_NVCC = 1
  $(info ✓ nvcc found: make builds train_bertcu and test_bertcu too)
else
  $(info ✗ nvcc not found: the GPU trainer is skipped. Install the CUDA toolkit to build it)
endif

# dev/emu's fiber switch is x86-64 assembly: elsewhere its programs are not built, and
# dev/emu/run_tests.sh says it skipped
HAS_EMU := $(filter x86_64,$(shell uname -m))
