#!/usr/bin/env bash
# make deps (and make setup): install what is missing. apt: libstb-dev (stb_ds), clang and its
# runtime (libFuzzer, for make fuzz), Open MPI (make USE_MPI=1, tests/test_mpi.py); pip:
# requirements.txt.
CLANG=${CLANG:-clang}
PYTHON=${PYTHON:-python3}
if ! echo '#include <stb/stb_ds.h>' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
    echo "installing libstb-dev (stb_ds)"
    apt-get update -qq && apt-get install -y -qq libstb-dev || exit 1
fi
if ! printf 'int LLVMFuzzerTestOneInput(const char* d, long n) { return 0; }' |
        $CLANG -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then
    echo "installing clang and its runtime (libFuzzer, for make fuzz)"
    apt-get update -qq && apt-get install -y -qq clang libclang-rt-dev || exit 1
fi
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then
    echo "installing Open MPI (make USE_MPI=1, tests/test_mpi.py)"
    apt-get update -qq && apt-get install -y -qq libopenmpi-dev openmpi-bin || exit 1
fi
echo "$PYTHON -m pip install -q -r requirements.txt"
$PYTHON -m pip install -q -r requirements.txt
