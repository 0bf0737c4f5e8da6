#!/usr/bin/env bash
# make gpu-carry: the one ignored folder the lent GPU machine needs beside the working tree
# (dev/gpu_check.sh, dev/gpu_experiment.sh), about 49 MB: the splits, the vocabulary, MiniLM packed
# as bf16, stb_ds.h, and make (should a fresh image lack it). make writes the models it reads first.
set -e
cd "$(dirname "$0")/.."
set -x
mkdir -p gpu_carry/data gpu_carry/stb gpu_carry/bin
cp data/emotion_train.bin data/emotion_validation.bin data/emotion_test.bin data/vocab.txt \
    gpu_carry/data/
${PYTHON:-python3} dev/pack_bf16.py pack data/ref_minilm_model.bin gpu_carry/data/minilm_bf16.bin
cp /usr/include/stb/stb_ds.h gpu_carry/stb/
cp "$(command -v make)" gpu_carry/bin/make
du -sh gpu_carry
