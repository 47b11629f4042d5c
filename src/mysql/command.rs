//! Commands a client sends once connected: the first payload byte names the command.
//! Covers what replicas and CDC clients use (queries, ping, register slave, binlog dump by
//! file/position or by GTID); anything else decodes as [`Command::Other`].
//!
//! Pure: decode and encode payloads only; deciding what to answer belongs to the server.

use super::codec::{lossy, put_u16, put_u32, put_u64, put_u8, Reader};
use super::ProtocolError;
use crate::limits::BINLOG_FILE_NAME_MAX;

pub const COM_SLEEP: u8 = 0x00;
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_PING: u8 = 0x0e;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_REGISTER_SLAVE: u8 = 0x15;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
pub const COM_RESET_CONNECTION: u8 = 0x1f;

/// COM_BINLOG_DUMP / COM_BINLOG_DUMP_GTID flag: send what there is, then EOF, instead of
/// waiting for new events.
/// COM_BINLOG_DUMP flag (MariaDB): send ANNOTATE_ROWS events too.
pub const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 2;
pub const BINLOG_DUMP_NON_BLOCK: u16 = 1;
/// COM_BINLOG_DUMP_GTID flag: the GTID set (sid data) follows the position.
pub const BINLOG_THROUGH_GTID: u16 = 4;
/// COM_BINLOG_DUMP / COM_BINLOG_DUMP_GTID flag of MySQL 8.0.26+: send HEARTBEAT_LOG_EVENT_V2
/// (64-bit positions); older MySQL ignores it. It is the same bit as MariaDB's
/// BINLOG_SEND_ANNOTATE_ROWS_EVENT, so its meaning follows the flavour: a syncer sends it to
/// MySQL only, and ferrobus reads it so only when serving a MySQL binlog.
pub const USE_HEARTBEAT_EVENT_V2: u16 = 2;

/// COM_REGISTER_SLAVE: a replica announces itself (shown by SHOW SLAVE HOSTS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegisterSlave {
    pub server_id: u32,
    pub host: String,
    pub user: String,
    pub password: String,
    pub port: u16,
    pub rank: u32,
    pub master_id: u32,
}

/// COM_BINLOG_DUMP: stream the binlog from a file and position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinlogDump {
    pub binlog_pos: u32,
    pub flags: u16,
    pub server_id: u32,
    /// Empty means "the first file" (MariaDB GTID mode sends an empty name).
    pub binlog_filename: String,
}

/// COM_BINLOG_DUMP_GTID (MySQL 5.6+): stream the binlog after a GTID set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinlogDumpGtid {
    pub flags: u16,
    pub server_id: u32,
    pub binlog_filename: String,
    pub binlog_pos: u64,
    /// The encoded GTID set (present when [`BINLOG_THROUGH_GTID`] is set).
    pub sid_data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit,
    InitDb(String),
    Query(String),
    Ping,
    RegisterSlave(RegisterSlave),
    BinlogDump(BinlogDump),
    BinlogDumpGtid(BinlogDumpGtid),
    /// Any other command, by its byte.
    Other(u8),
}

impl Command {
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let command = r.u8("command")?;
        Ok(match command {
            COM_QUIT => Command::Quit,
            COM_INIT_DB => Command::InitDb(lossy(r.rest())),
            COM_QUERY => Command::Query(lossy(r.rest())),
            COM_PING => Command::Ping,
            COM_REGISTER_SLAVE => Command::RegisterSlave(decode_register_slave(&mut r)?),
            COM_BINLOG_DUMP => Command::BinlogDump(decode_binlog_dump(&mut r)?),
            COM_BINLOG_DUMP_GTID => Command::BinlogDumpGtid(decode_binlog_dump_gtid(&mut r)?),
            other => Command::Other(other),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Command::Quit => put_u8(&mut out, COM_QUIT),
            Command::InitDb(db) => {
                put_u8(&mut out, COM_INIT_DB);
                out.extend_from_slice(db.as_bytes());
            }
            Command::Query(sql) => {
                put_u8(&mut out, COM_QUERY);
                out.extend_from_slice(sql.as_bytes());
            }
            Command::Ping => put_u8(&mut out, COM_PING),
            Command::RegisterSlave(reg) => encode_register_slave(reg, &mut out),
            Command::BinlogDump(dump) => {
                put_u8(&mut out, COM_BINLOG_DUMP);
                put_u32(&mut out, dump.binlog_pos);
                put_u16(&mut out, dump.flags);
                put_u32(&mut out, dump.server_id);
                out.extend_from_slice(dump.binlog_filename.as_bytes());
            }
            Command::BinlogDumpGtid(dump) => encode_binlog_dump_gtid(dump, &mut out),
            Command::Other(byte) => put_u8(&mut out, *byte),
        }
        out
    }
}

/// A string preceded by a one-byte length.
fn u8_prefixed_str(r: &mut Reader<'_>, what: &'static str) -> Result<String, ProtocolError> {
    let len = r.u8(what)?;
    r.bytes(usize::from(len), what).map(lossy)
}

fn put_u8_prefixed_str(out: &mut Vec<u8>, s: &str) {
    // The field holds at most 255 bytes; longer values are cut, as MySQL clients do.
    let bytes = &s.as_bytes()[..s.len().min(255)];
    put_u8(out, bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn check_file_name(name: &[u8]) -> Result<String, ProtocolError> {
    if name.len() > BINLOG_FILE_NAME_MAX {
        return Err(ProtocolError::TooLarge {
            what: "binlog file name",
            len: name.len(),
            max: BINLOG_FILE_NAME_MAX,
        });
    }
    Ok(lossy(name))
}

fn decode_register_slave(r: &mut Reader<'_>) -> Result<RegisterSlave, ProtocolError> {
    Ok(RegisterSlave {
        server_id: r.u32("register slave server id")?,
        host: u8_prefixed_str(r, "register slave host")?,
        user: u8_prefixed_str(r, "register slave user")?,
        password: u8_prefixed_str(r, "register slave password")?,
        port: r.u16("register slave port")?,
        // Some clients stop after the port; rank and master id are unused anyway.
        rank: if r.remaining() >= 4 {
            r.u32("register slave rank")?
        } else {
            0
        },
        master_id: if r.remaining() >= 4 {
            r.u32("register slave master id")?
        } else {
            0
        },
    })
}

fn encode_register_slave(reg: &RegisterSlave, out: &mut Vec<u8>) {
    put_u8(out, COM_REGISTER_SLAVE);
    put_u32(out, reg.server_id);
    put_u8_prefixed_str(out, &reg.host);
    put_u8_prefixed_str(out, &reg.user);
    put_u8_prefixed_str(out, &reg.password);
    put_u16(out, reg.port);
    put_u32(out, reg.rank);
    put_u32(out, reg.master_id);
}

fn decode_binlog_dump(r: &mut Reader<'_>) -> Result<BinlogDump, ProtocolError> {
    Ok(BinlogDump {
        binlog_pos: r.u32("binlog dump position")?,
        flags: r.u16("binlog dump flags")?,
        server_id: r.u32("binlog dump server id")?,
        binlog_filename: check_file_name(r.rest())?,
    })
}

fn decode_binlog_dump_gtid(r: &mut Reader<'_>) -> Result<BinlogDumpGtid, ProtocolError> {
    let flags = r.u16("binlog dump gtid flags")?;
    let server_id = r.u32("binlog dump gtid server id")?;
    let name_len = r.u32("binlog dump gtid file name length")?;
    let name_len = usize::try_from(name_len).unwrap_or(usize::MAX);
    let binlog_filename = check_file_name(r.bytes(name_len, "binlog dump gtid file name")?)?;
    let binlog_pos = r.u64("binlog dump gtid position")?;
    // MySQL's source reads the data whatever the flags say, and replicas (and
    // python-mysql-replication) send it with flags 0: read it whenever it is there.
    let sid_data = if flags & BINLOG_THROUGH_GTID != 0 || r.remaining() >= 4 {
        let len = r.u32("binlog dump gtid data length")?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        r.bytes(len, "binlog dump gtid data")?.to_vec()
    } else {
        Vec::new()
    };
    Ok(BinlogDumpGtid {
        flags,
        server_id,
        binlog_filename,
        binlog_pos,
        sid_data,
    })
}

fn encode_binlog_dump_gtid(dump: &BinlogDumpGtid, out: &mut Vec<u8>) {
    put_u8(out, COM_BINLOG_DUMP_GTID);
    put_u16(out, dump.flags);
    put_u32(out, dump.server_id);
    put_u32(out, dump.binlog_filename.len() as u32);
    out.extend_from_slice(dump.binlog_filename.as_bytes());
    put_u64(out, dump.binlog_pos);
    if dump.flags & BINLOG_THROUGH_GTID != 0 {
        put_u32(out, dump.sid_data.len() as u32);
        out.extend_from_slice(&dump.sid_data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::test_hex as hex;

    #[test]
    fn decodes_captured_query_and_quit() {
        // Sent by the mariadb 10.11 CLI.
        let query = hex("0373656c65637420312c206e756c6c2c2027616263272061732078");
        assert_eq!(
            Command::decode(&query).unwrap(),
            Command::Query("select 1, null, 'abc' as x".into())
        );
        assert_eq!(Command::decode(&[0x01]).unwrap(), Command::Quit);
        assert_eq!(Command::Quit.encode(), [0x01]);
        assert_eq!(Command::decode(&query).unwrap().encode(), query);
    }

    #[test]
    fn decodes_captured_replica_commands() {
        // A MariaDB 10.11 replica (server_id 2, report port 33920) in GTID mode.
        let register = hex("150200000000000080840000000000000000");
        assert_eq!(
            Command::decode(&register).unwrap(),
            Command::RegisterSlave(RegisterSlave {
                server_id: 2,
                port: 33920,
                ..Default::default()
            })
        );
        assert_eq!(Command::decode(&register).unwrap().encode(), register);
        let dump = hex("1204000000000002000000");
        assert_eq!(
            Command::decode(&dump).unwrap(),
            Command::BinlogDump(BinlogDump {
                binlog_pos: 4,
                flags: 0,
                server_id: 2,
                binlog_filename: String::new(),
            })
        );
        assert_eq!(Command::decode(&dump).unwrap().encode(), dump);
    }

    #[test]
    fn empty_payload_is_truncated() {
        assert!(matches!(
            Command::decode(&[]),
            Err(ProtocolError::Truncated { .. })
        ));
    }

    #[test]
    fn unknown_command_is_other() {
        assert_eq!(
            Command::decode(&[0x16, 1, 2]).unwrap(),
            Command::Other(0x16)
        );
    }

    #[test]
    fn simple_commands_round_trip() {
        for cmd in [
            Command::Quit,
            Command::Ping,
            Command::InitDb("information_schema".into()),
            Command::Query("SELECT @@GLOBAL.gtid_domain_id".into()),
            Command::Other(COM_STATISTICS),
        ] {
            assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        }
    }

    #[test]
    fn register_slave_round_trips_and_tolerates_short_form() {
        let reg = RegisterSlave {
            server_id: 3,
            host: "replica-1".into(),
            user: "repl".into(),
            password: "".into(),
            port: 3306,
            rank: 0,
            master_id: 1,
        };
        let cmd = Command::RegisterSlave(reg.clone());
        let payload = cmd.encode();
        assert_eq!(Command::decode(&payload).unwrap(), cmd);
        let short = &payload[..payload.len() - 8];
        let expected = RegisterSlave {
            master_id: 0,
            ..reg
        };
        assert_eq!(
            Command::decode(short).unwrap(),
            Command::RegisterSlave(expected)
        );
        assert!(Command::decode(&payload[..8]).is_err());
    }

    #[test]
    fn binlog_dump_layout() {
        let cmd = Command::BinlogDump(BinlogDump {
            binlog_pos: 4,
            flags: BINLOG_DUMP_NON_BLOCK,
            server_id: 99,
            binlog_filename: "bin.000001".into(),
        });
        let payload = cmd.encode();
        assert_eq!(&payload[..11], &[0x12, 4, 0, 0, 0, 1, 0, 99, 0, 0, 0]);
        assert_eq!(&payload[11..], b"bin.000001");
        assert_eq!(Command::decode(&payload).unwrap(), cmd);
    }

    #[test]
    fn binlog_dump_gtid_layout_with_and_without_data() {
        let with = BinlogDumpGtid {
            flags: BINLOG_THROUGH_GTID,
            server_id: 7,
            binlog_filename: String::new(),
            binlog_pos: 4,
            sid_data: vec![1, 0, 0, 0, 0, 0, 0, 0],
        };
        let payload = Command::BinlogDumpGtid(with.clone()).encode();
        let expected: &[u8] = &[
            0x1e, 4, 0, 7, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0,
            0, 0, 0,
        ];
        assert_eq!(payload, expected);
        assert_eq!(
            Command::decode(&payload).unwrap(),
            Command::BinlogDumpGtid(with.clone())
        );
        let without = BinlogDumpGtid {
            flags: 0,
            sid_data: Vec::new(),
            binlog_filename: "binlog.000003".into(),
            ..with
        };
        let payload = Command::BinlogDumpGtid(without.clone()).encode();
        assert_eq!(
            Command::decode(&payload).unwrap(),
            Command::BinlogDumpGtid(without)
        );
        // Data sent with flags 0 (as MySQL replicas do) is read too.
        let mut payload = Command::BinlogDumpGtid(with.clone()).encode();
        payload[1] = 0;
        let Command::BinlogDumpGtid(got) = Command::decode(&payload).unwrap() else {
            panic!("not a dump");
        };
        assert_eq!(got.sid_data, with.sid_data);
        // A declared name length past the end is truncated input, not a panic.
        assert!(Command::decode(&[0x1e, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn overlong_file_name_is_refused() {
        let cmd = Command::BinlogDump(BinlogDump {
            binlog_filename: "x".repeat(BINLOG_FILE_NAME_MAX + 1),
            ..Default::default()
        });
        assert!(matches!(
            Command::decode(&cmd.encode()),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
