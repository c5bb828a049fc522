#!/usr/bin/env bash
# Pod-create latency through a real kube-apiserver (the kit in ../shared/envtest), in one run:
# no webhook, `serve --noop` registered, `serve --noop --noop-lookup` registered (the floor: the
# no-op plus one store lookup per admission), `serve` registered. Load: oha, open loop with latency
# correction, POSTing an Argo 3.3 step pod (generateName, so every create is a new pod) to
# /api/v1/namespaces/bench/pods. Rounds alternate the order of the three modes.
#
#   cargo install oha --locked --root /work/tools/oha      # once
#   scripts/bench-apiserver.sh [DATABASE_URL]             # default: sqlite in a temp dir
#
# Env: RATE (100 creates/s), DURATION (20s), ROUNDS (2), STEPCACHE (target/release/stepcache),
# ENVTEST_KIT (../shared/envtest), API_PORT/ETCD_PORT/PEER_PORT (27443/32379/32380: away from
# the kit's defaults, which tests may be using).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SC=${STEPCACHE:-$ROOT/target/release/stepcache}
OHA=${OHA:-$(command -v oha || echo /work/tools/oha/bin/oha)}
KIT=${ENVTEST_KIT:-$ROOT/../shared/envtest}
RATE=${RATE:-100} DURATION=${DURATION:-20s} ROUNDS=${ROUNDS:-2}
export API_PORT=${API_PORT:-27443} ETCD_PORT=${ETCD_PORT:-32379} PEER_PORT=${PEER_PORT:-32380}
[ -x "$SC" ] || cargo build --release --quiet
[ -x "$OHA" ] || { echo "oha not found (set OHA)" >&2; exit 1; }
[ -d "$KIT" ] || { echo "envtest kit not found at $KIT (set ENVTEST_KIT)" >&2; exit 1; }
WORK=$(mktemp -d)
export RUN=$WORK/envtest
DB=${1:-sqlite://$WORK/bench.db}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$KIT/down.sh" --rm >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
STEPCACHE_ENVTEST_DIR=$("$KIT/setup.sh" | tail -1)
export STEPCACHE_ENVTEST_DIR
"$KIT/up.sh" >/dev/null
"$KIT/ns.sh" bench >/dev/null
# shellcheck source=/dev/null
. "$KIT/env.sh"
API="https://127.0.0.1:$API_PORT"
TOKEN=$(cut -d, -f1 "$RUN/pki/tokens.csv")

export STEPCACHE_SIGNING_KEY_FILE="$WORK/signing.key" STEPCACHE_LOG=warn
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {  # name port metrics-port [flags...]
  local name=$1 p=$2 m=$3; shift 3
  "$SC" serve --listen "127.0.0.1:$p" --metrics-listen "127.0.0.1:$m" --kube off --recorder false \
    --database-url "$DB" --tls-cert "$RUN/pki/webhook.crt" --tls-key "$RUN/pki/webhook.key" "$@" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -s --cacert "$RUN/pki/ca.crt" "https://127.0.0.1:$p/healthz" >/dev/null && return; sleep 0.1; done
  echo "$name did not start" >&2; exit 1
}
NOOP_PORT=$(port) NOOP_M=$(port); start noop "$NOOP_PORT" "$NOOP_M" --noop
FLOOR_PORT=$(port) FLOOR_M=$(port); start floor "$FLOOR_PORT" "$FLOOR_M" --noop --noop-lookup
SUBJ_PORT=$(port) SUBJ_M=$(port); start serve "$SUBJ_PORT" "$SUBJ_M"

# The pod: the Argo 3.3 fixture's pod in namespace bench, named by the API server.
python3 - tests/fixtures/argo/v3.3-container-params.admission.json "$WORK/pod.json" <<'PY'
import json, sys
pod = json.load(open(sys.argv[1]))["request"]["object"]
pod["metadata"].pop("name", None)
pod["metadata"]["generateName"] = "bench-step-"
pod["metadata"]["namespace"] = "bench"
pod.pop("status", None)
json.dump(pod, open(sys.argv[2], "w"))
PY

CA_B64=$(base64 -w0 < "$RUN/pki/ca.crt")
WH=/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations
admissions() {  # metrics port -> admissions answered so far
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^stepcache_admission_requests_total/ {s += $2} END {print s + 0}'
}
register() {  # mode: none | noop | floor | serve
  api "$WH/stepcache-bench" -X DELETE >/dev/null 2>&1 || true
  local p m
  case $1 in none) sleep 3; return ;; noop) p=$NOOP_PORT m=$NOOP_M ;; floor) p=$FLOOR_PORT m=$FLOOR_M ;; serve) p=$SUBJ_PORT m=$SUBJ_M ;; esac
  api "$WH" -X POST -H 'Content-Type: application/json' -d @- >/dev/null <<JSON
{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration",
 "metadata":{"name":"stepcache-bench"},
 "webhooks":[{"name":"stepcache.bench.local","admissionReviewVersions":["v1"],"sideEffects":"NoneOnDryRun",
   "failurePolicy":"Ignore","timeoutSeconds":5,"reinvocationPolicy":"Never",
   "clientConfig":{"url":"https://127.0.0.1:$p/mutate","caBundle":"$CA_B64"},
   "rules":[{"operations":["CREATE"],"apiGroups":[""],"apiVersions":["v1"],"resources":["pods"]}]}]}
JSON
  # Effective when a dry-run create reaches this server (the API server's informer lags a moment).
  local before; before=$(admissions "$m")
  for _ in $(seq 100); do
    api "/api/v1/namespaces/bench/pods?dryRun=All" -X POST -H 'Content-Type: application/json' -d @"$WORK/pod.json" >/dev/null
    [ "$(admissions "$m")" != "$before" ] && return
    sleep 0.2
  done
  echo "webhook $1 never called" >&2; exit 1
}
sum_count() {  # histogram name [label regex], metrics text on stdin -> "<sum seconds> <count>"
  awk -v h="$1" -v f="${2:-}" '$1 ~ "^" h "_(sum|count)" && $1 ~ f {
    if ($1 ~ /_sum/) s += $2; else c += $2 } END {printf "%s %s\n", s + 0, c + 0}'
}
webhook_calls() {  # the API server's own view of its calls to the bench webhook
  api /metrics | sum_count apiserver_admission_webhook_admission_duration_seconds 'name="stepcache.bench.local"'
}
decided() {  # metrics port -> the server's own admission time
  curl -s "http://127.0.0.1:$1/metrics" | sum_count stepcache_admission_duration_seconds
}
phase() {  # mode round
  local m=""
  case $1 in noop) m=$NOOP_M ;; floor) m=$FLOOR_M ;; serve) m=$SUBJ_M ;; esac
  local before own=""; before=$(webhook_calls); [ -n "$m" ] && own=$(decided "$m")
  "$OHA" --no-tui --output-format json -z "$DURATION" -q "$RATE" --latency-correction -c 32 \
    -m POST -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" -D "$WORK/pod.json" --insecure \
    "$API/api/v1/namespaces/bench/pods" > "$WORK/out.json"
  python3 - "$1" "$WORK/out.json" "$before" "$(webhook_calls)" "${own:-0 0}" "$([ -n "$m" ] && decided "$m" || echo 0 0)" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
def mean_ms(before, after):  # two "<sum seconds> <count>" readings -> mean ms between them
    (s0, c0), (s1, c1) = (map(float, x.split()) for x in (before, after))
    return f"{(s1 - s0) / (c1 - c0) * 1000:.3f}" if c1 > c0 else "-"
call, own = mean_ms(*sys.argv[3:5]), mean_ms(*sys.argv[5:7])
codes = r.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if k != "201") + sum(v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline")
pct = r["latencyPercentiles"]
print(f'{sys.argv[1]:<6} p50 {pct["p50"]*1000:8.3f} ms  p99 {pct["p99"]*1000:8.3f} ms  rps {r["summary"]["requestsPerSec"]:7.1f}  non-201 {bad}  webhook call mean {call} ms (API server), decision mean {own} ms (webhook)')
PY
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="none noop floor serve"; else order="serve floor noop none"; fi
  for mode in $order; do register "$mode"; phase "$mode"; done
done | tee "$WORK/phases.txt"
python3 - "$WORK/phases.txt" <<'PY'
import sys, collections, statistics
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    rows[f[0]].append((float(f[2]), float(f[5])))
med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in rows.items()}
for a, b in (("serve", "none"), ("serve", "noop"), ("serve", "floor"), ("floor", "none"), ("noop", "none")):
    print(f"{a}/{b}: p99 {med[a][1] / med[b][1]:.2f}x  p50 {med[a][0] / med[b][0]:.2f}x  (medians over rounds)")
PY
