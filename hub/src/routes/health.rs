//! Liveness and readiness.

/// `GET /healthz`: the process serves requests.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the registry is loaded (it is before the listener serves anything).
pub async fn readyz() -> &'static str {
    "ready\n"
}
