# ai-sim, the inference simulator (SPEC 4); compose.yaml runs three.
#
#   build  debian:12       scripts/deps.sh build (compilers and -dev
#                          packages only), then `make build/ai-sim`
#   final  debian:12-slim  libevent + libcJSON runtime libraries and the
#                          binary, run as an unprivileged user
#
# The build stage is identical in docker/nginx.Dockerfile up to the deps.sh
# line, so the two images share its cached layers (the slow one).

FROM debian:12 AS build

ENV DEBIAN_FRONTEND=noninteractive
# no package's maintainer script may start a service during the build
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d

WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh build
# only what the make line reads: editing docs or tests reuses the layers
COPY Makefile ./
COPY tests/unit/rules.mk tests/unit/sim.mk tests/unit/
COPY backends/ai-sim backends/ai-sim
RUN make build/ai-sim


FROM debian:12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-2.1-7 libcjson1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ai-sim

COPY --from=build /src/build/ai-sim /usr/local/bin/ai-sim

# every shared library the binary needs is here: fail the build, not the start
RUN ! ldd /usr/local/bin/ai-sim | grep 'not found' \
 && /usr/local/bin/ai-sim --help > /dev/null

USER ai-sim

# the port the healthcheck probes; compose.yaml overrides both per replica
ENV AI_SIM_PORT=9001
EXPOSE 9001

HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${AI_SIM_PORT} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

# SIGTERM (docker stop's default) makes ai-sim exit cleanly
ENTRYPOINT ["/usr/local/bin/ai-sim"]
CMD ["--host", "0.0.0.0", "--port", "9001", "--id", "sim-1"]
