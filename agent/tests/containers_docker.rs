//! The container collector against the real Docker engine: containers started from a busybox
//! image built here with `docker import` show up with cAdvisor's names, labels and values, and
//! disappear once removed; a missing or dead socket only disables the collector.

use fleetgate_agent::collectors::containers::ContainerCollector;
use fleetgate_agent::collectors::{CollectError, Collector, MetricBuffer};
use fleetgate_shared::{Series, Value};
use fleetgate_testkit::docker::{engine, inspect, BusyboxImage, Container, SOCKET};
use fleetgate_testkit::require;

fn docker_available() -> bool {
    require("a running Docker engine", engine()).is_some()
}

async fn collect(collector: &mut ContainerCollector) -> MetricBuffer {
    let mut out = MetricBuffer::new();
    collector.collect(&mut out).await.expect("collect");
    out
}

fn series<'a>(out: &'a MetricBuffer, family: &str, container: &str) -> Vec<&'a Series> {
    out.families()
        .iter()
        .filter(|f| f.name == family)
        .flat_map(|f| f.series.iter())
        .filter(|s| label(s, "name") == Some(container))
        .collect()
}

fn label<'a>(s: &'a Series, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

fn value(s: &Series) -> f64 {
    match s.value {
        Value::Scalar(v) => v,
        ref other => panic!("not a scalar: {other:?}"),
    }
}

fn one(out: &MetricBuffer, family: &str, container: &str) -> f64 {
    let found = series(out, family, container);
    assert_eq!(found.len(), 1, "{family} for {container}: {found:?}");
    value(found[0])
}

#[tokio::test]
async fn busy_container_shows_rising_cpu_and_its_identity_labels() {
    if !docker_available() {
        return;
    }
    let image = BusyboxImage::build("cpu");
    let busy = Container::run(&image, "busy", &[], "yes > /dev/null");
    let mut collector = ContainerCollector::new(SOCKET).expect("collector");

    let first = collect(&mut collector).await;
    let cpu = series(&first, "container_cpu_usage_seconds_total", &busy.name);
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    assert_eq!(label(cpu[0], "cpu"), Some("total"));
    assert_eq!(label(cpu[0], "id"), Some(&*format!("/docker/{}", busy.id)));
    assert_eq!(label(cpu[0], "image"), Some(&*image.reference));
    let before = value(cpu[0]);

    // A CPU-bound process accrues CPU time continuously; wait (bounded) until it shows.
    let mut after = before;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let next = collect(&mut collector).await;
        after = one(&next, "container_cpu_usage_seconds_total", &busy.name);
        if after > before {
            break;
        }
    }
    assert!(
        after > before,
        "cpu usage did not rise: {before} -> {after}"
    );
    assert!(one(&first, "container_last_seen", &busy.name) > 1.6e9);
    assert!(one(&first, "container_start_time_seconds", &busy.name) > 1.6e9);
    assert!(one(&first, "container_memory_usage_bytes", &busy.name) > 0.0);
}

#[tokio::test]
async fn memory_limit_and_docker_labels_come_from_inspect() {
    if !docker_available() {
        return;
    }
    let image = BusyboxImage::build("spec");
    let limited = Container::run(&image, "limited", &["--memory", "64m"], "sleep 600");
    let labelled = Container::run(
        &image,
        "labelled",
        &["--label", "com.example.team=infra"],
        "sleep 600",
    );
    let capped = Container::run(&image, "capped", &["--cpus", "0.5"], "sleep 600");
    let mut collector = ContainerCollector::new(SOCKET).expect("collector");
    let out = collect(&mut collector).await;

    // `--cpus 0.5` is half of each 100 ms CFS period; only capped containers report CFS.
    assert_eq!(
        one(&out, "container_spec_cpu_quota", &capped.name),
        50_000.0
    );
    assert_eq!(
        one(&out, "container_spec_cpu_period", &capped.name),
        100_000.0
    );
    assert!(one(&out, "container_cpu_cfs_periods_total", &capped.name) >= 0.0);
    assert!(series(&out, "container_cpu_cfs_periods_total", &limited.name).is_empty());
    assert!(series(&out, "container_spec_cpu_quota", &limited.name).is_empty());

    let limit = "container_spec_memory_limit_bytes";
    assert_eq!(one(&out, limit, &limited.name), 67_108_864.0);
    assert_eq!(one(&out, limit, &labelled.name), 0.0, "unlimited is 0");

    let label_name = "container_label_com_example_team";
    let seen = series(&out, "container_last_seen", &labelled.name);
    assert_eq!(label(seen[0], label_name), Some("infra"));
    // The unlabelled container carries the label name too, empty.
    let seen = series(&out, "container_last_seen", &limited.name);
    assert_eq!(label(seen[0], label_name), Some(""));

    let text = fleetgate_shared::text::render(out.families());
    fleetgate_shared::text::parse(&text).expect("exposition parses");
}

#[tokio::test]
async fn removed_container_disappears_from_the_next_collection() {
    if !docker_available() {
        return;
    }
    let image = BusyboxImage::build("gone");
    let stays = Container::run(&image, "stays", &[], "sleep 600");
    let goes = Container::run(&image, "goes", &[], "sleep 600");
    let mut collector = ContainerCollector::new(SOCKET).expect("collector");

    let before = collect(&mut collector).await;
    assert_eq!(series(&before, "container_last_seen", &goes.name).len(), 1);
    let goes_name = goes.name.clone();
    drop(goes);

    let after = collect(&mut collector).await;
    assert!(
        after
            .families()
            .iter()
            .flat_map(|f| f.series.iter())
            .all(|s| label(s, "name") != Some(&*goes_name)),
        "removed container still reported"
    );
    assert_eq!(series(&after, "container_last_seen", &stays.name).len(), 1);
}

#[test]
fn missing_socket_only_disables_the_collector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("docker.sock");
    let err =
        ContainerCollector::new(missing.to_str().expect("utf-8 path")).expect_err("no socket");
    assert!(matches!(err, CollectError::Unavailable(_)), "{err:?}");

    // A socket file whose listener is gone (a dead daemon) is just as unavailable.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    assert!(dead.exists());
    let err = ContainerCollector::new(dead.to_str().expect("utf-8 path")).expect_err("dead socket");
    match err {
        CollectError::Unavailable(msg) => assert!(msg.contains("Docker"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

/// Whether the family exists for the container at all.
fn has(out: &MetricBuffer, family: &str, container: &str) -> bool {
    !series(out, family, container).is_empty()
}

/// A memory limit that `dd bs=64M` (a 64 MiB buffer) cannot fit in, swap included.
const SMALL_MEMORY: [&str; 4] = ["--memory", "16m", "--memory-swap", "16m"];
const ALLOCATE_64M: &str = "dd if=/dev/zero of=/dev/null bs=64M count=1";

#[tokio::test]
async fn oom_kill_in_a_container_is_counted_and_a_healthy_one_shows_zero() {
    if !docker_available() {
        return;
    }
    let image = BusyboxImage::build("oom");
    // dd is killed; the shell that started it lives on, so the container keeps running.
    let oom = Container::run(
        &image,
        "oom",
        &SMALL_MEMORY,
        &format!("{ALLOCATE_64M}; sleep 600"),
    );
    let calm = Container::run(&image, "calm", &[], "sleep 600");
    let mut collector = ContainerCollector::new(SOCKET).expect("collector");

    let mut kills = 0.0;
    let mut out = MetricBuffer::new();
    for _ in 0..100 {
        out = collect(&mut collector).await;
        kills = one(&out, "container_oom_events_total", &oom.name);
        if kills >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(kills, 1.0, "one OOM kill in {}", oom.name);
    assert_eq!(one(&out, "container_oom_events_total", &calm.name), 0.0);
    let family = out
        .families()
        .iter()
        .find(|f| f.name == "container_oom_events_total")
        .expect("family");
    assert_eq!(family.kind, fleetgate_shared::MetricType::Counter);
    assert_eq!(inspect(&oom.name, "{{.State.Running}}"), "true");
}

#[tokio::test]
async fn restart_under_a_restart_policy_shows_at_once_with_the_oom_kill_that_caused_it() {
    if !docker_available() {
        return;
    }
    let image = BusyboxImage::build("crashloop");
    // The main process is OOM-killed after 4 s; Docker starts the container again at once.
    let mut options = vec!["--restart", "always"];
    options.extend_from_slice(&SMALL_MEMORY);
    let looping = Container::run(
        &image,
        "crashloop",
        &options,
        &format!("sleep 4; exec {ALLOCATE_64M}"),
    );
    let mut collector = ContainerCollector::new(SOCKET).expect("collector");
    let first = collect(&mut collector).await;
    let started = one(&first, "container_start_time_seconds", &looping.name);
    assert_eq!(
        one(&first, "container_oom_events_total", &looping.name),
        0.0
    );

    // Wait (bounded) until the engine runs it again; the new run lives 4 s.
    let mut state = String::new();
    for _ in 0..150 {
        state = inspect(&looping.name, "{{.RestartCount}} {{.State.Status}}");
        if state != "0 running" && state.ends_with(" running") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        state.ends_with(" running") && !state.starts_with("0 "),
        "{state}"
    );

    // The very next collection has the new start time: not after the 5-minute refresh.
    let second = collect(&mut collector).await;
    let restarted = one(&second, "container_start_time_seconds", &looping.name);
    assert!(restarted > started, "start time {started} -> {restarted}");
    let docker_says =
        humantime::parse_rfc3339_weak(&inspect(&looping.name, "{{.State.StartedAt}}"))
            .expect("StartedAt")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
    assert!(
        (restarted - docker_says).abs() < 1e-3,
        "{restarted} vs Docker's {docker_says}"
    );
    // The kill ended the old run and its cgroup before the agent read it again: it comes
    // from the engine's oom event and is kept while the new run's cgroup counts from 0.
    assert!(
        one(&second, "container_oom_events_total", &looping.name) >= 1.0,
        "OOM kill of the previous run lost"
    );
}

#[tokio::test]
async fn without_visible_cgroups_restarts_show_from_the_cpu_reset_and_oom_is_left_out() {
    if !docker_available() {
        return;
    }
    let hidden = tempfile::tempdir().expect("tempdir");
    let image = BusyboxImage::build("nocgroup");
    // Each run burns CPU (capped at a fifth of a core) for 3 s and exits; the next run starts
    // its CPU time from 0.
    let looping = Container::run(
        &image,
        "cpuloop",
        &["--restart", "always", "--cpus", "0.2"],
        "yes > /dev/null & sleep 3; exit 1",
    );
    let mut collector = ContainerCollector::new(SOCKET)
        .expect("collector")
        .with_cgroup_root(hidden.path().to_path_buf());
    let first = collect(&mut collector).await;
    let started = one(&first, "container_start_time_seconds", &looping.name);
    assert!(!has(&first, "container_oom_events_total", &looping.name));

    let mut seen = started;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let out = collect(&mut collector).await;
        if let Some(s) = series(&out, "container_start_time_seconds", &looping.name).first() {
            seen = value(s);
        }
        assert!(!has(&out, "container_oom_events_total", &looping.name));
        if seen > started {
            break;
        }
    }
    assert!(
        seen > started,
        "restart not seen within 20 s without cgroups"
    );
    // Seen during the second run (from its CPU time starting again from 0, or from the engine
    // listing it as restarting in between), not minutes later when the spec is refreshed. On a
    // loaded machine one collection may fall between the second and the third run (each lasts
    // 3 s); the spec refresh would come many runs later.
    let restarts: u32 = inspect(&looping.name, "{{.RestartCount}}")
        .parse()
        .expect("restart count");
    assert!(
        (1..=2).contains(&restarts),
        "restart seen only after {restarts} restarts"
    );
}
