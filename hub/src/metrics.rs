//! The hub's own metrics (`fleetgate_hub_*`), kept in a `prometheus` registry and appended to
//! `/metrics` with its text encoder. They carry no node labels of their own except `node` on the
//! quarantine gauge and the refused-pushes counter; Prometheus adds job and instance.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Handles to every self-metric.
#[derive(Debug, Clone)]
pub struct HubMetrics {
    registry: Registry,
    /// Pushes by result (ok, out_of_order, conflict, unauthorized, too_large, malformed,
    /// invalid, unsupported).
    pub pushes: IntCounterVec,
    /// Request body bytes of pushes by result.
    pub push_bytes: IntCounterVec,
    /// Samples accepted.
    pub ingested_samples: IntCounter,
    /// Time to render `/metrics`.
    pub render_duration: Histogram,
    /// Nodes by state (up, stale, removed).
    pub nodes: IntGaugeVec,
    /// Series refused, by reason.
    pub rejected_series: IntCounterVec,
    /// Families of a node held back by a type conflict.
    pub quarantined_families: IntGaugeVec,
    /// Connections open now.
    pub connections: IntGauge,
    /// Connections closed without being served, by reason ([`crate::guard::Refusal`]).
    pub refused_connections: IntCounterVec,
    /// Pushes answered 429 because ingest was saturated.
    pub overload: IntCounter,
    /// Requests with a missing or wrong token, by route.
    pub auth_failures: IntCounterVec,
    /// Requests answered 429 because their source failed authentication too often, by route.
    pub auth_rate_limited: IntCounterVec,
    /// Audit records that could not be written (each is logged instead).
    pub audit_failures: IntCounter,
    /// Pushes of an enrolled node refused, by node and reason.
    node_refused_pushes: IntCounterVec,
}

/// The `reason` values of `fleetgate_hub_node_refused_pushes_total`: the push results that mean
/// an authenticated node's push was refused and its interval lost.
pub const REFUSED_PUSH_REASONS: [&str; 4] = ["unsupported", "too_large", "malformed", "invalid"];

impl HubMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let pushes = IntCounterVec::new(
            Opts::new("fleetgate_hub_pushes_total", "Pushes received, by result."),
            &["result"],
        )
        .expect("static metric definition");
        let push_bytes = IntCounterVec::new(
            Opts::new(
                "fleetgate_hub_push_bytes_total",
                "Request body bytes of pushes, by result.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let ingested_samples = IntCounter::new(
            "fleetgate_hub_ingested_samples_total",
            "Samples accepted from pushes.",
        )
        .expect("static metric definition");
        let render_duration = Histogram::with_opts(
            HistogramOpts::new(
                "fleetgate_hub_render_duration_seconds",
                "Time to render /metrics.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("static metric definition");
        let nodes = IntGaugeVec::new(
            Opts::new("fleetgate_hub_nodes", "Enrolled nodes by state."),
            &["state"],
        )
        .expect("static metric definition");
        let rejected_series = IntCounterVec::new(
            Opts::new(
                "fleetgate_hub_rejected_series_total",
                "Series refused, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let quarantined_families = IntGaugeVec::new(
            Opts::new(
                "fleetgate_hub_quarantined_families",
                "Families of a node not exposed because their TYPE conflicts with other nodes.",
            ),
            &["node"],
        )
        .expect("static metric definition");
        let connections = IntGauge::new("fleetgate_hub_connections", "Connections open now.")
            .expect("static metric definition");
        let refused_connections = IntCounterVec::new(
            Opts::new(
                "fleetgate_hub_refused_connections_total",
                "Connections closed without being served, by reason (max_connections, \
                 header_timeout, header_too_large, malformed, tls, request_timeout).",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let overload = IntCounter::new(
            "fleetgate_hub_overload_total",
            "Pushes answered 429 because --max-pending-pushes were waiting for ingest.",
        )
        .expect("static metric definition");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "fleetgate_hub_auth_failures_total",
                "Requests with a missing or wrong token, by route.",
            ),
            &["route"],
        )
        .expect("static metric definition");
        let auth_rate_limited = IntCounterVec::new(
            Opts::new(
                "fleetgate_hub_auth_rate_limited_total",
                "Requests answered 429 because their source address failed authentication \
                 too often, by route.",
            ),
            &["route"],
        )
        .expect("static metric definition");
        let audit_failures = IntCounter::new(
            "fleetgate_hub_audit_write_failures_total",
            "Audit records that could not be appended to DATA_DIR/audit.log.",
        )
        .expect("static metric definition");
        let node_refused_pushes = IntCounterVec::new(
            Opts::new(
                "fleetgate_hub_node_refused_pushes_total",
                "Pushes of an enrolled node refused (its interval lost), by node and reason.",
            ),
            &["node", "reason"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(pushes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(push_bytes.clone()),
            Box::new(ingested_samples.clone()),
            Box::new(render_duration.clone()),
            Box::new(nodes.clone()),
            Box::new(rejected_series.clone()),
            Box::new(quarantined_families.clone()),
            Box::new(connections.clone()),
            Box::new(refused_connections.clone()),
            Box::new(overload.clone()),
            Box::new(auth_failures.clone()),
            Box::new(auth_rate_limited.clone()),
            Box::new(audit_failures.clone()),
            Box::new(node_refused_pushes.clone()),
        ] {
            // Names are distinct constants, so registration cannot collide.
            let _ = registry.register(c);
        }
        for state in ["up", "stale", "removed"] {
            nodes.with_label_values(&[state]).set(0);
        }
        HubMetrics {
            registry,
            pushes,
            push_bytes,
            ingested_samples,
            render_duration,
            nodes,
            rejected_series,
            quarantined_families,
            connections,
            refused_connections,
            overload,
            auth_failures,
            auth_rate_limited,
            audit_failures,
            node_refused_pushes,
        }
    }

    /// Counts one refused push of an authenticated `node`: `result` is one of
    /// [`REFUSED_PUSH_REASONS`] (any other result is not a refusal and is ignored).
    pub fn node_refused(&self, node: &str, result: &str) {
        if REFUSED_PUSH_REASONS.contains(&result) {
            self.node_refused_pushes
                .with_label_values(&[node, result])
                .inc();
        }
    }

    /// Drops every series labelled with `node`, once the node is removed.
    pub fn forget_node(&self, node: &str) {
        let _ = self.quarantined_families.remove_label_values(&[node]);
        for reason in REFUSED_PUSH_REASONS {
            let _ = self
                .node_refused_pushes
                .remove_label_values(&[node, reason]);
        }
    }

    /// Counts one push and its body size under `result`.
    pub fn push(&self, result: &str, bytes: usize) {
        self.pushes.with_label_values(&[result]).inc();
        self.push_bytes
            .with_label_values(&[result])
            .inc_by(bytes as u64);
    }

    /// Appends the text exposition of every self-metric.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Encoding into a Vec fails only on invalid metric data, which these never hold.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), out) {
            tracing::error!(error = %e, "encoding self-metrics failed");
        }
    }
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}
