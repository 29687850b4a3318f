//! etcd's prometheus metrics, under etcd's names, help texts, types and buckets, so dashboards
//! and tools made for etcd read ours (`etcdctl check datascale` reads
//! `process_resident_memory_bytes`; the test harness finds the leader by
//! `etcd_server_is_leader 1`).
//!
//! One process-wide set, as in etcd: the server core updates the fields of [`metrics()`], and
//! `/metrics` renders it. Gauges the client router can read from the core (leadership, member
//! id, database size) it refreshes itself on every scrape.

pub(crate) mod hooks;

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::SERVER_VERSION;

/// The metrics of this process. Each field is a cheap handle (clone it to keep it).
pub struct Metrics {
    registry: Registry,
    /// `etcd_server_has_leader`: 1 while this member knows a leader.
    pub has_leader: IntGauge,
    /// `etcd_server_is_leader`: 1 while this member is the leader.
    pub is_leader: IntGauge,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes_seen_total: IntCounter,
    /// `etcd_server_proposals_committed_total`: the raft commit index (a gauge in etcd).
    pub proposals_committed_total: IntGauge,
    /// `etcd_server_proposals_applied_total`: the applied index (a gauge in etcd).
    pub proposals_applied_total: IntGauge,
    /// `etcd_server_proposals_pending`: proposals waiting to be committed.
    pub proposals_pending: IntGauge,
    /// `etcd_server_proposals_failed_total`.
    pub proposals_failed_total: IntCounter,
    /// `etcd_server_id{server_id="<hex member id>"}` = 1.
    pub server_id: IntGaugeVec,
    /// `etcd_server_quota_backend_bytes`.
    pub quota_backend_bytes: IntGauge,
    /// `etcd_server_health_success`: `/health` answers that were healthy.
    pub health_success: IntCounter,
    /// `etcd_server_health_failures`: `/health` answers that were not.
    pub health_failures: IntCounter,
    /// `etcd_mvcc_db_total_size_in_bytes`: the backend file's size.
    pub db_total_size_in_bytes: IntGauge,
    /// `etcd_mvcc_db_total_size_in_use_in_bytes`: the part of it holding live data.
    pub db_total_size_in_use_in_bytes: IntGauge,
    /// `etcd_debugging_mvcc_keys_total`.
    pub mvcc_keys_total: IntGauge,
    /// `etcd_disk_wal_fsync_duration_seconds`.
    pub wal_fsync_duration_seconds: Histogram,
    /// `etcd_disk_backend_commit_duration_seconds`.
    pub backend_commit_duration_seconds: Histogram,
    /// `etcd_network_snapshot_send_success{To="<hex member id>"}`.
    pub snapshot_send_success: IntCounterVec,
    /// `etcd_network_snapshot_send_failures{To}`.
    pub snapshot_send_failures: IntCounterVec,
    /// `etcd_network_snapshot_receive_success{From="<hex member id>"}`.
    pub snapshot_receive_success: IntCounterVec,
    /// `etcd_network_snapshot_receive_failures{From}`.
    pub snapshot_receive_failures: IntCounterVec,
    /// `etcd_debugging_auth_revision`: the auth store's revision.
    pub auth_revision: IntGauge,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// etcd's disk latency buckets: 1 ms doubling to 8.192 s.
fn disk_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 14).expect("constant bucket parameters are valid")
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            has_leader: IntGauge::new(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            )
            .expect("valid metric"),
            is_leader: IntGauge::new(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            )
            .expect("valid metric"),
            leader_changes_seen_total: IntCounter::new(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            )
            .expect("valid metric"),
            proposals_committed_total: IntGauge::new(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            )
            .expect("valid metric"),
            proposals_applied_total: IntGauge::new(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            )
            .expect("valid metric"),
            proposals_pending: IntGauge::new(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )
            .expect("valid metric"),
            proposals_failed_total: IntCounter::new(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )
            .expect("valid metric"),
            server_id: IntGaugeVec::new(
                Opts::new(
                    "etcd_server_id",
                    "Server or member ID in hexadecimal format. 1 for 'server_id' label with \
                     current ID.",
                ),
                &["server_id"],
            )
            .expect("valid metric"),
            quota_backend_bytes: IntGauge::new(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            )
            .expect("valid metric"),
            health_success: IntCounter::new(
                "etcd_server_health_success",
                "The total number of successful health checks",
            )
            .expect("valid metric"),
            health_failures: IntCounter::new(
                "etcd_server_health_failures",
                "The total number of failed health checks",
            )
            .expect("valid metric"),
            db_total_size_in_bytes: IntGauge::new(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )
            .expect("valid metric"),
            db_total_size_in_use_in_bytes: IntGauge::new(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )
            .expect("valid metric"),
            mvcc_keys_total: IntGauge::new(
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            )
            .expect("valid metric"),
            wal_fsync_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "etcd_disk_wal_fsync_duration_seconds",
                    "The latency distributions of fsync called by WAL.",
                )
                .buckets(disk_buckets()),
            )
            .expect("valid metric"),
            backend_commit_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "etcd_disk_backend_commit_duration_seconds",
                    "The latency distributions of commit called by backend.",
                )
                .buckets(disk_buckets()),
            )
            .expect("valid metric"),
            snapshot_send_success: IntCounterVec::new(
                Opts::new(
                    "etcd_network_snapshot_send_success",
                    "Total number of successful snapshot sends",
                ),
                &["To"],
            )
            .expect("valid metric"),
            snapshot_send_failures: IntCounterVec::new(
                Opts::new(
                    "etcd_network_snapshot_send_failures",
                    "Total number of snapshot send failures",
                ),
                &["To"],
            )
            .expect("valid metric"),
            snapshot_receive_success: IntCounterVec::new(
                Opts::new(
                    "etcd_network_snapshot_receive_success",
                    "Total number of successful snapshot receives",
                ),
                &["From"],
            )
            .expect("valid metric"),
            snapshot_receive_failures: IntCounterVec::new(
                Opts::new(
                    "etcd_network_snapshot_receive_failures",
                    "Total number of snapshot receive failures",
                ),
                &["From"],
            )
            .expect("valid metric"),
            auth_revision: IntGauge::new(
                "etcd_debugging_auth_revision",
                "The current revision of auth store.",
            )
            .expect("valid metric"),
            registry,
        };
        let server_version = IntGaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )
        .expect("valid metric");
        server_version.with_label_values(&[SERVER_VERSION]).set(1);

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.has_leader.clone()),
            Box::new(m.is_leader.clone()),
            Box::new(m.leader_changes_seen_total.clone()),
            Box::new(m.proposals_committed_total.clone()),
            Box::new(m.proposals_applied_total.clone()),
            Box::new(m.proposals_pending.clone()),
            Box::new(m.proposals_failed_total.clone()),
            Box::new(m.server_id.clone()),
            Box::new(server_version),
            Box::new(m.quota_backend_bytes.clone()),
            Box::new(m.health_success.clone()),
            Box::new(m.health_failures.clone()),
            Box::new(m.db_total_size_in_bytes.clone()),
            Box::new(m.db_total_size_in_use_in_bytes.clone()),
            Box::new(m.mvcc_keys_total.clone()),
            Box::new(m.wal_fsync_duration_seconds.clone()),
            Box::new(m.backend_commit_duration_seconds.clone()),
            Box::new(m.snapshot_send_success.clone()),
            Box::new(m.snapshot_send_failures.clone()),
            Box::new(m.snapshot_receive_success.clone()),
            Box::new(m.snapshot_receive_failures.clone()),
            Box::new(m.auth_revision.clone()),
            // process_resident_memory_bytes, process_cpu_seconds_total, open fds...
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            m.registry
                .register(c)
                .expect("each metric is registered once, under a distinct name");
        }
        m
    }

    /// Sets `etcd_server_id` to this member (etcd labels it with the id in hex).
    pub fn set_member_id(&self, id: u64) {
        self.server_id.reset();
        self.server_id
            .with_label_values(&[&format!("{id:x}")])
            .set(1);
    }

    /// Sets the leadership gauges from what the member knows.
    pub fn set_leader(&self, member_id: u64, leader: Option<u64>) {
        self.has_leader.set(i64::from(leader.is_some()));
        self.is_leader.set(i64::from(leader == Some(member_id)));
    }

    /// The prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` (with its labels, as printed) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
    }

    #[test]
    fn etcds_metric_names_are_exposed() {
        let text = metrics().render();
        for (name, kind) in [
            ("etcd_server_has_leader", "gauge"),
            ("etcd_server_is_leader", "gauge"),
            ("etcd_server_leader_changes_seen_total", "counter"),
            ("etcd_server_proposals_committed_total", "gauge"),
            ("etcd_server_proposals_applied_total", "gauge"),
            ("etcd_server_proposals_pending", "gauge"),
            ("etcd_server_proposals_failed_total", "counter"),
            ("etcd_server_version", "gauge"),
            ("etcd_server_quota_backend_bytes", "gauge"),
            ("etcd_server_health_success", "counter"),
            ("etcd_server_health_failures", "counter"),
            ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
            ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
            ("etcd_debugging_mvcc_keys_total", "gauge"),
            ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
            ("etcd_disk_backend_commit_duration_seconds", "histogram"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_cpu_seconds_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing from:\n{text}"
            );
        }
        assert_eq!(
            sample(&text, "etcd_server_version{server_version=\"3.5.17\"}"),
            Some(1.0)
        );
        assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
        // etcd's buckets: 1 ms doubling, 14 of them, then +Inf.
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"}"));
        assert!(!text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"16.384\"}"));
    }

    #[test]
    fn labelled_and_observed_metrics_render_as_etcds() {
        // A Metrics of its own, so that tests sharing the process-wide one do not interfere.
        let m = Metrics::new();
        m.set_member_id(0xbac7_efc3_61f1_457e);
        m.set_leader(1, Some(1));
        m.snapshot_send_success.with_label_values(&["2a"]).inc();
        m.snapshot_receive_success
            .with_label_values(&["1"])
            .inc_by(2);
        m.wal_fsync_duration_seconds.observe(0.003);
        m.proposals_committed_total.set(6);
        let text = m.render();
        assert_eq!(
            sample(&text, "etcd_server_id{server_id=\"bac7efc361f1457e\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "etcd_server_is_leader"), Some(1.0));
        assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
        assert_eq!(
            sample(&text, "etcd_network_snapshot_send_success{To=\"2a\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "etcd_network_snapshot_receive_success{From=\"1\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "etcd_server_proposals_committed_total"),
            Some(6.0)
        );

        m.set_leader(1, Some(2));
        m.set_member_id(7);
        let text = m.render();
        assert_eq!(sample(&text, "etcd_server_is_leader"), Some(0.0));
        assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
        assert_eq!(sample(&text, "etcd_server_id{server_id=\"7\"}"), Some(1.0));
        assert!(!text.contains("bac7efc361f1457e"), "the old id is gone");
        m.set_leader(1, None);
        assert_eq!(sample(&m.render(), "etcd_server_has_leader"), Some(0.0));
    }
}
