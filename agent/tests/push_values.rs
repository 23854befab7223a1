//! Values pushes from the real agent to a real hub: after the first full snapshot the agent
//! sends only values (the hub's byte counters show it), the values on `/metrics` follow, and
//! after a hub restart the agent's next values push is refused with 409 and answered with a
//! full snapshot in the same cycle, without a failed push.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use fleetgate_shared::{Family, Snapshot};
use fleetgate_testkit::exposition::{sum, value};
use fleetgate_testkit::{eventually, Agent, AgentArgs, Hub};

/// `fleetgate_hub_pushes_total` and `fleetgate_hub_push_bytes_total` for `result`.
fn hub_pushes(fams: &[Family], result: &str) -> (f64, f64) {
    (
        value(fams, "fleetgate_hub_pushes_total", &[("result", result)]).unwrap_or(0.0),
        value(
            fams,
            "fleetgate_hub_push_bytes_total",
            &[("result", result)],
        )
        .unwrap_or(0.0),
    )
}

fn failures(fams: &[Family], node: &str) -> f64 {
    sum(
        fams,
        "fleetgate_agent_push_failures_total",
        &[("node", node)],
    )
}

async fn ok_pushes_at_least(hub: &Hub, n: f64) -> Vec<Family> {
    eventually(Duration::from_secs(30), "accepted pushes", || async {
        let fams = hub.metrics().await;
        (hub_pushes(&fams, "ok").0 >= n).then_some(fams)
    })
    .await
}

#[tokio::test]
async fn after_a_full_push_only_values_go_out_and_a_hub_restart_costs_one_409() {
    let state = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&[]);
    let mut args = AgentArgs::new(&hub, "vals-1", state.path());
    args.interval = "400ms".into();
    let mut agent = Agent::start(args.args());

    // Steady state: the pushes after the first few are a fraction of a full snapshot.
    let fams = ok_pushes_at_least(&hub, 4.0).await;
    let (p1, b1) = hub_pushes(&fams, "ok");
    let sent1 = value(
        &fams,
        "fleetgate_agent_sent_bytes_total",
        &[("node", "vals-1")],
    )
    .unwrap();
    let node_families: Vec<Family> = fams
        .iter()
        .filter(|f| !f.name.starts_with("fleetgate_hub_") && !f.name.starts_with("fleetgate_node"))
        .cloned()
        .collect();
    let full = fleetgate_shared::encode(&Snapshot {
        families: node_families,
        ..Snapshot::default()
    })
    .len() as f64;
    let fams = ok_pushes_at_least(&hub, p1 + 6.0).await;
    let (p2, b2) = hub_pushes(&fams, "ok");
    let per_push = (b2 - b1) / (p2 - p1);
    assert!(
        per_push < full / 3.0,
        "{per_push:.0} B per push in steady state against {full:.0} B for a full snapshot"
    );
    // The values on /metrics follow the agent's.
    let sent2 = value(
        &fams,
        "fleetgate_agent_sent_bytes_total",
        &[("node", "vals-1")],
    )
    .unwrap();
    assert!(sent2 > sent1, "sent bytes stayed at {sent1}");
    assert_eq!(hub_pushes(&fams, "conflict").0, 0.0);
    assert_eq!(failures(&fams, "vals-1"), 0.0);
    // The agent reports the kinds it sent: one full snapshot, then values pushes only.
    let pushes = |fams: &[Family], kind: &str| {
        value(
            fams,
            "fleetgate_agent_pushes_total",
            &[("node", "vals-1"), ("kind", kind)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(pushes(&fams, "full"), 1.0);
    assert!(
        pushes(&fams, "values") >= 4.0,
        "{}",
        pushes(&fams, "values")
    );

    // Hub restart between two pushes: the base is gone. A restart that happens to overlap a
    // push makes that push fail instead (then the agent pushes in full after its backoff), so
    // up to three tries for one restart that falls between pushes.
    let mut recovered = false;
    for _ in 0..3 {
        let before = hub_pushes(&hub.metrics().await, "ok").0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub_pushes(&hub.metrics().await, "ok").0 == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hub.kill9_and_restart();
        let fams = ok_pushes_at_least(&hub, 3.0).await;
        let conflicts = hub_pushes(&fams, "conflict").0;
        if conflicts == 1.0 && failures(&fams, "vals-1") == 0.0 {
            // The agent's own counters came over in a values push after the full one: it
            // counted the 409 and the full snapshot that answered it.
            assert!(value(
                &fams,
                "fleetgate_agent_sent_bytes_total",
                &[("node", "vals-1")]
            )
            .is_some());
            let conflicts = value(
                &fams,
                "fleetgate_agent_push_conflicts_total",
                &[("node", "vals-1")],
            );
            // At least this restart's 409 (an earlier try may have added its own).
            assert!(
                conflicts.is_some_and(|c| c >= 1.0),
                "agent counted {conflicts:?} conflicts"
            );
            assert!(pushes(&fams, "full") >= 2.0, "{}", pushes(&fams, "full"));
            recovered = true;
            break;
        }
        eprintln!("restart overlapped a push (conflicts {conflicts}); trying again");
    }
    assert!(recovered, "no recovery by 409 and full push");
    assert!(agent.terminate().await.success());
}
