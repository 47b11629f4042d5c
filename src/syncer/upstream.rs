//! The syncer's conversation with its master, up to the first event: connect, pre-checks,
//! registration, the dump request, and turning a start GTID into a file and position.
//!
//! It owns no state beyond one connection and must not store anything.

use std::time::Duration;

use crate::binlog::event::{self, EventHeader};
use crate::limits::{
    UPSTREAM_CONNECT_TIMEOUT_MS, UPSTREAM_HEARTBEAT_PERIOD_MS, UPSTREAM_IO_TIMEOUT_MS,
};
use crate::mysql::command::{BinlogDump, Command, RegisterSlave, BINLOG_SEND_ANNOTATE_ROWS_EVENT};
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

/// What the pre-checks learned about the master.
#[derive(Clone, Debug)]
pub struct MasterInfo {
    pub version: String,
    pub server_id: u32,
    /// `SHOW BINARY LOGS`: file names, oldest first.
    pub binlogs: Vec<String>,
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

/// Checks the master can be synced from: MariaDB, binary log on, CRC32 checksums, a binlog
/// listed. Returns what it learned.
pub fn precheck(client: &mut Client) -> Result<MasterInfo, SyncerError> {
    let version = one_value(client, "SELECT VERSION()")?.unwrap_or_default();
    if !version.contains("MariaDB") {
        return Err(SyncerError::Precheck(format!(
            "master version {version} is not MariaDB; MySQL masters are not supported yet"
        )));
    }
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
    let server_id = one_value(client, "SELECT @@GLOBAL.server_id")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
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
        server_id,
        binlogs,
    })
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
