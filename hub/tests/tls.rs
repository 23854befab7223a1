//! HTTPS with `--tls-cert/--tls-key` (rustls), using a self-signed certificate made by the real
//! openssl for this test.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::Command;

use fleetgate_shared::MetricType;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::{require_tool, Hub};

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let Some(openssl_bin) = require_tool("openssl") else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let path = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let status = Command::new(&openssl_bin)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    // A throwaway CA, and a server certificate for 127.0.0.1 signed by it.
    let (ca, ca_key, csr, cert, key, ext) = (
        path("ca.pem"),
        path("ca.key"),
        path("srv.csr"),
        path("cert.pem"),
        path("key.pem"),
        path("ext.cnf"),
    );
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        &cert,
        "-extfile",
        &ext,
    ]);
    let mut hub = Hub::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let pem = std::fs::read(&ca).unwrap();
    hub.use_tls(&pem);
    let token = hub.enroll("tls-node", &[]).await;
    let snap = snapshot(
        1,
        60_000,
        vec![family(
            "tls_value",
            MetricType::Gauge,
            vec![scalar(&[], 3.0)],
        )],
    );
    assert_eq!(hub.push(&token, &snap).await.status(), 200);
    assert!(hub
        .metrics_text()
        .await
        .contains("tls_value{instance=\"tls-node\",node=\"tls-node\"} 3\n"));

    // Plain HTTP to the TLS port does not get metrics.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/metrics", hub.addr()))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}
