//! Every label, annotation, env var and name that Argo, KFP or stepcache puts on a pod.
//!
//! Owns: string constants only. Must not import any other module.

/// Label the Argo controller sets on every pod of a workflow (value: workflow name).
pub const WORKFLOW_LABEL: &str = "workflows.argoproj.io/workflow";
/// Label set to "false" at creation and "true" by Argo's pod cleanup.
pub const COMPLETED_LABEL: &str = "workflows.argoproj.io/completed";
/// Label present on agent and artifact-GC pods, which are not step pods.
pub const COMPONENT_LABEL: &str = "workflows.argoproj.io/component";
/// Label present when the controller runs with an instance id.
pub const INSTANCE_ID_LABEL: &str = "workflows.argoproj.io/controller-instanceid";
/// Label on WorkflowTaskResults (and ≤3.5 pod annotation) saying outputs are final.
pub const REPORT_OUTPUTS_COMPLETED: &str = "workflows.argoproj.io/report-outputs-completed";
/// Annotation with the node name (all versions).
pub const NODE_NAME_ANNOTATION: &str = "workflows.argoproj.io/node-name";
/// Annotation with the node id (v3.2+).
pub const NODE_ID_ANNOTATION: &str = "workflows.argoproj.io/node-id";
/// Annotation carrying the resolved template (v2.12–v3.1).
pub const TEMPLATE_ANNOTATION: &str = "workflows.argoproj.io/template";
/// Annotation carrying outputs for controllers ≤ v3.5.
pub const OUTPUTS_ANNOTATION: &str = "workflows.argoproj.io/outputs";
/// Env var carrying the resolved template (v3.2+).
pub const ARGO_TEMPLATE_ENV: &str = "ARGO_TEMPLATE";
/// Value of `ARGO_TEMPLATE` when the template was offloaded to a ConfigMap (v3.6+).
pub const OFFLOADED_VALUE: &str = "offloaded";
/// Name of Argo's executor container that collects outputs.
pub const WAIT_CONTAINER: &str = "wait";
/// Name of Argo's executor init container.
pub const INIT_CONTAINER: &str = "init";
/// Name of the user container whose exit code the controller reads.
pub const MAIN_CONTAINER: &str = "main";
/// v4.1 init-less layout: Argo's executor container that replaces `wait` and carries the template.
pub const SUPERVISOR_CONTAINER: &str = "supervisor";
/// v4.0+: name prefix of the init container that loads input artifacts through a plugin.
pub const INIT_ARTIFACT_PREFIX: &str = "init-artifact-";
/// v4.0+: name prefix of the sidecar that saves (v4.1 init-less: also loads) artifacts through a plugin.
pub const ARTIFACT_PLUGIN_PREFIX: &str = "artifact-plugin-";
/// v4.1+: per-run trace annotation on every pod.
pub const TRACE_ID_ANNOTATION: &str = "workflows.argoproj.io/trace-id";
/// v4.1+: per-run span annotation on every pod.
pub const SPAN_ID_ANNOTATION: &str = "workflows.argoproj.io/span-id";
/// Volume `var-run-argo` (emissary binary, status files) and where Argo mounts it.
pub const VAR_RUN_ARGO: (&str, &str) = ("var-run-argo", "/var/run/argo");
/// Volume `tmp-dir-argo` and where Argo mounts it (executor-image containers).
pub const TMP_DIR_ARGO: (&str, &str) = ("tmp-dir-argo", "/tmp");
/// Volume `argo-staging` (script source) and where Argo mounts it.
pub const ARGO_STAGING: (&str, &str) = ("argo-staging", "/argo/staging");
/// Volume `argo-env-config` (offload ConfigMap) and where Argo mounts it.
pub const ARGO_ENV_CONFIG: (&str, &str) = ("argo-env-config", "/argo/config");
/// v4.1 init-less: image volume `argoexec-bin` and where Argo mounts it.
pub const ARGOEXEC_BIN: (&str, &str) = ("argoexec-bin", "/argo-bin");
/// v2.12 docker executor: downward-API volume `podmetadata` and where Argo mounts it.
pub const PODMETADATA: (&str, &str) = ("podmetadata", "/argo/podmetadata");
/// Volume holding downloaded input artifacts (mounted per artifact path, or whole in v4.1 init-less).
pub const INPUT_ARTIFACTS_VOLUME: &str = "input-artifacts";
/// Where Argo mounts artifact-credential secret volumes on its executor containers.
pub const ARGO_SECRET_MOUNT_PREFIX: &str = "/argo/secret/";
/// Prefix of the projected service-account token volume the API server adds.
pub const KUBE_API_ACCESS_PREFIX: &str = "kube-api-access-";
/// Mount path of the service-account token; never part of a key.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Argo's API group/version for workflows and task results.
pub const ARGO_API_VERSION: &str = "argoproj.io/v1alpha1";
/// Kind of the owner of every step pod.
pub const WORKFLOW_KIND: &str = "Workflow";

/// KFP v1: staleness annotation (ISO-8601 duration).
pub const KFP_MAX_CACHE_STALENESS: &str = "pipelines.kubeflow.org/max_cache_staleness";
/// KFP v1: SDK per-step caching switch label.
pub const KFP_ENABLE_CACHING: &str = "pipelines.kubeflow.org/enable_caching";
/// KFP v1: API-server caching switch label.
pub const KFP_CACHE_ENABLED: &str = "pipelines.kubeflow.org/cache_enabled";
/// KFP v1: label KFP's UI reads to show the cache badge.
pub const KFP_REUSED_FROM_CACHE: &str = "pipelines.kubeflow.org/reused_from_cache";
/// KFP v1: label prefix that marks a pod as coming from KFP.
pub const KFP_PREFIX: &str = "pipelines.kubeflow.org/";
/// KFP: label naming the SDK that compiled the pipeline (`tfx`, `tfx-template`, ...).
pub const KFP_PIPELINE_SDK_TYPE: &str = "pipelines.kubeflow.org/pipeline-sdk-type";
/// KFP v2: annotation `"true"` on pods whose caching the KFP v2 driver owns.
pub const KFP_V2_COMPONENT: &str = "pipelines.kubeflow.org/v2_component";
/// Suffix of the TFX component entrypoint (the last element of a TFX `main` command).
pub const TFX_ENTRYPOINT_SUFFIX: &str = "tfx/orchestration/kubeflow/container_entrypoint.py";
/// Argo ≤ v2.12 annotation carrying the executor's execution control (`includeScriptOutput`).
pub const EXECUTION_CONTROL_ANNOTATION: &str = "workflows.argoproj.io/execution";

/// Author label: `"false"` opts the step out (a label so the objectSelector can skip it).
pub const ENABLED_LABEL: &str = "stepcache.dev/enabled";
/// Author annotation: maximum age of a reusable entry.
pub const MAX_CACHE_STALENESS: &str = "stepcache.dev/max-cache-staleness";
/// Author annotation: cache track.
pub const CACHE_SEED: &str = "stepcache.dev/cache-seed";
/// Author annotation: wait for an identical running step instead of running again.
pub const LATCH: &str = "stepcache.dev/latch";
/// Prefix of every stepcache label and annotation.
pub const STEPCACHE_PREFIX: &str = "stepcache.dev/";
/// The only `stepcache.dev/` names a pod author may set; every other one is stepcache's own.
pub const AUTHOR_NAMES: &[&str] = &[ENABLED_LABEL, MAX_CACHE_STALENESS, CACHE_SEED, LATCH];

/// stepcache label: the admission decision (`hit`, `miss`, `shadow-hit`, `latched`).
pub const DECISION_LABEL: &str = "stepcache.dev/decision";
/// stepcache label on miss pods: `"true"` asks the recorder to record this pod.
pub const RECORD_LABEL: &str = "stepcache.dev/record";
/// stepcache label on hit pods: the entry served.
pub const ENTRY_LABEL: &str = "stepcache.dev/entry";
/// stepcache annotation: the cache key.
pub const KEY_ANNOTATION: &str = "stepcache.dev/key";
/// stepcache annotation: HMAC binding key, namespace and pod identity.
pub const MARK_ANNOTATION: &str = "stepcache.dev/mark";
/// stepcache annotation: the staleness the step was admitted with (seconds, -1 unbounded).
pub const STALENESS_ANNOTATION: &str = "stepcache.dev/staleness";
/// stepcache annotation: the seed the step was admitted with.
pub const SEED_ANNOTATION: &str = "stepcache.dev/seed";
/// stepcache annotation on hit pods: workflow the served entry came from.
pub const SOURCE_WORKFLOW: &str = "stepcache.dev/source-workflow";
/// stepcache annotation on hit pods: node the served entry came from.
pub const SOURCE_NODE: &str = "stepcache.dev/source-node";
/// stepcache annotation on hit pods: when the served run finished (RFC 3339).
pub const SOURCE_FINISHED_AT: &str = "stepcache.dev/source-finished-at";
/// stepcache annotation on miss pods: why the step did not hit.
pub const MISS_REASON: &str = "stepcache.dev/miss-reason";

/// Env var with the node id on every container (v3.2+); fallback when the annotation is missing.
pub const ARGO_NODE_ID_ENV: &str = "ARGO_NODE_ID";
/// Env var with the comma-separated plugin sidecar names (v4.0+, on `wait`/`supervisor`).
pub const ARGO_ARTIFACT_PLUGIN_NAMES_ENV: &str = "ARGO_ARTIFACT_PLUGIN_NAMES";
/// Env var saying whether stdout is captured as `outputs.result` (`"true"` when a later step reads it).
pub const ARGO_INCLUDE_SCRIPT_OUTPUT_ENV: &str = "ARGO_INCLUDE_SCRIPT_OUTPUT";
/// v4.1+: W3C trace context, per pod, on every container.
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";
/// ConfigMap data key holding offloaded container args (same name as the env var).
pub const OFFLOADED_ARGS_KEY: &str = "ARGO_CONTAINER_ARGS_FILE";
/// Env var set when v3.7.10+/v4.0.1+ offloaded a container's args to a ConfigMap (args cleared).
pub const ARGO_CONTAINER_ARGS_FILE_ENV: &str = "ARGO_CONTAINER_ARGS_FILE";
/// Subcommand of `argoexec` that wraps every non-`wait` container's command (emissary executor).
pub const EMISSARY_SUBCOMMAND: &str = "emissary";
/// Name suffix of the executor binary that starts the emissary wrapper.
pub const ARGOEXEC_BINARY: &str = "argoexec";
/// Separator between the emissary's own options and the user's command.
pub const EMISSARY_SEPARATOR: &str = "--";
/// stepcache annotation on latched waiters: the leader pod they wait for.
pub const LATCH_LEADER: &str = "stepcache.dev/latch-leader";
/// Annotation on the WorkflowTaskResults stepcache writes: an HMAC over their namespace and name,
/// so stepcache updates only its own and never overwrites one it did not create.
pub const TASK_RESULT_PROOF: &str = "stepcache.dev/task-result-proof";
