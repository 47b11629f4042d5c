//! `GET /metrics`: this node's state in the Prometheus text exposition format (version
//! 0.0.4), for monitoring systems. Every figure comes from the views the JSON routes already
//! serve (`/health`, `/raft/status`, `/binlog/syncer/status` on the leader,
//! `/binlog/server/status`, `/binlog/files`); this module only writes them as text.
//!
//! Pure formatting: no I/O, no locks.

use std::fmt::Write as _;

use super::model::{
    BinlogFileInfo, Health, LatencyView, RaftView, ServerState, ServerStatus, SyncerState,
    SyncerStatus,
};

/// The Content-Type of the reply.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one scrape shows; a part is None when this node cannot tell (the syncer's status
/// is the leader's alone).
pub struct Sample<'a> {
    pub health: &'a Health,
    pub raft: Option<&'a RaftView>,
    pub syncer: Option<&'a SyncerStatus>,
    pub server: Option<&'a ServerStatus>,
    pub files: Option<&'a [BinlogFileInfo]>,
}

/// The exposition text of `sample`.
pub fn render(sample: &Sample) -> String {
    let mut out = Exposition(String::new());
    let h = sample.health;
    out.one(
        "ferrobus_build_info",
        "gauge",
        "Always 1; the version is a label.",
        &[("version", &h.version)],
        1,
    );
    out.one(
        "ferrobus_uptime_seconds",
        "gauge",
        "Seconds since this process started.",
        &[],
        h.uptime_seconds,
    );
    out.one(
        "ferrobus_removed",
        "gauge",
        "1 when this node was removed from the cluster while it ran.",
        &[],
        u64::from(h.status == "removed"),
    );
    if let Some(raft) = sample.raft {
        raft_metrics(&mut out, raft);
    }
    if let Some(syncer) = sample.syncer {
        syncer_metrics(&mut out, syncer);
    }
    if let Some(server) = sample.server {
        server_metrics(&mut out, server);
    }
    if let Some(files) = sample.files {
        out.one(
            "ferrobus_binlog_files",
            "gauge",
            "Binlog files stored on this node.",
            &[],
            files.len() as u64,
        );
        out.one(
            "ferrobus_binlog_stored_bytes",
            "gauge",
            "Bytes of binlog stored on this node (the files as the master wrote them).",
            &[],
            files.iter().map(|f| f.bytes).sum(),
        );
        out.one(
            "ferrobus_binlog_stored_events",
            "gauge",
            "Binlog events stored on this node.",
            &[],
            files.iter().map(|f| f.events).sum(),
        );
    }
    out.0
}

fn raft_metrics(out: &mut Exposition, raft: &RaftView) {
    let gauges: [(&str, &str, u64); 8] = [
        ("ferrobus_raft_term", "Raft term.", raft.term),
        (
            "ferrobus_raft_is_leader",
            "1 when this node leads.",
            u64::from(raft.role == "leader"),
        ),
        (
            "ferrobus_raft_has_leader",
            "1 when this node knows a leader.",
            u64::from(raft.leader_id.is_some()),
        ),
        (
            "ferrobus_raft_commit_index",
            "Highest log index known committed.",
            raft.commit,
        ),
        (
            "ferrobus_raft_applied_index",
            "Highest log index applied (served).",
            raft.applied,
        ),
        (
            "ferrobus_raft_last_index",
            "Last log index.",
            raft.last_index,
        ),
        (
            "ferrobus_raft_voters",
            "Voting members.",
            raft.voters.len() as u64,
        ),
        (
            "ferrobus_raft_learners",
            "Learners (members catching up before they vote).",
            raft.learners.len() as u64,
        ),
    ];
    for (name, help, value) in gauges {
        out.one(name, "gauge", help, &[], value);
    }
    if !raft.peers.is_empty() {
        out.header(
            "ferrobus_raft_peer_matched_index",
            "gauge",
            "On the leader: the highest log index each follower is known to hold.",
        );
        for p in &raft.peers {
            out.sample(
                "ferrobus_raft_peer_matched_index",
                &[("peer", &p.name), ("id", &p.id)],
                p.matched,
            );
        }
        out.header(
            "ferrobus_raft_peer_heard_seconds",
            "gauge",
            "On the leader: seconds since each follower was last heard from (absent: never).",
        );
        for p in &raft.peers {
            if let Some(ms) = p.heard_ms_ago {
                out.sample_f(
                    "ferrobus_raft_peer_heard_seconds",
                    &[("peer", &p.name), ("id", &p.id)],
                    ms as f64 / 1000.0,
                );
            }
        }
    }
    out.summary(
        "ferrobus_raft_log_sync_seconds",
        "The log's fdatasyncs since the node started.",
        &raft.log_sync,
    );
    out.summary(
        "ferrobus_raft_proposal_seconds",
        "Proposals made here as leader, from the raft thread to applied (one commit round).",
        &raft.proposals,
    );
}

fn syncer_metrics(out: &mut Exposition, syncer: &SyncerStatus) {
    out.header(
        "ferrobus_syncer_state",
        "gauge",
        "On the leader: 1 for the syncer's current state.",
    );
    for state in [
        SyncerState::Running,
        SyncerState::Connecting,
        SyncerState::Stopped,
        SyncerState::Error,
    ] {
        out.sample(
            "ferrobus_syncer_state",
            &[("state", state.as_str())],
            u64::from(syncer.status == state),
        );
    }
    if let Some(lag) = syncer.lag_seconds {
        out.one(
            "ferrobus_syncer_lag_seconds",
            "gauge",
            "How far the last stored event is behind the master's clock.",
            &[],
            lag,
        );
    }
    if let Some(at) = syncer.last_error_at {
        out.one(
            "ferrobus_syncer_last_error_timestamp_seconds",
            "gauge",
            "When the syncer last failed (Unix time).",
            &[],
            at,
        );
    }
}

fn server_metrics(out: &mut Exposition, server: &ServerStatus) {
    out.one(
        "ferrobus_binlog_server_running",
        "gauge",
        "1 when this node's binlog server listens.",
        &[],
        u64::from(server.status == ServerState::Running),
    );
    out.one(
        "ferrobus_binlog_server_replicas",
        "gauge",
        "Replicas and clients dumping from this node now.",
        &[],
        server.slaves.len() as u64,
    );
}

/// The text being written.
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let _ = writeln!(self.0, "{name}{} {value}", label_set(labels));
    }

    fn sample_f(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.0, "{name}{} {value}", label_set(labels));
    }

    /// A metric of one sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.header(name, kind, help);
        self.sample(name, labels, value);
    }

    /// A latency histogram as a summary: quantiles (each its bucket's upper bound, at most
    /// 25 % above the true value), sum and count, in seconds.
    fn summary(&mut self, name: &str, help: &str, latency: &LatencyView) {
        self.header(name, "summary", help);
        let seconds = |us: u64| us as f64 / 1e6;
        for (quantile, us) in [
            ("0.5", latency.p50_us),
            ("0.9", latency.p90_us),
            ("0.99", latency.p99_us),
            ("0.999", latency.p999_us),
        ] {
            self.sample_f(name, &[("quantile", quantile)], seconds(us));
        }
        let sum = seconds(latency.sum_us);
        let _ = writeln!(self.0, "{name}_sum {sum}\n{name}_count {}", latency.count);
    }
}

/// `{a="x",b="y"}` with the values escaped as the format asks (backslash, quote, newline);
/// empty for no labels.
fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(key, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{PeerView, SlaveInfo, SlaveMode};

    fn latency(count: u64) -> LatencyView {
        LatencyView {
            count,
            // Not mean × count: the exact sum is what is exported.
            sum_us: 500 * count + 7,
            mean_us: 500,
            p50_us: 400,
            p90_us: 900,
            p99_us: 2_000,
            p999_us: 8_000,
            max_us: 9_000,
            buckets: vec![],
        }
    }

    fn health(status: &str) -> Health {
        Health {
            status: status.into(),
            version: "0.1.0".into(),
            uptime_seconds: 42,
            pid: 7,
        }
    }

    fn raft(role: &str, peers: Vec<PeerView>) -> RaftView {
        RaftView {
            id: "1a".into(),
            name: "n1".into(),
            role: role.into(),
            term: 3,
            leader_id: Some("1a".into()),
            commit: 90,
            applied: 89,
            first_index: 1,
            last_index: 91,
            persisted: 91,
            voters: vec!["1a".into(), "2b".into(), "3c".into()],
            learners: vec![],
            peers,
            log_sync: latency(80),
            proposals: latency(0),
            readies: 0,
            append_rounds: 0,
            proposed_entries: 0,
        }
    }

    /// Every line is a comment or `name{labels} value` with a value that parses, and every
    /// sample's metric was declared with `# TYPE` before it.
    fn assert_well_formed(text: &str) {
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "value of {line}");
            let name = series.split('{').next().unwrap();
            let base = name.trim_end_matches("_sum").trim_end_matches("_count");
            assert!(
                declared.iter().any(|d| d == name || d == base),
                "{name} sampled before its # TYPE"
            );
        }
    }

    #[test]
    fn a_leader_shows_raft_syncer_server_and_store() {
        let peers = vec![PeerView {
            id: "2b".into(),
            name: "n\"2".into(),
            matched: 91,
            next: 92,
            state: "replicate".into(),
            heard_ms_ago: Some(1_500),
        }];
        let raft = raft("leader", peers);
        let syncer = SyncerStatus {
            status: SyncerState::Running,
            lag_seconds: Some(2),
            ..Default::default()
        };
        let server = ServerStatus {
            addr: Some("0.0.0.0:3307".into()),
            user: Some("repl".into()),
            status: ServerState::Running,
            slaves: vec![SlaveInfo {
                server_id: 5,
                host: "127.0.0.1".into(),
                port: 40001,
                mode: SlaveMode::FilePos,
                position: "bin.000001:4".into(),
                bytes_sent: 99,
                connected_since: 0,
            }],
        };
        let files = vec![
            BinlogFileInfo {
                name: "bin.000001".into(),
                start_pos: 4,
                end_pos: 1_000,
                bytes: 1_000,
                events: 10,
                complete: true,
            },
            BinlogFileInfo {
                name: "bin.000002".into(),
                start_pos: 4,
                end_pos: 504,
                bytes: 504,
                events: 5,
                complete: true,
            },
        ];
        let text = render(&Sample {
            health: &health("ok"),
            raft: Some(&raft),
            syncer: Some(&syncer),
            server: Some(&server),
            files: Some(&files),
        });
        assert_well_formed(&text);
        for line in [
            "ferrobus_build_info{version=\"0.1.0\"} 1",
            "ferrobus_uptime_seconds 42",
            "ferrobus_removed 0",
            "ferrobus_raft_term 3",
            "ferrobus_raft_is_leader 1",
            "ferrobus_raft_commit_index 90",
            "ferrobus_raft_voters 3",
            "ferrobus_raft_peer_matched_index{peer=\"n\\\"2\",id=\"2b\"} 91",
            "ferrobus_raft_peer_heard_seconds{peer=\"n\\\"2\",id=\"2b\"} 1.5",
            "ferrobus_raft_log_sync_seconds{quantile=\"0.99\"} 0.002",
            "ferrobus_raft_log_sync_seconds_sum 0.040007",
            "ferrobus_raft_log_sync_seconds_count 80",
            "ferrobus_syncer_state{state=\"running\"} 1",
            "ferrobus_syncer_state{state=\"error\"} 0",
            "ferrobus_binlog_stored_events 15",
            "ferrobus_syncer_lag_seconds 2",
            "ferrobus_binlog_server_running 1",
            "ferrobus_binlog_server_replicas 1",
            "ferrobus_binlog_files 2",
            "ferrobus_binlog_stored_bytes 1504",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("last_error_timestamp"),
            "no error, no sample"
        );
    }

    #[test]
    fn a_follower_shows_what_it_knows() {
        let raft = raft("follower", vec![]);
        let text = render(&Sample {
            health: &health("removed"),
            raft: Some(&raft),
            syncer: None,
            server: None,
            files: None,
        });
        assert_well_formed(&text);
        assert!(text.contains("\nferrobus_removed 1\n"), "{text}");
        assert!(text.contains("\nferrobus_raft_is_leader 0\n"), "{text}");
        for absent in ["ferrobus_syncer", "ferrobus_raft_peer", "ferrobus_binlog"] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }
}
