# ngx_ai_gateway: module + ai-sim + local stack + tests.
#   make            build build/ngx_ai_gateway_module.so and build/ai-sim
#   make run        start 3 ai-sim replicas and nginx on 127.0.0.1:8080
#   make test       layering check, unit tests, fuzz smoke, integration tests
#   make test-docker  the compose stack built and checked for real
#   make clean
# Every target installs the missing Debian packages of the groups it needs
# first (scripts/deps.sh build|run|test|bench|docker).

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

.PHONY: all deps deps-build deps-run deps-test deps-bench deps-docker run \
        test check-layers test-unit test-integration test-asan fuzz-smoke bench \
        bench-charts bench-multi test-docker clean

all: deps-build
	@$(MAKE) --no-print-directory $(MODULE_SO) $(AI_SIM)

# what `make test` needs: build + run + test
deps:
	@scripts/deps.sh build run test

deps-build deps-run deps-test deps-bench deps-docker:
	@scripts/deps.sh $(patsubst deps-%,%,$@)

$(MODULE_SO): $(MODULE_SRCS) scripts/build-module.sh
	scripts/build-module.sh $(BUILD)

$(ASAN_SO): $(MODULE_SRCS) scripts/build-module.sh
	scripts/build-module.sh $(BUILD)/asan "-fsanitize=address -fno-omit-frame-pointer"

$(AI_SIM): $(SIM_SRCS)
	@mkdir -p $(BUILD)
	$(CC) $(SIM_CFLAGS) -o $@ $(filter %.c,$(SIM_SRCS)) -levent -lcjson -lm

run: all deps-run
	CACHE=$(CACHE) scripts/run.sh

include tests/unit/rules.mk

test: all deps-run deps-test
	@$(MAKE) --no-print-directory check-layers test-unit fuzz-smoke \
		test-integration

# every #include under src/ runs down the layers (DESIGN.md)
check-layers:
	scripts/check-layers.sh

test-unit: unit

fuzz-smoke: fuzz-run

test-integration: $(MODULE_SO) $(AI_SIM)
	$(PYTEST) -q -ra tests/integration

# The integration suite again, with the module built with AddressSanitizer
# and libasan preloaded into the packaged nginx; any report fails the test
# that produced it (see tests/integration/harness/nginx.py).
test-asan: all deps-run deps-test $(ASAN_SO)
	AGW_SANITIZE=asan $(PYTEST) -q -ra tests/integration

bench: all deps-run deps-bench
	/usr/bin/python3 scripts/bench.py

# the charts again from the last run's build/bench/results.json
bench-charts: deps-bench
	/usr/bin/python3 scripts/bench.py --charts-only

# docker-compose up --build, checked from outside, then down -v (needs root
# or a docker group member; starts dockerd when root and none answers)
test-docker: deps-docker
	scripts/test-docker.sh

# several gateways (SPEC 7.4): near-cache and Redis Cluster HITs side by side
bench-multi: all deps-run deps-bench
	/usr/bin/python3 scripts/bench_multi.py

clean:
	rm -rf $(BUILD) run .pytest_cache
	find tests -name __pycache__ -type d -exec rm -rf {} +
