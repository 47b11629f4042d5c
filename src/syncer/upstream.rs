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
use crate::binlog::Flavour;
use crate::limits::{
    UPSTREAM_CONNECT_TIMEOUT_MS, UPSTREAM_HEARTBEAT_PERIOD_MS, UPSTREAM_IO_TIMEOUT_MS,
};
use crate::mysql::command::{
    BinlogDump, BinlogDumpGtid, Command, RegisterSlave, BINLOG_SEND_ANNOTATE_ROWS_EVENT,
    BINLOG_THROUGH_GTID, USE_HEARTBEAT_EVENT_V2,
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

/// The flavour from the handshake's server version and `SELECT VERSION()` (either may be
/// empty): MariaDB if either names it ([`Flavour::of_server_version`]).
pub fn detect_flavour(handshake_version: &str, version: &str) -> Flavour {
    if [handshake_version, version]
        .iter()
        .any(|v| Flavour::of_server_version(v) == Flavour::MariaDb)
    {
        Flavour::MariaDb
    } else {
        Flavour::MySql
    }
}

/// What the pre-checks learned about the master.
#[derive(Clone, Debug)]
pub struct MasterInfo {
    pub version: String,
    pub flavour: Flavour,
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
        self.flavour == Flavour::MySql
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
    if let Some(uuid) = &up.uuid {
        return uuid.clone();
    }
    crate::binlog::gtid::name_based_uuid(format!("ferrobus syncer {}", up.server_id).as_bytes())
}

/// Connects and logs in, handing the socket to `on_socket` once connected (before the
/// handshake); run [`precheck`] before a dump.
pub fn open(
    up: &Upstream,
    on_socket: impl FnOnce(&std::net::TcpStream),
) -> Result<Client, SyncerError> {
    let connected = std::cell::Cell::new(false);
    Client::connect_with(
        &up.addr,
        &up.user,
        &up.password,
        Duration::from_millis(UPSTREAM_CONNECT_TIMEOUT_MS),
        Duration::from_millis(UPSTREAM_IO_TIMEOUT_MS),
        |sock| {
            connected.set(true);
            on_socket(sock);
        },
    )
    .map_err(|e| {
        SyncerError::Connect(if e.is_timeout() && !connected.get() {
            format!(
                "no TCP connection to {} within {} s (a firewall dropping packets, or no \
                 such host on the network?)",
                up.addr,
                UPSTREAM_CONNECT_TIMEOUT_MS / 1000
            )
        } else if e.is_timeout() {
            format!(
                "{} accepted the connection but did not answer the login within {} s (a MySQL \
                 or MariaDB server greets at once: is this the master's port?)",
                up.addr,
                UPSTREAM_IO_TIMEOUT_MS / 1000
            )
        } else {
            e.to_string()
        })
    })
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
            log::warn!(
                "syncer: SELECT VERSION() refused ({}); using the handshake version",
                e.message
            );
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
    if flavour == Flavour::MySql {
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
        Flavour::MariaDb => (None, None),
        Flavour::MySql => (
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
            let ours = crate::clock::unix_now() as i64;
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
            log::warn!(
                "syncer: SELECT UNIX_TIMESTAMP() refused by the master: {}",
                e.message
            );
            Ok(())
        }
        Err(e) => Err(SyncerError::Connection(e.to_string())),
    }
}

/// The master's `@@GLOBAL.GTID_PURGED` (empty when it has none): what a fresh store
/// excludes from its first GTID dump. Nothing in the oldest kept file is in it, and a
/// source may insist that a replica has every purged transaction.
pub fn master_gtid_purged(client: &mut Client) -> Result<MysqlGtidSet, SyncerError> {
    let text = optional_variable(client, "GTID_PURGED")?.unwrap_or_default();
    // MySQL puts a newline after each comma.
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    MysqlGtidSet::parse(&text)
        .map_err(|e| SyncerError::Master(format!("@@GLOBAL.GTID_PURGED is {text:?}: {e}")))
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
    // Without BINLOG_SEND_ANNOTATE_ROWS_EVENT a MariaDB master leaves ANNOTATE_ROWS events
    // out and the stored file would have holes.
    let dump = binlog_dump(up, file, pos, BINLOG_SEND_ANNOTATE_ROWS_EVENT, "")?;
    client.send_command(&dump).map_err(conn_error)
}

/// COM_BINLOG_DUMP from `file` at `pos`, or a precheck error when `pos` needs more than the
/// command's 32 bits (`why_not_gtid` ends the message: why the GTID dump is no way out).
fn binlog_dump(
    up: &Upstream,
    file: &str,
    pos: u64,
    flags: u16,
    why_not_gtid: &str,
) -> Result<Command, SyncerError> {
    let binlog_pos = u32::try_from(pos).map_err(|_| {
        SyncerError::Precheck(format!(
            "binlog position {pos} does not fit COM_BINLOG_DUMP{why_not_gtid}"
        ))
    })?;
    Ok(Command::BinlogDump(BinlogDump {
        binlog_pos,
        flags,
        server_id: up.server_id,
        binlog_filename: file.to_string(),
    }))
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
        MysqlDump::FilePos => binlog_dump(
            up,
            file,
            pos,
            USE_HEARTBEAT_EVENT_V2,
            " (GTID_MODE is off on the master, so COM_BINLOG_DUMP_GTID cannot be used)",
        )?,
    };
    client.send_command(&command).map_err(conn_error)
}

/// The next event of a dump that only probes where the master begins (an EOF there is an
/// error: the master must send at least its ROTATE).
fn next_probe_event(client: &mut Client) -> Result<(Vec<u8>, EventHeader), SyncerError> {
    let mut packet = Vec::new();
    let ev = match read_dump_event(client, &mut packet)? {
        Some(ev) => ev.to_vec(),
        None => return Err(SyncerError::Master("dump ended before any event".into())),
    };
    let header = EventHeader::parse(&ev).map_err(|e| SyncerError::Master(e.to_string()))?;
    Ok((ev, header))
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
    // A source begins every dump with a ROTATE naming the file it starts in.
    let (ev, header) = next_probe_event(client)?;
    if header.type_code != event::ROTATE_EVENT {
        return Err(SyncerError::Master(format!(
            "the master began a GTID dump with a {} event, not a ROTATE naming its first file",
            event::type_name(header.type_code)
        )));
    }
    let r = event::Rotate::parse(&ev, event::CHECKSUM_LEN)
        .map_err(|e| SyncerError::Master(e.to_string()))?;
    Ok(r.next_file)
}

pub fn conn_error(e: NetError) -> SyncerError {
    SyncerError::Connection(e.to_string())
}

/// Reads the next packet of a dump stream: the event in it (without the 0x00 status byte),
/// lent from the connection's read buffer or read into `packet` (reused); None at EOF; or
/// the master's error.
pub fn read_dump_event<'a>(
    client: &'a mut Client,
    packet: &'a mut Vec<u8>,
) -> Result<Option<&'a [u8]>, SyncerError> {
    let packet = client
        .conn_mut()
        .read_packet_ref(packet)
        .map_err(conn_error)?;
    match packet.first() {
        Some(0x00) => Ok(packet.get(1..)),
        Some(0xfe) if packet.len() < 9 => Ok(None),
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
        let (ev, header) = next_probe_event(client)?;
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

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    use super::*;
    use crate::mysql::handshake::{
        HandshakeResponse41, HandshakeV10, CLIENT_LONG_FLAG, CLIENT_PLUGIN_AUTH,
        CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION, MYSQL_NATIVE_PASSWORD,
    };
    use crate::mysql::resultset::{encode_text_resultset, ErrPacket, OkPacket};
    use crate::net::conn::PacketConn;

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn upstream(addr: &str) -> Upstream {
        Upstream {
            addr: addr.to_string(),
            user: "repl".into(),
            password: String::new(),
            server_id: 1001,
            uuid: None,
        }
    }

    /// What a fake MySQL master answers: None → ER 1193 (unknown variable), Err(code) →
    /// that error, Ok(value) → one row.
    type Answer = Option<Result<&'static str, u16>>;

    /// A fake MySQL master that greets with `version`, answers queries with `answer`,
    /// OKs SETs and COM_REGISTER_SLAVE, and stops at the dump command or when the client
    /// closes the connection. Returns every command received.
    fn fake_master(
        version: &'static str,
        answer: fn(&str) -> Answer,
    ) -> (String, thread::JoinHandle<Vec<Command>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut conn = PacketConn::new(stream, 1 << 20);
            serve(&mut conn, version, answer).unwrap()
        });
        (addr, handle)
    }

    fn serve(
        conn: &mut PacketConn<TcpStream>,
        version: &str,
        answer: fn(&str) -> Answer,
    ) -> Result<Vec<Command>, NetError> {
        let capabilities =
            CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
        let greeting = HandshakeV10 {
            protocol_version: 10,
            server_version: version.into(),
            connection_id: 5,
            auth_plugin_data: b"abcdefghijklmnopqrst".to_vec(),
            capabilities,
            character_set: 255,
            status_flags: 2,
            mariadb_capabilities: 0,
            auth_plugin_name: MYSQL_NATIVE_PASSWORD.into(),
        };
        conn.write_packet(&greeting.encode())?;
        HandshakeResponse41::decode(&conn.read_packet()?, capabilities)?;
        conn.write_packet(&OkPacket::new().encode())?;
        let mut commands = Vec::new();
        loop {
            conn.reset_seq();
            // A client that gives up (a refused dump) just closes: what it sent so far is
            // what the test looks at.
            let packet = match conn.read_packet() {
                Err(NetError::Closed) => return Ok(commands),
                other => other?,
            };
            let cmd = Command::decode(&packet)?;
            commands.push(cmd.clone());
            match cmd {
                Command::Query(q) if q.to_ascii_uppercase().starts_with("SET ") => {
                    conn.write_packet(&OkPacket::new().encode())?
                }
                Command::Query(q) => match answer(&q) {
                    Some(Ok(v)) => {
                        for p in encode_text_resultset(&["v"], &[vec![Some(v.into())]], false) {
                            conn.write_packet_no_flush(&p)?;
                        }
                        conn.flush()?;
                    }
                    Some(Err(code)) => conn.write_packet(&ErrPacket::new(code, "no").encode())?,
                    None => conn.write_packet(
                        &ErrPacket::new(ER_UNKNOWN_SYSTEM_VARIABLE, "Unknown system variable")
                            .encode(),
                    )?,
                },
                Command::RegisterSlave(_) => conn.write_packet(&OkPacket::new().encode())?,
                _ => return Ok(commands),
            }
        }
    }

    fn mysql_80(q: &str) -> Answer {
        Some(Ok(match q {
            "SELECT VERSION()" => "8.0.36",
            "SELECT UNIX_TIMESTAMP()" => "1700000000.123456",
            "SELECT @@GLOBAL.SERVER_ID" => "7",
            "SELECT @@GLOBAL.log_bin" => "1",
            "SELECT @@GLOBAL.binlog_checksum" | "SELECT @master_binlog_checksum" => "CRC32",
            "SELECT @@GLOBAL.GTID_MODE" => "ON",
            "SELECT @@GLOBAL.SERVER_UUID" => UUID,
            "SELECT @@GLOBAL.GTID_PURGED" => {
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n\
                                              3e11fa47-71ca-11e1-9e33-c80aa9429563:1-2"
            }
            "SHOW BINARY LOGS" => "binlog.000001",
            _ => return Some(Err(1064)),
        }))
    }

    /// A 5.5-like server: no GTID_MODE, no SERVER_UUID, refuses UNIX_TIMESTAMP.
    fn mysql_55(q: &str) -> Answer {
        match q {
            "SELECT UNIX_TIMESTAMP()" => Some(Err(1064)),
            "SELECT @@GLOBAL.GTID_MODE" | "SELECT @@GLOBAL.SERVER_UUID" => None,
            "SELECT VERSION()" => Some(Ok("5.5.62-log")),
            other => mysql_80(other),
        }
    }

    fn queries(commands: &[Command]) -> Vec<String> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Query(q) => Some(q.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_mysql_master_gets_a_mysql_replica_sequence_and_a_gtid_dump() {
        let (addr, server) = fake_master("8.0.36", mysql_80);
        let up = upstream(&addr);
        let mut client = open(&up, |_| {}).unwrap();
        let info = precheck(&mut client).unwrap();
        assert_eq!(info.flavour, Flavour::MySql);
        assert_eq!(
            (info.server_id, info.server_uuid.as_deref()),
            (7, Some(UUID))
        );
        assert!(info.mysql_gtid_dump());
        let purged = master_gtid_purged(&mut client).unwrap();
        assert_eq!(purged.format_mysql().matches(':').count(), 2, "two sources");
        let set = MysqlGtidSet::parse(&format!("{UUID}:1-42")).unwrap();
        let how = MysqlDump::Gtid(set.clone());
        start_mysql_dump(&mut client, &up, &info, "binlog.000001", 1234, &how).unwrap();
        let commands = server.join().unwrap();
        let uuid = replica_uuid(&up);
        assert_eq!(
            queries(&commands),
            [
                "SELECT VERSION()",
                "SELECT UNIX_TIMESTAMP()",
                "SELECT @@GLOBAL.SERVER_ID",
                "SELECT @@GLOBAL.log_bin",
                "SELECT @@GLOBAL.binlog_checksum",
                "SELECT @@GLOBAL.GTID_MODE",
                "SELECT @@GLOBAL.SERVER_UUID",
                "SHOW BINARY LOGS",
                "SELECT @@GLOBAL.GTID_PURGED",
                "SET @master_heartbeat_period= 1000000000",
                "SET @source_heartbeat_period= 1000000000",
                "SET @master_binlog_checksum= @@global.binlog_checksum",
                "SET @source_binlog_checksum= @@global.binlog_checksum",
                "SELECT @master_binlog_checksum",
                &format!("SET @slave_uuid= '{uuid}'"),
                &format!("SET @replica_uuid= '{uuid}'"),
            ]
        );
        let n = commands.len();
        assert!(matches!(&commands[n - 2], Command::RegisterSlave(r) if r.server_id == 1001));
        assert_eq!(
            commands[n - 1],
            Command::BinlogDumpGtid(BinlogDumpGtid {
                flags: BINLOG_THROUGH_GTID | USE_HEARTBEAT_EVENT_V2,
                server_id: 1001,
                binlog_filename: "binlog.000001".into(),
                binlog_pos: 1234,
                sid_data: set.encode(),
            })
        );
    }

    #[test]
    fn an_old_mysql_master_without_gtids_gets_a_position_dump() {
        let (addr, server) = fake_master("5.5.62-log", mysql_55);
        let up = upstream(&addr);
        let mut client = open(&up, |_| {}).unwrap();
        let info = precheck(&mut client).unwrap();
        assert_eq!(info.flavour, Flavour::MySql);
        assert_eq!(info.gtid_mode.as_deref(), Some("OFF"));
        assert_eq!(info.server_uuid, None);
        assert!(!info.mysql_gtid_dump());
        start_mysql_dump(
            &mut client,
            &up,
            &info,
            "binlog.000001",
            4,
            &MysqlDump::FilePos,
        )
        .unwrap();
        let commands = server.join().unwrap();
        assert!(matches!(
            commands.last(),
            Some(Command::BinlogDump(d)) if d.binlog_pos == 4 && d.flags == USE_HEARTBEAT_EVENT_V2
        ));
    }

    #[test]
    fn a_master_with_the_syncer_uuid_is_refused() {
        let (addr, server) = fake_master("8.0.36", mysql_80);
        let mut up = upstream(&addr);
        up.uuid = Some(UUID.into());
        let mut client = open(&up, |_| {}).unwrap();
        let info = precheck(&mut client).unwrap();
        let err = start_mysql_dump(&mut client, &up, &info, "", 4, &MysqlDump::FilePos)
            .unwrap_err()
            .to_string();
        assert!(err.contains("syncer_uuid"), "{err}");
        drop(client);
        let commands = server.join().unwrap();
        assert!(queries(&commands).contains(&"SELECT @@GLOBAL.SERVER_UUID".to_string()));
        assert!(!commands
            .iter()
            .any(|c| matches!(c, Command::RegisterSlave(_))));
    }

    #[test]
    fn flavour_comes_from_either_version() {
        assert_eq!(
            detect_flavour("5.5.5-10.11.6-MariaDB-log", ""),
            Flavour::MariaDb
        );
        assert_eq!(detect_flavour("8.0.36", "10.6.1-mariadb"), Flavour::MariaDb);
        assert_eq!(detect_flavour("8.4.0", "8.4.0"), Flavour::MySql);
        assert_eq!(detect_flavour("5.7.23-log", ""), Flavour::MySql);
    }

    #[test]
    fn the_replica_uuid_is_stable_and_per_syncer_id() {
        let a = upstream("x:1");
        let mut b = upstream("y:2");
        assert_eq!(
            replica_uuid(&a),
            replica_uuid(&b),
            "same syncer id, any node"
        );
        assert!(crate::binlog::gtid::parse_uuid(&replica_uuid(&a)).is_ok());
        assert_eq!(&replica_uuid(&a)[14..15], "5");
        b.server_id = 1002;
        assert_ne!(replica_uuid(&a), replica_uuid(&b));
        b.uuid = Some(UUID.into());
        assert_eq!(replica_uuid(&b), UUID);
    }
}
