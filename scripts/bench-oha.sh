#!/usr/bin/env bash
# Webhook latency with an independent open-loop load generator (oha), in one run:
# `serve --noop` (baseline) and `serve --noop --noop-lookup` (the floor: baseline plus one store
# lookup) against `serve` on the given store, miss and hit bodies, alternating
# rounds so machine noise hits both. Prints one line per phase and the p50/p99 ratios.
#
#   cargo install oha --locked --root /work/tools/oha      # once; any oha >= 1.4 on PATH or in $OHA
#   scripts/bench-oha.sh [DATABASE_URL]                   # default: postgres://postgres@127.0.0.1:5432/stepcache_bench
#
# Env: RATE (1000), DURATION (20s), ROUNDS (3), FILL (rows added with `stepcache-bench --fill`
# before measuring; 0 keeps the store as it is), STEPCACHE (binary, target/release/stepcache),
# STEPCACHE_BENCH (target/release/stepcache-bench), TRACE (a file: the subject's per-admission JSON
# log, `admission` events with elapsed_ms and store_ms, and the store flushes, for a stage split).
set -euo pipefail
cd "$(dirname "$0")/.."
SC=${STEPCACHE:-target/release/stepcache}
BENCH=${STEPCACHE_BENCH:-target/release/stepcache-bench}
OHA=${OHA:-$(command -v oha || echo /work/tools/oha/bin/oha)}
DB=${1:-postgres://postgres@127.0.0.1:5432/stepcache_bench}
RATE=${RATE:-1000} DURATION=${DURATION:-20s} ROUNDS=${ROUNDS:-3} FILL=${FILL:-0}
[ -x "$SC" ] && [ -x "$BENCH" ] || cargo build --release --quiet
[ -x "$OHA" ] || { echo "oha not found (set OHA)" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export STEPCACHE_SIGNING_KEY_FILE="$WORK/signing.key" STEPCACHE_LOG=warn STEPCACHE_DATABASE_URL="$DB"
case $DB in postgres://*) psql "${DB%/*}/postgres" -qc "CREATE DATABASE ${DB##*/}" 2>/dev/null || true ;; esac
"$SC" certs --out "$WORK/certs" --dns 127.0.0.1 >/dev/null
"$SC" migrate >/dev/null
if [ "$FILL" -gt 0 ]; then
  "$BENCH" --database-url "$DB" --fill "$FILL" --store-lookups 100 >/dev/null
fi

# Bodies: a hit (the Argo 3.3 fixture's step recorded once through `stepcache record`, then
# admitted from another run) and a miss (the same template with one more argument: nothing
# records it, so every request misses and is explained against the recorded entry).
# A run-unique argument gives this run's bodies keys no earlier run recorded.
python3 - tests/fixtures/argo/v3.3-container-params.admission.json "$WORK/base.json" "$(basename "$WORK")" <<'PY'
import json, sys
review = json.load(open(sys.argv[1]))
for c in review["request"]["object"]["spec"]["containers"]:
    if c["name"] == "main":
        c.setdefault("args", []).append(f"--bench-run={sys.argv[3]}")
json.dump(review, open(sys.argv[2], "w"))
PY
F=$WORK/base.json
"$SC" review --explain < "$F" > "$WORK/miss-review.json"
python3 - "$F" "$WORK" <<'PY'
import base64, json, sys
review = json.load(open(sys.argv[1])); work = sys.argv[2]
miss = json.loads(json.dumps(review))  # another key of the same template: explained against the recorded entry
miss["request"]["uid"] = "bench-oha-miss"
for c in miss["request"]["object"]["spec"]["containers"]:
    if c["name"] == "main":
        c.setdefault("args", []).append("--bench-variant=miss")
json.dump(miss, open(f"{work}/miss.json", "w"))
out = json.load(open(f"{work}/miss-review.json"))
pod = json.loads(json.dumps(review["request"]["object"]))
for op in json.loads(base64.b64decode(out["review"]["response"]["patch"])):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    cur = pod
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = op["value"]
pod["metadata"]["uid"] = "bench-oha-" + work.rstrip("/").rsplit("/", 1)[-1]
pod["status"] = {"phase": "Succeeded", "startTime": "2026-11-01T10:00:00Z", "containerStatuses": [
    {"name": c["name"], "ready": False, "restartCount": 0, "image": c["image"], "imageID": "docker.io/x@sha256:" + "0" * 64,
     "state": {"terminated": {"exitCode": 0, "startedAt": "2026-11-01T10:00:00Z", "finishedAt": "2026-11-01T10:04:12Z"}}}
    for c in pod["spec"]["containers"]]}
json.dump(pod, open(f"{work}/succeeded-pod.json", "w"))
node = pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
tmpl = next(json.loads(e["value"]) for c in pod["spec"]["containers"] for e in c.get("env", []) if e["name"] == "ARGO_TEMPLATE")
declared = tmpl.get("outputs", {})
outputs = {"parameters": [{"name": p["name"], "value": "42"} for p in declared.get("parameters", [])],
           "artifacts": [{"name": a["name"], "s3": {"key": f"x/{a['name']}.tgz"}} for a in declared.get("artifacts", [])]}
wf = pod["metadata"]["labels"]["workflows.argoproj.io/workflow"]
tr = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
      "metadata": {"name": node, "namespace": pod["metadata"]["namespace"],
                   "labels": {"workflows.argoproj.io/workflow": wf, "workflows.argoproj.io/report-outputs-completed": "true"},
                   # The recorder takes outputs only from a task result its pod's Workflow owns.
                   "ownerReferences": [o for o in pod["metadata"].get("ownerReferences", []) if o.get("kind") == "Workflow"]},
      "outputs": outputs}
json.dump(tr, open(f"{work}/task-result.json", "w"))
again = json.loads(json.dumps(review))
again["request"]["uid"] = "bench-oha-hit"
obj = again["request"]["object"]
obj["metadata"]["name"] = obj["metadata"]["name"].replace(wf, wf + "-again")
obj["metadata"]["labels"]["workflows.argoproj.io/workflow"] = wf + "-again"
obj["metadata"]["annotations"]["workflows.argoproj.io/node-id"] = node.replace(wf, wf + "-again")
json.dump(again, open(f"{work}/hit.json", "w"))
PY
"$SC" record --pod "$WORK/succeeded-pod.json" --task-result "$WORK/task-result.json" >/dev/null
decision=$("$SC" review --explain < "$WORK/hit.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["explain"]["decision"])')
[ "$decision" = hit ] || { echo "hit body is a $decision, not a hit" >&2; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {  # name port [flags...]
  local name=$1 p=$2; shift 2
  "$SC" serve --listen "127.0.0.1:$p" --metrics-listen "" --kube off --recorder false \
    --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" "$@" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sk "https://127.0.0.1:$p/healthz" >/dev/null && return; sleep 0.1; done
  echo "$name did not start" >&2; exit 1
}
NOOP_PORT=$(port); start noop "$NOOP_PORT" --noop
# The floor: the no-op plus one store lookup per admission (the same query, a key nobody has).
FLOOR_PORT=$(port); start floor "$FLOOR_PORT" --noop --noop-lookup
SUBJ_PORT=$(port)
if [ -n "${TRACE:-}" ]; then
  STEPCACHE_LOG=info,stepcache::cli::serve=debug STEPCACHE_LOG_FORMAT=json start serve "$SUBJ_PORT" >"$TRACE" 2>&1
else
  start serve "$SUBJ_PORT"
fi

for kind in miss hit; do  # the subject's real answer to each body
  got=$(curl -sk -H 'Content-Type: application/json' --data-binary @"$WORK/$kind.json" "https://127.0.0.1:$SUBJ_PORT/mutate" \
    | python3 -c 'import base64,json,sys; r=json.load(sys.stdin)["response"]; p=base64.b64decode(r.get("patch","")).decode(); print("hit" if "\"hit\"" in p else "miss" if "\"miss\"" in p else "none")')
  [ "$got" = "$kind" ] || { echo "serve answers the $kind body with a $got" >&2; exit 1; }
done

phase() {  # label port body -> "label p50 p99 rps non-200"
  local label=$1 p=$2 body=$3
  "$OHA" --no-tui --output-format json -z "$DURATION" -q "$RATE" --latency-correction -c 64 \
    -m POST -H 'Content-Type: application/json' -D "$body" --insecure "https://127.0.0.1:$p/mutate" > "$WORK/out.json"
  python3 - "$label" "$WORK/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
codes = r.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if k != "200") + sum(v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline")
pct = r["latencyPercentiles"]
print(f'{sys.argv[1]:<12} p50 {pct["p50"]*1000:8.3f} ms  p99 {pct["p99"]*1000:8.3f} ms  rps {r["summary"]["requestsPerSec"]:8.1f}  non-200 {bad}')
PY
}
# Warm both servers (TLS sessions, statement cache, nearest-entry cache).
DURATION=3s phase warm-noop "$NOOP_PORT" "$WORK/miss.json" >/dev/null
DURATION=3s phase warm-floor "$FLOOR_PORT" "$WORK/miss.json" >/dev/null
DURATION=3s phase warm-serve "$SUBJ_PORT" "$WORK/miss.json" >/dev/null
for r in $(seq "$ROUNDS"); do
  for kind in miss hit; do
    phase "noop-$kind" "$NOOP_PORT" "$WORK/$kind.json"
    phase "floor-$kind" "$FLOOR_PORT" "$WORK/$kind.json"
    phase "serve-$kind" "$SUBJ_PORT" "$WORK/$kind.json"
  done
done | tee "$WORK/phases.txt"
python3 - "$WORK/phases.txt" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    rows[f[0]].append((float(f[2]), float(f[5])))
for kind in ("miss", "hit"):
    for base in ("noop", "floor"):
        n, s = rows[f"{base}-{kind}"], rows[f"serve-{kind}"]
        ratios99 = [b[1] / a[1] for a, b in zip(n, s)]
        ratios50 = [b[0] / a[0] for a, b in zip(n, s)]
        print(f"{kind} vs {base}: p99 ratio per round {', '.join(f'{x:.2f}' for x in ratios99)}; p50 ratio {', '.join(f'{x:.2f}' for x in ratios50)}")
PY
