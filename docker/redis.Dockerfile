# Redis for the gateway's Redis store (SPEC 3.3), from Debian's package like
# every other dependency: db 0, no persistence, reachable on the compose
# network only (compose.yaml publishes no port).

FROM debian:12-slim

ENV DEBIAN_FRONTEND=noninteractive

RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d

# the package's own unprivileged user
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379

HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["sh", "-c", "redis-cli -p 6379 ping | grep -q PONG"]

ENTRYPOINT ["redis-server"]
CMD ["--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", \
     "--save", "", "--appendonly", "no"]
