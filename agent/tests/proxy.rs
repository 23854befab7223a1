//! Pushes through a real HTTP proxy (Debian's tinyproxy) on loopback: with `HTTP_PROXY` the
//! agent's enrollment and pushes arrive at the hub and show in the proxy's log; with `NO_PROXY`
//! naming the hub they go direct; `--proxy` wins over the environment and carries a password
//! that never shows in the agent's log; a proxy refusing the credentials is named as such,
//! retried, and never taken for the hub removing the node; with a list of hubs every hub's
//! enrollment, pushes and `deregister` go through the proxy.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use fleetgate_testkit::{command, eventually, require_tool, Agent, AgentArgs, Binary, Hub};

/// A tinyproxy on a free loopback port, logging every request; killed on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(bin: &Path, basic_auth: Option<(&str, &str)>) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\n"
        );
        if let Some((user, password)) = basic_auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        std::fs::write(dir.path().join("tinyproxy.conf"), conf).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("tinyproxy.conf"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let proxy = Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tinyproxy did not listen:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests for `path` on `hub` the proxy forwarded.
    fn requests(&self, hub: &Hub, path: &str) -> usize {
        let want = format!("POST {} HTTP/1.1", hub.url(path));
        self.log().lines().filter(|l| l.contains(&want)).count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An agent for `hub` with exactly the proxy variables in `env` and the flags `extra`; its
/// state dir is `state/<node>`.
fn proxied_agent(
    hub: &Hub,
    state: &tempfile::TempDir,
    node: &str,
    env: &[(&str, &str)],
    extra: &[&str],
) -> Agent {
    let args = AgentArgs::new(hub, node, &state.path().join(node)).with(extra.iter().copied());
    let mut cmd = without_proxy_variables();
    cmd.args(args.args()).envs(env.iter().copied());
    Agent::spawn(cmd)
}

/// The agent's command with none of the proxy variables of the test's environment.
fn without_proxy_variables() -> Command {
    let mut cmd = command(Binary::Agent);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Accepted pushes of `node` as its agent counts them, from the hub's /metrics.
async fn pushes(hub: &Hub, node: &str) -> f64 {
    hub.metrics()
        .await
        .iter()
        .filter(|f| f.name == "fleetgate_agent_pushes_total")
        .flat_map(|f| &f.series)
        .filter(|s| s.labels.iter().any(|l| l.name == "node" && l.value == node))
        .map(|s| match s.value {
            fleetgate_shared::Value::Scalar(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn wait_pushes(hub: &Hub, node: &str, at_least: f64) {
    eventually(
        Duration::from_secs(30),
        &format!("{at_least} pushes of {node} at the hub"),
        || async { (pushes(hub, node).await >= at_least).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn pushes_go_through_the_proxy_the_environment_names_unless_no_proxy() {
    let Some(bin) = require_tool("tinyproxy") else {
        return;
    };
    let proxy = Tinyproxy::start(&bin, None);
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&[]);

    let via = proxied_agent(
        &hub,
        &dir,
        "via-proxy",
        &[("HTTP_PROXY", &proxy.url())],
        &[],
    );
    wait_pushes(&hub, "via-proxy", 5.0).await;
    assert_eq!(proxy.requests(&hub, "/add_node"), 1, "{}", proxy.log());
    assert!(proxy.requests(&hub, "/push") >= 5, "{}", proxy.log());
    assert!(
        via.log().contains("outbound=proxy from HTTP_PROXY"),
        "{}",
        via.log()
    );
    drop(via);

    // NO_PROXY naming the hub's address: direct, the proxy sees nothing more.
    let before = proxy.requests(&hub, "/push") + proxy.requests(&hub, "/add_node");
    let _direct = proxied_agent(
        &hub,
        &dir,
        "direct",
        &[
            ("HTTP_PROXY", &proxy.url()),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
        &[],
    );
    wait_pushes(&hub, "direct", 5.0).await;
    let after = proxy.requests(&hub, "/push") + proxy.requests(&hub, "/add_node");
    assert_eq!(before, after, "{}", proxy.log());
}

#[tokio::test]
async fn the_proxy_flag_wins_and_its_password_stays_secret() {
    let Some(bin) = require_tool("tinyproxy") else {
        return;
    };
    let proxy = Tinyproxy::start(&bin, Some(("fleet", "pr0xy-s3cret")));
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&[]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let with_auth = format!("http://fleet:pr0xy-s3cret@127.0.0.1:{}", proxy.port);

    // The environment names a proxy that is not there; the flag's is used.
    let agent = proxied_agent(
        &hub,
        &dir,
        "flagged",
        &[("HTTP_PROXY", &dead)],
        &["--proxy", &with_auth],
    );
    wait_pushes(&hub, "flagged", 3.0).await;
    assert!(proxy.requests(&hub, "/push") >= 3, "{}", proxy.log());
    let log = agent.log();
    assert!(log.contains("fleet:***@127.0.0.1"), "{log}");
    assert!(
        !log.contains("pr0xy-s3cret"),
        "the password is in the log:\n{log}"
    );
    drop(agent);

    // Without credentials the proxy answers 407; with wrong ones tinyproxy answers 401 with a
    // Basic challenge. Neither is the hub's answer: the agent keeps retrying, says why, and
    // does not take it for a removal.
    let bare = proxy.url();
    let wrong = format!("http://fleet:wrong-password@127.0.0.1:{}", proxy.port);
    for (node, url, says) in [
        ("no-credentials", bare.as_str(), "407"),
        ("bad-credentials", wrong.as_str(), "refused the credentials"),
    ] {
        let mut agent = proxied_agent(&hub, &dir, node, &[], &["--proxy", url]);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !agent.log().contains(says) {
            assert!(
                std::time::Instant::now() < deadline,
                "{node}: no {says:?} in the log:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(agent.is_running(), "{}", agent.log());
        assert!(!agent.log().contains("wrong-password"), "{}", agent.log());
        assert!(!agent.log().contains("removed"), "{}", agent.log());
        assert_eq!(hub.node_state(node).await, None);
    }
}

#[tokio::test]
async fn every_hub_of_a_list_is_reached_through_the_proxy_and_deregister_too() {
    let Some(bin) = require_tool("tinyproxy") else {
        return;
    };
    let proxy = Tinyproxy::start(&bin, None);
    let dir = tempfile::tempdir().unwrap();
    let hub_a = Hub::start(&[]);
    let hub_b = Hub::start(&[]);
    let state = dir.path().join("state");
    let mut config = format!(
        "node = \"two-hubs\"\nstate_dir = \"{}\"\ninterval = \"200ms\"\ncollectors = []\n",
        state.display()
    );
    for hub in [&hub_a, &hub_b] {
        config.push_str(&format!(
            "\n[[hubs]]\nurl = \"{}\"\nenroll_token_file = \"{}\"\n",
            hub.base_url(),
            hub.enroll_token_file().display()
        ));
    }
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.display().to_string();

    let mut cmd = without_proxy_variables();
    cmd.args(["--config", &config_arg, "--proxy", &proxy.url()]);
    let agent = Agent::spawn(cmd);
    for hub in [&hub_a, &hub_b] {
        wait_pushes(hub, "two-hubs", 3.0).await;
        assert_eq!(proxy.requests(hub, "/add_node"), 1, "{}", proxy.log());
        assert!(proxy.requests(hub, "/push") >= 3, "{}", proxy.log());
    }
    drop(agent);

    let out = without_proxy_variables()
        .args([
            "deregister",
            "--config",
            &config_arg,
            "--proxy",
            &proxy.url(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("deregistered from 2 of 2 hubs"), "{stderr}");
    for hub in [&hub_a, &hub_b] {
        assert_eq!(proxy.requests(hub, "/remove_node"), 1, "{}", proxy.log());
        assert_eq!(hub.node_state("two-hubs").await.as_deref(), Some("removed"));
    }
}
