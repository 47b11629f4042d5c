//! Every bound ferrobus enforces, as a named constant, with the relations between them
//! checked at compile time. A limit lives here, not at the place that enforces it, so that
//! an operator reading one file learns every number the daemon holds itself to.
//!
//! This module holds constants only: no code, no configuration (configurable values have
//! their defaults in `config`, and their hard bounds here).

/// Largest payload of one physical MySQL packet (3-byte length); a logical packet of this
/// length or more continues in the next physical packet.
pub const PACKET_PAYLOAD_MAX: usize = 0xff_ff_ff;

/// Largest logical packet (joined payload) ferrobus accepts from a peer: MySQL's own
/// `max_allowed_packet` ceiling. A binlog event is one logical packet.
pub const LOGICAL_PACKET_MAX: usize = 1 << 30;

/// Read buffer of a connection ferrobus makes to a server (the syncer's to its master): a
/// dump stream arrives in few reads, and events that fit are lent from it without a copy.
pub const CLIENT_READ_BUFFER_BYTES: usize = 256 << 10;

/// Largest command packet a downstream client may send to the binlog server (queries,
/// handshake responses). Replicas send short statements; anything larger is hostile.
pub const CLIENT_COMMAND_MAX: usize = 1 << 20;

/// Largest binlog event ferrobus stores or serves (MySQL's `max_allowed_packet` ceiling).
pub const EVENT_BYTES_MAX: usize = LOGICAL_PACKET_MAX - 1;

/// Largest payload of one log entry (one Raft entry). A transaction bigger than this is
/// stored as several chunk entries; a batch of small transactions stays under it.
pub const ENTRY_PAYLOAD_MAX: usize = 1 << 20;

/// Largest storage segment file before the log rolls to a new one.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// How many binlog entries the syncer proposes in one group (one fsync).
pub const BATCH_ENTRIES_MAX: usize = 256;

/// Bytes of binlog the syncer gathers before it stores a batch (one fsync).
pub const BATCH_BYTES_MAX: usize = 2 << 20;

/// Syncer batches proposed and not yet committed at once on a cluster leader (the next is
/// proposed while the last commits). With `BATCH_BYTES_MAX` it bounds the uncommitted
/// bytes well under raft's own limit, so raft never drops a proposal for load. 16 MiB in
/// flight rides out log fdatasyncs of 15-30 ms (seen at p99 on a shared disk during a
/// catch-up) where 8 MiB stalled the syncer (catch-up A/B: median ratio 0.85 -> 0.97).
pub const SYNCER_PROPOSALS_IN_FLIGHT_MAX: usize = 8;

/// Most downstream connections the binlog server accepts at once, whatever is configured.
pub const SERVER_CONNECTIONS_MAX: usize = 4096;

/// Default for the configured maximum of downstream connections.
pub const SERVER_CONNECTIONS_DEFAULT: usize = 256;

/// Largest HTTP request body the admin API reads.
pub const HTTP_BODY_BYTES_MAX: usize = 1 << 20;

/// Admin API worker threads.
pub const HTTP_WORKERS_MAX: usize = 8;

/// Read/write timeout on every socket to an upstream master, in milliseconds (a heartbeat
/// arrives well before it when the master is idle).
pub const UPSTREAM_IO_TIMEOUT_MS: u64 = 30_000;

/// Connect timeout to an upstream master.
pub const UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Heartbeat period the syncer asks its master for.
pub const UPSTREAM_HEARTBEAT_PERIOD_MS: u64 = 1_000;

/// Reconnect backoff to the upstream master: first wait and ceiling.
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 100;
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 5_000;

/// How long the binlog server waits for a downstream client's next command, and for a
/// write to a downstream client to make progress.
pub const DOWNSTREAM_IO_TIMEOUT_MS: u64 = 60_000;

/// Heartbeat period used for a downstream replica that asked for none, in milliseconds.
pub const DOWNSTREAM_HEARTBEAT_DEFAULT_MS: u64 = 30_000;

/// Shortest heartbeat period honoured for a downstream replica.
pub const DOWNSTREAM_HEARTBEAT_MIN_MS: u64 = 10;

/// How long a dump waits for new data between checks when the replica turned heartbeats off
/// (`@master_heartbeat_period = 0`): no heartbeat is sent, this only bounds the wait.
pub const DOWNSTREAM_HEARTBEAT_OFF_WAIT_MS: u64 = 3_600_000;

/// How often a dump waiting for new binlog looks whether it was ended (server stop, the
/// replica dumping again), whatever its heartbeat period.
pub const DUMP_STOP_CHECK_MS: u64 = 250;

/// User variables (`SET @x = …`) one downstream connection may hold, and their size.
pub const USER_VARS_MAX: usize = 64;
pub const USER_VAR_BYTES_MAX: usize = 4096;

/// How long a dump whose start lies just beyond the stored binlog waits for it to arrive
/// before it is refused with ERR 1236.
pub const DUMP_AHEAD_WAIT_MS: u64 = 5_000;

/// How long stopping the binlog server waits for its connections to close.
pub const SERVER_STOP_WAIT_MS: u64 = 5_000;

/// A peer heard from within this window counts as active for the quorum check of a
/// membership change (a few raft heartbeats; longer than raft's election timeout).
pub const PEER_ACTIVE_WINDOW_MS: u64 = 2_500;

/// A learner counts as caught up, and the leader promotes it to voter, once its log matches
/// the leader's up to at most this many entries before the commit index (a few batches:
/// under a running syncer the commit index never stands still).
pub const LEARNER_CATCH_UP_ENTRIES: u64 = 64;

/// How often the leader looks for a learner that has caught up.
pub const LEARNER_CHECK_INTERVAL_MS: u64 = 500;

/// How long the leader waits after a failed promotion before it proposes one again.
pub const LEARNER_PROMOTE_RETRY_MS: u64 = 5_000;

/// How long a proposal (syncer batch, command, membership change) may wait for its commit.
pub const PROPOSE_TIMEOUT_MS: u64 = 10_000;

/// How often the leader watcher looks at leadership and the desired syncer at the latest.
pub const LEADER_WATCH_INTERVAL_MS: u64 = 200;

/// How long a node knows no leader before it says so in its log (several election
/// timeouts: an ordinary election is over well before).
pub const LEADERLESS_WARN_MS: u64 = 10_000;

/// How often it says so again while no leader is known.
pub const LEADERLESS_REPEAT_MS: u64 = 60_000;

/// How often a follower retries making its addresses known to the leader.
pub const ANNOUNCE_RETRY_MS: u64 = 3_000;

/// How long a starting node waits to re-apply what was committed before it serves.
pub const STARTUP_APPLY_WAIT_MS: u64 = 60_000;

/// Timeout of one HTTP call from `ctl` to a node: longer than a follower's forwarding, so
/// that `ctl` hears the follower's answer (504 when the leader did not answer in time).
pub const HTTP_CLIENT_TIMEOUT_MS: u64 = FORWARD_TIMEOUT_MS + 5_000;

/// Longest password `ctl` reads from a password file (`--mysql-password-file`,
/// `--password-file`): a password is short, and a longer file is almost surely the wrong one.
pub const PASSWORD_FILE_BYTES_MAX: u64 = 4096;

/// How long a leader-only admin call waits for a leader elected moments ago to apply what
/// its predecessors committed (it answers 503 after that).
pub const LEADER_READY_WAIT_MS: u64 = 3_000;

/// The longest a leader takes over one admin call: waiting to be ready, a membership
/// change's quorum re-checks (`PEER_ACTIVE_WINDOW_MS`), two proposals (a command and a
/// membership change), and a hand-over of leadership.
pub const LEADER_CALL_MS_MAX: u64 =
    LEADER_READY_WAIT_MS + PEER_ACTIVE_WINDOW_MS + 2 * PROPOSE_TIMEOUT_MS + HANDOVER_WAIT_MS;

/// Longest binlog file name accepted anywhere (MySQL's FN_REFLEN is 512).
pub const BINLOG_FILE_NAME_MAX: usize = 255;

const _: () = assert!(ENTRY_PAYLOAD_MAX <= BATCH_BYTES_MAX);
const _: () = assert!((ENTRY_PAYLOAD_MAX as u64) < SEGMENT_BYTES_MAX);
const _: () = assert!(SERVER_CONNECTIONS_DEFAULT <= SERVER_CONNECTIONS_MAX);
const _: () = assert!(RECONNECT_BACKOFF_MIN_MS <= RECONNECT_BACKOFF_MAX_MS);
const _: () = assert!(UPSTREAM_HEARTBEAT_PERIOD_MS * 3 < UPSTREAM_IO_TIMEOUT_MS);

/// Bytes the storage log gathers in its write buffer before it issues a write syscall: a
/// batch larger than this is written in several calls (the buffer never grows past it plus
/// one record).
pub const LOG_WRITE_BUFFER_BYTES_MAX: usize = 2 << 20;

/// Entry data at least this large is written to the log from where it is (a vectored write
/// after the buffered records), not copied into the write buffer first.
pub const LOG_WRITE_IN_PLACE_BYTES_MIN: usize = 64 << 10;

/// Largest request body an admin API client may *declare* (Content-Length) and still have
/// its connection kept: tiny_http 0.12 drains an unread body on drop by allocating the whole
/// declared remainder at once, so a request declaring more than this gets its 413 reply and
/// the connection is abandoned (leaked) rather than drained.
pub const HTTP_BODY_DRAIN_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(HTTP_BODY_BYTES_MAX <= HTTP_BODY_DRAIN_BYTES_MAX);

/// Largest raft message frame between peers (protobuf bytes of one `Message`). An append
/// carries at least one whole entry and a snapshot its whole state, so it is far above one
/// batch; a frame declaring more ends that peer connection.
pub const PEER_FRAME_BYTES_MAX: usize = 64 << 20;

/// Messages waiting for one peer's outbound thread; `send` drops (and counts) beyond this,
/// and Raft retransmits.
pub const PEER_QUEUE_DEPTH_MAX: usize = 4096;

/// Queued messages are gathered into one socket write until it reaches this many bytes
/// (one message larger than this is written alone).
pub const PEER_BATCH_BYTES_MAX: usize = 1 << 20;

/// Write timeout of an outbound peer socket, and the longest an inbound peer socket may
/// stall inside a hello or a frame (between frames it may stay idle).
pub const PEER_IO_TIMEOUT_MS: u64 = 5_000;

/// Timeout of one TCP connect to a peer (also bounds how long a shutdown can wait for it).
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 2_000;

/// Reconnect backoff of an outbound peer thread: first wait and ceiling.
pub const PEER_BACKOFF_MIN_MS: u64 = 100;
pub const PEER_BACKOFF_MAX_MS: u64 = 2_000;

/// Inbound peer connections open at once (past their hello, the raft thread reads them);
/// more are refused.
pub const PEER_INBOUND_CONNECTIONS_MAX: usize = 64;

/// How long an inbound peer connection may take to send its whole hello.
pub const PEER_HELLO_TIMEOUT_MS: u64 = 2_000;

const _: () = assert!(BATCH_BYTES_MAX < PEER_FRAME_BYTES_MAX);
const _: () = assert!(PEER_BATCH_BYTES_MAX <= PEER_FRAME_BYTES_MAX);
const _: () = assert!(PEER_FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(PEER_BACKOFF_MIN_MS <= PEER_BACKOFF_MAX_MS);

/// Period of the raft thread's logical clock (one `tick`).
pub const RAFT_TICK_INTERVAL_MS: u64 = 100;

/// Ticks without a leader's word before a follower starts a (pre-)election; raft-rs draws
/// the real timeout from [this, 2 × this), so elections start 1–2 s after the leader's last
/// heartbeat.
pub const RAFT_ELECTION_TICKS: usize = 10;

/// Ticks between a leader's heartbeats.
pub const RAFT_HEARTBEAT_TICKS: usize = 1;

/// Bytes of entries raft-rs puts in one append message (at least one entry is sent).
pub const RAFT_MSG_BYTES_MAX: u64 = 1 << 20;

/// Bytes of committed entries one Ready hands to the state machine (raft-rs's
/// `max_committed_size_per_ready`). A restarted node whose saved commit index is old gets
/// its whole log committed at once; without a bound it would read all of it into memory
/// for one Ready.
pub const RAFT_COMMITTED_BYTES_PER_READY_MAX: u64 = 8 << 20;

/// Append messages a leader keeps in flight to one follower before it waits for acks. Each
/// holds up to `RAFT_MSG_BYTES_MAX` of entries (shared with the log's cache of its
/// unapplied tail, or read back from the log), so this bounds the leader's memory per
/// follower during a catch-up (16 MiB); on a LAN it is plenty.
pub const RAFT_INFLIGHT_MSGS_MAX: usize = 16;

/// Bytes of proposed but uncommitted entry data a leader accepts before it drops new
/// proposals (a leader cut off from its quorum stops growing its log).
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 64 << 20;

/// Largest state-machine snapshot (data bytes) stored and sent to a lagging follower.
pub const RAFT_SNAPSHOT_BYTES_MAX: usize = 32 << 20;

/// Bytes of entry data the raft log keeps in memory for raft-rs to read back (entries not
/// applied yet; see `consensus::entry_cache`): the syncer's proposals in flight fit, so a
/// leader applies what it proposed without reading its log files.
pub const RAFT_ENTRY_CACHE_BYTES_MAX: usize = 24 << 20;

/// Largest raft state file (HardState + ConfState); anything bigger is corrupt.
pub const RAFT_STATE_FILE_BYTES_MAX: u64 = 1 << 20;

const _: () = assert!(RAFT_HEARTBEAT_TICKS < RAFT_ELECTION_TICKS);
const _: () = assert!(ENTRY_PAYLOAD_MAX as u64 <= RAFT_UNCOMMITTED_BYTES_MAX);
const _: () = assert!(RAFT_SNAPSHOT_BYTES_MAX < PEER_FRAME_BYTES_MAX);
const _: () = assert!((RAFT_MSG_BYTES_MAX as usize) < PEER_FRAME_BYTES_MAX);

/// Requests waiting for the raft thread (proposals, peer messages, membership and peer
/// changes). Proposers block when it is full; peer messages are dropped (Raft retransmits).
/// The raft thread drains up to this many before each Ready, so they share one fsync.
pub const RAFT_REQUEST_QUEUE_DEPTH_MAX: usize = 1024;

/// Proposal chains with a refused proposal that the raft thread remembers (each refuses
/// its later proposals); a chain is one syncer or import session.
pub const RAFT_BROKEN_CHAINS_KEPT: usize = 64;

/// Timeout of one admin request a follower forwards to the leader (connect, send, reply):
/// longer than the leader may take, so that a change the leader makes is not reported as
/// failed (a leader that does not answer in time is a 504, "may still take effect").
pub const FORWARD_TIMEOUT_MS: u64 = LEADER_CALL_MS_MAX + 5_000;

/// Largest leader reply a follower relays; a longer one is a 502.
pub const FORWARD_REPLY_BYTES_MAX: u64 = 16 << 20;

const _: () = assert!(FORWARD_TIMEOUT_MS < HTTP_CLIENT_TIMEOUT_MS);
/// Entry data the syncer can have proposed and not yet seen committed: its proposals in
/// flight and the batch it is packing.
const SYNCER_UNCOMMITTED_BYTES_MAX: usize = (SYNCER_PROPOSALS_IN_FLIGHT_MAX + 1) * BATCH_BYTES_MAX;
const _: () = assert!(SYNCER_UNCOMMITTED_BYTES_MAX <= RAFT_ENTRY_CACHE_BYTES_MAX);
const _: () = assert!(SYNCER_UNCOMMITTED_BYTES_MAX as u64 * 2 <= RAFT_UNCOMMITTED_BYTES_MAX);

/// Bytes of a log entry a dump's cursor reads at a time: a dump holds this window, not the
/// whole entry (up to ENTRY_PAYLOAD_MAX); an event larger than the window is sent as it is
/// read, unless its transaction's end depends on its content (a QUERY), which is gathered.
pub const CURSOR_READ_BYTES_MAX: usize = 64 << 10;

const _: () = assert!(CURSOR_READ_BYTES_MAX <= ENTRY_PAYLOAD_MAX);

/// Largest binlog file `POST /binlog/import` takes (and `ctl import` sends): a master rolls
/// its files at max_binlog_size (at most 1 GiB), and a file grows past it only by the last
/// transaction written into it. The body is spooled to the data directory, never held in
/// memory.
pub const IMPORT_FILE_BYTES_MAX: u64 = 4 << 30;

/// Time one import may take end to end (upload, validation, every entry committed and
/// applied): the timeout of `ctl import` and of a follower forwarding an import.
pub const IMPORT_TIMEOUT_MS: u64 = 1_800_000;

/// Time `ctl export` may take to download one file.
pub const EXPORT_TIMEOUT_MS: u64 = 1_800_000;

const _: () = assert!(IMPORT_FILE_BYTES_MAX >= EVENT_BYTES_MAX as u64 + 4);
const _: () = assert!(IMPORT_TIMEOUT_MS > FORWARD_TIMEOUT_MS);
/// Largest RSA private key file (PEM) a caching_sha2_password binlog server reads; a
/// 4096-bit key is about 3.3 KiB, so anything this large is not a key.
pub const RSA_KEY_FILE_BYTES_MAX: u64 = 64 << 10;

/// Longest an import's upload may pause (no byte arriving) before the node gives it up:
/// the admin connection's socket read timeout while the body is read, so that a stalled
/// client holds an admin worker and its spool file this long at most.
pub const IMPORT_BODY_STALL_MS: u64 = 60_000;

/// Longest an admin API connection may stall one read or write (a request body that stops
/// arriving, a download its client stops reading, an idle keep-alive connection).
pub const HTTP_IO_TIMEOUT_MS: u64 = 60_000;

const _: () = assert!(IMPORT_BODY_STALL_MS < IMPORT_TIMEOUT_MS);

/// Largest batch of frames the raft thread writes to a peer socket itself (non-blocking,
/// while the peer's sender thread is idle) instead of waking that thread: the small messages
/// of steady replication skip a thread hand-off; catch-up's large appends still go through
/// the sender thread, so their copy into the socket overlaps the raft thread's next fsync.
pub const PEER_DIRECT_WRITE_BYTES_MAX: usize = 64 << 10;

const _: () = assert!(PEER_DIRECT_WRITE_BYTES_MAX <= PEER_BATCH_BYTES_MAX);

/// A Ready that appends at most this many bytes of entry data while no sync runs is made
/// durable on the raft thread itself: the hand-off to the sync thread and back would cost
/// two thread wake-ups on the path of every small transaction. A follower's acknowledgement
/// waits for its fdatasync either way; a leader's append has already left for its followers
/// (messages go before the sync), and its own sync usually ends before their acknowledgements
/// arrive. Measured on the lag bench (6 interleaved pairs, 2026-11-26), the leader's small
/// appends inline as well as the followers': CPU per transaction 1.11 -> 1.02 ms, lower in 5
/// of 6 pairs, median p99 extra 5.3 -> 3.9 ms, lower in 4 of 6. The price, as in etcd: a
/// leader whose sync stalls for longer than the election timeout sends no heartbeats
/// meanwhile, and may lose its leadership. Larger Readies (catch-up), and small ones behind a
/// running sync, go to the sync thread, so that writing the next appends overlaps the sync
/// and a leader commits with its followers' acknowledgements while its own sync runs.
pub const RAFT_INLINE_SYNC_BYTES_MAX: usize = 64 << 10;

/// Zeros written past the end of the active log segment when a small append reaches it, so
/// the next appends overwrite allocated blocks inside the file's size: their fdatasync then
/// writes the data alone, not also the inode (size, block map) as an append past the end
/// must. Larger writes (catch-up, and any write carrying an entry of at least
/// `LOG_WRITE_IN_PLACE_BYTES_MIN`) extend the file as they go and get none. 1 MiB: at a
/// steady small-transaction load, only one fdatasync in many (one per MiB written) also
/// updates the inode, the slow kind when other programs write to the same disk.
pub const LOG_PREALLOCATE_BYTES: u64 = 1 << 20;

const _: () = assert!(LOG_PREALLOCATE_BYTES <= SEGMENT_BYTES_MAX);

/// How long a leader asked to remove itself waits for the node it hands leadership to to
/// take over, before the request is forwarded there (a few election timeouts).
pub const HANDOVER_WAIT_MS: u64 = 3_000;
const _: () = assert!(HANDOVER_WAIT_MS < FORWARD_TIMEOUT_MS);
