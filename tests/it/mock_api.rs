//! A mock Kubernetes API server driven by named scenarios (after kube-rs controller-rs's
//! `ApiServerVerifier`): each scenario is the exchange a test expects — which requests arrive,
//! in order, with which method, path and body — and how the server answers them. The verifier
//! asserts every request as it arrives; awaiting [`Exchange::verified`] fails the test when a
//! request did not match, or did not come in time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use std::time::Duration;
use tower_test::mock::SendResponse;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How long a scenario may take before its missing requests fail the test.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unanswered request is held: past every client bound under test.
const HELD: Duration = Duration::from_secs(30);
/// How long [`Scenario::NoRequest`] listens.
const QUIET: Duration = Duration::from_millis(200);

/// The exchange a test expects with the API server.
pub enum Scenario {
    /// A create of this WorkflowTaskResult (name, namespace, labels, outputs): answered 201.
    TaskResultCreated(Value),
    /// A create of this WorkflowTaskResult answered 409 AlreadyExists, a GET answered with the
    /// object that create sent (stepcache's own, with its proof), then a merge patch of the same
    /// name setting its labels and outputs: answered 200.
    TaskResultConflictThenPatched(Value),
    /// A create of this WorkflowTaskResult answered 409 AlreadyExists, a GET answered with it
    /// without stepcache's proof (another writer's), and then no further request.
    TaskResultConflictForeign(Value),
    /// A create of a WorkflowTaskResult in this namespace that is never answered.
    TaskResultTimeout {
        /// Namespace of the create.
        namespace: String,
    },
    /// A GET of this ConfigMap (by its namespace and name): answered with it.
    ConfigMapFound(Value),
    /// A GET of the ConfigMap `namespace/name`: answered 404 NotFound.
    ConfigMapMissing {
        /// Namespace of the GET.
        namespace: String,
        /// Name of the GET.
        name: String,
    },
    /// A GET of the ConfigMap `namespace/name` that is never answered.
    ConfigMapTimeout {
        /// Namespace of the GET.
        namespace: String,
        /// Name of the GET.
        name: String,
    },
    /// No request at all for a while (what was asked is answered from a cache).
    NoRequest,
}

/// A Kubernetes client whose requests go to the returned verifier.
pub fn mock_client() -> (kube::Client, ApiServerVerifier) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), ApiServerVerifier(handle))
}

/// The server side of [`mock_client`]: plays one scenario at a time.
pub struct ApiServerVerifier(Handle);

/// A scenario being played.
pub struct Exchange(tokio::task::JoinHandle<Handle>);

impl ApiServerVerifier {
    /// Plays `scenario` in the background while the test drives the client.
    pub fn run(self, scenario: Scenario) -> Exchange {
        let mut handle = self.0;
        Exchange(tokio::spawn(async move {
            play(&mut handle, scenario).await;
            handle
        }))
    }
}

impl Exchange {
    /// Waits until the scenario has seen all its requests (failing the test if one did not match
    /// or did not arrive in time) and gives the verifier back for the next scenario.
    pub async fn verified(self) -> ApiServerVerifier {
        match tokio::time::timeout(SCENARIO_TIMEOUT, self.0).await {
            Ok(Ok(handle)) => ApiServerVerifier(handle),
            Ok(Err(e)) => match e.try_into_panic() {
                Ok(p) => std::panic::resume_unwind(p),
                Err(e) => panic!("the mock API server stopped: {e}"),
            },
            Err(_) => panic!("the mock API server did not see the scenario's requests within {SCENARIO_TIMEOUT:?}"),
        }
    }
}

async fn play(handle: &mut Handle, scenario: Scenario) {
    match scenario {
        Scenario::TaskResultCreated(expected) => {
            let (body, send) = expect(handle, Method::POST, &task_results_path(&expected)).await;
            assert_same_task_result(&body, &expected);
            send.send_response(answer(201, &body));
        }
        Scenario::TaskResultConflictThenPatched(expected) => {
            let (body, send) = expect(handle, Method::POST, &task_results_path(&expected)).await;
            assert_same_task_result(&body, &expected);
            send.send_response(status(409, "AlreadyExists"));
            let name = expected["metadata"]["name"].as_str().unwrap();
            let path = format!("{}/{name}", task_results_path(&expected));
            let (_, send) = expect(handle, Method::GET, &path).await;
            send.send_response(answer(200, &body));
            let (patch, send) = expect(handle, Method::PATCH, &path).await;
            assert_eq!(patch["metadata"]["labels"], expected["metadata"]["labels"], "{patch}");
            assert_eq!(patch["outputs"], expected["outputs"], "{patch}");
            send.send_response(answer(200, &expected));
        }
        Scenario::TaskResultConflictForeign(expected) => {
            let (body, send) = expect(handle, Method::POST, &task_results_path(&expected)).await;
            assert_same_task_result(&body, &expected);
            send.send_response(status(409, "AlreadyExists"));
            let name = expected["metadata"]["name"].as_str().unwrap();
            let (_, send) = expect(handle, Method::GET, &format!("{}/{name}", task_results_path(&expected))).await;
            let mut foreign = expected.clone();
            foreign["outputs"] = json!({});
            send.send_response(answer(200, &foreign));
            if let Ok(Some((req, _))) = tokio::time::timeout(QUIET, handle.next_request()).await {
                panic!("another writer's task result was touched: {} {}", req.method(), req.uri());
            }
        }
        Scenario::TaskResultTimeout { namespace } => {
            let path = format!("/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflowtaskresults");
            let (_, send) = expect(handle, Method::POST, &path).await;
            hold(send);
        }
        Scenario::ConfigMapFound(cm) => {
            let path = config_map_path(
                cm["metadata"]["namespace"].as_str().unwrap(),
                cm["metadata"]["name"].as_str().unwrap(),
            );
            let (_, send) = expect(handle, Method::GET, &path).await;
            send.send_response(answer(200, &cm));
        }
        Scenario::ConfigMapMissing { namespace, name } => {
            let (_, send) = expect(handle, Method::GET, &config_map_path(&namespace, &name)).await;
            send.send_response(status(404, "NotFound"));
        }
        Scenario::ConfigMapTimeout { namespace, name } => {
            let (_, send) = expect(handle, Method::GET, &config_map_path(&namespace, &name)).await;
            hold(send);
        }
        Scenario::NoRequest => {
            if let Ok(Some((req, _))) = tokio::time::timeout(QUIET, handle.next_request()).await {
                panic!("unexpected request {} {}", req.method(), req.uri());
            }
        }
    }
}

/// The next request, asserted to be `method path`; returns its JSON body (null when empty).
async fn expect(handle: &mut Handle, method: Method, path: &str) -> (Value, SendResponse<Response<Body>>) {
    let (req, send) = handle.next_request().await.unwrap_or_else(|| panic!("the client closed before {method} {path}"));
    assert_eq!((req.method(), req.uri().path()), (&method, path), "unexpected request {}", req.uri());
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (body, send)
}

/// Keeps a request unanswered past every client bound, without holding up the scenario.
fn hold(send: SendResponse<Response<Body>>) {
    tokio::spawn(async move {
        tokio::time::sleep(HELD).await;
        drop(send);
    });
}

fn task_results_path(tr: &Value) -> String {
    let ns = tr["metadata"]["namespace"].as_str().unwrap();
    format!("/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflowtaskresults")
}

fn config_map_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps/{name}")
}

/// The created object is the expected task result where Argo reads it.
fn assert_same_task_result(body: &Value, expected: &Value) {
    assert_eq!(body["apiVersion"], "argoproj.io/v1alpha1", "{body}");
    assert_eq!(body["kind"], "WorkflowTaskResult", "{body}");
    for field in ["name", "namespace", "labels"] {
        assert_eq!(body["metadata"][field], expected["metadata"][field], "metadata.{field}: {body}");
    }
    assert_eq!(body["outputs"], expected["outputs"], "{body}");
}

fn answer(code: u16, body: &Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

fn status(code: u16, reason: &str) -> Response<Body> {
    answer(
        code,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":format!("{reason} (test)"),"reason":reason,"code":code}),
    )
}

#[tokio::test]
#[should_panic(expected = "did not see the scenario's requests")]
async fn a_scenario_whose_request_never_comes_fails_the_test() {
    let (_client, api) = mock_client();
    api.run(Scenario::ConfigMapMissing { namespace: "ns".into(), name: "pod".into() }).verified().await;
}
