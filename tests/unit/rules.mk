# Unit tests (cmocka) and the libFuzzer target for the pure library in
# $(LIB_DIR).  Included by the top-level Makefile, which defines BUILD and
# LIB_DIR.
#
#   make unit       build every tests/unit/test_*.c with all lib .c files
#                   under ASan and UBSan, run each, fail if any fails
#   make fuzz-run   build tests/fuzz/fuzz_entry.c with libFuzzer and run it
#                   for AGW_FUZZ_SECONDS over a copy of the seed corpus
#   make lib-check  compile each lib .c with nginx's warning flags and with
#                   -Wextra -std=gnu11, under gcc and clang

AGW_LIB_SRCS      := $(wildcard $(LIB_DIR)/*.c)
AGW_LIB_HDRS      := $(wildcard $(LIB_DIR)/*.h)

AGW_UNIT_CC       ?= $(CC)
AGW_UNIT_CFLAGS   ?= -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter \
                     -Werror \
                     -fsanitize=address,undefined -fno-omit-frame-pointer \
                     -fno-sanitize-recover=all
AGW_UNIT_SRCS     := $(wildcard tests/unit/test_*.c)
AGW_UNIT_BINS     := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(AGW_UNIT_SRCS))

AGW_FUZZ_CC       ?= clang
AGW_FUZZ_SECONDS  ?= 20
AGW_FUZZ_CFLAGS   ?= -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter \
                     -Werror \
                     -fsanitize=fuzzer,address,undefined \
                     -fno-sanitize-recover=all -fno-omit-frame-pointer

AGW_NGX_CFLAGS    := -W -Wall -Wpointer-arith -Wno-unused-parameter -Werror


.PHONY: unit fuzz-run lib-check


$(BUILD)/unit/%: tests/unit/%.c $(AGW_LIB_SRCS) $(AGW_LIB_HDRS)
	@mkdir -p $(@D)
	$(AGW_UNIT_CC) $(AGW_UNIT_CFLAGS) -I$(LIB_DIR) -o $@ $< $(AGW_LIB_SRCS) \
		-lcmocka

unit: $(AGW_UNIT_BINS)
	@failed=""; \
	for t in $(AGW_UNIT_BINS); do \
		echo "== $$t"; \
		$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "unit: FAILED:$$failed"; exit 1; \
	fi; \
	echo "unit: all $(words $(AGW_UNIT_BINS)) test programs passed"

$(BUILD)/fuzz/fuzz_entry: tests/fuzz/fuzz_entry.c $(AGW_LIB_SRCS) \
		$(AGW_LIB_HDRS)
	@mkdir -p $(@D)
	$(AGW_FUZZ_CC) $(AGW_FUZZ_CFLAGS) -I$(LIB_DIR) -o $@ $< $(AGW_LIB_SRCS)

fuzz-run:
	@if ! command -v $(AGW_FUZZ_CC) >/dev/null 2>&1; then \
		echo "fuzz-run: $(AGW_FUZZ_CC) not found, skipping the fuzzer"; \
		exit 0; \
	fi; \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) \
		$(BUILD)/fuzz/fuzz_entry || exit 1; \
	rm -rf $(BUILD)/fuzz/corpus; \
	mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/artifacts; \
	cp tests/fuzz/corpus/entry/* $(BUILD)/fuzz/corpus/; \
	echo "fuzz-run: $(AGW_FUZZ_SECONDS) s, log in $(BUILD)/fuzz/fuzz.log"; \
	$(BUILD)/fuzz/fuzz_entry -max_total_time=$(AGW_FUZZ_SECONDS) \
		-max_len=65536 -print_final_stats=1 \
		-artifact_prefix=$(BUILD)/fuzz/artifacts/ \
		$(BUILD)/fuzz/corpus > $(BUILD)/fuzz/fuzz.log 2>&1; \
	rc=$$?; \
	if [ $$rc -ne 0 ]; then \
		tail -n 60 $(BUILD)/fuzz/fuzz.log; \
		echo "fuzz-run: FAILED (rc $$rc), crashers in $(BUILD)/fuzz/artifacts/"; \
		exit 1; \
	fi; \
	grep -E '^(Done|stat::)' $(BUILD)/fuzz/fuzz.log; \
	echo "fuzz-run: passed"

lib-check:
	@for cc in gcc clang; do \
		command -v $$cc >/dev/null 2>&1 || continue; \
		for f in $(AGW_LIB_SRCS); do \
			$$cc -c $(AGW_NGX_CFLAGS) -o /dev/null $$f || exit 1; \
			$$cc -c -Wall -Wextra -Werror -std=gnu11 -o /dev/null $$f \
				|| exit 1; \
		done; \
		echo "lib-check: $$cc clean"; \
	done
