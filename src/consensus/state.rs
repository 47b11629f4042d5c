//! The replicated cluster state: what every node agrees on through Raft, besides the binlog
//! itself. It is the syncer's desired arguments (so a new leader resumes them), the
//! membership table (names, raft ids, peer, admin and binlog server addresses; every id ever
//! used), and how far the binlog has been purged.
//!
//! The state changes only by applying a [`Command`] (committed as a kind-3 entry, JSON), in
//! log order, on every node alike; a command that breaks a rule is refused by every node
//! the same way and changes nothing. The leader runs [`ClusterState::check`] before it
//! proposes, so that the client hears about a refusal. Identities are pure functions:
//! [`member_id`] and [`cluster_id`].
//!
//! Pure: no I/O, no clock, no threads, no knowledge of raft-rs. Whoever owns the state (the
//! daemon's state machine) decides when to apply and what to do about a change.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::api::model::{MemberRole, MemberView, SyncerArgs};
use crate::api::validate::{self, FieldError};

/// The raft entry kind of a [`Command`] (see CONSENSUS.md).
pub const COMMAND_KIND: u8 = 3;

/// First bytes of encoded snapshot data, then [`SNAPSHOT_VERSION`], then JSON.
const SNAPSHOT_MAGIC: &[u8; 4] = b"FBCS";
const SNAPSHOT_VERSION: u8 = 1;

/// FNV-1a 64-bit parameters.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits: a stable hash every node computes the same way on every platform.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// A hash made into an id: top bit cleared (it fits an i64, for tools that read ids as
/// signed), never 0 (raft-rs reserves 0 for "none").
fn hash_to_id(hash: u64) -> u64 {
    match hash & !(1 << 63) {
        0 => 1,
        id => id,
    }
}

/// The raft id of a member: FNV-1a 64 of `name + "\0" + peer_url`, top bit cleared, never
/// 0. `peer_url` must be canonical (`host:port`, see [`validate::canonical_addr`]) so
/// that the node itself and the leader that adds it compute the same id.
pub fn member_id(name: &str, peer_url: &str) -> u64 {
    let mut bytes = Vec::with_capacity(name.len() + 1 + peer_url.len());
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(peer_url.as_bytes());
    hash_to_id(fnv1a_64(&bytes))
}

/// The id of a cluster from its token (`--cluster-token`): FNV-1a 64 of it, top bit
/// cleared, never 0. Founders and nodes that join later compute the same.
pub fn cluster_id(token: &str) -> u64 {
    hash_to_id(fnv1a_64(token.as_bytes()))
}

/// One member of the cluster as the replicated table holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    /// Raft id: `member_id(name, peer_url as first added)`; it never changes, also when
    /// the peer address does.
    pub id: u64,
    /// Where the other nodes reach its peer transport, `host:port`.
    pub peer_url: String,
    /// Its admin API, `host:port`; unknown until it announces it (or the operator who
    /// added it gave it).
    #[serde(default)]
    pub admin_url: Option<String>,
    /// Its binlog server's address, when it runs one.
    #[serde(default)]
    pub binlog_addr: Option<String>,
}

impl MemberInfo {
    /// A member as first added: its id derived from its name and peer address.
    pub fn new(name: &str, peer_url: &str, admin_url: Option<String>) -> MemberInfo {
        MemberInfo {
            name: name.to_string(),
            id: member_id(name, peer_url),
            peer_url: peer_url.to_string(),
            admin_url,
            binlog_addr: None,
        }
    }

    /// The member as the admin API shows it; `is_leader` only in `/cluster`.
    pub fn view(&self, is_leader: Option<bool>, role: MemberRole) -> MemberView {
        MemberView {
            id: MemberView::format_id(self.id),
            name: self.name.clone(),
            peer_urls: vec![self.peer_url.clone()],
            admin_urls: self.admin_url.iter().cloned().collect(),
            binlog_addr: self.binlog_addr.clone(),
            is_leader,
            role,
            heard_ms_ago: None,
        }
    }
}

/// A change to the replicated state: the data of a kind-3 raft entry, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The syncer's arguments (`None`: stopped). Holds the master's password.
    SetSyncer(Option<SyncerArgs>),
    /// Adds a member, or changes the addresses of the member of that name (same id).
    SetMember(MemberInfo),
    RemoveMember {
        name: String,
    },
    /// The binlog before this file is dropped on every node.
    Purge {
        to_file: String,
    },
}

impl Command {
    /// The entry data: JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain types to JSON cannot fail (string keys, no floats).
        serde_json::to_vec(self).expect("a Command always serializes")
    }

    pub fn decode(data: &[u8]) -> Result<Command, StateError> {
        serde_json::from_slice(data).map_err(|error| StateError::Decode {
            what: "command",
            reason: error.to_string(),
        })
    }
}

/// What applying a command changed, for the owner of the state to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The syncer's desired arguments changed (start, restart or stop it on the leader).
    Syncer(Option<SyncerArgs>),
    /// A member was added.
    MemberAdded(MemberInfo),
    /// A member's addresses changed; `previous` is how it was.
    MemberChanged {
        previous: MemberInfo,
        current: MemberInfo,
    },
    MemberRemoved(MemberInfo),
    /// The purge point moved forward to this file.
    Purged {
        to_file: String,
    },
    /// The command repeated what the state already says.
    Unchanged,
}

/// Why a command is refused, or snapshot data cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// A new member whose id some member had before (ids are never reused).
    IdReused {
        name: String,
        id: u64,
    },
    /// A new member whose id is not `member_id(name, peer_url)`.
    IdMismatch {
        name: String,
        id: u64,
        expected: u64,
    },
    /// A change to a member that would change its id.
    IdFixed {
        name: String,
        id: u64,
        requested: u64,
    },
    /// Another member already has this peer or admin address.
    AddressTaken {
        field: &'static str,
        addr: String,
        by: String,
    },
    NoSuchMember {
        name: String,
    },
    /// Removing the last member would leave no cluster.
    LastMember {
        name: String,
    },
    /// A name, address or file name that is not well formed.
    Invalid(FieldError),
    /// Snapshot data or a command entry that ferrobus did not write.
    Decode {
        what: &'static str,
        reason: String,
    },
}

impl StateError {
    /// The HTTP status this refusal maps to at the admin API.
    pub fn http_status(&self) -> u16 {
        match self {
            StateError::NoSuchMember { .. } => 404,
            StateError::IdReused { .. }
            | StateError::IdFixed { .. }
            | StateError::AddressTaken { .. }
            | StateError::LastMember { .. } => 409,
            StateError::IdMismatch { .. } | StateError::Invalid(_) => 400,
            StateError::Decode { .. } => 500,
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::IdReused { name, id } => write!(
                f,
                "member id {id:x} (from name {name:?} and its peer address) belonged to a \
                 member before, and ids are never reused: add the node under another name \
                 or peer address"
            ),
            StateError::IdMismatch { name, id, expected } => write!(
                f,
                "member {name:?} has id {id:x}, but its name and peer address give {expected:x}"
            ),
            StateError::IdFixed {
                name,
                id,
                requested,
            } => write!(
                f,
                "member {name:?} has id {id:x}; it cannot change to {requested:x}"
            ),
            StateError::AddressTaken { field, addr, by } => {
                write!(f, "{field} {addr} is already used by member {by:?}")
            }
            StateError::NoSuchMember { name } => write!(f, "no such member: {name:?}"),
            StateError::LastMember { name } => write!(
                f,
                "member {name:?} is the last member of the cluster and cannot be removed"
            ),
            StateError::Invalid(error) => write!(f, "{error}"),
            StateError::Decode { what, reason } => {
                write!(f, "cannot decode the replicated {what}: {reason}")
            }
        }
    }
}

impl std::error::Error for StateError {}

impl From<FieldError> for StateError {
    fn from(error: FieldError) -> StateError {
        StateError::Invalid(error)
    }
}

/// The replicated state. Its fields change only through [`ClusterState::apply`] (and
/// [`ClusterState::record_used_ids`], fed from applied conf changes), so every node that
/// applied the same log holds the same value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    #[serde(default)]
    syncer: Option<SyncerArgs>,
    #[serde(default)]
    members: BTreeMap<String, MemberInfo>,
    #[serde(default)]
    used_ids: BTreeSet<u64>,
    #[serde(default)]
    purged_to: Option<String>,
}

impl ClusterState {
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// The syncer's desired arguments (`None`: stopped).
    pub fn syncer(&self) -> Option<&SyncerArgs> {
        self.syncer.as_ref()
    }

    /// The members, by name.
    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.values()
    }

    pub fn member(&self, name: &str) -> Option<&MemberInfo> {
        self.members.get(name)
    }

    pub fn member_by_id(&self, id: u64) -> Option<&MemberInfo> {
        self.members.values().find(|member| member.id == id)
    }

    /// The admin API address of the member with raft id `id` (e.g. the leader's), if it
    /// is known.
    pub fn admin_addr_of(&self, id: u64) -> Option<&str> {
        self.member_by_id(id)?.admin_url.as_deref()
    }

    /// Whether `id` belongs or belonged to a member (it can never be given again).
    pub fn is_id_used(&self, id: u64) -> bool {
        self.used_ids.contains(&id)
    }

    pub fn used_ids(&self) -> &BTreeSet<u64> {
        &self.used_ids
    }

    /// The file the binlog was last purged to.
    pub fn purged_to(&self) -> Option<&str> {
        self.purged_to.as_deref()
    }

    /// Every member as the admin API shows it, by name: flagged as the leader when
    /// `leader_id` is given (`/cluster`), its role from raft's `voters` and `learners`.
    pub fn member_views(
        &self,
        leader_id: Option<u64>,
        voters: &[u64],
        learners: &[u64],
    ) -> Vec<MemberView> {
        self.members
            .values()
            .map(|member| {
                let role = if voters.contains(&member.id) {
                    MemberRole::Voter
                } else if learners.contains(&member.id) {
                    MemberRole::Learner
                } else {
                    MemberRole::None
                };
                member.view(leader_id.map(|leader| leader == member.id), role)
            })
            .collect()
    }

    /// Whether `command` would be applied, and what it would do; the state is unchanged.
    pub fn check(&self, command: &Command) -> Result<Effect, StateError> {
        match command {
            Command::SetSyncer(args) => Ok(if self.syncer == *args {
                Effect::Unchanged
            } else {
                Effect::Syncer(args.clone())
            }),
            Command::SetMember(member) => self.check_set_member(member),
            Command::RemoveMember { name } => self.check_remove_member(name),
            Command::Purge { to_file } => self.check_purge(to_file),
        }
    }

    /// Applies a committed command. A refused command changes nothing (every node refuses
    /// it alike, so the states stay equal).
    pub fn apply(&mut self, command: &Command) -> Result<Effect, StateError> {
        let effect = self.check(command)?;
        match &effect {
            Effect::Syncer(args) => self.syncer = args.clone(),
            Effect::MemberAdded(member)
            | Effect::MemberChanged {
                current: member, ..
            } => {
                self.used_ids.insert(member.id);
                self.members.insert(member.name.clone(), member.clone());
            }
            Effect::MemberRemoved(member) => {
                self.members.remove(&member.name);
            }
            Effect::Purged { to_file } => self.purged_to = Some(to_file.clone()),
            Effect::Unchanged => {}
        }
        Ok(effect)
    }

    /// Marks raft ids as used (from an applied conf change), so that an id raft ever knew
    /// is never given again, even one that never made it into the table.
    pub fn record_used_ids(&mut self, ids: &[u64]) {
        self.used_ids
            .extend(ids.iter().copied().filter(|&id| id != 0));
    }

    /// `SetMember` commands for the initial members `(name, peer_url)` that a brand-new
    /// cluster's first leader proposes. Members already in the table and ids used before
    /// are left out, so proposing them again (a later leader, a restart) changes nothing
    /// and never brings back a removed member.
    pub fn bootstrap_commands(&self, initial_cluster: &[(String, String)]) -> Vec<Command> {
        initial_cluster
            .iter()
            .map(|(name, peer_url)| MemberInfo::new(name, peer_url, None))
            .filter(|member| {
                !self.members.contains_key(&member.name) && !self.is_id_used(member.id)
            })
            .map(Command::SetMember)
            .collect()
    }

    /// The `SetMember` command a node proposes to announce its own admin and binlog server
    /// addresses, or `None` when the table already says so (or it is not a member).
    pub fn announce_command(
        &self,
        name: &str,
        admin_url: &str,
        binlog_addr: Option<&str>,
    ) -> Option<Command> {
        let member = self.members.get(name)?;
        if member.admin_url.as_deref() == Some(admin_url)
            && member.binlog_addr.as_deref() == binlog_addr
        {
            return None;
        }
        Some(Command::SetMember(MemberInfo {
            admin_url: Some(admin_url.to_string()),
            binlog_addr: binlog_addr.map(str::to_string),
            ..member.clone()
        }))
    }

    /// The snapshot data: magic, version, then the state as JSON (maps are ordered, so
    /// equal states encode to equal bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(256);
        data.extend_from_slice(SNAPSHOT_MAGIC);
        data.push(SNAPSHOT_VERSION);
        // Plain types with string keys: serialization cannot fail.
        serde_json::to_writer(&mut data, self).expect("a ClusterState always serializes");
        data
    }

    /// Reads snapshot data written by [`ClusterState::encode`]. Empty data (a snapshot of
    /// a cluster that never applied a command) is the empty state.
    pub fn decode(data: &[u8]) -> Result<ClusterState, StateError> {
        if data.is_empty() {
            return Ok(ClusterState::default());
        }
        let corrupt = |reason: String| StateError::Decode {
            what: "cluster state",
            reason,
        };
        let body = data
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or_else(|| corrupt("bad magic".to_string()))?;
        let (&version, json) = body
            .split_first()
            .ok_or_else(|| corrupt("no version byte".to_string()))?;
        if version != SNAPSHOT_VERSION {
            return Err(corrupt(format!(
                "version {version}, this ferrobus reads version {SNAPSHOT_VERSION}"
            )));
        }
        let state: ClusterState =
            serde_json::from_slice(json).map_err(|error| corrupt(error.to_string()))?;
        state.check_invariants().map_err(corrupt)?;
        Ok(state)
    }

    /// What `apply` keeps true; decoded data is held to it too.
    fn check_invariants(&self) -> Result<(), String> {
        let mut peers = BTreeSet::new();
        for (name, member) in &self.members {
            if *name != member.name {
                return Err(format!(
                    "member listed as {name:?} is named {:?}",
                    member.name
                ));
            }
            if !self.used_ids.contains(&member.id) {
                return Err(format!("member {name:?} has an id not marked as used"));
            }
            if !peers.insert(member.peer_url.as_str()) {
                return Err(format!("peer address {} appears twice", member.peer_url));
            }
        }
        let ids: BTreeSet<u64> = self.members.values().map(|member| member.id).collect();
        if ids.len() != self.members.len() {
            return Err("two members share an id".to_string());
        }
        Ok(())
    }

    fn check_set_member(&self, member: &MemberInfo) -> Result<Effect, StateError> {
        validate::check_member_name("name", &member.name)?;
        let canonical = validate::canonical_addr("peer_url", &member.peer_url)?;
        if canonical != member.peer_url {
            return Err(StateError::Invalid(FieldError {
                field: "peer_url",
                message: format!(
                    "field `peer_url` must be written as {canonical:?}, got {:?}",
                    member.peer_url
                ),
            }));
        }
        for (field, addr) in [
            ("admin_url", &member.admin_url),
            ("binlog_addr", &member.binlog_addr),
        ] {
            if let Some(addr) = addr {
                check_addr(field, addr)?;
            }
        }
        let previous = self.members.get(&member.name);
        match previous {
            Some(previous) if previous.id != member.id => {
                return Err(StateError::IdFixed {
                    name: member.name.clone(),
                    id: previous.id,
                    requested: member.id,
                })
            }
            Some(_) => {}
            None => self.check_new_id(member)?,
        }
        self.check_addresses_free(member)?;
        Ok(match previous {
            Some(previous) if previous == member => Effect::Unchanged,
            Some(previous) => Effect::MemberChanged {
                previous: previous.clone(),
                current: member.clone(),
            },
            None => Effect::MemberAdded(member.clone()),
        })
    }

    fn check_new_id(&self, member: &MemberInfo) -> Result<(), StateError> {
        let expected = member_id(&member.name, &member.peer_url);
        if member.id != expected {
            return Err(StateError::IdMismatch {
                name: member.name.clone(),
                id: member.id,
                expected,
            });
        }
        if self.is_id_used(member.id) {
            return Err(StateError::IdReused {
                name: member.name.clone(),
                id: member.id,
            });
        }
        Ok(())
    }

    /// No other member may share the peer or admin address (the binlog address may be a
    /// wildcard like 0.0.0.0:3307 on several hosts, so it is not checked).
    fn check_addresses_free(&self, member: &MemberInfo) -> Result<(), StateError> {
        let others = self.members.values().filter(|m| m.name != member.name);
        for other in others {
            if other.peer_url == member.peer_url {
                return Err(StateError::AddressTaken {
                    field: "peer_url",
                    addr: member.peer_url.clone(),
                    by: other.name.clone(),
                });
            }
            if let (Some(mine), Some(theirs)) = (&member.admin_url, &other.admin_url) {
                if mine == theirs {
                    return Err(StateError::AddressTaken {
                        field: "admin_url",
                        addr: mine.clone(),
                        by: other.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn check_remove_member(&self, name: &str) -> Result<Effect, StateError> {
        let member = self
            .members
            .get(name)
            .ok_or_else(|| StateError::NoSuchMember {
                name: name.to_string(),
            })?;
        if self.members.len() == 1 {
            return Err(StateError::LastMember {
                name: name.to_string(),
            });
        }
        Ok(Effect::MemberRemoved(member.clone()))
    }

    fn check_purge(&self, to_file: &str) -> Result<Effect, StateError> {
        validate::check_binlog_file("to_file", to_file)?;
        let moves_forward = match self.purged_to.as_deref() {
            None => true,
            // Not comparable (another series): the newer request wins.
            Some(current) => !matches!(
                binlog_file_order(current, to_file),
                Some(Ordering::Equal | Ordering::Greater)
            ),
        };
        Ok(if moves_forward {
            Effect::Purged {
                to_file: to_file.to_string(),
            }
        } else {
            Effect::Unchanged
        })
    }
}

fn check_addr(field: &'static str, addr: &str) -> Result<(), StateError> {
    validate::check_host_port(field, addr)?;
    Ok(())
}

/// Orders two binlog file names of one series (`base.000012`): same base, numeric
/// extension compared as a number. Files of different series (the master was changed)
/// are not comparable: `None`, and the later purge wins.
pub fn binlog_file_order(a: &str, b: &str) -> Option<Ordering> {
    let (base_a, _, number_a) = crate::binlog::file::numbered_name(a)?;
    let (base_b, _, number_b) = crate::binlog::file::numbered_name(b)?;
    (base_a == base_b).then(|| number_a.cmp(&number_b))
}

/// Voters that would remain after removing `removing`, and whether enough of them are
/// active (recently heard from by the leader, counting the leader itself) to form a
/// quorum of the new configuration. A removal that fails this would stall the cluster.
pub fn check_quorum_after_remove(
    voters: &[u64],
    active: &[u64],
    removing: u64,
) -> Result<(), QuorumError> {
    let remaining: BTreeSet<u64> = voters.iter().copied().filter(|&v| v != removing).collect();
    check_quorum(&remaining, active)
}

/// The same check for adding a voter (a learner's promotion: the learner is in `active`
/// when the leader heard from it recently): the active voters must still be a quorum of
/// the larger configuration.
pub fn check_quorum_after_add(
    voters: &[u64],
    active: &[u64],
    adding: u64,
) -> Result<(), QuorumError> {
    let mut grown: BTreeSet<u64> = voters.iter().copied().collect();
    grown.insert(adding);
    check_quorum(&grown, active)
}

fn check_quorum(voters: &BTreeSet<u64>, active: &[u64]) -> Result<(), QuorumError> {
    let needed = voters.len() / 2 + 1;
    let active_voters = voters.iter().filter(|v| active.contains(v)).count();
    if voters.is_empty() || active_voters < needed {
        return Err(QuorumError {
            voters: voters.len(),
            active: active_voters,
            needed,
        });
    }
    Ok(())
}

/// A membership change refused because the new configuration would have no quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumError {
    /// Voters the new configuration would have.
    pub voters: usize,
    /// How many of them are active now.
    pub active: usize,
    /// How many a quorum needs.
    pub needed: usize,
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.voters == 0 {
            return write!(
                f,
                "the change would break the quorum: the last voter cannot be removed (a \
                 cluster needs at least one)"
            );
        }
        write!(
            f,
            "the change would break the quorum: the new configuration has {} voters and needs \
             {} active for a quorum, but only {} are active now",
            self.voters, self.needed, self.active
        )
    }
}

impl std::error::Error for QuorumError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn syncer_args() -> SyncerArgs {
        SyncerArgs {
            syncer_id: 1001,
            mysql_addr: "10.0.0.9:3306".into(),
            mysql_user: "repl".into(),
            mysql_password: "secret".into(),
            syncer_uuid: None,
            semi_sync: false,
            gtid: Some("0-1-100".into()),
            binlog_file: None,
            binlog_pos: None,
        }
    }

    fn three() -> ClusterState {
        let mut state = ClusterState::new();
        let initial: Vec<(String, String)> = (1..=3)
            .map(|n| (format!("n{n}"), format!("127.0.0.1:960{n}")))
            .collect();
        for command in state.bootstrap_commands(&initial) {
            state.apply(&command).unwrap();
        }
        state
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn member_ids_are_stable_and_well_formed() {
        let id = member_id("n1", "127.0.0.1:9601");
        assert_eq!(
            id,
            fnv1a_64(b"n1\x00127.0.0.1:9601") & !(1 << 63),
            "the documented formula"
        );
        assert_eq!(id, member_id("n1", "127.0.0.1:9601"));
        assert_ne!(id, member_id("n1", "127.0.0.1:9602"));
        assert_ne!(id, member_id("n2", "127.0.0.1:9601"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(member_id("ab", "c:1"), member_id("a", "bc:1"));
        assert_eq!(hash_to_id(0), 1);
        assert_eq!(hash_to_id(1 << 63), 1);
        assert_eq!(hash_to_id(u64::MAX), u64::MAX >> 1);
    }

    #[test]
    fn cluster_id_comes_from_the_token() {
        assert_eq!(cluster_id("ferrobus"), hash_to_id(fnv1a_64(b"ferrobus")));
        assert_ne!(cluster_id("ferrobus"), cluster_id("other"));
        assert_ne!(cluster_id(""), 0);
    }

    #[test]
    fn bootstrap_builds_the_table_once() {
        let state = three();
        assert_eq!(state.members().count(), 3);
        let n2 = state.member("n2").unwrap();
        assert_eq!(n2.id, member_id("n2", "127.0.0.1:9602"));
        assert_eq!(state.member_by_id(n2.id).unwrap().name, "n2");
        assert!(state.is_id_used(n2.id));
        assert_eq!(state.admin_addr_of(n2.id), None);
        let initial = vec![("n2".to_string(), "127.0.0.1:9602".to_string())];
        assert!(state.bootstrap_commands(&initial).is_empty());
    }

    #[test]
    fn announce_fills_in_admin_and_binlog_addresses() {
        let mut state = three();
        let command = state
            .announce_command("n1", "127.0.0.1:9595", Some("0.0.0.0:3307"))
            .unwrap();
        let effect = state.apply(&command).unwrap();
        assert!(matches!(effect, Effect::MemberChanged { .. }), "{effect:?}");
        let id = member_id("n1", "127.0.0.1:9601");
        assert_eq!(state.admin_addr_of(id), Some("127.0.0.1:9595"));
        assert_eq!(
            state.announce_command("n1", "127.0.0.1:9595", Some("0.0.0.0:3307")),
            None
        );
        assert_eq!(state.announce_command("nobody", "h:1", None), None);
        // Another member may not announce the same admin address.
        let clash = state
            .announce_command("n2", "127.0.0.1:9595", None)
            .unwrap();
        let error = state.apply(&clash).unwrap_err();
        assert_eq!(
            error.to_string(),
            "admin_url 127.0.0.1:9595 is already used by member \"n1\""
        );
        assert_eq!(error.http_status(), 409);
    }

    #[test]
    fn ids_are_never_reused() {
        let mut state = three();
        let n3 = state.member("n3").unwrap().clone();
        let effect = state
            .apply(&Command::RemoveMember { name: "n3".into() })
            .unwrap();
        assert_eq!(effect, Effect::MemberRemoved(n3.clone()));
        assert!(state.member("n3").is_none());
        assert!(state.is_id_used(n3.id));
        let again = MemberInfo::new("n3", "127.0.0.1:9603", None);
        let error = state.apply(&Command::SetMember(again)).unwrap_err();
        assert_eq!(
            error,
            StateError::IdReused {
                name: "n3".into(),
                id: n3.id
            }
        );
        assert!(error.to_string().contains("never reused"));
        // The same name at another address is a new id: accepted.
        let moved = MemberInfo::new("n3", "127.0.0.1:9613", None);
        assert!(matches!(
            state.apply(&Command::SetMember(moved)).unwrap(),
            Effect::MemberAdded(_)
        ));
        // Ids from conf changes count as used too.
        let stray = member_id("n9", "h:9");
        state.record_used_ids(&[stray, 0]);
        assert!(state.is_id_used(stray));
        assert!(!state.is_id_used(0));
        let error = state
            .apply(&Command::SetMember(MemberInfo::new("n9", "h:9", None)))
            .unwrap_err();
        assert!(matches!(error, StateError::IdReused { .. }));
    }

    #[test]
    fn updating_the_peer_address_keeps_the_id() {
        let mut state = three();
        let before = state.member("n1").unwrap().clone();
        let moved = MemberInfo {
            peer_url: "127.0.0.1:9700".into(),
            ..before.clone()
        };
        let effect = state.apply(&Command::SetMember(moved.clone())).unwrap();
        assert_eq!(
            effect,
            Effect::MemberChanged {
                previous: before.clone(),
                current: moved.clone()
            }
        );
        assert_eq!(
            state.member_by_id(before.id).unwrap().peer_url,
            "127.0.0.1:9700"
        );
        // Applying it again changes nothing.
        assert_eq!(
            state.apply(&Command::SetMember(moved)).unwrap(),
            Effect::Unchanged
        );
        // A different id for the same name is refused.
        let forged = MemberInfo {
            id: before.id + 1,
            ..before
        };
        assert!(matches!(
            state.apply(&Command::SetMember(forged)),
            Err(StateError::IdFixed { .. })
        ));
    }

    #[test]
    fn bad_members_are_refused_and_change_nothing() {
        let mut state = three();
        let snapshot = state.clone();
        let taken = MemberInfo::new("n4", "127.0.0.1:9602", None);
        let error = state.apply(&Command::SetMember(taken)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "peer_url 127.0.0.1:9602 is already used by member \"n2\""
        );
        let mut wrong_id = MemberInfo::new("n4", "127.0.0.1:9604", None);
        wrong_id.id ^= 1;
        assert!(matches!(
            state.apply(&Command::SetMember(wrong_id)),
            Err(StateError::IdMismatch { .. })
        ));
        let url = MemberInfo::new("n4", "http://127.0.0.1:9604", None);
        let error = state.apply(&Command::SetMember(url)).unwrap_err();
        assert!(error.to_string().contains("must be written as"), "{error}");
        for name in ["", "a b", "x=y", "a,b"] {
            let bad = MemberInfo::new(name, "127.0.0.1:9604", None);
            let error = state.apply(&Command::SetMember(bad)).unwrap_err();
            assert_eq!(error.http_status(), 400, "{name:?}");
        }
        let bad_admin = MemberInfo::new("n4", "127.0.0.1:9604", Some("nohost".into()));
        assert!(state.apply(&Command::SetMember(bad_admin)).is_err());
        let error = state
            .apply(&Command::RemoveMember { name: "n7".into() })
            .unwrap_err();
        assert_eq!(error.to_string(), "no such member: \"n7\"");
        assert_eq!(error.http_status(), 404);
        assert_eq!(state, snapshot);
    }

    #[test]
    fn the_last_member_stays() {
        let mut state = ClusterState::new();
        let commands = state.bootstrap_commands(&[("solo".into(), "127.0.0.1:9596".into())]);
        for command in commands {
            state.apply(&command).unwrap();
        }
        let error = state
            .apply(&Command::RemoveMember {
                name: "solo".into(),
            })
            .unwrap_err();
        assert_eq!(error.http_status(), 409);
        assert_eq!(state.members().count(), 1);
    }

    #[test]
    fn syncer_and_purge() {
        let mut state = three();
        let effect = state
            .apply(&Command::SetSyncer(Some(syncer_args())))
            .unwrap();
        assert_eq!(effect, Effect::Syncer(Some(syncer_args())));
        assert_eq!(state.syncer(), Some(&syncer_args()));
        assert_eq!(
            state.apply(&Command::SetSyncer(Some(syncer_args()))),
            Ok(Effect::Unchanged)
        );
        assert_eq!(
            state.apply(&Command::SetSyncer(None)),
            Ok(Effect::Syncer(None))
        );
        assert_eq!(state.syncer(), None);

        let purge = |file: &str| Command::Purge {
            to_file: file.into(),
        };
        assert_eq!(
            state.apply(&purge("mysql-bin.000010")),
            Ok(Effect::Purged {
                to_file: "mysql-bin.000010".into()
            })
        );
        // Backwards or repeated: nothing to do.
        assert_eq!(
            state.apply(&purge("mysql-bin.000009")),
            Ok(Effect::Unchanged)
        );
        assert_eq!(
            state.apply(&purge("mysql-bin.000010")),
            Ok(Effect::Unchanged)
        );
        assert_eq!(state.purged_to(), Some("mysql-bin.000010"));
        // Numeric, not lexicographic: 1000000 follows 999999.
        state.apply(&purge("mysql-bin.999999")).unwrap();
        assert!(matches!(
            state.apply(&purge("mysql-bin.1000000")),
            Ok(Effect::Purged { .. })
        ));
        // Another series (a new master) is not comparable: it moves the point.
        assert!(matches!(
            state.apply(&purge("other-bin.000001")),
            Ok(Effect::Purged { .. })
        ));
        for bad in ["", "../etc/passwd", "a/b"] {
            assert_eq!(state.apply(&purge(bad)).unwrap_err().http_status(), 400);
        }
    }

    #[test]
    fn binlog_file_ordering() {
        assert_eq!(
            binlog_file_order("b.000002", "b.000010"),
            Some(Ordering::Less)
        );
        assert_eq!(binlog_file_order("b.2", "b.000002"), Some(Ordering::Equal));
        assert_eq!(binlog_file_order("a.000002", "b.000001"), None);
        assert_eq!(binlog_file_order("a", "a"), None);
        assert_eq!(binlog_file_order("a.x", "a.1"), None);
    }

    #[test]
    fn commands_round_trip_as_json() {
        let commands = vec![
            Command::SetSyncer(Some(syncer_args())),
            Command::SetSyncer(None),
            Command::SetMember(MemberInfo::new("n1", "h:1", Some("h:2".into()))),
            Command::RemoveMember { name: "n1".into() },
            Command::Purge {
                to_file: "f.000001".into(),
            },
        ];
        for command in commands {
            let data = command.encode();
            assert_eq!(Command::decode(&data).unwrap(), command);
        }
        let json: serde_json::Value =
            serde_json::from_slice(&Command::RemoveMember { name: "x".into() }.encode()).unwrap();
        assert_eq!(json, serde_json::json!({"remove_member": {"name": "x"}}));
        assert!(matches!(
            Command::decode(b"{\"reboot\":1}"),
            Err(StateError::Decode { .. })
        ));
        assert!(Command::decode(b"").is_err());
        assert!(Command::decode(&[0xff, 0x00]).is_err());
    }

    #[test]
    fn snapshot_data_round_trips_and_is_checked() {
        let mut state = three();
        state
            .apply(&Command::SetSyncer(Some(syncer_args())))
            .unwrap();
        state
            .apply(&Command::RemoveMember { name: "n2".into() })
            .unwrap();
        let data = state.encode();
        assert!(data.starts_with(b"FBCS\x01{"));
        assert_eq!(ClusterState::decode(&data).unwrap(), state);
        assert_eq!(ClusterState::decode(&[]).unwrap(), ClusterState::new());
        let bad = |data: &[u8]| ClusterState::decode(data).unwrap_err().to_string();
        assert!(bad(b"XXXX\x01{}").contains("bad magic"));
        assert!(bad(b"FBCS").contains("no version"));
        assert!(bad(b"FBCS\x02{}").contains("version 2"));
        assert!(bad(b"FBCS\x01{").contains("cluster state"));
        // A table that breaks the invariants is refused.
        let with_header = |json: &[u8]| [b"FBCS\x01".as_slice(), json].concat();
        let misnamed = br#"{"members":{"a":{"name":"b","id":1,"peer_url":"h:1"}},"used_ids":[1]}"#;
        assert!(bad(&with_header(misnamed)).contains("named"));
        let unmarked = br#"{"members":{"a":{"name":"a","id":1,"peer_url":"h:1"}}}"#;
        assert!(bad(&with_header(unmarked)).contains("not marked as used"));
    }

    #[test]
    fn views_flag_the_leader_and_the_roles() {
        let state = three();
        let id = |n: u32| member_id(&format!("n{n}"), &format!("127.0.0.1:960{n}"));
        // n3 a learner; n1 in the table but in neither list (its raft change failed).
        let views = state.member_views(Some(id(2)), &[id(2)], &[id(3)]);
        let flags: Vec<(String, Option<bool>, MemberRole)> = views
            .iter()
            .map(|v| (v.name.clone(), v.is_leader, v.role))
            .collect();
        assert_eq!(
            flags,
            [
                ("n1".to_string(), Some(false), MemberRole::None),
                ("n2".to_string(), Some(true), MemberRole::Voter),
                ("n3".to_string(), Some(false), MemberRole::Learner)
            ]
        );
        assert_eq!(views[1].id, format!("{:x}", id(2)));
        assert_eq!(views[1].peer_urls, ["127.0.0.1:9602"]);
        let voters = [id(1), id(2), id(3)];
        assert!(state
            .member_views(None, &voters, &[])
            .iter()
            .all(|v| v.is_leader.is_none() && v.role == MemberRole::Voter));
    }

    #[test]
    fn quorum_checks() {
        let voters = [1, 2, 3];
        assert!(check_quorum_after_remove(&voters, &[1, 2, 3], 3).is_ok());
        // Two voters left, one active: no quorum.
        let error = check_quorum_after_remove(&voters, &[1, 3], 3).unwrap_err();
        assert_eq!(
            error,
            QuorumError {
                voters: 2,
                active: 1,
                needed: 2
            }
        );
        assert!(error.to_string().contains("break the quorum"));
        // Removing the dead one of three keeps a quorum of two.
        assert!(check_quorum_after_remove(&voters, &[1, 2], 3).is_ok());
        let last = check_quorum_after_remove(&[1], &[1], 1).unwrap_err();
        assert!(last.to_string().contains("the last voter"), "{last}");
        // Adding a fourth while one of three is down: 2 of 4 is not a quorum.
        assert!(check_quorum_after_add(&voters, &[1, 2], 4).is_err());
        assert!(check_quorum_after_add(&voters, &[1, 2, 3], 4).is_ok());
        assert!(check_quorum_after_add(&[1], &[1], 2).is_err());
    }

    /// A random command over a small universe of names and addresses, so that collisions
    /// (reused ids, taken addresses, removals of absent members) happen often.
    fn command_strategy() -> impl Strategy<Value = Command> {
        let name = (0u8..5).prop_map(|n| format!("n{n}"));
        let addr = (0u16..6).prop_map(|p| format!("127.0.0.1:{}", 9600 + p));
        let admin = proptest::option::of((0u16..4).prop_map(|p| format!("127.0.0.1:{}", 9500 + p)));
        prop_oneof![
            (name.clone(), addr.clone(), admin).prop_map(|(name, addr, admin)| {
                Command::SetMember(MemberInfo::new(&name, &addr, admin))
            }),
            (name.clone(), addr).prop_map(|(name, addr)| {
                // An address change for whatever id the name would have had.
                let mut member = MemberInfo::new(&name, "127.0.0.1:9600", None);
                member.peer_url = addr;
                Command::SetMember(member)
            }),
            name.prop_map(|name| Command::RemoveMember { name }),
            (0u32..20).prop_map(|n| Command::Purge {
                to_file: format!("b.{n:06}")
            }),
            any::<bool>().prop_map(|on| Command::SetSyncer(on.then(syncer_args))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever the commands, the invariants hold after each, a refused command
        /// changes nothing, an id once used stays used and is never given to a new
        /// member, and the snapshot data reproduces the state.
        #[test]
        fn apply_keeps_the_invariants(commands in proptest::collection::vec(command_strategy(), 0..60)) {
            let mut state = ClusterState::new();
            let mut ever_used: BTreeSet<u64> = BTreeSet::new();
            for command in &commands {
                let before = state.clone();
                match state.apply(command) {
                    Ok(Effect::MemberAdded(member)) => {
                        prop_assert!(!ever_used.contains(&member.id));
                        ever_used.insert(member.id);
                    }
                    Ok(_) => {}
                    Err(_) => prop_assert_eq!(&state, &before),
                }
                prop_assert!(state.check_invariants().is_ok());
                prop_assert!(ever_used.iter().all(|id| state.is_id_used(*id)));
            }
            prop_assert_eq!(ClusterState::decode(&state.encode()).unwrap(), state.clone());
            // Replaying the same commands on another node gives the same state.
            let mut replica = ClusterState::new();
            for command in &commands {
                let _ = replica.apply(command);
            }
            prop_assert_eq!(replica, state);
        }
    }
}
