#!/usr/bin/env bash
# The README walkthrough, end to end on the embedded store: miss → the step succeeds → record → hit.
# Uses only the stepcache binary and python3 (to play the Argo controller's part).
set -euo pipefail
cd "$(dirname "$0")/.."
SC=${STEPCACHE:-target/release/stepcache}
[ -x "$SC" ] || cargo build --release --quiet
WORK=$(mktemp -d)
export STEPCACHE_DATABASE_URL="sqlite://$WORK/walkthrough.db" STEPCACHE_SIGNING_KEY_FILE="$WORK/signing.key" STEPCACHE_LOG=warn
F=tests/fixtures/argo/v3.5-artifacts-s3.admission.json

echo "1. first run of the step: a miss; the pod is marked for recording"
"$SC" review --explain --now 2026-11-01T10:00:00Z < "$F" > "$WORK/miss.json"
python3 - "$F" "$WORK" <<'PY'
import base64, json, sys
review = json.load(open(sys.argv[1])); work = sys.argv[2]
out = json.load(open(f"{work}/miss.json"))
print("   decision:", out["explain"]["decision"], "| key:", out["explain"]["key"])
pod = json.loads(json.dumps(review["request"]["object"]))  # a copy: the rerun below starts from the unpatched pod
for op in json.loads(base64.b64decode(out["review"]["response"]["patch"])):
    # apply the JSON Patch (adds of single keys) the way the API server does
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    cur = pod
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = op["value"]
# the step runs and succeeds: what the API server returns afterwards
pod["metadata"]["uid"] = "0f6c1d9e-walkthrough"
pod["status"] = {"phase": "Succeeded", "startTime": "2026-11-01T10:00:00Z", "containerStatuses": [
    {"name": c["name"], "ready": False, "restartCount": 0, "image": c["image"], "imageID": "docker.io/x@sha256:" + "0" * 64,
     "state": {"terminated": {"exitCode": 0, "startedAt": "2026-11-01T10:00:00Z", "finishedAt": "2026-11-01T10:04:12Z"}}}
    for c in pod["spec"]["containers"]]}
json.dump(pod, open(f"{work}/succeeded-pod.json", "w"))
node = pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
# the outputs the template declares, with values, as the wait container reports them
tmpl = next(json.loads(e["value"]) for c in pod["spec"]["containers"] for e in c.get("env", []) if e["name"] == "ARGO_TEMPLATE")
declared = tmpl.get("outputs", {})
outputs = {"parameters": [{"name": p["name"], "value": "42"} for p in declared.get("parameters", [])],
           "artifacts": [{"name": a["name"], "s3": {"key": f"{pod['metadata']['name']}/{a['name']}.tgz"}} for a in declared.get("artifacts", [])]}
wf = pod["metadata"]["labels"]["workflows.argoproj.io/workflow"]
tr = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
      "metadata": {"name": node, "namespace": pod["metadata"]["namespace"],
                   "ownerReferences": [{k: o[k] for k in ("apiVersion", "kind", "name", "uid")} for o in pod["metadata"]["ownerReferences"]],
                   "labels": {"workflows.argoproj.io/workflow": wf, "workflows.argoproj.io/report-outputs-completed": "true"}},
      "outputs": outputs}
json.dump(tr, open(f"{work}/task-result.json", "w"))
# the same step in a later workflow run
again = json.loads(json.dumps(review))
again["request"]["uid"] = "second-run"
obj = again["request"]["object"]
for k in ("name",):
    obj["metadata"][k] = obj["metadata"][k].replace(wf, wf + "-again")
obj["metadata"]["labels"]["workflows.argoproj.io/workflow"] = wf + "-again"
obj["metadata"]["annotations"]["workflows.argoproj.io/node-id"] = node.replace(wf, wf + "-again")
json.dump(again, open(f"{work}/rerun.json", "w"))
PY
echo "2. the step succeeded: record its pod and WorkflowTaskResult"
"$SC" record --pod "$WORK/succeeded-pod.json" --task-result "$WORK/task-result.json" \
  | python3 -c 'import json,sys; e=json.load(sys.stdin); print("   entry", e["id"], "outputs", json.dumps(e["outputs"]))'
echo "3. the same step in a later run: a hit"
"$SC" review --explain < "$WORK/rerun.json" \
  | python3 -c 'import json,sys; x=json.load(sys.stdin)["explain"]; print("   decision:", x["decision"], "|", x["reason"]); print("   creates:", x["creates"][0]["kind"], x["creates"][0]["metadata"]["name"])'
echo "4. what operators see"
"$SC" entries list
"$SC" stats
rm -rf "$WORK"
