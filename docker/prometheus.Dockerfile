# Prometheus for the compose profile "monitoring" (compose.yaml), from
# Debian's package like every other image: scrapes the gateway's
# /cachez?format=prometheus (docker/prometheus.yml) and records TTFT p99 by
# model and replica and the hit ratios (docker/prometheus-rules.yml).

FROM debian:12-slim

ENV DEBIAN_FRONTEND=noninteractive

RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d

COPY docker/prometheus.yml /etc/prometheus/prometheus.yml
COPY docker/prometheus-rules.yml /etc/prometheus/prometheus-rules.yml

# the package's own unprivileged user; samples are kept in the container
USER prometheus
WORKDIR /var/lib/prometheus
EXPOSE 9090

HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=10 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /-/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/var/lib/prometheus/metrics2", \
     "--storage.tsdb.retention.time=2d", \
     "--web.listen-address=0.0.0.0:9090"]
