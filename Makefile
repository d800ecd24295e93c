# ngx_ai_gateway: module + ai-sim + local stack + tests.
#   make            build build/ngx_ai_gateway_module.so, build/ai-sim and
#                   build/agw-load, install uPlot for /dashboard into
#                   build/dashboard/
#   make run        start 3 ai-sim replicas and nginx on 127.0.0.1:8080
#   make bench-streams  thousands of streamed chats at once through nginx
#   make bench-balance  the balancers side by side on three ai-sim replicas
#   make test       layering check, unit tests, fuzz smoke, integration tests
#   make soak       streams cut at random: a minute (memory), two under ASan
#   make test-docker  the compose stack built and checked for real
#   make test-nginx   nginx's own test suite: stock, module loaded, module
#                     active on every request; fails on any difference
#   make clean
# Every target installs the missing Debian packages of the groups it needs
# first (scripts/deps.sh build|dashboard|run|test|bench|docker).

BUILD      := build
LIB_DIR    := ngx_ai_gateway_module/lib
MODULE_SO  := $(BUILD)/ngx_ai_gateway_module.so
ASAN_SO    := $(BUILD)/asan/ngx_ai_gateway_module.so
AI_SIM     := $(BUILD)/ai-sim
AGW_LOAD   := $(BUILD)/agw-load
# uPlot, pinned by nginx-conf/dashboard/package-lock.json (npm ci)
DASHBOARD  := $(BUILD)/dashboard/vendor/uPlot.iife.min.js
CC         ?= cc
SIM_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror
# Debian's python3 has the Debian test packages (an earlier python3 on PATH may not)
PYTEST     := /usr/bin/python3 -m pytest
# a test that hangs fails alone after this long, with every thread's stack
# (python3-pytest-timeout), instead of holding the whole run; a test that
# fails is run up to twice more (python3-pytest-rerunfailures), so a slow
# moment of a loaded 2-core machine does not fail the suite, but never one
# that failed by a sanitizer report, an [alert] of nginx or a hang: those
# fail at once.  Every failed attempt is listed at the end ("failed
# attempts") and reruns in "rerun test summary info".
PYTEST_GUARDS := --timeout=300 --reruns 2 \
	--only-rerun '\A(?![\s\S]*(nginx logged|Timeout >))'
CACHE      ?= shm

MODULE_SRCS := $(wildcard ngx_ai_gateway_module/config \
                          ngx_ai_gateway_module/src/*.[ch] \
                          ngx_ai_gateway_module/src/*/*.[ch] \
                          $(LIB_DIR)/*.[ch])
SIM_SRCS    := $(wildcard backends/ai-sim/*.[ch])
LOAD_SRCS   := $(filter-out %_test.c,$(wildcard scripts/load/*.[ch]))

.PHONY: all deps deps-build deps-dashboard deps-run deps-test deps-bench \
        deps-docker dashboard run \
        test check-layers test-unit sim-unit test-integration test-asan \
        fuzz-smoke bench bench-charts bench-multi bench-streams bench-balance \
        test-load \
        soak \
        test-docker test-nginx deps-nginx-tests clean

all: deps-build deps-dashboard
	@$(MAKE) --no-print-directory $(MODULE_SO) $(AI_SIM) $(AGW_LOAD) $(DASHBOARD)

# what `make test` needs: build + run + test
deps:
	@scripts/deps.sh build dashboard run test

deps-build deps-dashboard deps-run deps-test deps-bench deps-docker \
deps-nginx-tests:
	@scripts/deps.sh $(patsubst deps-%,%,$@)

$(MODULE_SO): $(MODULE_SRCS) scripts/build-module.sh
	scripts/build-module.sh $(BUILD)

$(ASAN_SO): $(MODULE_SRCS) scripts/build-module.sh
	scripts/build-module.sh $(BUILD)/asan "-fsanitize=address -fno-omit-frame-pointer"

$(AI_SIM): $(SIM_SRCS)
	@mkdir -p $(BUILD)
	$(CC) $(SIM_CFLAGS) -o $@ $(filter %.c,$(SIM_SRCS)) -levent -lcjson -lm

# the load client of the stream benches (scripts/load/README.md); its SSE
# scanner checked against streams cut at every byte
$(AGW_LOAD): $(LOAD_SRCS)
	@mkdir -p $(BUILD)
	$(CC) $(SIM_CFLAGS) -o $@ $(filter %.c,$(LOAD_SRCS)) -levent -lm

test-load: deps-build
	@mkdir -p $(BUILD)
	$(CC) $(SIM_CFLAGS) -o $(BUILD)/load_sse_test \
	    scripts/load/load_sse_test.c scripts/load/load_sse.c
	$(BUILD)/load_sse_test

# /dashboard's uPlot from the npm registry (the page itself is in
# nginx-conf/dashboard/; scripts/render-conf.sh puts both next to the config)
$(DASHBOARD): nginx-conf/dashboard/package.json \
              nginx-conf/dashboard/package-lock.json \
              scripts/install-dashboard.sh
	scripts/install-dashboard.sh $(BUILD)/dashboard

dashboard: deps-dashboard
	@$(MAKE) --no-print-directory $(DASHBOARD)

run: all deps-run
	CACHE=$(CACHE) scripts/run.sh

include tests/unit/rules.mk
# optional: the Docker build stages copy only Makefile and rules.mk
include tests/unit/sim.mk

test: all deps-run deps-test
	@$(MAKE) --no-print-directory check-layers test-unit fuzz-smoke \
		test-integration

# every #include under src/ runs down the layers (DESIGN.md)
check-layers:
	scripts/check-layers.sh

test-unit: unit sim-unit test-load

fuzz-smoke: fuzz-run

test-integration: $(MODULE_SO) $(AI_SIM) $(DASHBOARD)
	$(PYTEST) -q -raR $(PYTEST_GUARDS) tests/integration

# The integration suite again, with the module built with AddressSanitizer
# and libasan preloaded into the packaged nginx; any report fails the test
# that produced it (see tests/integration/harness/nginx.py).
test-asan: all deps-run deps-test $(ASAN_SO)
	AGW_SANITIZE=asan $(PYTEST) -q -raR $(PYTEST_GUARDS) tests/integration

# streams opened and cut at random (tests/integration/test_soak_streams.py;
# issue 25): a minute with the packaged build, where the workers' heap must
# come back to its level after the warm-up (ASan's quarantine hides that),
# then two minutes with the module under AddressSanitizer: no report
soak: all deps-run deps-test $(ASAN_SO)
	AGW_SOAK=1 AGW_SOAK_SECONDS=60 $(PYTEST) -q -ra -s --timeout=600 \
		tests/integration/test_soak_streams.py
	AGW_SOAK=1 AGW_SANITIZE=asan $(PYTEST) -q -ra -s --timeout=600 \
		tests/integration/test_soak_streams.py

bench: all deps-run deps-bench
	/usr/bin/python3 scripts/bench.py

# the charts again from the last run's build/bench/results.json
bench-charts: deps-bench
	/usr/bin/python3 scripts/bench.py --charts-only

# docker-compose up --build, checked from outside, then down -v (needs root
# or a docker group member; starts dockerd when root and none answers)
test-docker: deps-docker
	scripts/test-docker.sh

# nginx's own test suite (../shared/nginx-tests, see ../shared/nginx-tests.md)
# against /usr/sbin/nginx three ways: stock (the baseline: about 57 files
# fail on 1.22.1 without us, they test newer nginx), with the module loaded,
# and with it active on every request (a passing limiter, headers off).  All
# 492 files, two at a time (about 4 minutes a way here); a file that differs
# is run again alone before it counts (scripts/nginx_tests.py).
NGINX_TESTS ?= ../shared/nginx-tests

test-nginx: all deps-nginx-tests
	@test -d $(NGINX_TESTS) || { \
	    echo "test-nginx: no nginx-tests at $(NGINX_TESTS) (set NGINX_TESTS=)"; \
	    exit 1; }
	/usr/bin/python3 scripts/nginx_tests.py --suite $(NGINX_TESTS) \
	    --module $(MODULE_SO) --out $(BUILD)/nginx-tests --jobs 2

# several gateways (SPEC 7.4): near-cache and Redis Cluster HITs side by side
bench-multi: all deps-run deps-bench
	/usr/bin/python3 scripts/bench_multi.py

# thousands of streamed chats open at once through nginx + the module, each
# location kind against the same client direct to ai-sim (issue 25):
# memory per open stream, time to first event, into docs/BENCHMARKS.md.
# N = 1,000 and 5,000, two runs each: about 6 minutes here (1,000: 1.5,
# 5,000: 4.5).  BENCH_STREAMS_N=1000,5000,10000 adds one run of 10,000
# (about 4 minutes more); BENCH_STREAMS_REPS=1 halves the rest.
bench-streams: all deps-run deps-bench
	/usr/bin/python3 scripts/bench_streams.py

# round robin, least_conn, ai_gateway_balance least_tokens and prefix side
# by side on three ai-sim replicas that model inference servers (decode
# slots, prefill time, a prefix cache): shared prefixes, mixed lengths and
# a uniform load, each run on fresh replicas, two interleaved repetitions;
# TTFT percentiles, requests/s, each replica's prefix-cache hit rate, into
# docs/BENCHMARKS.md with a chart (SPEC 8.2, issue 22).  About 13 minutes
# here; not run in CI.  BENCH_BALANCE_ARGS="--reps 1" halves it.
bench-balance: all deps-run deps-bench
	/usr/bin/python3 scripts/bench_balance.py $(BENCH_BALANCE_ARGS)

clean:
	rm -rf $(BUILD) run .pytest_cache
	find tests -name __pycache__ -type d -exec rm -rf {} +
