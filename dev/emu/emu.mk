# dev/emu/emu.mk: the emulated GPU programs, included by the Makefile. The .cu files, unmodified but
# for the launch syntax (cu2cpp.py), are built as C++ against dev/emu's CPU emulation of CUDA and
# cuBLAS (and NCCL, over MPI). -fsanitize=alignment: a misaligned float4 load stops the run, as it stops a card (x86
# would not). Sets EMU_PROGRAMS; builds them and dev/emu/test_emu (the emulator's own test).
EMU_FLAGS = -std=c++17 -g -Wall -Wextra -Wno-unknown-pragmas -Idev/emu -fsanitize=alignment \
	-fno-sanitize-recover=alignment
EMU_SOURCES = test_bert.cu train_bert.cu $(wildcard cuda/*.cuh) train_bert.c $(HEADERS)
EMU_PROGRAMS = test_bertcu_emu test_bertcu_emu_asan train_bertcu_emu train_bertcu_emu_asan
build/emu/.stamp: $(EMU_SOURCES) dev/emu/cu2cpp.py
	$(PYTHON) dev/emu/cu2cpp.py build/emu $(EMU_SOURCES)
	@touch $@
test_bertcu_emu test_bertcu_emu_asan: EMU_MAIN = test_bert.cu
train_bertcu_emu train_bertcu_emu_asan: EMU_MAIN = train_bert.cu
%_emu_asan: EMU_SAN = $(SAN_FLAGS)
$(EMU_PROGRAMS): build/emu/.stamp $(wildcard dev/emu/*.h)
	$(CXX) $(EMU_FLAGS) $(EMU_SAN) -O2 -x c++ build/emu/$(EMU_MAIN) -o $@ -lm
# train_bertcu's ranks on the emulator (tests/test_mpi.py): dev/emu/nccl.h sums over MPI
MPICXX ?= mpicxx
train_bertcu_emu_mpi: build/emu/.stamp $(wildcard dev/emu/*.h)
	$(MPICXX) $(EMU_FLAGS) -DUSE_MPI -O2 -x c++ build/emu/train_bert.cu -o $@ -lm
dev/emu/test_emu: dev/emu/test_emu.cu $(wildcard dev/emu/*.h) dev/emu/cu2cpp.py
	$(PYTHON) dev/emu/cu2cpp.py build/emu dev/emu/test_emu.cu
	$(CXX) $(EMU_FLAGS) -O1 -x c++ build/emu/dev/emu/test_emu.cu -o $@
