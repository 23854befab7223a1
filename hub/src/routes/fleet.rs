//! The fleet page: `GET /` with its script and style (built into the binary, so the page works
//! without internet access), and the JSON it reads: `GET /api/nodes` (streamed) and
//! `GET /api/nodes/{node}`. Both answer anyone with what `/metrics` shows and the admin token
//! with everything ([`crate::fleet`]).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::Source;
use crate::error::ApiError;
use crate::fleet::{self, Audience, FleetSnapshot, NodeDetail};
use crate::AppState;

const INDEX_HTML: &str = include_str!("../page/index.html");
const FLEET_JS: &str = include_str!("../page/fleet.js");
const FLEET_CSS: &str = include_str!("../page/fleet.css");

/// Scripts and styles only from the hub itself, no inline code, no framing (the page carries
/// admin actions), no referrer.
const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-cache"),
];

/// JSON written per chunk of `/api/nodes`.
const CHUNK_BYTES: usize = 64 * 1024;
/// A client that takes no chunk for this long is abandoned.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// `GET /`: the fleet page.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /fleet.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", FLEET_JS)
}

/// `GET /fleet.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", FLEET_CSS)
}

/// Public without a token, admin with the admin token, 401 with any other token (counted
/// against the source's budget of failed authentications like every other route).
fn audience(state: &AppState, source: Source, headers: &HeaderMap) -> Result<Audience, ApiError> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(Audience::Public);
    }
    super::authenticate(
        state,
        source,
        "api_nodes",
        super::bearer(headers),
        "not the admin token (send no Authorization header for the public view)",
        |t| state.is_admin(t).then_some(Audience::Admin),
    )
}

/// `GET /api/nodes`: every node and the summary counts, as one JSON document written in
/// chunks while the nodes are read, so the hub never holds the whole answer.
pub async fn list(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audience = audience(&state, source, &headers)?;
    let worker = state.clone();
    let body = super::render::streamed(&state, source, "nodes", SEND_TIMEOUT, move |sink| {
        let snapshot = FleetSnapshot::take(&worker, audience);
        snapshot.write_json(CHUNK_BYTES, |chunk: Vec<u8>| sink.send(Ok(chunk.into())));
    })?;
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /api/nodes/{node}`: one node with its served families. 404 for an unknown node, and for
/// a removed one without the admin token.
pub async fn detail(
    State(state): State<AppState>,
    Path(node): Path<String>,
    source: Source,
    headers: HeaderMap,
) -> Result<Json<NodeDetail>, ApiError> {
    let audience = audience(&state, source, &headers)?;
    fleet::node_detail(&state, &node, audience)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("unknown node {node:?}")))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::AppState;

    const ADMIN: &str = "admin-token-0123456789";
    const ENROLL: &str = "enroll-token-0123456789";

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(path: &str, token: Option<&str>) -> Request<Body> {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.body(Body::empty()).unwrap()
    }

    fn post(path: &str, token: &str, body: &str) -> Request<Body> {
        Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn app() -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::with_data_dir(dir.path());
        config.admin_token =
            crate::config::TokenSource::Given(fleetgate_daemon::Secret::new(ADMIN));
        config.enroll_token =
            crate::config::TokenSource::Given(fleetgate_daemon::Secret::new(ENROLL));
        (dir, super::super::router(AppState::open(config).unwrap()))
    }

    #[tokio::test]
    async fn page_and_api_show_the_public_or_the_admin_view() {
        let (_dir, app) = app();
        let (status, headers, html) = call(&app, get("/", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("fleet.js"), "{html}");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        assert_eq!(headers["x-frame-options"], "DENY");
        let (status, headers, js) = call(&app, get("/fleet.js", None)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert!(js.contains("/api/nodes"));

        let body = r#"{"node":"n1","hostname":"n1.example","ip":"10.9.9.9","labels":{"node_type":"cpu","rack":"r1"}}"#;
        let (status, _, answer) = call(&app, post("/add_node", ENROLL, body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let push_token = serde_json::from_str::<Value>(&answer).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let push = |text: &'static str| {
            Request::post("/push")
                .header("authorization", format!("Bearer {push_token}"))
                .header("content-type", "text/plain")
                .body(Body::from(text))
                .unwrap()
        };
        let (status, _, _) = call(
            &app,
            push("a{x=\"1\"} 1\na{x=\"2\"} 2\n# TYPE b counter\nb 3\n"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = call(&app, push("1bad 1\n")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (status, _, public) = call(&app, get("/api/nodes", None)).await;
        assert_eq!(status, StatusCode::OK);
        let public: Value = serde_json::from_str(&public).unwrap();
        assert_eq!(public["admin"], false);
        assert_eq!(public["summary"]["up"], 1);
        assert_eq!(public["summary"]["series"], 3);
        let n1 = &public["nodes"][0];
        assert_eq!(
            (n1["node"].as_str(), n1["state"].as_str()),
            (Some("n1"), Some("up"))
        );
        assert_eq!(n1["labels"]["rack"], "r1");
        for hidden in [
            "hostname",
            "ip",
            "full_pushes",
            "last_rejection",
            "quarantined",
        ] {
            assert!(
                n1.get(hidden).is_none(),
                "{hidden} shown without the token: {n1}"
            );
        }

        let (status, _, _) = call(&app, get("/api/nodes", Some("not-the-admin-token"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = call(&app, get("/api/nodes", Some(&push_token))).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a push token is no admin token"
        );

        let (_, _, admin) = call(&app, get("/api/nodes", Some(ADMIN))).await;
        let admin: Value = serde_json::from_str(&admin).unwrap();
        let n1 = &admin["nodes"][0];
        assert_eq!(n1["hostname"], "n1.example");
        assert_eq!(
            (n1["full_pushes"].as_u64(), n1["values_pushes"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(n1["last_rejection"]["status"], 400);
        assert!(
            n1["last_rejection"]["message"]
                .as_str()
                .unwrap()
                .contains("1bad"),
            "{n1}"
        );

        let (status, _, detail) = call(&app, get("/api/nodes/n1", None)).await;
        assert_eq!(status, StatusCode::OK);
        let detail: Value = serde_json::from_str(&detail).unwrap();
        assert_eq!(detail["node"], "n1");
        let families: Vec<(String, u64)> = detail["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["series"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(families, [("a".to_string(), 2), ("b".to_string(), 1)]);
        assert_eq!(detail["families"][1]["type"], "counter");
        let (status, _, _) = call(&app, get("/api/nodes/nope", None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn removed_nodes_are_hidden_and_can_be_readmitted() {
        let (_dir, app) = app();
        let (status, _, _) = call(&app, post("/add_node", ENROLL, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, text) = call(&app, post("/readmit_node", ADMIN, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(text.contains("not removed"), "{text}");
        let (status, _, _) = call(&app, post("/readmit_node", ADMIN, r#"{"node":"zz"}"#)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&app, post("/remove_node", ADMIN, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::OK);

        let (_, _, public) = call(&app, get("/api/nodes", None)).await;
        let public: Value = serde_json::from_str(&public).unwrap();
        assert_eq!(public["nodes"].as_array().unwrap().len(), 0);
        assert_eq!(public["summary"]["removed"], 1);
        let (status, _, _) = call(&app, get("/api/nodes/n2", None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, detail) = call(&app, get("/api/nodes/n2", Some(ADMIN))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&detail).unwrap()["state"],
            "removed"
        );

        // Removed: the enrollment token may not bring it back; after re-admission it may.
        let (status, _, _) = call(&app, post("/add_node", ENROLL, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = call(&app, post("/readmit_node", ENROLL, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = call(&app, post("/readmit_node", ADMIN, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::OK);
        let (_, _, public) = call(&app, get("/api/nodes", None)).await;
        let public: Value = serde_json::from_str(&public).unwrap();
        assert_eq!(public["nodes"][0]["state"], "stale");
        let (status, _, _) = call(&app, post("/add_node", ENROLL, r#"{"node":"n2"}"#)).await;
        assert_eq!(status, StatusCode::OK);
    }
}
