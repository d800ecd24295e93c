# Unit tests (cmocka) and the libFuzzer target for the pure library in
# $(LIB_DIR).  Included by the top-level Makefile, which defines BUILD and
# LIB_DIR.
#
#   make unit       build every tests/unit/test_*.c with all lib .c files
#                   under ASan and UBSan, run each, fail if any fails
#   make fuzz-run   build every tests/fuzz/fuzz_<name>.c with libFuzzer and
#                   run each over a copy of its seed corpus
#                   tests/fuzz/corpus/<name>/, AGW_FUZZ_SECONDS in all
#                   (split evenly between the targets)
#   make lib-check  compile each lib .c with nginx's warning flags and with
#                   -Wextra -std=gnu11, under gcc and clang

AGW_LIB_SRCS      := $(wildcard $(LIB_DIR)/*.c)
AGW_LIB_HDRS      := $(wildcard $(LIB_DIR)/*.h)
# what lib/ links, as the module's config: libcrypto (SHA-256), zlib (CRC-32)
AGW_LIB_LIBS      := -lcrypto -lz

AGW_UNIT_CC       ?= $(CC)
AGW_UNIT_CFLAGS   ?= -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter \
                     -Werror \
                     -fsanitize=address,undefined -fno-omit-frame-pointer \
                     -fno-sanitize-recover=all
AGW_UNIT_SRCS     := $(wildcard tests/unit/test_*.c)
AGW_UNIT_BINS     := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(AGW_UNIT_SRCS))

AGW_FUZZ_CC       ?= clang
AGW_FUZZ_SECONDS  ?= 36
AGW_FUZZ_SRCS     := $(wildcard tests/fuzz/fuzz_*.c)
AGW_FUZZ_NAMES    := $(patsubst tests/fuzz/fuzz_%.c,%,$(AGW_FUZZ_SRCS))
AGW_FUZZ_BINS     := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(AGW_FUZZ_SRCS))
AGW_FUZZ_CFLAGS   ?= -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter \
                     -Werror \
                     -fsanitize=fuzzer,address,undefined \
                     -fno-sanitize-recover=all -fno-omit-frame-pointer

AGW_NGX_CFLAGS    := -W -Wall -Wpointer-arith -Wno-unused-parameter -Werror


.PHONY: unit fuzz-run lib-check


$(BUILD)/unit/%: tests/unit/%.c $(AGW_LIB_SRCS) $(AGW_LIB_HDRS) $(wildcard tests/ref/*.c tests/unit/*.h)
	@mkdir -p $(@D)
	$(AGW_UNIT_CC) $(AGW_UNIT_CFLAGS) -I$(LIB_DIR) -o $@ $< $(AGW_LIB_SRCS) \
		-lcmocka $(AGW_LIB_LIBS)

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

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(AGW_LIB_SRCS) $(AGW_LIB_HDRS) $(wildcard tests/ref/*.c)
	@mkdir -p $(@D)
	$(AGW_FUZZ_CC) $(AGW_FUZZ_CFLAGS) -I$(LIB_DIR) -o $@ $< $(AGW_LIB_SRCS) \
		$(AGW_LIB_LIBS)

# each target fuzzes in build/fuzz/<name>/ (corpus copy, artifacts, log),
# so a crasher names its target and the seeds in git stay as they are
fuzz-run:
	@if ! command -v $(AGW_FUZZ_CC) >/dev/null 2>&1; then \
		echo "fuzz-run: $(AGW_FUZZ_CC) not found, skipping the fuzzers"; \
		exit 0; \
	fi; \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) \
		$(AGW_FUZZ_BINS) || exit 1; \
	secs=$$(( $(AGW_FUZZ_SECONDS) / $(words $(AGW_FUZZ_NAMES)) )); \
	[ $$secs -ge 1 ] || secs=1; \
	for name in $(AGW_FUZZ_NAMES); do \
		dir=$(BUILD)/fuzz/$$name; \
		rm -rf $$dir; \
		mkdir -p $$dir/corpus $$dir/artifacts; \
		if [ -d tests/fuzz/corpus/$$name ]; then \
			cp tests/fuzz/corpus/$$name/* $$dir/corpus/ 2>/dev/null; \
		fi; \
		echo "fuzz-run: fuzz_$$name $$secs s, log in $$dir/fuzz.log"; \
		$(BUILD)/fuzz/fuzz_$$name -max_total_time=$$secs \
			-max_len=65536 -print_final_stats=1 \
			-artifact_prefix=$$dir/artifacts/ \
			$$dir/corpus > $$dir/fuzz.log 2>&1; \
		rc=$$?; \
		if [ $$rc -ne 0 ]; then \
			tail -n 60 $$dir/fuzz.log; \
			echo "fuzz-run: fuzz_$$name FAILED (rc $$rc)," \
				"crashers in $$dir/artifacts/"; \
			exit 1; \
		fi; \
		grep -E '^(Done|stat::number_of_executed_units)' $$dir/fuzz.log; \
	done; \
	echo "fuzz-run: all $(words $(AGW_FUZZ_NAMES)) targets passed"

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
