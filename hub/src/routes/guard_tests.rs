//! The router's defences, driven without a socket: each request carries the [`Peer`] the
//! listener would attach, so sources and client certificates are the test's to choose.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use crate::config::TokenSource;
use crate::server::Peer;
use crate::{AppState, Config};

const ENROLL: &str = "enroll-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::with_data_dir(dir);
    c.enroll_token = TokenSource::Given(fleetgate_daemon::Secret::new(ENROLL));
    c.admin_token = TokenSource::Given(fleetgate_daemon::Secret::new(ADMIN));
    c
}

fn peer(addr: &str, client_cert: bool) -> Peer {
    Peer {
        addr: addr.parse::<SocketAddr>().unwrap(),
        client_cert,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(app: &Router, from: Peer, mut req: Request<Body>) -> Answer {
    req.extensions_mut().insert(from);
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post(path: &str, token: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::empty()).unwrap()
}

fn push(token: &str, text: &str) -> Request<Body> {
    Request::post("/push")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(Body::from(text.to_string()))
        .unwrap()
}

async fn enroll(app: &Router, from: Peer, node: &str) -> String {
    let a = call(
        app,
        from,
        post("/add_node", ENROLL, &format!(r#"{{"node":"{node}"}}"#)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn metric(state: &AppState, line_start: &str) -> f64 {
    let text = String::from_utf8(state.render_metrics(None)).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn failed_authentications_are_limited_per_source_then_429() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.protection.auth_failure_burst = 3;
    c.protection.auth_failure_rate = 0.5;
    let state = AppState::open(c).unwrap();
    let app = super::router(state.clone());
    let (attacker, other) = (peer("192.0.2.7:5000", false), peer("192.0.2.8:5000", false));
    let good = enroll(&app, other, "n1").await;

    for _ in 0..3 {
        let a = call(&app, attacker, push("wrong-token-000000000", "x 1\n")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    // Out of failures: 429 with Retry-After, even for a valid token from that source, and
    // on every authenticated route.
    let a = call(&app, attacker, push(&good, "x 1\n")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.headers["retry-after"], "2");
    assert!(a.body.contains("192.0.2.7"), "{}", a.body);
    let a = call(&app, attacker, get("/nodes", Some(ADMIN))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // Another source is not affected.
    let a = call(&app, other, push(&good, "x 1\n")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = call(&app, other, push("wrong-token-000000000", "x 1\n")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        metric(&state, "fleetgate_hub_auth_failures_total{route=\"push\"}"),
        4.0
    );
    assert_eq!(
        metric(
            &state,
            "fleetgate_hub_auth_rate_limited_total{route=\"push\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &state,
            "fleetgate_hub_auth_rate_limited_total{route=\"nodes\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &state,
            "fleetgate_hub_pushes_total{result=\"rate_limited\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_saturated_ingest_answers_429_with_retry_after_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.protection.max_pending_pushes = 1;
    let state = AppState::open(c).unwrap();
    let app = super::router(state.clone());
    let from = peer("192.0.2.1:1", false);
    let token = enroll(&app, from, "n1").await;
    // Ingest is busy with one push: the next is turned away, not queued.
    let busy = state.push_gate.enter().unwrap();
    let a = call(&app, from, push(&token, "x 1\n")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    assert!(a.body.contains("saturated"), "{}", a.body);
    assert_eq!(metric(&state, "fleetgate_hub_overload_total "), 1.0);
    drop(busy);
    let a = call(&app, from, push(&token, "x 1\n")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn metrics_token_is_required_as_bearer_or_basic_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.metrics_token = Some(fleetgate_daemon::Secret::new("metrics-token-0123456789"));
    let state = AppState::open(c).unwrap();
    let app = super::router(state);
    let from = peer("192.0.2.1:1", false);
    let a = call(&app, from, get("/metrics", None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("Bearer"));
    let a = call(&app, from, get("/metrics", Some("metrics-token-wrong000"))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(
        &app,
        from,
        get("/metrics", Some("metrics-token-0123456789")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a
        .body
        .contains("fleetgate_hub_auth_failures_total{route=\"metrics\"} 2"));
    // Basic auth, any user, the token as password ("prometheus:metrics-token-0123456789").
    let basic = Request::get("/metrics")
        .header(
            "authorization",
            "Basic cHJvbWV0aGV1czptZXRyaWNzLXRva2VuLTAxMjM0NTY3ODk=",
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, from, basic).await.status, StatusCode::OK);
    // Health checks stay open.
    assert_eq!(
        call(&app, from, get("/healthz", None)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_client_certificates_node_routes_need_one_and_admin_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // Paths only: the router never loads them (the listener does).
    c.tls = Some(("cert.pem".into(), "key.pem".into()));
    c.tls_client_ca = Some("ca.pem".into());
    let state = AppState::open(c).unwrap();
    let app = super::router(state);
    let (with, without) = (peer("192.0.2.1:1", true), peer("192.0.2.2:1", false));
    let a = call(&app, without, post("/add_node", ENROLL, r#"{"node":"n1"}"#)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("client certificate"), "{}", a.body);
    let token = enroll(&app, with, "n1").await;
    let a = call(&app, without, push(&token, "x 1\n")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("client certificate"), "{}", a.body);
    assert_eq!(
        call(&app, with, push(&token, "x 1\n")).await.status,
        StatusCode::OK
    );
    // The admin and the scraper need no certificate.
    assert_eq!(
        call(&app, without, get("/nodes", Some(ADMIN))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, without, get("/metrics", None)).await.status,
        StatusCode::OK
    );
    let a = call(&app, without, post("/add_node", ADMIN, r#"{"node":"n2"}"#)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn identity_changes_and_admin_access_are_audited_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::open(config(dir.path())).unwrap();
    let app = super::router(state);
    let (a1, a2) = (peer("192.0.2.1:1", false), peer("192.0.2.2:1", false));
    let t1 = enroll(&app, a1, "n1").await;
    let t1b = enroll(&app, a1, "n1").await;
    let bad = call(
        &app,
        a2,
        post("/add_node", "not-the-token-0000000", r#"{"node":"evil"}"#),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let gone = call(&app, a1, post("/remove_node", &t1b, r#"{"node":"n1"}"#)).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    let refused = call(&app, a2, get("/nodes", Some("not-the-admin-000000"))).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let nodes = call(&app, a1, get("/nodes", Some(ADMIN))).await;
    assert_eq!(nodes.status, StatusCode::OK);
    let again = call(&app, a1, post("/add_node", ADMIN, r#"{"node":"n1"}"#)).await;
    assert_eq!(again.status, StatusCode::OK);
    let missing = call(
        &app,
        a1,
        post("/remove_node", ADMIN, r#"{"node":"nobody"}"#),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let a = call(&app, a1, get("/audit?limit=100", Some(ADMIN))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let records: Vec<serde_json::Value> = serde_json::from_str(&a.body).unwrap();
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["action"],
                r["node"].as_str().unwrap_or("-"),
                r["actor"],
                r["source"],
                r["result"]
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#""add_node" n1 "enrollment" "192.0.2.1" "ok""#,
            r#""reenroll" n1 "enrollment" "192.0.2.1" "ok""#,
            r#""add_node" evil "none" "192.0.2.2" "refused""#,
            r#""remove_node" n1 "node" "192.0.2.1" "ok""#,
            r#""list_nodes" - "none" "192.0.2.2" "refused""#,
            r#""list_nodes" - "admin" "192.0.2.1" "ok""#,
            r#""reenroll" n1 "admin" "192.0.2.1" "ok""#,
            r#""remove_node" nobody "admin" "192.0.2.1" "not_found""#,
            r#""read_audit" - "admin" "192.0.2.1" "ok""#,
        ]
    );
    // since/limit: from the fourth record's time, two records.
    let since = records[3]["time"].as_str().unwrap();
    let a = call(
        &app,
        a1,
        get(&format!("/audit?since={since}&limit=2"), Some(ADMIN)),
    )
    .await;
    let page: Vec<serde_json::Value> = serde_json::from_str(&a.body).unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0]["time"].as_str().unwrap() >= since);
    let a = call(&app, a1, get("/audit?since=yesterday", Some(ADMIN))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("yesterday"), "{}", a.body);
    let a = call(&app, a1, get("/audit?limit=0", Some(ADMIN))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // No token anywhere: not in the audit log, not in /nodes, not in any answer.
    let file = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(file.lines().count(), records.len() + 3);
    for secret in [&t1, &t1b, ENROLL, ADMIN, "not-the-token-0000000"] {
        assert!(!file.contains(secret), "a token in audit.log");
        assert!(!nodes.body.contains(secret), "a token in /nodes");
        assert!(!bad.body.contains(secret) && !refused.body.contains(secret));
    }
}

#[tokio::test]
async fn a_trickled_body_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.protection.request_timeout = Duration::from_millis(200);
    let state = AppState::open(c).unwrap();
    let app = super::router(state.clone());
    let from = peer("192.0.2.1:1", false);
    let token = enroll(&app, from, "n1").await;
    // A body whose second chunk never comes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"x".to_vec())).await.unwrap();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let req = Request::post("/push")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .unwrap();
    let a = call(&app, from, req).await;
    drop(tx);
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT, "{}", a.body);
    assert_eq!(a.headers["connection"], "close");
    assert_eq!(
        metric(
            &state,
            "fleetgate_hub_refused_connections_total{reason=\"request_timeout\"}"
        ),
        1.0
    );
}
