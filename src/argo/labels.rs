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
/// Prefix of every env var the Argo controller injects.
pub const ARGO_ENV_PREFIX: &str = "ARGO_";
/// Name of Argo's executor container that collects outputs.
pub const WAIT_CONTAINER: &str = "wait";
/// Name of Argo's executor init container.
pub const INIT_CONTAINER: &str = "init";
/// Name of the user container whose exit code the controller reads.
pub const MAIN_CONTAINER: &str = "main";
/// Volumes the Argo controller adds to step pods; never part of a key.
pub const ARGO_VOLUMES: &[&str] = &[
    "var-run-argo",
    "tmp-dir-argo",
    "input-artifacts",
    "argo-staging",
    "argo-env-config",
    "podmetadata",
    "docker-sock",
    "kubeconfig",
];
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
/// Env var telling Argo's executor to capture stdout as `outputs.result` (v3.0+).
pub const ARGO_INCLUDE_SCRIPT_OUTPUT_ENV: &str = "ARGO_INCLUDE_SCRIPT_OUTPUT";

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
