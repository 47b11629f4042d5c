//! The syncer's conversation with its master, up to the first event: connect, pre-checks,
//! registration, the dump request, and turning a start GTID into a file and position.
//!
//! The master's flavour comes from its version (handshake and `SELECT VERSION()`: MariaDB
//! names itself). A MariaDB master gets what a MariaDB 10.11 replica sends. A MySQL master
//! gets what a MySQL replica IO thread sends (`get_master_version_and_clock`,
//! `get_master_uuid`, `register_slave_on_master`, `request_dump` in MySQL's
//! rpl_replica.cc): `SELECT UNIX_TIMESTAMP()`, `SELECT @@GLOBAL.SERVER_ID`, the heartbeat
//! period and checksum session variables under both their old (`master_`) and 8.0.26+
//! (`source_`) names, `SELECT @@GLOBAL.GTID_MODE`, `SELECT @@GLOBAL.SERVER_UUID`,
//! `@slave_uuid` and `@replica_uuid`, COM_REGISTER_SLAVE, then COM_BINLOG_DUMP_GTID when
//! GTID_MODE is ON (a source refuses a GTID dump in any other mode) or COM_BINLOG_DUMP.
//! Setting a user variable never fails on any version, so both names are always set; a
//! system variable a version lacks (error 1193) means that feature is off.
//!
//! It owns no state beyond one connection and must not store anything.

use std::time::Duration;

use crate::binlog::event::{self, EventHeader};
use crate::binlog::gtid::MysqlGtidSet;
use crate::limits::{
    UPSTREAM_CONNECT_TIMEOUT_MS, UPSTREAM_HEARTBEAT_PERIOD_MS, UPSTREAM_IO_TIMEOUT_MS,
};
use crate::mysql::command::{
    BinlogDump, BinlogDumpGtid, Command, RegisterSlave, BINLOG_SEND_ANNOTATE_ROWS_EVENT,
    BINLOG_THROUGH_GTID,
};
use crate::mysql::resultset::ER_UNKNOWN_SYSTEM_VARIABLE;
use crate::net::client::Client;
use crate::net::NetError;

use super::SyncerError;

/// Where to connect and as whom.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub addr: String,
    pub user: String,
    pub password: String,
    pub server_id: u32,
    /// Announced as `@slave_uuid` when given.
    pub uuid: Option<String>,
}

/// COM_BINLOG_DUMP[_GTID] flag of MySQL 8.0.26+ (`USE_HEARTBEAT_EVENT_V2`): send
/// HEARTBEAT_LOG_EVENT_V2 (64-bit positions). Older MySQL ignores it. On MariaDB this bit
/// means BINLOG_SEND_ANNOTATE_ROWS_EVENT, so it is only sent to MySQL.
pub const USE_HEARTBEAT_EVENT_V2: u16 = 2;

/// Which server family the master is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterFlavour {
    MariaDb,
    Mysql,
}

impl MasterFlavour {
    pub fn as_str(&self) -> &'static str {
        match self {
            MasterFlavour::MariaDb => "MariaDB",
            MasterFlavour::Mysql => "MySQL",
        }
    }
}

/// The flavour from the handshake's server version and `SELECT VERSION()` (either may be
/// empty): MariaDB always names itself (10.x sends "5.5.5-10.x.y-MariaDB…" in the
/// handshake); anything else speaks MySQL's protocol.
pub fn detect_flavour(handshake_version: &str, version: &str) -> MasterFlavour {
    let names_mariadb = |v: &str| v.to_ascii_lowercase().contains("mariadb");
    if names_mariadb(handshake_version) || names_mariadb(version) {
        MasterFlavour::MariaDb
    } else {
        MasterFlavour::Mysql
    }
}

/// What the pre-checks learned about the master.
#[derive(Clone, Debug)]
pub struct MasterInfo {
    pub version: String,
    pub flavour: MasterFlavour,
    pub server_id: u32,
    /// `SHOW BINARY LOGS`: file names, oldest first.
    pub binlogs: Vec<String>,
    /// MySQL: `@@GLOBAL.GTID_MODE` (OFF when the server has no such variable).
    pub gtid_mode: Option<String>,
    /// MySQL: `@@GLOBAL.SERVER_UUID`, when the server has one.
    pub server_uuid: Option<String>,
}

impl MasterInfo {
    /// Whether the master serves COM_BINLOG_DUMP_GTID: MySQL with GTID_MODE=ON only (MySQL's
    /// `Binlog_sender::init` refuses a GTID dump in every other mode, ON_PERMISSIVE too).
    pub fn mysql_gtid_dump(&self) -> bool {
        self.flavour == MasterFlavour::Mysql
            && self
                .gtid_mode
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("ON"))
    }
}

/// The `@slave_uuid` / `@replica_uuid` the syncer announces to a MySQL master: the one
/// configured (`syncer_uuid`), or one derived from the syncer id, so that it is the same on
/// every node and every connection (a new leader's dump then replaces the old leader's
/// on the master, as a reconnecting replica's does). Name-based (SHA-1, version 5 layout).
pub fn replica_uuid(up: &Upstream) -> String {
    use sha1::{Digest, Sha1};
    if let Some(uuid) = &up.uuid {
        return uuid.clone();
    }
    let digest = Sha1::digest(format!("ferrobus syncer {}", up.server_id).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    crate::binlog::gtid::format_uuid(&bytes)
}

/// Connects and logs in; run [`precheck`] before a dump.
pub fn open(up: &Upstream) -> Result<Client, SyncerError> {
    Client::connect(
        &up.addr,
        &up.user,
        &up.password,
        Duration::from_millis(UPSTREAM_CONNECT_TIMEOUT_MS),
        Duration::from_millis(UPSTREAM_IO_TIMEOUT_MS),
    )
    .map_err(|e| SyncerError::Connect(e.to_string()))
}

/// The master's GTID state at a file position (`BINLOG_GTID_POS`), for a store that begins
/// there.
pub fn gtid_state_at(
    client: &mut Client,
    file: &str,
    pos: u64,
) -> Result<crate::binlog::gtid::MariaGtidList, SyncerError> {
    let sql = format!(
        "SELECT BINLOG_GTID_POS('{}', {pos})",
        file.replace(['\'', '\\'], "")
    );
    let text = one_value(client, &sql)?.ok_or_else(|| {
        SyncerError::Precheck(format!(
            "{file}:{pos} is not a position in the master's binlog (BINLOG_GTID_POS returned \
             NULL); give the position of an event, as SHOW BINLOG EVENTS lists them"
        ))
    })?;
    crate::binlog::gtid::MariaGtidList::parse(&text)
        .map_err(|e| SyncerError::Master(format!("BINLOG_GTID_POS returned {text:?}: {e}")))
}

/// Checks the master can be synced from: binary log on, CRC32 checksums, a binlog listed,
/// and for MySQL learns GTID_MODE and SERVER_UUID. Returns what it learned.
pub fn precheck(client: &mut Client) -> Result<MasterInfo, SyncerError> {
    // Not every server answers it (the handshake version is enough then).
    let version = match client.query_one_value("SELECT VERSION()") {
        Ok(v) => v.unwrap_or_default(),
        Err(NetError::Server(e)) => {
            log::warn!("syncer: SELECT VERSION() refused ({}); using the handshake version", e.message);
            String::new()
        }
        Err(e) => return Err(SyncerError::Connection(e.to_string())),
    };
    let flavour = detect_flavour(client.server_version(), &version);
    let version = if version.is_empty() {
        client.server_version().to_string()
    } else {
        version
    };
    if flavour == MasterFlavour::Mysql {
        log_clock_skew(client)?;
    }
    let server_id = one_value(client, "SELECT @@GLOBAL.SERVER_ID")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let log_bin = one_value(client, "SELECT @@GLOBAL.log_bin")?.unwrap_or_default();
    if !(log_bin == "1" || log_bin.eq_ignore_ascii_case("ON")) {
        return Err(SyncerError::Precheck(
            "the binary log is off on the master (log_bin=OFF); start it with --log-bin".into(),
        ));
    }
    let checksum = one_value(client, "SELECT @@GLOBAL.binlog_checksum")?.unwrap_or_default();
    if !checksum.eq_ignore_ascii_case("CRC32") {
        return Err(SyncerError::Precheck(format!(
            "the master's binlog_checksum is {checksum}; ferrobus verifies every event and \
             needs binlog_checksum=CRC32"
        )));
    }
    let (gtid_mode, server_uuid) = match flavour {
        MasterFlavour::MariaDb => (None, None),
        MasterFlavour::Mysql => (
            Some(optional_variable(client, "GTID_MODE")?.unwrap_or_else(|| "OFF".into())),
            optional_variable(client, "SERVER_UUID")?,
        ),
    };
    let logs = client.query("SHOW BINARY LOGS").map_err(query_error)?;
    let binlogs = logs
        .rows
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect::<Vec<_>>();
    if binlogs.is_empty() {
        return Err(SyncerError::Precheck(
            "SHOW BINARY LOGS on the master lists no file".into(),
        ));
    }
    Ok(MasterInfo {
        version,
        flavour,
        server_id,
        binlogs,
        gtid_mode,
        server_uuid,
    })
}

/// `SELECT UNIX_TIMESTAMP()`, as a MySQL replica asks, to warn about a skewed clock (the
/// lag shown is computed from event timestamps). A master that cannot answer is not an
/// error, as for MySQL's IO thread.
fn log_clock_skew(client: &mut Client) -> Result<(), SyncerError> {
    match client.query_one_value("SELECT UNIX_TIMESTAMP()") {
        Ok(Some(text)) => {
            let ours = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if let Ok(theirs) = text.split('.').next().unwrap_or("").parse::<i64>() {
                if (theirs - ours).abs() > 60 {
                    log::warn!(
                        "syncer: the master's clock is {} s off ours; lag_seconds will be off \
                         by as much",
                        theirs - ours
                    );
                }
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(NetError::Server(e)) => {
            log::warn!("syncer: SELECT UNIX_TIMESTAMP() refused by the master: {}", e.message);
            Ok(())
        }
        Err(e) => Err(SyncerError::Connection(e.to_string())),
    }
}

/// `SELECT @@GLOBAL.<name>`, None when this server version has no such variable.
fn optional_variable(client: &mut Client, name: &str) -> Result<Option<String>, SyncerError> {
    match client.query_one_value(&format!("SELECT @@GLOBAL.{name}")) {
        Ok(v) => Ok(v),
        Err(NetError::Server(e)) if e.code == ER_UNKNOWN_SYSTEM_VARIABLE => Ok(None),
        Err(e) => Err(query_error(e)),
    }
}

fn one_value(client: &mut Client, sql: &str) -> Result<Option<String>, SyncerError> {
    client.query_one_value(sql).map_err(query_error)
}

fn query_error(e: NetError) -> SyncerError {
    match e {
        NetError::Server(err) => SyncerError::Precheck(format!(
            "the master refused a pre-check query: {} (error {}); the syncer's account needs \
             REPLICATION SLAVE and BINLOG MONITOR",
            err.message, err.code
        )),
        other => SyncerError::Connection(other.to_string()),
    }
}

/// Sets the session variables a replica sets, registers, and requests the dump.
pub fn start_dump(
    client: &mut Client,
    up: &Upstream,
    file: &str,
    pos: u64,
    connect_state: Option<&str>,
) -> Result<(), SyncerError> {
    let heartbeat_ns = UPSTREAM_HEARTBEAT_PERIOD_MS * 1_000_000;
    let mut setup = vec![
        "SET @master_binlog_checksum= @@global.binlog_checksum".to_string(),
        "SET @mariadb_slave_capability=4".to_string(),
        format!("SET @master_heartbeat_period={heartbeat_ns}"),
    ];
    if let Some(uuid) = &up.uuid {
        setup.push(format!("SET @slave_uuid='{}'", uuid.replace('\'', "")));
    }
    if let Some(state) = connect_state {
        setup.push(format!(
            "SET @slave_connect_state='{}'",
            state.replace('\'', "")
        ));
        setup.push("SET @slave_gtid_strict_mode=0".into());
        setup.push("SET @slave_gtid_ignore_duplicates=0".into());
    }
    for sql in &setup {
        client.query(sql).map_err(query_error)?;
    }
    register(client, up)?;
    let pos32 = u32::try_from(pos).map_err(|_| {
        SyncerError::Precheck(format!(
            "binlog position {pos} does not fit COM_BINLOG_DUMP"
        ))
    })?;
    let dump = Command::BinlogDump(BinlogDump {
        binlog_pos: pos32,
        // Without it a MariaDB master leaves ANNOTATE_ROWS events out and the stored file
        // would have holes.
        flags: BINLOG_SEND_ANNOTATE_ROWS_EVENT,
        server_id: up.server_id,
        binlog_filename: file.to_string(),
    });
    client.send_command(&dump).map_err(conn_error)
}

/// COM_REGISTER_SLAVE, and the master's answer.
fn register(client: &mut Client, up: &Upstream) -> Result<(), SyncerError> {
    let register = Command::RegisterSlave(RegisterSlave {
        server_id: up.server_id,
        host: String::new(),
        user: String::new(),
        password: String::new(),
        port: 0,
        rank: 0,
        master_id: 0,
    });
    client.send_command(&register).map_err(conn_error)?;
    let reply = client.read_packet().map_err(conn_error)?;
    if reply.first() == Some(&0xff) {
        return Err(SyncerError::Precheck(format!(
            "COM_REGISTER_SLAVE refused: {}",
            crate::mysql::resultset::ErrPacket::decode(&reply)
                .map(|e| e.message)
                .unwrap_or_else(|_| "malformed error packet".into())
        )));
    }
    Ok(())
}

/// How a MySQL dump is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MysqlDump {
    /// COM_BINLOG_DUMP_GTID from the file and position (an empty file name lets the master
    /// choose from the set), leaving out the transactions in the set.
    Gtid(MysqlGtidSet),
    /// COM_BINLOG_DUMP from the file and position (GTID_MODE is not ON).
    FilePos,
}

/// The session variables, registration and dump request of a MySQL replica IO thread.
/// Refuses a master whose SERVER_UUID is the syncer's own `@replica_uuid` (MySQL refuses
/// equal UUIDs too: the master would take the syncer for itself).
pub fn start_mysql_dump(
    client: &mut Client,
    up: &Upstream,
    info: &MasterInfo,
    file: &str,
    pos: u64,
    how: &MysqlDump,
) -> Result<(), SyncerError> {
    let uuid = replica_uuid(up);
    if info
        .server_uuid
        .as_deref()
        .is_some_and(|theirs| theirs.eq_ignore_ascii_case(&uuid))
    {
        return Err(SyncerError::Precheck(format!(
            "the master's server_uuid is {uuid}, the same as the syncer's replica uuid; give \
             the syncer another `syncer_uuid` (or another `syncer_id`)"
        )));
    }
    let heartbeat_ns = UPSTREAM_HEARTBEAT_PERIOD_MS * 1_000_000;
    let uuid = uuid.replace(['\'', '\\'], "");
    let setup = [
        format!("SET @master_heartbeat_period= {heartbeat_ns}"),
        format!("SET @source_heartbeat_period= {heartbeat_ns}"),
        "SET @master_binlog_checksum= @@global.binlog_checksum".to_string(),
        "SET @source_binlog_checksum= @@global.binlog_checksum".to_string(),
    ];
    for sql in &setup {
        client.query(sql).map_err(query_error)?;
    }
    let agreed = one_value(client, "SELECT @master_binlog_checksum")?.unwrap_or_default();
    if !agreed.eq_ignore_ascii_case("CRC32") {
        return Err(SyncerError::Precheck(format!(
            "the master will send events with checksum {agreed:?}; ferrobus needs CRC32"
        )));
    }
    for sql in [
        format!("SET @slave_uuid= '{uuid}'"),
        format!("SET @replica_uuid= '{uuid}'"),
    ] {
        client.query(&sql).map_err(query_error)?;
    }
    register(client, up)?;
    let command = match how {
        MysqlDump::Gtid(set) => Command::BinlogDumpGtid(BinlogDumpGtid {
            flags: BINLOG_THROUGH_GTID | USE_HEARTBEAT_EVENT_V2,
            server_id: up.server_id,
            binlog_filename: file.to_string(),
            binlog_pos: pos,
            sid_data: set.encode(),
        }),
        MysqlDump::FilePos => Command::BinlogDump(BinlogDump {
            binlog_pos: u32::try_from(pos).map_err(|_| {
                SyncerError::Precheck(format!(
                    "binlog position {pos} does not fit COM_BINLOG_DUMP (GTID_MODE is off on \
                     the master, so COM_BINLOG_DUMP_GTID cannot be used)"
                ))
            })?,
            flags: USE_HEARTBEAT_EVENT_V2,
            server_id: up.server_id,
            binlog_filename: file.to_string(),
        }),
    };
    client.send_command(&command).map_err(conn_error)
}

/// The file a MySQL master starts a GTID dump after `set` from (it chooses the last file
/// whose PREVIOUS_GTIDS is in the set): asks with an empty file name and reads the
/// artificial ROTATE. The connection is unusable afterwards.
pub fn resolve_mysql_gtid(
    client: &mut Client,
    up: &Upstream,
    info: &MasterInfo,
    set: &MysqlGtidSet,
) -> Result<String, SyncerError> {
    start_mysql_dump(client, up, info, "", 4, &MysqlDump::Gtid(set.clone()))?;
    loop {
        let ev = match read_dump_packet(client)? {
            DumpPacket::Event(ev) => ev,
            DumpPacket::Eof => {
                return Err(SyncerError::Master("dump ended before any event".into()))
            }
        };
        let header = EventHeader::parse(&ev).map_err(|e| SyncerError::Master(e.to_string()))?;
        if header.type_code == event::ROTATE_EVENT {
            let r = event::Rotate::parse(&ev, event::CHECKSUM_LEN)
                .map_err(|e| SyncerError::Master(e.to_string()))?;
            return Ok(r.next_file);
        }
    }
}

pub fn conn_error(e: NetError) -> SyncerError {
    SyncerError::Connection(e.to_string())
}

/// One packet of the dump stream.
pub enum DumpPacket {
    Event(Vec<u8>),
    Eof,
}

/// Reads the next packet of a dump stream into `packet` and, when it is an event, appends
/// the event (without the 0x00 status byte) to `events`. Returns false at EOF.
pub fn read_dump_event_into(
    client: &mut Client,
    packet: &mut Vec<u8>,
    events: &mut Vec<u8>,
) -> Result<bool, SyncerError> {
    client
        .conn_mut()
        .read_packet_into(packet)
        .map_err(conn_error)?;
    match packet.first() {
        Some(0x00) => {
            events.extend_from_slice(&packet[1..]);
            Ok(true)
        }
        Some(0xfe) if packet.len() < 9 => Ok(false),
        Some(0xff) => Err(SyncerError::Master(
            crate::mysql::resultset::ErrPacket::decode(packet)
                .map(|e| format!("{} (error {})", e.message, e.code))
                .unwrap_or_else(|_| "malformed error packet".into()),
        )),
        _ => Err(SyncerError::Connection(
            "the master sent a packet that is not an event".into(),
        )),
    }
}

/// Reads the next packet of a dump stream: an event (without the 0x00 status byte), EOF, or
/// the master's error.
pub fn read_dump_packet(client: &mut Client) -> Result<DumpPacket, SyncerError> {
    let mut packet = client.read_packet().map_err(conn_error)?;
    match packet.first() {
        Some(0x00) => {
            packet.remove(0);
            Ok(DumpPacket::Event(packet))
        }
        Some(0xfe) if packet.len() < 9 => Ok(DumpPacket::Eof),
        Some(0xff) => {
            let err = crate::mysql::resultset::ErrPacket::decode(&packet)
                .map(|e| format!("{} (error {})", e.message, e.code))
                .unwrap_or_else(|_| "malformed error packet".into());
            Err(SyncerError::Master(err))
        }
        _ => Err(SyncerError::Connection(
            "the master sent a packet that is not an event".into(),
        )),
    }
}

/// Asks the master where the transaction after `gtid_state` begins: dumps in GTID mode and
/// reads until the first content after the skipped part. Returns (file, position).
pub fn resolve_gtid(
    client: &mut Client,
    up: &Upstream,
    gtid_state: &str,
) -> Result<(String, u64), SyncerError> {
    start_dump(client, up, "", 4, Some(gtid_state))?;
    let mut file: Option<String> = None;
    // Where the file's content the master sent begins (4 when it starts the file whole).
    let mut first_content: Option<u64> = None;
    loop {
        let ev = match read_dump_packet(client)? {
            DumpPacket::Event(ev) => ev,
            DumpPacket::Eof => {
                return Err(SyncerError::Master("dump ended before any event".into()))
            }
        };
        let header = EventHeader::parse(&ev).map_err(|e| SyncerError::Master(e.to_string()))?;
        let artificial = header.flags & event::LOG_EVENT_ARTIFICIAL_F != 0;
        let here = |file: &Option<String>, pos: u64| {
            file.clone()
                .map(|f| (f, pos))
                .ok_or_else(|| SyncerError::Master("event before the first ROTATE".into()))
        };
        match header.type_code {
            event::ROTATE_EVENT if artificial => {
                let r = event::Rotate::parse(&ev, event::CHECKSUM_LEN)
                    .map_err(|e| SyncerError::Master(e.to_string()))?;
                file = Some(r.next_file);
                first_content = None;
            }
            // The master skipped to the slave's state and says where it now is.
            event::GTID_LIST_EVENT if artificial => return here(&file, u64::from(header.log_pos)),
            // Idle at the end: nothing after the state yet. Whether or not the master skipped
            // part of this file, the heartbeat's position is where the next event will be.
            event::HEARTBEAT_LOG_EVENT => return here(&file, u64::from(header.log_pos)),
            event::FORMAT_DESCRIPTION_EVENT
            | event::GTID_LIST_EVENT
            | event::BINLOG_CHECKPOINT_EVENT
                if header.log_pos != 0 =>
            {
                let start = u64::from(header.log_pos).saturating_sub(u64::from(header.event_size));
                first_content.get_or_insert(start);
            }
            _ if header.log_pos != 0 && !artificial => {
                let start = u64::from(header.log_pos).saturating_sub(u64::from(header.event_size));
                return here(&file, first_content.unwrap_or(start));
            }
            _ => {}
        }
    }
}
