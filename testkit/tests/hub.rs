//! The harness's hub against the real `fleetgate-hub`: start, SIGTERM, restart on the same
//! address and data dir, `kill -9`; what a test relies on when it stops and starts a hub.

#![allow(clippy::unwrap_used)]

use fleetgate_shared::MetricType;
use fleetgate_testkit::exposition::value;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::Hub;

#[tokio::test]
async fn a_hub_stops_and_comes_back_on_its_address_with_its_identities() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_in(data.path(), &["--stale-after", "1h"]);
    let (addr, admin) = (hub.addr().to_string(), hub.admin_token());
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let token = hub.enroll("n1", &[("rack", "r1")]).await;
    let snap = |seq| {
        snapshot(
            seq,
            60_000,
            vec![family(
                "kit_value",
                MetricType::Gauge,
                vec![scalar(&[], seq as f64)],
            )],
        )
    };
    assert_eq!(hub.push(&token, &snap(1)).await.status(), 200);

    let status = hub.terminate().await;
    assert!(status.success(), "SIGTERM: {status}");
    assert!(!hub.is_running());
    hub.restart();
    assert_eq!(hub.addr(), addr, "same address after a restart");
    assert_eq!(hub.admin_token(), admin, "same data dir, same tokens");
    assert_eq!(hub.push(&token, &snap(2)).await.status(), 200);
    let fams = hub.metrics().await;
    assert_eq!(
        value(&fams, "kit_value", &[("node", "n1"), ("rack", "r1")]),
        Some(2.0)
    );

    let pid = hub.pid();
    hub.kill9_and_restart();
    assert_ne!(hub.pid(), pid);
    assert!(hub.node("n1").await.is_some(), "identity kept over kill -9");
    assert_eq!(hub.push(&token, &snap(3)).await.status(), 200);
    assert!(!hub.log().is_empty(), "the hub's log is kept over restarts");
    drop(hub);
    assert!(
        data.path().join("nodes.json").is_file(),
        "the data dir stays the caller's"
    );
}
