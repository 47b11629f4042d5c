//! Server responses to commands: OK, ERR and EOF packets, column definitions and text
//! result sets, plus the error codes ferrobus sends.
//!
//! The server side builds whole result sets with [`encode_text_resultset`]; the client
//! side classifies a first response with [`Response::decode`] and feeds the following
//! payloads to a [`TextResultSetDecoder`]. Pure: payloads in and out; sequence ids and
//! framing are the connection's business.

use super::codec::{
    lossy, put_lenenc_int, put_lenenc_null, put_lenenc_str, put_u16, put_u32, put_u8, Reader,
};
use super::handshake::{CHARSET_UTF8_GENERAL_CI, SERVER_STATUS_AUTOCOMMIT};
use super::ProtocolError;
use crate::limits::PACKET_PAYLOAD_MAX;

/// First byte of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// First byte of an EOF packet (and of an OK ending a result set under DEPRECATE_EOF).
pub const EOF_HEADER: u8 = 0xfe;
/// First byte of an ERR packet.
pub const ERR_HEADER: u8 = 0xff;
/// First byte of a LOCAL INFILE request.
pub const LOCAL_INFILE_HEADER: u8 = 0xfb;

// Error codes (MySQL's names) and the SQLSTATE each is sent with.
pub const ER_CON_COUNT_ERROR: u16 = 1040;
pub const ER_HANDSHAKE_ERROR: u16 = 1043;
pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
pub const ER_PARSE_ERROR: u16 = 1064;
pub const ER_NET_PACKETS_OUT_OF_ORDER: u16 = 1156;
pub const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// The SQLSTATE MySQL sends with `code` ("HY000", general error, when it has none).
pub fn default_sql_state(code: u16) -> [u8; 5] {
    *match code {
        ER_ACCESS_DENIED_ERROR => b"28000",
        ER_CON_COUNT_ERROR => b"08004",
        ER_HANDSHAKE_ERROR | ER_UNKNOWN_COM_ERROR | ER_NET_PACKETS_OUT_OF_ORDER => b"08S01",
        ER_NOT_SUPPORTED_YET | ER_PARSE_ERROR => b"42000",
        _ => b"HY000",
    }
}

/// MySQL column types used here.
pub const MYSQL_TYPE_LONG: u8 = 0x03;
pub const MYSQL_TYPE_LONGLONG: u8 = 0x08;
pub const MYSQL_TYPE_VAR_STRING: u8 = 0xfd;
/// Column flag: NOT NULL.
pub const NOT_NULL_FLAG: u16 = 1;

/// Status flags ferrobus reports: autocommit on, so PyMySQL does not try to set it.
const SERVER_STATUS: u16 = SERVER_STATUS_AUTOCOMMIT;
/// Bytes per character of utf8mb4, for the display length of a text column.
const UTF8MB4_BYTES_PER_CHAR: u32 = 4;
/// Length of the fixed-size fields of a column definition.
const COLUMN_FIXED_LEN: u64 = 0x0c;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status_flags: u16,
    pub warnings: u16,
    pub info: String,
}

impl OkPacket {
    /// An OK with no rows affected and autocommit on.
    pub fn new() -> Self {
        OkPacket {
            status_flags: SERVER_STATUS,
            ..Default::default()
        }
    }

    /// The usual OK (header 0x00).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_header(OK_HEADER)
    }

    /// The OK that ends a result set under CLIENT_DEPRECATE_EOF (header 0xFE).
    pub fn encode_as_eof(&self) -> Vec<u8> {
        self.encode_with_header(EOF_HEADER)
    }

    fn encode_with_header(&self, header: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.info.len());
        put_u8(&mut out, header);
        put_lenenc_int(&mut out, self.affected_rows);
        put_lenenc_int(&mut out, self.last_insert_id);
        put_u16(&mut out, self.status_flags);
        put_u16(&mut out, self.warnings);
        if !self.info.is_empty() {
            // Servers send the message length-encoded, whatever the docs say.
            put_lenenc_str(&mut out, self.info.as_bytes());
        }
        out
    }

    /// Decodes an OK with header 0x00 or 0xFE.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let header = r.u8("OK packet")?;
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(ProtocolError::Malformed { what: "OK packet" });
        }
        let mut ok = OkPacket {
            affected_rows: r.lenenc_int("OK affected rows")?,
            last_insert_id: r.lenenc_int("OK last insert id")?,
            status_flags: r.u16("OK status flags")?,
            warnings: r.u16("OK warnings")?,
            info: String::new(),
        };
        if !r.is_empty() {
            // Length-encoded in practice; fall back to the raw rest if it is not.
            let mut probe = r.clone();
            ok.info = match probe.lenenc_bytes("OK info") {
                Ok(info) => lossy(info),
                Err(_) => lossy(r.rest()),
            };
        }
        Ok(ok)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sql_state: [u8; 5],
    pub message: String,
}

impl ErrPacket {
    /// An error with the SQLSTATE MySQL uses for `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        ErrPacket {
            code,
            sql_state: default_sql_state(code),
            message: message.into(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        put_u8(&mut out, ERR_HEADER);
        put_u16(&mut out, self.code);
        put_u8(&mut out, b'#');
        out.extend_from_slice(&self.sql_state);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        if r.u8("ERR packet")? != ERR_HEADER {
            return Err(ProtocolError::Malformed { what: "ERR packet" });
        }
        let code = r.u16("ERR code")?;
        // Errors sent before the handshake (or by pre-4.1 servers) carry no SQLSTATE.
        let mut sql_state = *b"HY000";
        if r.peek_u8() == Some(b'#') && r.remaining() >= 6 {
            r.skip(1, "ERR sqlstate marker")?;
            sql_state.copy_from_slice(r.bytes(5, "ERR sqlstate")?);
        }
        Ok(ErrPacket {
            code,
            sql_state,
            message: lossy(r.rest()),
        })
    }

    pub fn sql_state_str(&self) -> String {
        lossy(&self.sql_state)
    }
}

impl std::fmt::Display for ErrPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            self.sql_state_str(),
            self.message
        )
    }
}

/// The EOF packet that ends column definitions and rows without CLIENT_DEPRECATE_EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EofPacket {
    pub warnings: u16,
    pub status_flags: u16,
}

impl EofPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5);
        put_u8(&mut out, EOF_HEADER);
        put_u16(&mut out, self.warnings);
        put_u16(&mut out, self.status_flags);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        if r.u8("EOF packet")? != EOF_HEADER {
            return Err(ProtocolError::Malformed { what: "EOF packet" });
        }
        // Pre-4.1 EOF is the header alone.
        if r.is_empty() {
            return Ok(EofPacket {
                warnings: 0,
                status_flags: 0,
            });
        }
        Ok(EofPacket {
            warnings: r.u16("EOF warnings")?,
            status_flags: r.u16("EOF status flags")?,
        })
    }
}

/// Whether a payload is an EOF packet (a row starting with 0xFE is at least 9 bytes long).
pub fn is_eof_packet(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < 9
}

/// Whether a payload is the OK-with-0xFE that ends rows under CLIENT_DEPRECATE_EOF.
fn is_deprecate_eof_end(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < PACKET_PAYLOAD_MAX
}

/// Protocol::ColumnDefinition41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub catalog: String,
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub character_set: u16,
    pub column_length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

impl Column {
    /// A computed text column, as ferrobus answers queries with.
    pub fn text(name: &str, column_length: u32) -> Self {
        Column {
            catalog: "def".into(),
            schema: String::new(),
            table: String::new(),
            org_table: String::new(),
            name: name.into(),
            org_name: String::new(),
            character_set: u16::from(CHARSET_UTF8_GENERAL_CI),
            column_length,
            column_type: MYSQL_TYPE_VAR_STRING,
            flags: 0,
            // 0x1f: "not a fixed number of decimals", what servers send for strings.
            decimals: 0x1f,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.name.len());
        for s in [
            &self.catalog,
            &self.schema,
            &self.table,
            &self.org_table,
            &self.name,
            &self.org_name,
        ] {
            put_lenenc_str(&mut out, s.as_bytes());
        }
        put_lenenc_int(&mut out, COLUMN_FIXED_LEN);
        put_u16(&mut out, self.character_set);
        put_u32(&mut out, self.column_length);
        put_u8(&mut out, self.column_type);
        put_u16(&mut out, self.flags);
        put_u8(&mut out, self.decimals);
        put_u16(&mut out, 0);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let catalog = r.lenenc_str("column catalog")?;
        let schema = r.lenenc_str("column schema")?;
        let table = r.lenenc_str("column table")?;
        let org_table = r.lenenc_str("column org_table")?;
        let name = r.lenenc_str("column name")?;
        let org_name = r.lenenc_str("column org_name")?;
        if r.remaining() != COLUMN_FIXED_LEN as usize + 1 {
            // MariaDB's extended type info (MARIADB_CLIENT_EXTENDED_METADATA) sits here;
            // ferrobus has no use for it.
            r.lenenc_bytes("column extended type info")?;
        }
        let fixed_len = r.lenenc_int("column fixed fields length")?;
        if fixed_len < COLUMN_FIXED_LEN - 2 {
            return Err(ProtocolError::Malformed {
                what: "column fixed fields length",
            });
        }
        Ok(Column {
            catalog,
            schema,
            table,
            org_table,
            name,
            org_name,
            character_set: r.u16("column character set")?,
            column_length: r.u32("column length")?,
            column_type: r.u8("column type")?,
            flags: r.u16("column flags")?,
            decimals: r.u8("column decimals")?,
        })
    }
}

/// One text-protocol row.
pub fn encode_text_row(values: &[Option<String>]) -> Vec<u8> {
    let len: usize = values
        .iter()
        .map(|v| v.as_ref().map_or(1, |s| s.len() + 9))
        .sum();
    let mut out = Vec::with_capacity(len);
    for value in values {
        match value {
            Some(s) => put_lenenc_str(&mut out, s.as_bytes()),
            None => put_lenenc_null(&mut out),
        }
    }
    out
}

/// A text-protocol row of `column_count` values; NULL is `None`, text is lossy UTF-8.
pub fn decode_text_row(
    payload: &[u8],
    column_count: usize,
) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = Reader::new(payload);
    let mut row = Vec::with_capacity(column_count.min(payload.len()));
    for _ in 0..column_count {
        row.push(r.lenenc_bytes_or_null("row value")?.map(lossy));
    }
    if !r.is_empty() {
        return Err(ProtocolError::Malformed {
            what: "row (extra bytes)",
        });
    }
    Ok(row)
}

/// The payloads of a complete text result set of string columns: column count, column
/// definitions, (EOF,) rows, then EOF, or an OK with header 0xFE under DEPRECATE_EOF.
pub fn encode_text_resultset(
    columns: &[&str],
    rows: &[Vec<Option<String>>],
    deprecate_eof: bool,
) -> Vec<Vec<u8>> {
    let mut payloads = Vec::with_capacity(columns.len() + rows.len() + 3);
    let mut count = Vec::with_capacity(9);
    put_lenenc_int(&mut count, columns.len() as u64);
    payloads.push(count);
    for (i, name) in columns.iter().enumerate() {
        let widest_chars = rows
            .iter()
            .filter_map(|row| row.get(i)?.as_ref())
            .map(|v| v.chars().count())
            .max()
            .unwrap_or(0)
            .max(1);
        let length = u32::try_from(widest_chars)
            .unwrap_or(u32::MAX)
            .saturating_mul(UTF8MB4_BYTES_PER_CHAR);
        payloads.push(Column::text(name, length).encode());
    }
    let eof = EofPacket {
        warnings: 0,
        status_flags: SERVER_STATUS,
    };
    if !deprecate_eof {
        payloads.push(eof.encode());
    }
    payloads.extend(rows.iter().map(|row| encode_text_row(row)));
    if deprecate_eof {
        payloads.push(OkPacket::new().encode_as_eof());
    } else {
        payloads.push(eof.encode());
    }
    payloads
}

/// What the first payload answering a query is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ok(OkPacket),
    Err(ErrPacket),
    /// A result set of this many columns follows.
    ResultSet {
        column_count: u64,
    },
    /// The server asks for a local file (never honoured here).
    LocalInfile,
}

impl Response {
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        match payload.first() {
            None => Err(ProtocolError::Truncated { what: "response" }),
            Some(&OK_HEADER) => OkPacket::decode(payload).map(Response::Ok),
            Some(&ERR_HEADER) => ErrPacket::decode(payload).map(Response::Err),
            Some(&LOCAL_INFILE_HEADER) => Ok(Response::LocalInfile),
            Some(_) => {
                let column_count = Reader::new(payload).lenenc_int("column count")?;
                if column_count == 0 {
                    return Err(ProtocolError::Malformed {
                        what: "column count",
                    });
                }
                Ok(Response::ResultSet { column_count })
            }
        }
    }
}

/// A decoded text result set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
    /// Status flags of the packet that ended the rows.
    pub status_flags: u16,
}

/// What a [`TextResultSetDecoder`] needs after a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultSetStep {
    /// Feed the next payload.
    More,
    /// The result set is complete.
    Done,
    /// The server ended the result set with an error.
    Error(ErrPacket),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecoderState {
    Columns,
    ColumnsEof,
    Rows,
    Done,
}

/// Client-side decoding of the payloads after a result set's column count.
#[derive(Debug, Clone)]
pub struct TextResultSetDecoder {
    column_count: usize,
    deprecate_eof: bool,
    state: DecoderState,
    result: TextResultSet,
}

impl TextResultSetDecoder {
    /// `deprecate_eof`: whether CLIENT_DEPRECATE_EOF is in effect on the connection.
    pub fn new(column_count: u64, deprecate_eof: bool) -> Result<Self, ProtocolError> {
        // A column definition is at least 13 bytes; more columns than that cannot fit in
        // the largest packet sequence we would read anyway. The cap only bounds allocation.
        let column_count = usize::try_from(column_count)
            .ok()
            .filter(|&n| n <= u16::MAX as usize)
            .ok_or(ProtocolError::TooLarge {
                what: "column count",
                len: usize::MAX,
                max: u16::MAX as usize,
            })?;
        Ok(TextResultSetDecoder {
            column_count,
            deprecate_eof,
            state: DecoderState::Columns,
            result: TextResultSet {
                columns: Vec::with_capacity(column_count),
                ..Default::default()
            },
        })
    }

    pub fn push(&mut self, payload: &[u8]) -> Result<ResultSetStep, ProtocolError> {
        if payload.first() == Some(&ERR_HEADER) {
            self.state = DecoderState::Done;
            return ErrPacket::decode(payload).map(ResultSetStep::Error);
        }
        match self.state {
            DecoderState::Columns => {
                self.result.columns.push(Column::decode(payload)?);
                if self.result.columns.len() == self.column_count {
                    self.state = if self.deprecate_eof {
                        DecoderState::Rows
                    } else {
                        DecoderState::ColumnsEof
                    };
                }
                Ok(ResultSetStep::More)
            }
            DecoderState::ColumnsEof => {
                EofPacket::decode(payload)?;
                self.state = DecoderState::Rows;
                Ok(ResultSetStep::More)
            }
            DecoderState::Rows => self.push_row(payload),
            DecoderState::Done => Err(ProtocolError::Malformed {
                what: "packet after end of result set",
            }),
        }
    }

    fn push_row(&mut self, payload: &[u8]) -> Result<ResultSetStep, ProtocolError> {
        let end = if self.deprecate_eof {
            is_deprecate_eof_end(payload)
        } else {
            is_eof_packet(payload)
        };
        if !end {
            let row = decode_text_row(payload, self.column_count)?;
            self.result.rows.push(row);
            return Ok(ResultSetStep::More);
        }
        self.result.status_flags = if self.deprecate_eof {
            OkPacket::decode(payload)?.status_flags
        } else {
            EofPacket::decode(payload)?.status_flags
        };
        self.state = DecoderState::Done;
        Ok(ResultSetStep::Done)
    }

    pub fn finish(self) -> TextResultSet {
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::test_hex as hex;

    /// MariaDB 10.11 answering `select 1, null, 'abc' as x` (payloads, without headers).
    const CAPTURED_RESULTSET: [&str; 8] = [
        "03",
        "03646566000000013100000c3f0001000000038100000000",
        "03646566000000044e554c4c00000c3f0000000000068000000000",
        "03646566000000017800000c210009000000fd0100270000",
        "fe00000200",
        "0131fb03616263",
        "fe00000200",
        "",
    ];

    #[test]
    fn decodes_captured_resultset() {
        let payloads: Vec<Vec<u8>> = CAPTURED_RESULTSET[..7].iter().map(|s| hex(s)).collect();
        let Response::ResultSet { column_count } = Response::decode(&payloads[0]).unwrap() else {
            panic!("not a result set");
        };
        assert_eq!(column_count, 3);
        let mut dec = TextResultSetDecoder::new(column_count, false).unwrap();
        for p in &payloads[1..6] {
            assert_eq!(dec.push(p).unwrap(), ResultSetStep::More);
        }
        assert_eq!(dec.push(&payloads[6]).unwrap(), ResultSetStep::Done);
        let rs = dec.finish();
        let names: Vec<&str> = rs.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["1", "NULL", "x"]);
        assert_eq!(rs.columns[0].column_type, MYSQL_TYPE_LONG);
        assert_eq!(rs.columns[2].column_type, MYSQL_TYPE_VAR_STRING);
        assert_eq!(rs.columns[2].character_set, 33);
        assert_eq!(
            rs.rows,
            vec![vec![Some("1".into()), None, Some("abc".into())]]
        );
        assert_eq!(rs.status_flags, SERVER_STATUS_AUTOCOMMIT);
        // Column definitions re-encode to the captured bytes, minus MariaDB's (empty)
        // extended type info, negotiated by the CLI.
        for p in &payloads[1..4] {
            let mut standard = p.clone();
            let ext_at = standard.len() - 14;
            assert_eq!(standard.remove(ext_at), 0);
            assert_eq!(Column::decode(p).unwrap().encode(), standard);
        }
    }

    #[test]
    fn decodes_captured_ok_and_err() {
        // OK after login, from MariaDB 10.11.
        let ok = OkPacket::decode(&hex("00000002000000")).unwrap();
        assert_eq!(ok.status_flags, SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(ok.encode(), hex("00000002000000"));
        let err = ErrPacket::new(ER_ACCESS_DENIED_ERROR, "Access denied for user 'x'@'y'");
        let decoded = ErrPacket::decode(&err.encode()).unwrap();
        assert_eq!(decoded, err);
        assert_eq!(&decoded.sql_state, b"28000");
        // No SQLSTATE marker: defaults to HY000.
        let bare = ErrPacket::decode(&[0xff, 0x10, 0x04, b'T', b'o', b'o']).unwrap();
        assert_eq!(bare.code, ER_CON_COUNT_ERROR);
        assert_eq!(&bare.sql_state, b"HY000");
        assert_eq!(bare.message, "Too");
    }

    #[test]
    fn ok_with_info_round_trips() {
        let ok = OkPacket {
            affected_rows: 300,
            last_insert_id: 7,
            status_flags: SERVER_STATUS_AUTOCOMMIT,
            warnings: 1,
            info: "Records: 2  Duplicates: 0  Warnings: 0".into(),
        };
        assert_eq!(OkPacket::decode(&ok.encode()).unwrap(), ok);
        assert_eq!(OkPacket::decode(&ok.encode_as_eof()).unwrap(), ok);
    }

    #[test]
    fn eof_detection() {
        assert!(is_eof_packet(&[0xfe, 0, 0, 2, 0]));
        assert!(is_eof_packet(&[0xfe]));
        // A row whose first value is 16 MiB long starts with 0xFE too, but is long.
        assert!(!is_eof_packet(&[0xfe, 0, 0, 0, 1, 0, 0, 0, 0, b'x']));
        assert!(!is_eof_packet(&[]));
        let eof = EofPacket {
            warnings: 3,
            status_flags: 2,
        };
        assert_eq!(EofPacket::decode(&eof.encode()).unwrap(), eof);
    }

    fn round_trip(deprecate_eof: bool) {
        let rows = vec![
            vec![Some("bin.000001".to_string()), Some("4".to_string())],
            vec![None, Some(String::new())],
        ];
        let payloads = encode_text_resultset(&["File", "Position"], &rows, deprecate_eof);
        assert_eq!(payloads.len(), if deprecate_eof { 6 } else { 7 });
        let Response::ResultSet { column_count } = Response::decode(&payloads[0]).unwrap() else {
            panic!("not a result set");
        };
        let mut dec = TextResultSetDecoder::new(column_count, deprecate_eof).unwrap();
        let (last, rest) = payloads[1..].split_last().unwrap();
        for p in rest {
            assert_eq!(dec.push(p).unwrap(), ResultSetStep::More);
        }
        assert_eq!(dec.push(last).unwrap(), ResultSetStep::Done);
        let rs = dec.finish();
        assert_eq!(rs.columns[0].name, "File");
        assert_eq!(rs.columns[0].column_length, 40);
        assert_eq!(rs.rows, rows);
        assert_eq!(rs.status_flags, SERVER_STATUS_AUTOCOMMIT);
    }

    #[test]
    fn server_resultset_round_trips_with_eof() {
        round_trip(false);
    }

    #[test]
    fn server_resultset_round_trips_with_deprecate_eof() {
        round_trip(true);
    }

    #[test]
    fn error_mid_resultset_is_reported() {
        let mut dec = TextResultSetDecoder::new(1, true).unwrap();
        dec.push(&Column::text("a", 4).encode()).unwrap();
        let err = ErrPacket::new(1317, "Query execution was interrupted");
        assert_eq!(dec.push(&err.encode()).unwrap(), ResultSetStep::Error(err));
    }

    #[test]
    fn malformed_rows_are_errors() {
        assert!(decode_text_row(&[3, b'a'], 1).is_err());
        assert!(decode_text_row(&[1, b'a', 1, b'b'], 1).is_err());
        assert!(decode_text_row(&[0xfb, 0, 1, b'b'], 3).unwrap()[0].is_none());
        assert!(Response::decode(&[]).is_err());
        assert!(Column::decode(&hex("0364656600")).is_err());
    }
}
