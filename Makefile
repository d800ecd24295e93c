# ngx_ai_gateway: module + ai-sim + local stack + tests.
#   make            build build/ngx_ai_gateway_module.so and build/ai-sim
#   make run        start 3 ai-sim replicas and nginx on 127.0.0.1:8080
#   make test       unit tests, fuzz smoke, integration tests (+ ASan run)
#   make clean
# Every target installs missing Debian packages first (scripts/deps.sh).

BUILD      := build
LIB_DIR    := ngx_ai_gateway_module/lib
MODULE_SO  := $(BUILD)/ngx_ai_gateway_module.so
ASAN_SO    := $(BUILD)/asan/ngx_ai_gateway_module.so
AI_SIM     := $(BUILD)/ai-sim
CC         ?= cc
SIM_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror
# Debian's python3 has the Debian test packages (an earlier python3 on PATH may not)
PYTEST     := /usr/bin/python3 -m pytest
CACHE      ?= shm

MODULE_SRCS := $(wildcard ngx_ai_gateway_module/config \
                          ngx_ai_gateway_module/src/*.[ch] \
                          ngx_ai_gateway_module/src/*/*.[ch] \
                          $(LIB_DIR)/*.[ch])
SIM_SRCS    := $(wildcard backends/ai-sim/*.[ch])

.PHONY: all deps run test test-unit test-integration test-asan fuzz-smoke \
        bench bench-multi clean

all: deps
	@$(MAKE) --no-print-directory $(MODULE_SO) $(AI_SIM)

deps:
	@scripts/deps.sh

$(MODULE_SO): $(MODULE_SRCS) scripts/build-module.sh
	scripts/build-module.sh $(BUILD)

$(ASAN_SO): $(MODULE_SRCS) scripts/build-module.sh
	scripts/build-module.sh $(BUILD)/asan "-fsanitize=address -fno-omit-frame-pointer"

$(AI_SIM): $(SIM_SRCS)
	@mkdir -p $(BUILD)
	$(CC) $(SIM_CFLAGS) -o $@ $(filter %.c,$(SIM_SRCS)) -levent -lcjson -lm

run: all
	CACHE=$(CACHE) scripts/run.sh

include tests/unit/rules.mk

test: all
	@$(MAKE) --no-print-directory test-unit fuzz-smoke test-integration

test-unit: unit

fuzz-smoke: fuzz-run

test-integration: $(MODULE_SO) $(AI_SIM)
	$(PYTEST) -q -ra tests/integration

# The integration suite again, with the module built with AddressSanitizer
# and libasan preloaded into the packaged nginx; any report fails the test
# that produced it (see tests/integration/harness/nginx.py).
test-asan: all $(ASAN_SO)
	AGW_SANITIZE=asan $(PYTEST) -q -ra tests/integration

bench: all
	/usr/bin/python3 scripts/bench.py

# several gateways (SPEC 7.4): near-cache and Redis Cluster HITs side by side
bench-multi: all
	/usr/bin/python3 scripts/bench_multi.py

clean:
	rm -rf $(BUILD) run .pytest_cache
	find tests -name __pycache__ -type d -exec rm -rf {} +
