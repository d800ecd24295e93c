# nginx + ngx_ai_gateway_module, the gateway of `docker compose up`.
#
# Same route as the native build (SPEC 1): the module is built on Debian 12
# against nginx-dev's source tree and loaded into Debian 12's packaged nginx.
#
#   build  debian:12       scripts/deps.sh build (compilers and -dev
#                          packages only, what `make` itself installs),
#                          then `make build/ngx_ai_gateway_module.so`
#   final  debian:12-slim  packaged nginx (the exact version the module was
#                          built against) + the .so + nginx-conf/ +
#                          scripts/render-conf.sh + envsubst + uPlot; no
#                          compilers, no node
#
# uPlot (for /dashboard) is not fetched here: `make` installs it on the host
# into build/dashboard/vendor/ (scripts/install-dashboard.sh: npm ci, the
# integrity hash of nginx-conf/dashboard/package-lock.json checked), and
# .dockerignore lets those files, and nothing else of build/, into the
# context.  npm inside the image would need the registry's (or a proxy's)
# CA in the image; the host's npm already has it.  Without them the build
# stops and says to run `make` first.
#
# The build stage is identical in docker/ai-sim.Dockerfile up to the deps.sh
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
COPY scripts/build-module.sh scripts/build-module.sh
COPY ngx_ai_gateway_module ngx_ai_gateway_module
RUN make build/ngx_ai_gateway_module.so \
 && dpkg-query -W -f='${Version}' nginx > build/nginx.version


FROM debian:12-slim

ENV DEBIAN_FRONTEND=noninteractive

COPY --from=build /src/build/nginx.version /tmp/nginx.version

# nginx pinned to the version whose nginx-dev tree built the module;
# libhiredis0.14 is the runtime half of libhiredis-dev (the Redis store);
# libssl3 and zlib1g, the module's libcrypto and zlib, come with nginx.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d \
 && v=$(cat /tmp/nginx.version) \
 && apt-get update \
 && apt-get install -y --no-install-recommends "nginx=$v" gettext-base libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /tmp/nginx.version \
 && rm -f /etc/nginx/sites-enabled/default

COPY --from=build /src/build/ngx_ai_gateway_module.so /usr/lib/nginx/modules/ngx_ai_gateway_module.so
COPY nginx-conf/ /opt/ai-gateway/nginx-conf/
COPY scripts/render-conf.sh /opt/ai-gateway/scripts/render-conf.sh
# The entrypoint and uPlot from `make` (see the top): with a file that is
# always there beside it, a missing uPlot is an empty wildcard match rather
# than COPY's "file not found", and the RUN below says what to do.
COPY docker/nginx-entrypoint.sh build/dashboard/vendor/uPlot* /tmp/agw-copy/

# uPlot where render-conf.sh looks for it, as in a checkout after `make`.
# The module must load into this nginx binary (same version, --with-compat
# signature, every shared library present): fail the build, not the start.
RUN mv /tmp/agw-copy/nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint.sh \
 && if ! [ -f /tmp/agw-copy/uPlot.iife.min.js ] || ! [ -f /tmp/agw-copy/uPlot.min.css ]; then \
        echo 'nginx image: build/dashboard/vendor/ (uPlot for /dashboard) is not in the build context: run `make` (or scripts/install-dashboard.sh build/dashboard) in the checkout first' >&2; \
        exit 1; \
    fi \
 && mkdir -p /opt/ai-gateway/build/dashboard \
 && mv /tmp/agw-copy /opt/ai-gateway/build/dashboard/vendor \
 && printf 'load_module %s;\nevents {}\n' /usr/lib/nginx/modules/ngx_ai_gateway_module.so \
        > /tmp/load-test.conf \
 && nginx -t -q -e /dev/stderr -c /tmp/load-test.conf \
 && rm /tmp/load-test.conf \
 && mkdir -p /var/cache/ai-gateway \
 && chmod 755 /var/cache/ai-gateway

# The variables of nginx-conf/gateway.conf.template (scripts/render-conf.sh
# lists them all); compose.yaml sets the upstreams and the cache store.
# The master runs as root (binds, opens the logs) and the workers as
# www-data; logs go to the container's stdout/stderr.
ENV AGW_MODULE=/usr/lib/nginx/modules/ngx_ai_gateway_module.so \
    AGW_LISTEN=0.0.0.0:8080 \
    AGW_USER="user www-data;" \
    AGW_ACCESS_LOG=/dev/stdout \
    AGW_ERROR_LOG=/dev/stderr \
    AGW_WORKERS=auto \
    AGW_PREFIX=/var/cache/ai-gateway/

EXPOSE 8080

# graceful: requests in flight (streams included) finish
STOPSIGNAL SIGQUIT

# GET /healthz over bash's /dev/tcp: no HTTP client needed in the image
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${AGW_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/usr/local/bin/nginx-entrypoint.sh"]
