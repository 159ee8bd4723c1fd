#!/bin/sh
# Run the image as the chart and compose run it and check what they rely on: non-root user,
# read-only root filesystem, config from a mounted file, secrets from the environment,
# /healthz, /readyz, /metrics with the metrics token, the HEALTHCHECK, the data volume.
#   make image-check           (builds gatehouse:dev offline first; docs/deploy-compose.md#the-image)
set -eu
ENGINE=${ENGINE:-podman}
IMAGE=${IMAGE:-gatehouse:dev}
PORT=${PORT:-18089}
NAME=gatehouse-smoke-$$
WORK=$(mktemp -d)
cleanup() { $ENGINE rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/config.yaml" <<'YAML'
server: {secret: "${GATEHOUSE_SECRET}"}
admin: {key: "${GATEHOUSE_ADMIN_KEY}"}
metrics: {token: "${GATEHOUSE_METRICS_TOKEN}"}
providers: {echo: {type: echo}}
models: [{name: echo, deployments: [{provider: echo, model: echo, input_per_mtok: 0, output_per_mtok: 0}]}]
groups: {dev: {models: ["*"]}}
consumers: {me: {group: dev, keys: ["${ME_KEY}"]}}
YAML
chmod 644 "$WORK/config.yaml"
# host network: no CNI/netavark needed on a build machine; the port is passed explicitly
$ENGINE run -d --name "$NAME" --network host --read-only --tmpfs /tmp \
  -v "$WORK/config.yaml:/etc/gatehouse/config.yaml:ro" \
  -e GATEHOUSE_SECRET=smoke-hmac -e GATEHOUSE_ADMIN_KEY=smoke-admin -e GATEHOUSE_METRICS_TOKEN=smoke-metrics \
  -e ME_KEY=gh-smoke -e GATEHOUSE_PORT="$PORT" \
  "$IMAGE" serve --config /etc/gatehouse/config.yaml --host 127.0.0.1 --port "$PORT" >/dev/null 2>&1
base=http://127.0.0.1:$PORT
i=0
until curl -fsS "$base/healthz" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 60 ] || { $ENGINE logs "$NAME"; echo "FAIL: /healthz never answered"; exit 1; }; sleep 1
done
fail() { echo "FAIL: $*"; $ENGINE logs "$NAME" 2>&1 | tail -20; exit 1; }
uid=$($ENGINE exec "$NAME" id -u); [ "$uid" != 0 ] || fail "runs as root"
echo "ok: runs as uid $uid"
$ENGINE exec "$NAME" sh -c 'touch /opt/x' 2>/dev/null && fail "root filesystem is writable"
echo "ok: read-only root filesystem, data under /var/lib/gatehouse"
$ENGINE exec "$NAME" test -d /var/lib/gatehouse/journal || fail "no journal dir"
curl -fsS "$base/readyz" | grep -q '"ready"' || fail "/readyz"
echo "ok: /healthz and /readyz"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/metrics")" = 401 ] || fail "/metrics without token"
curl -fsS -H 'Authorization: Bearer smoke-metrics' "$base/metrics" | grep -q '^gatehouse_' || fail "/metrics"
echo "ok: /metrics needs the metrics token"
curl -fsS -H 'Authorization: Bearer gh-smoke' -H 'Content-Type: application/json' \
  -d '{"model":"echo","messages":[{"role":"user","content":"hi"}]}' "$base/v1/chat/completions" | grep -q 'echo: hi' \
  || fail "chat through the gateway"
echo "ok: a chat with a key from the environment"
if [ "$ENGINE" = podman ]; then $ENGINE healthcheck run "$NAME" >/dev/null 2>&1 || fail "HEALTHCHECK"; echo "ok: HEALTHCHECK"; fi
$ENGINE image inspect "$IMAGE" --format '{{json .Config.Volumes}}' | grep -q /var/lib/gatehouse || fail "no VOLUME"
echo "ok: /var/lib/gatehouse is a declared volume"
$ENGINE stop -t 30 "$NAME" >/dev/null 2>&1
echo "PASS"
