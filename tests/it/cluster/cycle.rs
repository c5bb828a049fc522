//! The cycle for every Argo layout (miss → recorded → hit with a task result the real CRD
//! accepts and an Event), and what must not happen on the way: dry runs that create, hits across
//! namespaces, webhooks called for opted-out pods.

use super::*;

/// miss → marked → succeeded + outputs → recorded → rerun is a hit with a valid task result and
/// an Event; returns the hit pod.
pub(super) async fn cycle(env: &Env, fixture_name: &str, value: &str) -> Value {
    let review = fixture(fixture_name);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{fixture_name}: {}", first["metadata"]);
    assert_eq!(label(&first, "stepcache.dev/record"), Some("true"), "{fixture_name}");
    succeed(&env.client, &first).await;
    let tr = report_outputs(&env.client, &first, value).await;
    recorded(&env.serve, 1.0).await;

    let again = rerun(&review, "second");
    let want = pod_object(&again, &env.ns);
    let hit = env.create(&again).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{fixture_name}: {}", hit["metadata"]);
    // The pod keeps its identity: name, owner, Argo labels and annotations, service account.
    assert_eq!(hit["metadata"]["name"], want["metadata"]["name"]);
    assert_eq!(hit["metadata"]["ownerReferences"], want["metadata"]["ownerReferences"]);
    assert_eq!(hit["spec"]["serviceAccountName"], want["spec"]["serviceAccountName"]);
    for (k, v) in want["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(&hit["metadata"]["labels"][k], v, "{fixture_name}: label {k}");
    }
    let names: Vec<&str> =
        hit["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["main"], "{fixture_name}: one no-op container");
    assert!(hit["spec"].get("initContainers").is_none(), "{fixture_name}");

    let wf = want["metadata"]["labels"]["workflows.argoproj.io/workflow"].as_str().unwrap().to_owned();
    if uses_annotation(&want) {
        let ann = hit["metadata"]["annotations"]["workflows.argoproj.io/outputs"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(ann).unwrap(), tr["outputs"], "{fixture_name}");
    }
    let node = task_result_for(&want, value)["metadata"]["name"].as_str().unwrap().to_owned();
    if stepcache::rewrite::uses_task_result(layout(&want)) {
        // Stored by the real CRD: it passed validation, with what the controller selects on.
        let got =
            env.task_results().get(&node).await.unwrap_or_else(|e| panic!("{fixture_name}: task result {node}: {e}"));
        let got = serde_json::to_value(got).unwrap();
        assert_eq!(got["outputs"], tr["outputs"], "{fixture_name}: {}", env.serve.logs());
        assert_eq!(got["metadata"]["labels"]["workflows.argoproj.io/workflow"], wf.as_str());
        assert_eq!(got["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "true");
        let owner = &got["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Workflow");
        assert_eq!(owner["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(owner["name"], wf.as_str());
        assert_eq!(owner["uid"], want["metadata"]["ownerReferences"][0]["uid"]);
    }
    // The provenance Event on the Workflow (posted off the response path).
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let ev = eventually("the StepServedFromCache event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().find(|e| e.involved_object.name.as_deref() == Some(wf.as_str()))
    })
    .await;
    assert_eq!(ev.reason.as_deref(), Some("StepServedFromCache"));
    assert!(ev.message.as_deref().unwrap_or("").contains("saved 4m12s"), "{:?}", ev.message);
    assert_eq!(
        ev.involved_object.uid.as_ref(),
        want["metadata"]["ownerReferences"][0]["uid"].as_str().map(String::from).as_ref()
    );
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Workflow"));
    hit
}

/// One test per Argo layout and output kind in the fixtures.
macro_rules! cycle_tests {
    ($($name:ident: $fixture:literal,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(env) = Env::new("cycle", ServeOptions::default()).await else { return };
            cycle(&env, $fixture, "150").await;
            env.done().await;
        }
    )*};
}

cycle_tests! {
    cycle_v2_12_template_annotation: "v2.12-template-annotation.admission.json",
    cycle_v3_3_container_params: "v3.3-container-params.admission.json",
    cycle_v3_5_artifacts_s3: "v3.5-artifacts-s3.admission.json",
    cycle_v3_6_container_params: "v3.6-container-params.admission.json",
    cycle_v3_7_script: "v3.7-script.admission.json",
    cycle_kfp_v1_staleness: "kfp-v1-staleness.admission.json",
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_dry_run_of_a_hit_creates_nothing() {
    let Some(env) = Env::new("dryrun", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;
    let again = rerun(&review, "dry");
    let pod: Pod = serde_json::from_value(pod_object(&again, &env.ns)).unwrap();
    let dry = env.pods().create(&PostParams { dry_run: true, ..Default::default() }, &pod).await.unwrap();
    let dry = serde_json::to_value(dry).unwrap();
    assert_eq!(label(&dry, "stepcache.dev/decision"), Some("hit"), "the dry run shows the decision");
    // Give a background side effect the time it would take, then look for any.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let name = dry["metadata"]["name"].as_str().unwrap();
    assert!(env.pods().get_opt(name).await.unwrap().is_none(), "no pod");
    assert!(env.task_results().get_opt(&node_of(&dry)).await.unwrap().is_none(), "no task result");
    assert!(events_about(&env.client, &env.ns, &workflow_of(&dry)).await.is_empty(), "no event");
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_step_in_another_namespace_misses() {
    let Some(kit) = kit::shared() else { return };
    let client = kit.client().await;
    let a = kit.namespace(&client, "scope-a", &[]).await;
    let b = kit.namespace(&client, "scope-b", &[]).await;
    let env = Env::attach(kit, client, &[&a, &b], ServeOptions::default()).await;
    let review = record_once(&env, V36, "7").await;
    let elsewhere = create_pod(&env.client, &b, &rerun(&review, "other")).await;
    assert_eq!(label(&elsewhere, "stepcache.dev/decision"), Some("miss"), "{}", elsewhere["metadata"]);
    let here = env.create(&rerun(&review, "same")).await;
    assert_eq!(label(&here, "stepcache.dev/decision"), Some("hit"), "{}", here["metadata"]);
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_and_non_argo_pods_never_reach_the_webhook() {
    let Some(env) = Env::new("optout", ServeOptions::default()).await else { return };
    let review = fixture(V36);
    let before = admissions(&env.serve.metrics().await);
    let mut opted_out = pod_object(&rerun(&review, "optout"), &env.ns);
    opted_out["metadata"]["labels"]["stepcache.dev/enabled"] = json!("false");
    let mut agent = pod_object(&rerun(&review, "agent"), &env.ns);
    agent["metadata"]["labels"]["workflows.argoproj.io/component"] = json!("agent");
    let mut plain = pod_object(&rerun(&review, "plain"), &env.ns);
    plain["metadata"]["labels"].as_object_mut().unwrap().remove("workflows.argoproj.io/workflow");
    for want in [opted_out, agent, plain] {
        let pod: Pod = serde_json::from_value(want.clone()).unwrap();
        let got = serde_json::to_value(env.pods().create(&PostParams::default(), &pod).await.unwrap()).unwrap();
        assert_eq!(got["metadata"]["labels"], want["metadata"]["labels"], "labels untouched");
        assert_eq!(got["metadata"]["annotations"], want["metadata"]["annotations"], "annotations untouched");
        assert_eq!(
            got["spec"]["containers"].as_array().unwrap().len(),
            want["spec"]["containers"].as_array().unwrap().len()
        );
    }
    assert_eq!(admissions(&env.serve.metrics().await), before, "the objectSelector kept them from the webhook");
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_result_stepcache_did_not_write_is_left_alone_and_the_step_runs() {
    let Some(env) = Env::new("existing", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;
    let again = rerun(&review, "again");
    let want = pod_object(&again, &env.ns);
    // A placeholder with the node's name, as a wait container that started would leave it.
    let mut placeholder = task_result_for(&want, "0");
    placeholder["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"] = json!("false");
    placeholder["outputs"] = json!({});
    let obj: DynamicObject = serde_json::from_value(placeholder).unwrap();
    env.task_results().create(&PostParams::default(), &obj).await.unwrap();
    let (pod, warnings) = create_pod_with_warnings(&env.client, &env.ns, &again).await;
    assert_eq!(label(&pod, "stepcache.dev/decision"), Some("miss"), "{}", pod["metadata"]);
    assert_eq!(label(&pod, "stepcache.dev/record"), Some("true"), "the step runs and is recorded");
    assert_eq!(shape(&pod), shape(&want), "the pod runs as Argo built it");
    assert!(warnings.iter().any(|w| w.contains("was not written by stepcache; left alone")), "{warnings:?}");
    let got = serde_json::to_value(env.task_results().get(&node_of(&want)).await.unwrap()).unwrap();
    assert_eq!(got["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"], "false", "{got}");
    assert_eq!(got["outputs"], json!({}), "untouched: {got}");
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_hit_rewrites_only_stepcaches_own_task_result() {
    let Some(env) = Env::new("replay", ServeOptions::default()).await else { return };
    let review = record_once(&env, V36, "7").await;
    let again = rerun(&review, "again");
    let hit = env.create(&again).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let node = node_of(&hit);
    let first = serde_json::to_value(env.task_results().get(&node).await.unwrap()).unwrap();
    assert!(first["metadata"]["annotations"]["stepcache.dev/task-result-proof"].is_string(), "{first}");
    // The controller retries the same pod (AlreadyExists for the pod); the webhook is called again
    // and finds its own task result: the same hit, no error.
    let pod: Pod = serde_json::from_value(pod_object(&again, &env.ns)).unwrap();
    let retry = env.pods().create(&PostParams::default(), &pod).await;
    assert!(matches!(retry, Err(kube::Error::Api(ref s)) if s.code == 409), "{retry:?}");
    let metrics = env.serve.metrics().await;
    assert!(
        !metrics.lines().any(|l| l.starts_with("stepcache_task_result_errors_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let second = serde_json::to_value(env.task_results().get(&node).await.unwrap()).unwrap();
    assert_eq!(second["outputs"], first["outputs"]);
    env.done().await;
}

/// The companion of `cycle_kfp_v1_staleness`: the same step, recorded from a run that finished
/// past its `max_cache_staleness` (`P30D`) by the webhook's clock, is a miss that names the entry
/// as stale; a run finished inside it is a hit. Both times are relative to now, so the pair
/// means the same on any date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_recorded_past_its_staleness_misses_as_stale() {
    let Some(env) = Env::new("stale", ServeOptions::default()).await else { return };
    let review = fixture("kfp-v1-staleness.admission.json");
    let day = Duration::from_secs(86_400);
    let first = env.create(&rerun(&review, "old")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"), "{}", first["metadata"]);
    let (started, finished) = crate::harness::ran_ago(31 * day, Duration::from_secs(252));
    succeed_at(&env.client, &first, &started, &finished).await;
    report_outputs(&env.client, &first, "150").await;
    recorded(&env.serve, 1.0).await;

    let again = env.create(&rerun(&review, "after-staleness")).await;
    assert_eq!(label(&again, "stepcache.dev/decision"), Some("miss"), "{}", again["metadata"]);
    let reason = again["metadata"]["annotations"]["stepcache.dev/miss-reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stale"), "miss reason names the stale entry: {reason}");

    // The miss was marked; recorded from a run 29 days old, the step is fresh again.
    let (started, finished) = crate::harness::ran_ago(29 * day, Duration::from_secs(252));
    succeed_at(&env.client, &again, &started, &finished).await;
    report_outputs(&env.client, &again, "150").await;
    recorded(&env.serve, 2.0).await;
    let fresh = env.create(&rerun(&review, "inside-staleness")).await;
    assert_eq!(label(&fresh, "stepcache.dev/decision"), Some("hit"), "{}", fresh["metadata"]);
    env.done().await;
}
