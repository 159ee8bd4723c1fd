# Gatehouse gateway image. Two stages: wheels and a venv are built in the first, only the venv
# and the runtime libraries reach the second. No `# syntax=` line: it makes BuildKit fetch a
# frontend image, which fails offline.
#
#   podman build --format docker -t gatehouse:dev .      (or: docker build -t gatehouse:dev .)
#   docker run -p 8080:8080 -v $PWD/config.yaml:/etc/gatehouse/config.yaml:ro \
#     -e GATEHOUSE_ADMIN_KEY=... gatehouse:dev
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# Offline builds install from a wheelhouse mounted into the build (docs/deploy-compose.md#the-image):
#   podman build -v $PWD/.cache/wheels:/wheels:ro --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels .
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
WORKDIR /src
RUN python3 -m venv /opt/gatehouse
COPY pyproject.toml README.md ./
COPY src ./src
# Every extra: the image serves any config (Postgres, Redis, Bedrock, JWT, OpenTelemetry).
RUN /opt/gatehouse/bin/pip install --no-compile '.[all]' \
 && /opt/gatehouse/bin/python -m compileall -q /opt/gatehouse/lib

FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="A private LLM gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /var/lib/gatehouse/journal /etc/gatehouse \
 && chown -R 10001:10001 /var/lib/gatehouse
COPY --from=build /opt/gatehouse /opt/gatehouse
ENV PATH=/opt/gatehouse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEHOUSE_HOME=/var/lib/gatehouse \
    GATEHOUSE_CONFIG=/etc/gatehouse/config.yaml \
    GATEHOUSE_PORT=8080
# The only writable place: the data dir with the metering journal (SIGKILL-safe write-ahead
# records) and, without a database URL, the SQLite file. The root filesystem can be read-only.
VOLUME ["/var/lib/gatehouse"]
WORKDIR /var/lib/gatehouse
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEHOUSE_PORT', '8080'), timeout=2)"]
# Config from a mounted file (GATEHOUSE_CONFIG); secrets from the environment through the
# config's ${VAR} references (GATEHOUSE_ADMIN_KEY, GATEHOUSE_SECRET, GATEHOUSE_DATABASE_URL, ...).
ENTRYPOINT ["gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
