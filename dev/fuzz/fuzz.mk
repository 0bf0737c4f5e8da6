# dev/fuzz/fuzz.mk: the fuzzer and its seed maker, included by the Makefile. fuzz_loaders feeds
# libFuzzer's inputs to the model, checkpoint, split and state readers and the tokenizer, under
# ASan and UBSan; make_seeds writes the valid files the corpus starts from.
dev/fuzz/fuzz_loaders: dev/fuzz/fuzz_loaders.c train_bert.c $(HEADERS)
	$(CLANG) -g -O1 -DFUZZING -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Wno-unknown-pragmas -o $@ $< -lm
dev/fuzz/make_seeds: dev/fuzz/make_seeds.c train_bert.c $(HEADERS)
	$(CC) -O1 -Wall -Wextra -Wno-unknown-pragmas -o $@ $< -lm
