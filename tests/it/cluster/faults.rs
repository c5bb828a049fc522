//! Faults: stepcache killed before a success, the webhook down or hanging, the API server
//! crashing under the recorder's watches.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_while_stepcache_is_down_is_recorded_once_after_restart() {
    let Some(mut env) = Env::new("restart", ServeOptions::default()).await else { return };
    let review = fixture(V36);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    // SIGKILL between the pod's admission and its success: nothing is watching.
    env.serve.kill();
    succeed(&env.client, &first).await;
    report_outputs(&env.client, &first, "7").await;
    env.serve.restart().await;
    recorded(&env.serve, 1.0).await; // from the initial list of the new process
                                     // Restarted again: the catch-up sees the same pod and its task result, and records nothing new.
    env.serve.restart().await;
    wait_effective(&env.client, &env.ns, &pod_object(&rerun(&review, "probe2"), &env.ns)).await;
    let hit = env.create(&rerun(&review, "second")).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let uid = first["metadata"]["uid"].as_str().unwrap();
    let rows = rows(&env.serve).await;
    assert_eq!(rows.iter().filter(|r| r.run.pod_uid == uid).count(), 1, "recorded exactly once: {rows:?}");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        metric(&env.serve.metrics().await, "stepcache_recorder_recorded_total"),
        0.0,
        "nothing new after the 2nd restart"
    );
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_created_unchanged_when_the_webhook_is_down_or_hangs() {
    let Some(mut env) = Env::new("down", ServeOptions::default()).await else { return };
    let review = fixture(V36);
    // Down: connection refused.
    env.serve.kill();
    let t = Instant::now();
    let refused = env.create(&rerun(&review, "refused")).await;
    assert!(t.elapsed() < Duration::from_secs(5), "refused took {:?}", t.elapsed());
    assert_eq!(label(&refused, "stepcache.dev/decision"), None, "created unchanged");
    // Hanging: accepts connections, never answers; the API server gives up after timeoutSeconds.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", env.serve.port)).await.unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let t = Instant::now();
    let hung = env.create(&rerun(&review, "hung")).await;
    let took = t.elapsed();
    assert_eq!(label(&hung, "stepcache.dev/decision"), None, "created unchanged");
    assert!(took >= Duration::from_secs(4), "the API server waited for the webhook ({took:?})");
    assert!(took < Duration::from_secs(10), "within timeoutSeconds (5s) plus slack: {took:?}");
    hold.abort();
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_resumes_after_an_api_server_restart() {
    // A private instance: restarting the shared one would disturb the other tests.
    let Some(kit) = Kit::start(&["--etcd-compaction-interval=10s"]) else { return };
    let kit: &'static Kit = Box::leak(Box::new(kit));
    let client = kit.client().await;
    let ns = kit.namespace(&client, "apirestart", &[]).await;
    let env = Env::attach(kit, client, &[&ns], ServeOptions::default()).await;
    let review = fixture(V36);
    let first = env.create(&rerun(&review, "first")).await;
    assert_eq!(label(&first, "stepcache.dev/decision"), Some("miss"));
    // A crash (SIGKILL): the watches break mid-stream. While it is down, etcd's history is
    // compacted past every resourceVersion the recorder saw, so its watches must take the 410 path.
    env.kit.kill_apiserver();
    env.kit.compact_etcd();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.kit.start_apiserver();
    let client = env.kit.client().await;
    succeed(&client, &first).await;
    report_outputs(&client, &first, "7").await;
    recorded(&env.serve, 1.0).await;
    let hit = create_pod(&client, &env.ns, &rerun(&review, "second")).await;
    assert_eq!(label(&hit, "stepcache.dev/decision"), Some("hit"), "{}", hit["metadata"]);
    let logs = env.serve.logs();
    assert!(
        logs.contains("too old resource version"),
        "the restart should have expired the watches' resourceVersion (410), and they resumed:\n{logs}"
    );
    drop(env);
    kit.stop();
}
