//! The values the admin API carries: the arguments of the start commands and the status
//! replies, as serde types shared by the daemon (which persists the arguments), the HTTP
//! layer and `ctl` (which decodes the replies).
//!
//! This module holds plain data only: no validation (see `validate`), no I/O. Status types
//! must never hold a password, and the argument types never print one in `Debug`.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// What `Debug` prints instead of a password.
const REDACTED: &str = "<redacted>";

/// Arguments of `PUT /binlog/syncer/start`: which master to pull the binlog from, as whom,
/// and from where. Also the syncer's desired state that the daemon persists.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncerArgs {
    /// The server_id the syncer registers with on the master (like a replica's).
    pub syncer_id: u32,
    /// The master, as `host:port`.
    pub mysql_addr: String,
    pub mysql_user: String,
    pub mysql_password: String,
    /// The replica UUID announced to the master (`@slave_uuid`); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncer_uuid: Option<String>,
    /// Semi-synchronous replication; accepted in the type, rejected by validation for now.
    #[serde(default)]
    pub semi_sync: bool,
    /// MariaDB GTID list to start after, e.g. `0-1-100,1-2-5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// Binlog file to start in; comes with `binlog_pos`, excludes `gtid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_file: Option<String>,
    /// Byte offset in `binlog_file` to start at (4 = just after the magic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_pos: Option<u64>,
}

impl fmt::Debug for SyncerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncerArgs")
            .field("syncer_id", &self.syncer_id)
            .field("mysql_addr", &self.mysql_addr)
            .field("mysql_user", &self.mysql_user)
            .field("mysql_password", &REDACTED)
            .field("syncer_uuid", &self.syncer_uuid)
            .field("semi_sync", &self.semi_sync)
            .field("gtid", &self.gtid)
            .field("binlog_file", &self.binlog_file)
            .field("binlog_pos", &self.binlog_pos)
            .finish()
    }
}

/// Arguments of `PUT /binlog/server/start`: where the binlog server listens and the
/// credentials downstream replicas must present.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerArgs {
    /// Listen address, as `host:port`.
    pub addr: String,
    pub user: String,
    pub password: String,
    /// Password plugin replicas log in with: `mysql_native_password` or
    /// `caching_sha2_password`; absent: the node's `[server] auth_plugin` (native by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_plugin: Option<String>,
    /// PEM RSA private key of caching_sha2_password; absent: the node's
    /// `[server] rsa_private_key_path`, or a key pair generated per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsa_private_key_path: Option<String>,
}

impl fmt::Debug for ServerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerArgs")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &REDACTED)
            .field("auth_plugin", &self.auth_plugin)
            .field("rsa_private_key_path", &self.rsa_private_key_path)
            .finish()
    }
}

/// State of the syncer as `GET /binlog/syncer/status` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncerState {
    Running,
    Connecting,
    #[default]
    Stopped,
    Error,
}

impl SyncerState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncerState::Running => "running",
            SyncerState::Connecting => "connecting",
            SyncerState::Stopped => "stopped",
            SyncerState::Error => "error",
        }
    }
}

/// Reply data of `GET /binlog/syncer/status`. Absent values serialize as `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncerStatus {
    pub status: SyncerState,
    pub mysql_addr: Option<String>,
    pub mysql_user: Option<String>,
    pub syncer_id: Option<u32>,
    /// GTID of the last transaction stored.
    pub current_gtid: Option<String>,
    /// Master binlog file and end position of the last event stored.
    pub last_binlog_file: Option<String>,
    pub last_file_position: Option<u64>,
    pub executed_gtid_set: Option<String>,
    pub purged_gtid_set: Option<String>,
    /// The syncer's last error; it stays after the syncer recovers (as MySQL's
    /// Last_IO_Error does), with its time in `last_error_at`: `status` says whether it runs.
    pub last_error: Option<String>,
    /// When `last_error` happened, in seconds since the Unix epoch.
    #[serde(default)]
    pub last_error_at: Option<u64>,
    /// How far the stored binlog is behind the master, by event timestamps.
    pub lag_seconds: Option<u64>,
    /// Events and bytes stored since the syncer started.
    pub events: u64,
    pub bytes: u64,
}

/// State of the binlog server as `GET /binlog/server/status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    Running,
    Stopped,
    /// The server this node ran before it restarted: it resumes once the node has caught up
    /// with the cluster.
    Starting,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Running => "running",
            ServerState::Stopped => "stopped",
            ServerState::Starting => "starting",
        }
    }
}

/// How a downstream replica asked to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaveMode {
    Gtid,
    FilePos,
}

impl SlaveMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaveMode::Gtid => "gtid",
            SlaveMode::FilePos => "file_pos",
        }
    }
}

/// One connected downstream replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveInfo {
    pub server_id: u32,
    pub host: String,
    pub port: u16,
    pub mode: SlaveMode,
    /// Where it is being served from: a GTID set, or `file:pos`.
    pub position: String,
    pub bytes_sent: u64,
    /// When it connected, in seconds since the Unix epoch.
    pub connected_since: u64,
}

/// Reply data of `GET /binlog/server/status`. Absent values serialize as `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub addr: Option<String>,
    pub user: Option<String>,
    pub status: ServerState,
    pub slaves: Vec<SlaveInfo>,
}

/// Reply data of `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// "ok" when the node serves requests.
    pub status: String,
    /// The ferrobus version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// The daemon's process id (which process answers on this address); 0 from a node
    /// that does not say.
    #[serde(default)]
    pub pid: u32,
}

/// Reply data of `GET /raft/status`: this node's raft state, its log, and how long its log
/// syncs take. Ids are hex strings, as in `GET /members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftView {
    pub id: String,
    pub name: String,
    /// "leader", "follower", "learner", "candidate" or "pre_candidate".
    pub role: String,
    pub term: u64,
    /// The leader this node knows of; absent when none.
    pub leader_id: Option<String>,
    pub commit: u64,
    pub applied: u64,
    /// The first index still in the log (after compaction), the last written and the last
    /// durable one.
    pub first_index: u64,
    pub last_index: u64,
    pub persisted: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// On the leader, every other member's replication progress; empty elsewhere.
    pub peers: Vec<PeerView>,
    /// The log's fdatasyncs since the node started.
    pub log_sync: LatencyView,
    /// Proposals made on this node (as leader) since it started, from reaching the raft
    /// thread to applied here: the commit round as the syncer sees it.
    pub proposals: LatencyView,
    /// Readies handled, of which carried new proposals (proposals per round shows the group
    /// commit), entries proposed here.
    pub readies: u64,
    pub append_rounds: u64,
    pub proposed_entries: u64,
}

/// The leader's view of another member's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub id: String,
    /// Empty when the membership table does not name it (yet).
    pub name: String,
    /// The last index known to be in its log, and the next the leader sends.
    pub matched: u64,
    pub next: u64,
    /// "replicate", "probe" or "snapshot".
    pub state: String,
    /// Milliseconds since the leader last heard from it; absent if never.
    pub heard_ms_ago: Option<u64>,
}

/// A latency histogram: count, mean, quantiles and maximum in microseconds (a quantile is the
/// upper bound of its bucket, at most 25 % above the true value), and the non-empty buckets
/// as `[upper bound µs (exclusive), count]` so that two readings can be subtracted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyView {
    pub count: u64,
    /// The exact total of the durations recorded (µs), so that a reader can tell the sum
    /// of an interval; absent from older nodes' replies.
    #[serde(default)]
    pub sum_us: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub buckets: Vec<(u64, u64)>,
}

impl LatencyView {
    pub fn of(s: &crate::storage::LatencySnapshot) -> LatencyView {
        LatencyView {
            count: s.count(),
            sum_us: s.sum_us,
            mean_us: s.mean_us(),
            p50_us: s.quantile_us(0.5),
            p90_us: s.quantile_us(0.9),
            p99_us: s.quantile_us(0.99),
            p999_us: s.quantile_us(0.999),
            max_us: s.max_us,
            buckets: s.nonempty(),
        }
    }
}

/// Arguments of `POST /members`: a member to add. Addresses are `host:port` (validation
/// drops a leading `http://`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAdd {
    pub name: String,
    /// Where the other nodes reach its raft peer transport.
    pub peer_url: String,
    /// Its admin API; when absent, the node announces its own once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
}

/// Arguments of `PUT /members`: a member's new peer address (its id stays).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUpdate {
    pub name: String,
    pub new_peer_url: String,
}

/// Arguments of `PUT /members/announce`: a node makes its own admin API and binlog server
/// addresses known to the others (sent by the node itself to the leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAnnounce {
    pub name: String,
    pub admin_url: String,
    #[serde(default)]
    pub binlog_addr: Option<String>,
}

/// Arguments of `DELETE /members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemove {
    pub name: String,
}

/// Arguments of `PUT /binlog/purge`: drop the stored binlog before this file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeArgs {
    pub to_file: String,
}

/// One member as `GET /members` and `GET /cluster` show it, in kingbus's spelling:
/// `{"Id": "<hex raft id>", "name", "peerURLs": [...], "adminURLs": [...]}`, plus ferrobus's
/// `binlog_addr`, `role` and `isLearner` (etcd's spelling; true for the role `learner`), and
/// in `/cluster` the leader flag as both `isLeader` (kingbus) and `is_leader`, and, from
/// the leader, `heard_ms_ago`. The id is a hex string (as kingbus's `/cluster` gives it) so
/// that no JSON client rounds it to a double.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "MemberViewWire")]
pub struct MemberView {
    pub id: String,
    pub name: String,
    /// The peer address, `host:port` (a list, as in kingbus; one element).
    pub peer_urls: Vec<String>,
    /// The admin API address, `host:port`; empty until the member announces it.
    pub admin_urls: Vec<String>,
    /// The member's binlog server address, when it runs one.
    pub binlog_addr: Option<String>,
    /// Only in `/cluster`.
    pub is_leader: Option<bool>,
    pub role: MemberRole,
    /// Only in `/cluster` answered by the leader: milliseconds since the leader last heard
    /// from this member (0 for the leader itself); None for a member it never heard from
    /// since its process started, and from any other node.
    pub heard_ms_ago: Option<u64>,
}

/// A member's part in raft, as the node asked knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Votes (as every kingbus member does).
    #[default]
    Voter,
    /// Receives the log without voting, until it has caught up and the leader promotes it
    /// (a member added through `POST /members` starts so).
    Learner,
    /// In the member table but not in raft's membership: its raft change failed after the
    /// table entry was written (add it again), or a removal stopped halfway (remove it
    /// again).
    None,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::None => "none",
        }
    }
}

/// What a member looks like on the wire, read leniently: the leader flag may come in
/// either spelling (both at once is not a duplicate).
#[derive(Deserialize)]
struct MemberViewWire {
    #[serde(rename = "Id")]
    id: String,
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "adminURLs", default)]
    admin_urls: Vec<String>,
    #[serde(default)]
    binlog_addr: Option<String>,
    #[serde(rename = "isLeader", default)]
    is_leader_kingbus: Option<bool>,
    #[serde(default)]
    is_leader: Option<bool>,
    #[serde(default)]
    role: Option<MemberRole>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
    #[serde(default)]
    heard_ms_ago: Option<u64>,
}

impl From<MemberViewWire> for MemberView {
    fn from(wire: MemberViewWire) -> MemberView {
        MemberView {
            id: wire.id,
            name: wire.name,
            peer_urls: wire.peer_urls,
            admin_urls: wire.admin_urls,
            binlog_addr: wire.binlog_addr,
            is_leader: wire.is_leader.or(wire.is_leader_kingbus),
            role: wire.role.unwrap_or(if wire.is_learner {
                MemberRole::Learner
            } else {
                MemberRole::Voter
            }),
            heard_ms_ago: wire.heard_ms_ago,
        }
    }
}

impl MemberView {
    /// The raft id as `MemberView::id` spells it.
    pub fn format_id(id: u64) -> String {
        format!("{id:x}")
    }
}

impl Serialize for MemberView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 7
            + if self.is_leader.is_some() { 2 } else { 0 }
            + usize::from(self.heard_ms_ago.is_some());
        let mut out = serializer.serialize_struct("MemberView", fields)?;
        out.serialize_field("Id", &self.id)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("peerURLs", &self.peer_urls)?;
        out.serialize_field("adminURLs", &self.admin_urls)?;
        out.serialize_field("binlog_addr", &self.binlog_addr)?;
        out.serialize_field("role", &self.role)?;
        out.serialize_field("isLearner", &(self.role == MemberRole::Learner))?;
        if let Some(is_leader) = self.is_leader {
            out.serialize_field("isLeader", &is_leader)?;
            out.serialize_field("is_leader", &is_leader)?;
        }
        if let Some(ms) = self.heard_ms_ago {
            out.serialize_field("heard_ms_ago", &ms)?;
        }
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syncer_args() -> SyncerArgs {
        SyncerArgs {
            syncer_id: 7,
            mysql_addr: "db:3306".into(),
            mysql_user: "repl".into(),
            mysql_password: "s3cret-pw".into(),
            syncer_uuid: None,
            semi_sync: false,
            gtid: Some("0-1-5".into()),
            binlog_file: None,
            binlog_pos: None,
        }
    }

    #[test]
    fn debug_hides_passwords() {
        let text = format!("{:?}", syncer_args());
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains(REDACTED));
        let server = ServerArgs {
            addr: "0.0.0.0:3307".into(),
            user: "u".into(),
            password: "hunter2".into(),
            ..Default::default()
        };
        let text = format!("{server:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("0.0.0.0:3307"));
    }

    #[test]
    fn syncer_args_round_trip_without_absent_options() {
        let args = syncer_args();
        let json = serde_json::to_string(&args).unwrap();
        assert!(!json.contains("binlog_file"), "{json}");
        let back: SyncerArgs = serde_json::from_str(&json).unwrap();
        assert_eq!(back, args);
    }

    #[test]
    fn syncer_status_serializes_absent_values_as_null() {
        let status = SyncerStatus {
            status: SyncerState::Connecting,
            ..Default::default()
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(value["status"], "connecting");
        assert!(value["last_error"].is_null());
        assert!(value.as_object().unwrap().contains_key("lag_seconds"));
        let back: SyncerStatus = serde_json::from_value(value).unwrap();
        assert_eq!(back, status);
    }

    fn member(is_leader: Option<bool>) -> MemberView {
        MemberView {
            id: MemberView::format_id(0x757200e01244565),
            name: "n1".into(),
            peer_urls: vec!["10.0.0.1:9596".into()],
            admin_urls: vec!["10.0.0.1:9595".into()],
            binlog_addr: None,
            is_leader,
            role: MemberRole::Voter,
            heard_ms_ago: None,
        }
    }

    #[test]
    fn member_view_uses_kingbus_keys() {
        let value = serde_json::to_value(member(None)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"Id": "757200e01244565", "name": "n1",
                "peerURLs": ["10.0.0.1:9596"], "adminURLs": ["10.0.0.1:9595"],
                "binlog_addr": null, "role": "voter", "isLearner": false})
        );
        let back: MemberView = serde_json::from_value(value).unwrap();
        assert_eq!(back, member(None));
        for role in [MemberRole::Learner, MemberRole::None] {
            let view = MemberView {
                role,
                ..member(None)
            };
            let value = serde_json::to_value(&view).unwrap();
            assert_eq!(value["role"], role.as_str());
            assert_eq!(value["isLearner"], role == MemberRole::Learner);
            assert_eq!(serde_json::from_value::<MemberView>(value).unwrap(), view);
        }
        // etcd's flag alone reads as the role.
        let etcd = serde_json::json!({"Id": "1", "name": "n1", "isLearner": true});
        let back: MemberView = serde_json::from_value(etcd).unwrap();
        assert_eq!(back.role, MemberRole::Learner);

        let value = serde_json::to_value(member(Some(true))).unwrap();
        assert_eq!(value["isLeader"], true);
        assert_eq!(value["is_leader"], true);
        // Either spelling reads back (a kingbus reply has only `isLeader`).
        let back: MemberView = serde_json::from_value(value).unwrap();
        assert_eq!(back, member(Some(true)));
        let heard = MemberView {
            heard_ms_ago: Some(42),
            ..member(Some(false))
        };
        let value = serde_json::to_value(&heard).unwrap();
        assert_eq!(value["heard_ms_ago"], 42);
        assert_eq!(serde_json::from_value::<MemberView>(value).unwrap(), heard);
        let kingbus = serde_json::json!({"Id": "e2a0e8de3b98eec6", "name": "kingbus_149",
            "peerURLs": ["http://192.168.1.149:9697"], "isLeader": false});
        let back: MemberView = serde_json::from_value(kingbus).unwrap();
        assert_eq!(back.is_leader, Some(false));
        assert!(back.admin_urls.is_empty());
        assert_eq!(back.role, MemberRole::Voter, "a kingbus member votes");
    }

    #[test]
    fn enums_use_interface_spelling() {
        assert_eq!(
            serde_json::to_string(&SlaveMode::FilePos).unwrap(),
            "\"file_pos\""
        );
        assert_eq!(SlaveMode::FilePos.as_str(), "file_pos");
        assert_eq!(
            serde_json::to_string(&ServerState::Running).unwrap(),
            "\"running\""
        );
        assert_eq!(SyncerState::Error.as_str(), "error");
    }
}

/// Reply of `POST /binlog/import?file=NAME`: what was stored of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub file: String,
    /// Events stored (every event of the file).
    pub events: u64,
    /// Size of the file, magic included.
    pub bytes: u64,
    /// Position of the first event this import stored: 4, or where the stored part of the
    /// file ended when the import continued it.
    pub first_pos: u64,
    /// Position of the last event.
    pub last_pos: u64,
    /// Where the file ends (its size): the stored chain continues from here.
    pub end_pos: u64,
}

/// One entry of `GET /binlog/files`: a stored master binlog file (the store's own
/// description of it, see `store::export`).
pub use crate::store::export::FileInfo as BinlogFileInfo;
