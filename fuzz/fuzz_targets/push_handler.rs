//! Fuzzes `POST /push` through the hub's real router with arbitrary headers and bodies, as the
//! network delivers them: every request must get an answer that is not a server error (a panic
//! in the ingest path surfaces as a 500), whatever the token, content type, encoding and body.
//!
//! Input layout: byte 0 picks the credentials, byte 1 the `Content-Type`, byte 2 the
//! `Content-Encoding`, byte 3 the length of a raw header value taken from the bytes after it
//! (used where a choice says "raw"); the rest is the body. Bit 7 of byte 0 wraps the body the
//! way a valid message of the chosen type would be (snapshot: parsed as text and encoded;
//! values: framed and compressed), so the fuzzer reaches validation, preparation and the store.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use fleetgate_hub::config::TokenSource;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    token: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = fleetgate_hub::Config::with_data_dir(dir.path());
        config.enroll_token =
            TokenSource::Given(fleetgate_daemon::Secret::new("enroll-token-0123456789"));
        config.limits.max_body_bytes = 256 << 10;
        config.limits.max_decompressed_bytes = 1 << 20;
        config.limits.max_series_per_node = 2_000;
        // Bad tokens are most inputs: never let the failed-authentication limit end the run.
        config.protection.auth_failure_burst = u32::MAX;
        config.protection.auth_failure_rate = 1e12;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let state = fleetgate_hub::AppState::open(config).expect("hub state");
        let app = fleetgate_hub::router(state);
        let token = runtime.block_on(async {
            let req = Request::post("/add_node")
                .header("authorization", "Bearer enroll-token-0123456789")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"node":"fuzz","labels":{"node_type":"cpu"}}"#))
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("add_node");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            v["token"].as_str().expect("token").to_string()
        });
        Fixture {
            runtime,
            app,
            token,
            _dir: dir,
        }
    })
}

const CONTENT_TYPES: [&str; 6] = [
    fleetgate_shared::CONTENT_TYPE,
    fleetgate_shared::VALUES_CONTENT_TYPE,
    "text/plain; version=0.0.4",
    "",
    "application/x-www-form-urlencoded",
    "raw",
];
const ENCODINGS: [&str; 5] = ["", "zstd", "gzip", "identity", "raw"];

/// The body a valid message of `content_type` would have, built from `data`.
fn wrap(content_type: &str, data: &[u8]) -> Vec<u8> {
    if content_type == fleetgate_shared::CONTENT_TYPE {
        if let Ok(families) = fleetgate_shared::text::parse_bytes(data) {
            let seq = data.len() as u64 + 1;
            return fleetgate_shared::encode(&fleetgate_shared::Snapshot {
                seq,
                interval_ms: 15_000,
                timestamp_ms: 0,
                families,
            });
        }
    }
    if content_type == fleetgate_shared::VALUES_CONTENT_TYPE {
        let mut framed = fleetgate_shared::VALUES_MAGIC.to_vec();
        framed.push(fleetgate_shared::VALUES_VERSION);
        framed.extend(zstd::stream::encode_all(data, 1).unwrap_or_default());
        return framed;
    }
    data.to_vec()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let f = fixture();
    let (choice, ct, enc, raw_len) = (data[0], data[1], data[2], data[3] as usize);
    let rest = &data[4..];
    let raw_len = raw_len.min(rest.len());
    let (raw, body) = rest.split_at(raw_len);
    let raw = HeaderValue::from_bytes(raw).ok();

    let mut req = Request::post("/push");
    match choice & 0x03 {
        0 => req = req.header("authorization", format!("Bearer {}", f.token)),
        1 => req = req.header("authorization", "Bearer not-a-token-000000000"),
        2 => {}
        _ => {
            if let Some(v) = &raw {
                req = req.header("authorization", v.clone());
            }
        }
    }
    let content_type = CONTENT_TYPES[ct as usize % CONTENT_TYPES.len()];
    match content_type {
        "" => {}
        "raw" => {
            if let Some(v) = &raw {
                req = req.header("content-type", v.clone());
            }
        }
        t => req = req.header("content-type", t),
    }
    match ENCODINGS[enc as usize % ENCODINGS.len()] {
        "" => {}
        "raw" => {
            if let Some(v) = &raw {
                req = req.header("content-encoding", v.clone());
            }
        }
        e => req = req.header("content-encoding", e),
    }
    if choice & 0x04 != 0 {
        req = req.header("content-length", body.len().to_string());
    }
    let body = if choice & 0x80 != 0 {
        wrap(content_type, body)
    } else {
        body.to_vec()
    };
    let Ok(req) = req.body(Body::from(body)) else {
        return;
    };
    let status = f.runtime.block_on(async {
        let resp = f.app.clone().oneshot(req).await.expect("infallible router");
        let status = resp.status();
        let _ = axum::body::to_bytes(resp.into_body(), 8 << 20).await;
        status
    });
    assert!(
        !status.is_server_error(),
        "POST /push answered {status}, a server error"
    );
});
