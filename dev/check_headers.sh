#!/usr/bin/env bash
# make check-headers: each header compiled on its own, as the only include of an otherwise empty
# file, so that it must include what it uses. bertc/*.h, train_bert.h and trainer.h with the C
# compiler ($CC $CFLAGS, syntax only); cuda/*.cuh with nvcc ($NVCC $NVCCFLAGS, compiled), skipped
# where NVCC is empty.
# One line per header, then its first errors; fails if any header fails.
cd "$(dirname "$0")/.." || exit 1
CC=${CC:-cc}
mkdir -p build/check_headers
failed=""
# check HEADER COMMAND...: run the compile, print ok or FAILED and the first lines it printed
check() {
    local h=$1; shift
    local out; out=$("$@" 2>&1); local rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then echo "ok      $h"; return; fi
    if [ $rc -eq 0 ]; then echo "ok      $h (with warnings)"; else
        echo "FAILED  $h"; failed="$failed $h"; fi
    echo "$out" | grep -E "error|warning" | head -n 3 | sed 's/^/        /'
}
for h in bertc/*.h train_bert.h trainer.h; do
    # from stdin: gcc then warns neither of "#pragma once in main file" nor of unused statics
    check "$h" sh -c "echo '#include \"$h\"' | $CC $CFLAGS -fsyntax-only -x c -"
done
if [ -n "${NVCC:-}" ]; then
    for h in cuda/*.cuh; do
        src=build/check_headers/$(basename "$h" .cuh).cu
        echo "#include \"$h\"" > "$src"
        check "$h" $NVCC $NVCCFLAGS -I. -c "$src" -o /dev/null
    done
else
    echo "✗ nvcc not found: cuda/*.cuh not checked"
fi
if [ -n "$failed" ]; then echo "check-headers FAILED:$failed"; exit 1; fi
echo "check-headers: every header compiles alone"
