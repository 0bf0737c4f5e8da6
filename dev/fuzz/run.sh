#!/usr/bin/env bash
# make fuzz / fuzz-ci: dev/fuzz/fuzz_loaders for SECONDS (the argument, default 60), from a fresh
# seed corpus of valid files (dev/fuzz/make_seeds) and the corpus grown so far (out/fuzz_corpus).
# Its log is out/fuzz.log, the last lines printed; a crash's input is kept as out/fuzz_*.
cd "$(dirname "$0")/../.." || exit 1
rm -rf out/fuzz_seeds && mkdir -p out/fuzz_seeds out/fuzz_corpus || exit 1
./dev/fuzz/make_seeds out/fuzz_seeds || exit 1
ASAN_OPTIONS=detect_leaks=0 FUZZ_VOCAB=data/vocab.txt ./dev/fuzz/fuzz_loaders \
    -max_total_time="${1:-60}" -detect_leaks=0 -max_len=65536 -artifact_prefix=out/fuzz_ \
    -print_final_stats=1 out/fuzz_corpus out/fuzz_seeds > out/fuzz.log 2>&1
rc=$?; tail -n 15 out/fuzz.log; exit $rc
