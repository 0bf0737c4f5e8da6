#!/usr/bin/env bash
# The GPU code without a GPU: the tests of `make test-emu` (all) and of `make test` (forward), on
# the programs the Makefile builds against dev/emu's CPU emulation of CUDA and cuBLAS.
#   bash dev/emu/run_tests.sh            everything (make test-emu, part of make test-all)
#   bash dev/emu/run_tests.sh forward    test_bertcu in the default thread order only (make test)
# Each test writes its log to out/*emu*.log; a summary of each is printed at the end, and the exit
# status is non-zero if any failed. Run it through make, which first builds what it runs.
set -u
cd "$(dirname "$0")/../.." || exit 1
PYTHON=${PYTHON:-python3}
MODE=${1:-all}
case $MODE in all|forward) ;; *) echo "usage: bash dev/emu/run_tests.sh [forward]"; exit 2 ;; esac

# dev/emu's fiber switch is x86-64 assembly: elsewhere say so and pass, as without a GPU
if [ "$(uname -m)" != x86_64 ]; then
    echo "test-emu SKIPPED: the CUDA emulator (dev/emu) runs on x86-64 only, not $(uname -m)"
    exit 0
fi
mkdir -p out

# each test_bertcu log: its failures, emulator reports and sanitizer reports, and its last line
summarize_bertcu() {
    for f in "$@"; do
        echo "$f:"; grep -E "^FAIL|\[emu\]|ERROR|runtime error" "$f" | head -n 20; tail -n 1 "$f"
    done
}

# make test: test_bertcu's checks on the tiny model, optimised, each block's threads in order
if [ "$MODE" = forward ]; then
    echo "test_bertcu emulated, forward order: log in out/test_bertcu_emu.log"
    ./test_bertcu_emu data tiny > out/test_bertcu_emu.log 2>&1; r=$?
    summarize_bertcu out/test_bertcu_emu.log
    exit $r
fi

# 1. the emulator's own checks: right results, and it catches the faults it claims to catch
./dev/emu/test_emu 2> /dev/null || exit 1
echo "test_bertcu emulated three ways, trainer tests on train_bertcu_emu, dev/cuda notebooks:"
echo "logs in out/*emu*.log"

# 2. in the background, one after another (the first failure ends the chain): test_bertcu
# optimised, in order and with each warp running ahead (EMU_ORDER=warps); the trainer tests
# (tests/, -k gpu) against train_bertcu_emu at its default kernel set 1 and at kernel set 4
# (dev/emu/train_bertcu_k4: set 3 and cuBLASLt); the save thread, signal and lock tests against
# train_bertcu_emu_asan. LeakSanitizer is off there: after the fibers' stack switches ASan no
# longer knows the main stack, so any exit reports false leaks.
PYTEST="$PYTHON -m pytest -q -p no:cacheprovider"
TRAINER_TESTS="tests/test_reliability.py tests/test_text_in_models_out.py"
ASAN_TESTS="gpu and (save_failing or full_disk or signal_stops or one_run)"
(./test_bertcu_emu data tiny > out/test_bertcu_emu.log 2>&1 &&
    EMU_ORDER=warps ./test_bertcu_emu data tiny > out/test_bertcu_emu_warps.log 2>&1 &&
    TRAIN_BERTCU=$PWD/train_bertcu_emu $PYTEST -k gpu $TRAINER_TESTS \
        > out/pytest_emu.log 2>&1 &&
    TRAIN_BERTCU=$PWD/dev/emu/train_bertcu_k4 $PYTEST -k gpu $TRAINER_TESTS \
        > out/pytest_emu_k4.log 2>&1 &&
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    TRAIN_BERTCU=$PWD/train_bertcu_emu_asan $PYTEST -k "$ASAN_TESTS" tests/test_reliability.py \
        > out/pytest_emu_asan.log 2>&1) & pid=$!

# 3. meanwhile: test_bertcu built with ASan and UBSan, each block's threads in reverse order (a
# missing barrier then reads other values)
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 EMU_ORDER=reverse \
    ./test_bertcu_emu_asan data tiny > out/test_bertcu_emu_asan.log 2>&1; r2=$?

# 4. then the dev/cuda notebooks' validation, in all three orders
rm -f out/notebooks_emu.log; r3=0
for order in forward reverse warps; do
    EMU_ORDER=$order make -s -C dev/cuda check-emu >> out/notebooks_emu.log 2>&1 || r3=1
done

# 5. wait for step 2, then summarise every log
wait $pid; r1=$?
summarize_bertcu out/test_bertcu_emu.log out/test_bertcu_emu_warps.log out/test_bertcu_emu_asan.log
for f in out/pytest_emu.log out/pytest_emu_k4.log out/pytest_emu_asan.log; do
    echo "$f:"; tail -n 3 "$f"
done
echo "out/notebooks_emu.log (dev/cuda; forward, reverse, warps order):"
grep -E "FAIL|check-emu" out/notebooks_emu.log
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ $r3 -eq 0 ]
