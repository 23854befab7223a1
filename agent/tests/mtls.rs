//! Mutual TLS between the real agent and the real hub: the hub with `--tls-client-ca`, the
//! agent with `--tls-cert/--tls-key/--tls-ca`, certificates made by the real openssl here.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleetgate_agent::enroll::StateDir;
use fleetgate_testkit::exposition::value;
use fleetgate_testkit::{eventually, Agent, AgentArgs, Hub};

/// Makes in `dir`: a CA (`ca.pem`), the hub's certificate for 127.0.0.1 (`hub.pem`,
/// `hub.key`), a client certificate signed by the CA (`client.pem`, `client.key`) and one
/// signed by another CA (`rogue.pem`, `rogue.key`). False when openssl is missing.
fn make_certs(dir: &Path) -> bool {
    if !Path::new("/usr/bin/openssl").exists() {
        assert!(
            std::env::var("FLEETGATE_ALLOW_SKIP").as_deref() == Ok("1"),
            "/usr/bin/openssl is required (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: /usr/bin/openssl is missing");
        return false;
    }
    let script = r#"
set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() { openssl req -x509 $ec -days 1 -subj "/CN=$1" -keyout $1.key -out $1.pem; }
leaf() { # NAME CA EXT
  openssl req $ec -subj "/CN=$1" -keyout $1.key -out $1.csr
  printf '%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -days 1 -extfile $1.ext -out $1.pem
}
ca ca
ca other-ca
leaf hub ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
leaf client ca "extendedKeyUsage=clientAuth"
leaf rogue other-ca "extendedKeyUsage=clientAuth"
"#;
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_need_a_client_certificate_from_the_given_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    if !make_certs(&certs) {
        return;
    }
    let file = |n: &str| certs.join(n).display().to_string();
    let mut hub = Hub::start(&[
        "--tls-cert",
        &file("hub.pem"),
        "--tls-key",
        &file("hub.key"),
        "--tls-client-ca",
        &file("ca.pem"),
    ]);
    hub.use_tls(&std::fs::read(certs.join("ca.pem")).unwrap());

    // With a client certificate of the CA: enrolled, pushing, on /metrics.
    let args = AgentArgs::new(&hub, "trusted", &tmp.path().join("trusted")).with([
        "--tls-cert",
        &file("client.pem"),
        "--tls-key",
        &file("client.key"),
        "--tls-ca",
        &file("ca.pem"),
    ]);
    let mut trusted = Agent::start(args.args());
    eventually(Duration::from_secs(30), "the trusted node up", || {
        let hub = &hub;
        async move { (hub.node_state("trusted").await.as_deref() == Some("up")).then_some(()) }
    })
    .await;
    let fams = hub.metrics().await;
    assert!(
        value(&fams, "process_start_time_seconds", &[("node", "trusted")]).is_some(),
        "the trusted node is not on /metrics"
    );

    // Without a client certificate, and with one of another CA: never enrolled.
    let mut refused = Vec::new();
    for (node, identity) in [
        ("anonymous", None),
        ("rogue", Some(("rogue.pem", "rogue.key"))),
    ] {
        let mut args =
            AgentArgs::new(&hub, node, &tmp.path().join(node)).with(["--tls-ca", &file("ca.pem")]);
        if let Some((cert, key)) = identity {
            args = args.with(["--tls-cert", &file(cert), "--tls-key", &file(key)]);
        }
        refused.push(Agent::start(args.args()));
    }
    // Without a certificate the hub answers 401 naming the cause: a refusal the agent does
    // not retry, so it stops, saying why.
    let status = refused[0].wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{}", refused[0].log());
    assert!(
        refused[0].log().contains("requires a client certificate"),
        "{}",
        refused[0].log()
    );
    // A certificate of another CA fails the TLS handshake: the agent keeps trying.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        refused[1].is_running(),
        "rogue exited: {}",
        refused[1].log()
    );
    assert!(
        refused[1].log().contains("cannot enroll yet"),
        "{}",
        refused[1].log()
    );
    for node in ["anonymous", "rogue"] {
        assert_eq!(hub.node_state(node).await, None, "{node} was enrolled");
        let stored = StateDir::for_hub(&tmp.path().join(node), &hub.base_url());
        assert!(!stored.path().join("push.token").exists());
    }
    let fams = hub.metrics().await;
    assert!(
        value(
            &fams,
            "fleetgate_hub_auth_failures_total",
            &[("route", "add_node")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // The trusted node kept pushing meanwhile.
    assert_eq!(hub.node_state("trusted").await.as_deref(), Some("up"));
    assert!(refused[1].terminate().await.success());
    assert!(trusted.terminate().await.success());
}
