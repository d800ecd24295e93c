# Unit tests for ai-sim's pure parts (backends/ai-sim/sim_prefix.c,
# sim_slots.c, sim_batch.c, sim_model.c: no libevent, no cJSON).  Included by the
# top-level Makefile, which defines BUILD; kept apart from rules.mk, which
# builds the module's lib/.
#
#   make sim-unit   build every tests/unit/sim/test_*.c with the pure
#                   ai-sim files under ASan and UBSan, run each, fail if
#                   any fails

SIM_DIR           := backends/ai-sim
SIM_PURE_SRCS     := $(SIM_DIR)/sim_model.c $(SIM_DIR)/sim_prefix.c \
                     $(SIM_DIR)/sim_slots.c $(SIM_DIR)/sim_batch.c
SIM_PURE_HDRS     := $(SIM_DIR)/sim_model.h $(SIM_DIR)/sim_prefix.h \
                     $(SIM_DIR)/sim_slots.h $(SIM_DIR)/sim_batch.h

SIM_UNIT_CC       ?= $(CC)
SIM_UNIT_CFLAGS   ?= -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter \
                     -Werror \
                     -fsanitize=address,undefined -fno-omit-frame-pointer \
                     -fno-sanitize-recover=all
SIM_UNIT_SRCS     := $(wildcard tests/unit/sim/test_*.c)
SIM_UNIT_BINS     := $(patsubst tests/unit/sim/%.c,$(BUILD)/unit/sim/%,\
                                $(SIM_UNIT_SRCS))


.PHONY: sim-unit


$(BUILD)/unit/sim/%: tests/unit/sim/%.c $(SIM_PURE_SRCS) $(SIM_PURE_HDRS)
	@mkdir -p $(@D)
	$(SIM_UNIT_CC) $(SIM_UNIT_CFLAGS) -I$(SIM_DIR) -o $@ $< \
		$(SIM_PURE_SRCS) -lcmocka

sim-unit: $(SIM_UNIT_BINS)
	@failed=""; \
	for t in $(SIM_UNIT_BINS); do \
		echo "== $$t"; \
		$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "sim-unit: FAILED:$$failed"; exit 1; \
	fi; \
	echo "sim-unit: all $(words $(SIM_UNIT_BINS)) test programs passed"
