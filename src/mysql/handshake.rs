//! The connection phase: capability and status flags, the server's greeting
//! ([`HandshakeV10`]), the client's answer ([`HandshakeResponse41`]), the server's
//! [`AuthSwitchRequest`], and the [`AuthMoreData`] steps of caching_sha2_password (fast
//! authentication result, full authentication, public key request and reply).
//!
//! Decoding is tolerant where real peers differ: MariaDB reuses reserved greeting bytes for
//! its extended capabilities, and its CLI sets `CLIENT_CONNECT_ATTRS` even when the server
//! did not offer it, so a response is parsed with the client's flags masked by the server's.
//! Pure: no I/O, no authentication decisions (see `auth`).

use super::codec::{put_lenenc_int, put_lenenc_str, put_nul_str, put_u16, put_u32, put_u8, Reader};
use super::ProtocolError;

// Capability flags (MySQL's names; the low 32 bits both sides exchange).
pub const CLIENT_LONG_PASSWORD: u32 = 1;
/// MariaDB's name for bit 0: when a MariaDB server clears it, extended capabilities follow
/// in the greeting's reserved bytes.
pub const CLIENT_MYSQL: u32 = 1;
pub const CLIENT_FOUND_ROWS: u32 = 1 << 1;
pub const CLIENT_LONG_FLAG: u32 = 1 << 2;
pub const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
pub const CLIENT_NO_SCHEMA: u32 = 1 << 4;
pub const CLIENT_COMPRESS: u32 = 1 << 5;
pub const CLIENT_ODBC: u32 = 1 << 6;
pub const CLIENT_LOCAL_FILES: u32 = 1 << 7;
pub const CLIENT_IGNORE_SPACE: u32 = 1 << 8;
pub const CLIENT_PROTOCOL_41: u32 = 1 << 9;
pub const CLIENT_INTERACTIVE: u32 = 1 << 10;
pub const CLIENT_SSL: u32 = 1 << 11;
pub const CLIENT_IGNORE_SIGPIPE: u32 = 1 << 12;
pub const CLIENT_TRANSACTIONS: u32 = 1 << 13;
pub const CLIENT_RESERVED: u32 = 1 << 14;
pub const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
pub const CLIENT_MULTI_STATEMENTS: u32 = 1 << 16;
pub const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
pub const CLIENT_PS_MULTI_RESULTS: u32 = 1 << 18;
pub const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
pub const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
pub const CLIENT_SESSION_TRACK: u32 = 1 << 23;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
pub const CLIENT_OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
pub const CLIENT_ZSTD_COMPRESSION_ALGORITHM: u32 = 1 << 26;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 1 << 27;
pub const CLIENT_SSL_VERIFY_SERVER_CERT: u32 = 1 << 30;
pub const CLIENT_REMEMBER_OPTIONS: u32 = 1 << 31;

// Server status flags (OK/EOF packets and the greeting).
pub const SERVER_STATUS_IN_TRANS: u16 = 1;
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 1 << 1;
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 1 << 3;
pub const SERVER_STATUS_NO_GOOD_INDEX_USED: u16 = 1 << 4;
pub const SERVER_STATUS_NO_INDEX_USED: u16 = 1 << 5;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 1 << 6;
pub const SERVER_STATUS_LAST_ROW_SENT: u16 = 1 << 7;
pub const SERVER_STATUS_DB_DROPPED: u16 = 1 << 8;
pub const SERVER_STATUS_NO_BACKSLASH_ESCAPES: u16 = 1 << 9;
pub const SERVER_STATUS_METADATA_CHANGED: u16 = 1 << 10;
pub const SERVER_QUERY_WAS_SLOW: u16 = 1 << 11;
pub const SERVER_PS_OUT_PARAMS: u16 = 1 << 12;
pub const SERVER_STATUS_IN_TRANS_READONLY: u16 = 1 << 13;
pub const SERVER_SESSION_STATE_CHANGED: u16 = 1 << 14;

/// The only protocol version spoken since MySQL 3.21.
pub const PROTOCOL_VERSION: u8 = 10;
/// utf8mb4_general_ci.
pub const CHARSET_UTF8MB4_GENERAL_CI: u8 = 45;
/// utf8mb3_general_ci.
pub const CHARSET_UTF8_GENERAL_CI: u8 = 33;
/// binary.
pub const CHARSET_BINARY: u8 = 63;
pub const MYSQL_NATIVE_PASSWORD: &str = "mysql_native_password";
/// The default plugin of MySQL 8.0+, the only password plugin of MySQL 9.
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// A password plugin ferrobus speaks, as a server (the one a binlog server asks for) and as
/// a client (the one it answers a master with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthPlugin {
    #[default]
    NativePassword,
    CachingSha2Password,
}

impl AuthPlugin {
    /// The plugin named `name` (MySQL's names), if ferrobus speaks it.
    pub fn parse(name: &str) -> Option<AuthPlugin> {
        match name {
            MYSQL_NATIVE_PASSWORD => Some(AuthPlugin::NativePassword),
            CACHING_SHA2_PASSWORD => Some(AuthPlugin::CachingSha2Password),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::NativePassword => MYSQL_NATIVE_PASSWORD,
            AuthPlugin::CachingSha2Password => CACHING_SHA2_PASSWORD,
        }
    }
}

/// Length of the scramble (nonce) sent in the greeting.
pub const SCRAMBLE_LEN: usize = 20;
/// First byte of an AuthSwitchRequest (the same byte as EOF).
pub const AUTH_SWITCH_REQUEST: u8 = 0xfe;
/// First byte of an AuthMoreData packet (caching_sha2_password, ed25519, ...).
pub const AUTH_MORE_DATA: u8 = 0x01;
/// caching_sha2_password, client to server: "send me your RSA public key".
pub const SHA2_REQUEST_PUBLIC_KEY: u8 = 0x02;
/// caching_sha2_password, server to client (in AuthMoreData): the fast proof matched the
/// server's cache; an OK packet follows.
pub const SHA2_FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password, server to client (in AuthMoreData): no cache entry (or no match):
/// send the password, in clear over TLS, RSA-encrypted otherwise.
pub const SHA2_PERFORM_FULL_AUTHENTICATION: u8 = 0x04;

/// Length of a HandshakeResponse41 up to its username: what an SSLRequest consists of.
const RESPONSE_FIXED_LEN: usize = 32;
/// Part 1 of the auth plugin data in the greeting.
const AUTH_DATA_PART1_LEN: usize = 8;
/// Minimum length of part 2 of the auth plugin data (12 bytes and a NUL).
const AUTH_DATA_PART2_MIN: usize = 13;

/// The server's greeting, Protocol::HandshakeV10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeV10 {
    pub protocol_version: u8,
    pub server_version: String,
    pub connection_id: u32,
    /// The scramble (nonce), without the NUL that ends part 2 on the wire.
    pub auth_plugin_data: Vec<u8>,
    /// The low 32 capability bits.
    pub capabilities: u32,
    pub character_set: u8,
    pub status_flags: u16,
    /// MariaDB extended capabilities (bits 32..64), sent in reserved bytes when
    /// [`CLIENT_MYSQL`] is clear; 0 otherwise.
    pub mariadb_capabilities: u32,
    pub auth_plugin_name: String,
}

impl HandshakeV10 {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        put_u8(&mut out, self.protocol_version);
        put_nul_str(&mut out, self.server_version.as_bytes());
        put_u32(&mut out, self.connection_id);
        let data = &self.auth_plugin_data;
        let (part1, part2) = data.split_at(data.len().min(AUTH_DATA_PART1_LEN));
        out.extend_from_slice(part1);
        out.resize(out.len() + AUTH_DATA_PART1_LEN - part1.len(), 0);
        put_u8(&mut out, 0); // filler
        put_u16(&mut out, self.capabilities as u16);
        put_u8(&mut out, self.character_set);
        put_u16(&mut out, self.status_flags);
        put_u16(&mut out, (self.capabilities >> 16) as u16);
        let data_len = if self.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // Both parts, and the NUL that ends part 2.
            (data.len() + 1).clamp(AUTH_DATA_PART1_LEN + AUTH_DATA_PART2_MIN, 255) as u8
        } else {
            0
        };
        put_u8(&mut out, data_len);
        out.extend_from_slice(&[0; 6]);
        if self.capabilities & CLIENT_MYSQL == 0 {
            put_u32(&mut out, self.mariadb_capabilities);
        } else {
            put_u32(&mut out, 0);
        }
        if self.capabilities & CLIENT_SECURE_CONNECTION != 0 {
            out.extend_from_slice(part2);
            let written = part2.len();
            out.resize(
                out.len() + AUTH_DATA_PART2_MIN.saturating_sub(written + 1),
                0,
            );
            put_u8(&mut out, 0);
        }
        if self.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            put_nul_str(&mut out, self.auth_plugin_name.as_bytes());
        }
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let protocol_version = r.u8("greeting protocol version")?;
        if protocol_version != PROTOCOL_VERSION {
            return Err(ProtocolError::Malformed {
                what: "greeting protocol version",
            });
        }
        let server_version = r.nul_str("greeting server version")?;
        let connection_id = r.u32("greeting connection id")?;
        let mut auth_plugin_data = r.bytes(AUTH_DATA_PART1_LEN, "greeting auth data")?.to_vec();
        r.skip(1, "greeting filler")?;
        let mut hs = HandshakeV10 {
            protocol_version,
            server_version,
            connection_id,
            auth_plugin_data: Vec::new(),
            capabilities: u32::from(r.u16("greeting capabilities")?),
            character_set: 0,
            status_flags: 0,
            mariadb_capabilities: 0,
            auth_plugin_name: String::new(),
        };
        if r.is_empty() {
            // A pre-4.1 greeting ends here.
            hs.auth_plugin_data = auth_plugin_data;
            return Ok(hs);
        }
        hs.character_set = r.u8("greeting character set")?;
        hs.status_flags = r.u16("greeting status flags")?;
        hs.capabilities |= u32::from(r.u16("greeting capabilities")?) << 16;
        let data_len = usize::from(r.u8("greeting auth data length")?);
        r.skip(6, "greeting reserved")?;
        let mariadb_capabilities = r.u32("greeting reserved")?;
        if hs.capabilities & CLIENT_MYSQL == 0 {
            hs.mariadb_capabilities = mariadb_capabilities;
        }
        if hs.capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let part2_len = data_len
                .saturating_sub(AUTH_DATA_PART1_LEN)
                .max(AUTH_DATA_PART2_MIN);
            // Some servers send fewer bytes than announced; take what is there.
            let part2 = r.bytes(part2_len.min(r.remaining()), "greeting auth data")?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            auth_plugin_data.extend_from_slice(part2);
        }
        hs.auth_plugin_data = auth_plugin_data;
        if hs.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // MySQL 5.5.7-5.5.9 omitted the final NUL.
            hs.auth_plugin_name = super::codec::lossy(r.nul_or_eof_bytes());
        }
        Ok(hs)
    }
}

/// The client's answer to the greeting, Protocol::HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse41 {
    /// After [`decode`](Self::decode): the client's flags masked by the server's (bit 0,
    /// [`CLIENT_MYSQL`], excepted), that is the flags in effect for the connection.
    pub capabilities: u32,
    pub max_packet_size: u32,
    pub character_set: u8,
    /// MariaDB extended client capabilities (the last 4 filler bytes), when both sides
    /// are MariaDB; 0 otherwise.
    pub mariadb_capabilities: u32,
    pub username: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin_name: Option<String>,
    pub connect_attrs: Vec<(String, String)>,
}

/// Whether a client's first packet is an SSLRequest (a truncated response asking to
/// switch to TLS before sending credentials).
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == RESPONSE_FIXED_LEN
        && payload.get(..4).is_some_and(|caps| {
            u32::from_le_bytes([caps[0], caps[1], caps[2], caps[3]]) & CLIENT_SSL != 0
        })
}

impl HandshakeResponse41 {
    /// Encodes using `self.capabilities` to decide which fields are present.
    pub fn encode(&self) -> Vec<u8> {
        let caps = self.capabilities;
        let mut out = Vec::with_capacity(128);
        put_u32(&mut out, caps);
        put_u32(&mut out, self.max_packet_size);
        put_u8(&mut out, self.character_set);
        out.extend_from_slice(&[0; 19]);
        put_u32(&mut out, self.mariadb_capabilities);
        put_nul_str(&mut out, self.username.as_bytes());
        if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_str(&mut out, &self.auth_response);
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            let len = self.auth_response.len().min(255);
            put_u8(&mut out, len as u8);
            out.extend_from_slice(&self.auth_response[..len]);
        } else {
            put_nul_str(&mut out, &self.auth_response);
        }
        if caps & CLIENT_CONNECT_WITH_DB != 0 {
            put_nul_str(&mut out, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if caps & CLIENT_PLUGIN_AUTH != 0 {
            put_nul_str(
                &mut out,
                self.auth_plugin_name.as_deref().unwrap_or("").as_bytes(),
            );
        }
        if caps & CLIENT_CONNECT_ATTRS != 0 {
            let mut attrs = Vec::new();
            for (key, value) in &self.connect_attrs {
                put_lenenc_str(&mut attrs, key.as_bytes());
                put_lenenc_str(&mut attrs, value.as_bytes());
            }
            put_lenenc_int(&mut out, attrs.len() as u64);
            out.extend_from_slice(&attrs);
        }
        out
    }

    /// Decodes a response to a greeting that offered `server_capabilities`.
    pub fn decode(payload: &[u8], server_capabilities: u32) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let client_capabilities = r.u32("handshake response capabilities")?;
        if client_capabilities & CLIENT_PROTOCOL_41 == 0 {
            return Err(ProtocolError::Malformed {
                what: "handshake response (pre-4.1 protocol)",
            });
        }
        // Bit 0 is not negotiated: a MariaDB server clears it to announce extended
        // capabilities, and a client clears it to take them up. Keep the client's.
        let caps = client_capabilities & (server_capabilities | CLIENT_MYSQL);
        let max_packet_size = r.u32("handshake response max packet size")?;
        let character_set = r.u8("handshake response character set")?;
        r.skip(19, "handshake response filler")?;
        let mariadb_capabilities = r.u32("handshake response filler")?;
        let mut resp = HandshakeResponse41 {
            capabilities: caps,
            max_packet_size,
            character_set,
            mariadb_capabilities: if server_capabilities & CLIENT_MYSQL == 0
                && client_capabilities & CLIENT_MYSQL == 0
            {
                mariadb_capabilities
            } else {
                0
            },
            ..Default::default()
        };
        resp.username = r.nul_str("handshake response username")?;
        resp.auth_response = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes("handshake response auth data")?.to_vec()
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            let len = r.u8("handshake response auth data")?;
            r.bytes(usize::from(len), "handshake response auth data")?
                .to_vec()
        } else {
            r.nul_bytes("handshake response auth data")?.to_vec()
        };
        if caps & CLIENT_CONNECT_WITH_DB != 0 && !r.is_empty() {
            resp.database = Some(super::codec::lossy(r.nul_or_eof_bytes()));
        }
        if caps & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
            resp.auth_plugin_name = Some(super::codec::lossy(r.nul_or_eof_bytes()));
        }
        if caps & CLIENT_CONNECT_ATTRS != 0 && !r.is_empty() {
            resp.connect_attrs = decode_connect_attrs(&mut r)?;
        }
        Ok(resp)
    }
}

fn decode_connect_attrs(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, ProtocolError> {
    let attrs = r.lenenc_bytes("connect attributes")?;
    let mut r = Reader::new(attrs);
    let mut out = Vec::new();
    while !r.is_empty() {
        let key = r.lenenc_str("connect attribute key")?;
        let value = r.lenenc_str("connect attribute value")?;
        out.push((key, value));
    }
    Ok(out)
}

/// The server asks the client to authenticate again with another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitchRequest {
    pub plugin_name: String,
    /// Plugin data (for mysql_native_password the new 20-byte scramble), without the NUL
    /// servers append.
    pub plugin_data: Vec<u8>,
}

impl AuthSwitchRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.plugin_name.len() + self.plugin_data.len() + 3);
        put_u8(&mut out, AUTH_SWITCH_REQUEST);
        put_nul_str(&mut out, self.plugin_name.as_bytes());
        out.extend_from_slice(&self.plugin_data);
        put_u8(&mut out, 0);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        if r.u8("auth switch request")? != AUTH_SWITCH_REQUEST {
            return Err(ProtocolError::Malformed {
                what: "auth switch request",
            });
        }
        let plugin_name = super::codec::lossy(r.nul_or_eof_bytes());
        let data = r.rest();
        let plugin_data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
        Ok(AuthSwitchRequest {
            plugin_name,
            plugin_data,
        })
    }
}

/// Protocol::AuthMoreData: a step of a multi-round plugin, from the server. For
/// caching_sha2_password the data is one byte ([`SHA2_FAST_AUTH_SUCCESS`] or
/// [`SHA2_PERFORM_FULL_AUTHENTICATION`]) or the PEM public key the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMoreData {
    pub data: Vec<u8>,
}

impl AuthMoreData {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 1);
        put_u8(&mut out, AUTH_MORE_DATA);
        out.extend_from_slice(&self.data);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        match payload.split_first() {
            Some((&AUTH_MORE_DATA, data)) => Ok(AuthMoreData {
                data: data.to_vec(),
            }),
            Some(_) => Err(ProtocolError::Malformed {
                what: "auth more data",
            }),
            None => Err(ProtocolError::Truncated {
                what: "auth more data",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::test_hex as hex;

    /// Payload of the greeting of MariaDB 10.11.19 (captured on 127.0.0.1).
    const MARIADB_GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275312d6c6f67000500000070726a4041624a2b00fef7080200ff81150000000000001d00000037735d5a2b653d4066654771006d7973716c5f6e61746976655f70617373776f726400";

    /// Payload of the mariadb 10.11 CLI's response to that greeting (user repl, password
    /// "secret").
    const MARIADB_CLI_RESPONSE: &str = "84a2bf000000100021000000000000000000000000000000000000001d0000007265706c00148a3ba21b466c1b05a8cecbcd50d7e9c266d386a66d7973716c5f6e61746976655f70617373776f7264007e035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404363435320f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

    /// Greeting and response of a MariaDB 10.11 replica IO thread (user repl, "secret").
    const REPLICA_GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275312d6c6f67000b0000005e7d796777442b4a00fef7080200ff81150000000000001d00000070757e3735463f4930522d28006d7973716c5f6e61746976655f70617373776f726400";
    const REPLICA_RESPONSE: &str = "05a238807b0300400800000000000000000000000000000000000000000000007265706c0014303c19743e2057aee684b56aca44c02e9e7289206d7973716c5f6e61746976655f70617373776f72640077035f6f731064656269616e2d6c696e75782d676e750c5f636c69656e745f6e616d65086c69626d7973716c045f7069640531343438320f5f636c69656e745f76657273696f6e0831302e31312e31390c5f7365727665725f686f7374093132372e302e302e31095f706c6174666f726d067838365f3634";

    /// Greeting and response of PyMySQL 1.2.4 connecting with db=information_schema.
    const PYMYSQL_GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275312d6c6f67000a0000007b60504f7a3a506500fef7080200ff81150000000000001d0000002b424e3f327c3b5062795d46006d7973716c5f6e61746976655f70617373776f726400";
    const PYMYSQL_RESPONSE: &str = "0da23a00ffffff002d00000000000000000000000000000000000000000000007265706c0014e19fbc4be1c5395903943a7533b158faf661026e696e666f726d6174696f6e5f736368656d61006d7973716c5f6e61746976655f70617373776f726400360c5f636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e34045f706964053133393732";

    /// Greeting and response of the Rust `mysql` crate 26.0.1 (user repl, "secret").
    const RUST_MYSQL_GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275312d6c6f67000d0000006d413b4426305d6400fef7080200ff81150000000000001d0000005d274979493d373d6878417b006d7973716c5f6e61746976655f70617373776f726400";
    const RUST_MYSQL_RESPONSE: &str = "80a21f00000040002d00000000000000000000000000000000000000100000007265706c0014d9e79fe02c3ef6696eeec6c9fa6f20c51da2c0c16d7973716c5f6e61746976655f70617373776f72640093045f7069640531383531380c70726f6772616d5f6e616d65292f776f726b2f6465762f6d7973716c2f6361707461726765742f64656275672f636170636c69656e740c5f636c69656e745f6e616d6511727573742d6d7973716c2d73696d706c65035f6f73056c696e75780f5f636c69656e745f76657273696f6e0632362e302e31095f706c6174666f726d067838365f3634";

    #[test]
    fn decodes_captured_rust_mysql_response() {
        let greeting = HandshakeV10::decode(&hex(RUST_MYSQL_GREETING)).unwrap();
        let payload = hex(RUST_MYSQL_RESPONSE);
        let resp = HandshakeResponse41::decode(&payload, greeting.capabilities).unwrap();
        assert_eq!(resp.username, "repl");
        // It takes up MariaDB extended capabilities (bit 0 clear), but not DEPRECATE_EOF.
        assert_eq!(resp.capabilities & CLIENT_MYSQL, 0);
        assert_eq!(resp.mariadb_capabilities, 0x10);
        assert_eq!(resp.capabilities & CLIENT_DEPRECATE_EOF, 0);
        assert_eq!(resp.max_packet_size, 0x40_0000);
        assert!(resp
            .connect_attrs
            .contains(&("_client_name".to_string(), "rust-mysql-simple".to_string())));
        let nonce: [u8; 20] = greeting.auth_plugin_data.as_slice().try_into().unwrap();
        assert!(crate::mysql::auth::verify_native(
            b"secret",
            &nonce,
            &resp.auth_response
        ));
        assert_eq!(resp.encode(), payload);
    }

    #[test]
    fn decodes_captured_replica_response() {
        let greeting = HandshakeV10::decode(&hex(REPLICA_GREETING)).unwrap();
        let payload = hex(REPLICA_RESPONSE);
        let resp = HandshakeResponse41::decode(&payload, greeting.capabilities).unwrap();
        assert_eq!(resp.username, "repl");
        // The replica speaks as a MySQL client: no MariaDB extended capabilities.
        assert_ne!(resp.capabilities & CLIENT_MYSQL, 0);
        assert_eq!(resp.mariadb_capabilities, 0);
        assert_eq!(resp.character_set, 8);
        assert_eq!(resp.max_packet_size, 0x4000_037b);
        assert_eq!(resp.database, None);
        assert!(resp
            .connect_attrs
            .contains(&("_client_name".to_string(), "libmysql".to_string())));
        let nonce: [u8; 20] = greeting.auth_plugin_data.as_slice().try_into().unwrap();
        assert!(crate::mysql::auth::verify_native(
            b"secret",
            &nonce,
            &resp.auth_response
        ));
        assert_eq!(resp.capabilities & CLIENT_DEPRECATE_EOF, 0);
        assert_eq!(resp.encode(), payload);
    }

    #[test]
    fn decodes_captured_pymysql_response() {
        let greeting = HandshakeV10::decode(&hex(PYMYSQL_GREETING)).unwrap();
        let payload = hex(PYMYSQL_RESPONSE);
        let resp = HandshakeResponse41::decode(&payload, greeting.capabilities).unwrap();
        assert_eq!(resp.username, "repl");
        assert_eq!(resp.database.as_deref(), Some("information_schema"));
        assert_eq!(
            resp.auth_plugin_name.as_deref(),
            Some(MYSQL_NATIVE_PASSWORD)
        );
        assert_eq!(resp.character_set, CHARSET_UTF8MB4_GENERAL_CI);
        assert_eq!(resp.capabilities & CLIENT_DEPRECATE_EOF, 0);
        assert_eq!(
            resp.connect_attrs[0],
            ("_client_name".into(), "pymysql".into())
        );
        let nonce: [u8; 20] = greeting.auth_plugin_data.as_slice().try_into().unwrap();
        assert!(crate::mysql::auth::verify_native(
            b"secret",
            &nonce,
            &resp.auth_response
        ));
        assert_eq!(resp.encode(), payload);
    }

    #[test]
    fn decodes_captured_mariadb_greeting() {
        let payload = hex(MARIADB_GREETING);
        let hs = HandshakeV10::decode(&payload).unwrap();
        assert_eq!(hs.protocol_version, 10);
        assert_eq!(hs.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1-log");
        assert_eq!(hs.connection_id, 5);
        assert_eq!(hs.auth_plugin_data, b"prj@AbJ+7s]Z+e=@feGq");
        assert_eq!(hs.capabilities, 0x81ff_f7fe);
        assert_eq!(hs.capabilities & CLIENT_MYSQL, 0);
        assert_eq!(hs.mariadb_capabilities, 0x1d);
        assert_eq!(hs.character_set, 8);
        assert_eq!(hs.status_flags, SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(hs.auth_plugin_name, MYSQL_NATIVE_PASSWORD);
        // Re-encoding gives the captured bytes back.
        assert_eq!(hs.encode(), payload);
    }

    #[test]
    fn decodes_captured_mariadb_cli_response() {
        let greeting = HandshakeV10::decode(&hex(MARIADB_GREETING)).unwrap();
        let payload = hex(MARIADB_CLI_RESPONSE);
        let resp = HandshakeResponse41::decode(&payload, greeting.capabilities).unwrap();
        assert_eq!(resp.username, "repl");
        assert_eq!(
            resp.auth_response,
            hex("8a3ba21b466c1b05a8cecbcd50d7e9c266d386a6")
        );
        assert_eq!(resp.database, None);
        assert_eq!(
            resp.auth_plugin_name.as_deref(),
            Some(MYSQL_NATIVE_PASSWORD)
        );
        assert_eq!(resp.max_packet_size, 1 << 20);
        assert_eq!(resp.character_set, 33);
        assert_eq!(resp.mariadb_capabilities, 0x1d);
        assert!(resp
            .connect_attrs
            .contains(&("program_name".to_string(), "mysql".to_string())));
        assert_eq!(resp.connect_attrs.len(), 7);
        assert_eq!(resp.encode(), payload);
    }

    #[test]
    fn response_attrs_ignored_when_server_did_not_offer_them() {
        // The CLI sets CONNECT_ATTRS regardless; a server that did not offer it must not
        // read past the plugin name.
        let mut resp = HandshakeResponse41 {
            capabilities: CLIENT_PROTOCOL_41
                | CLIENT_SECURE_CONNECTION
                | CLIENT_PLUGIN_AUTH
                | CLIENT_CONNECT_ATTRS,
            max_packet_size: 1 << 24,
            character_set: 45,
            username: "u".into(),
            auth_response: vec![1; 20],
            auth_plugin_name: Some(MYSQL_NATIVE_PASSWORD.into()),
            ..Default::default()
        };
        let mut payload = resp.encode();
        payload.truncate(payload.len() - 1); // no attributes follow: drop the empty length
        let server_caps = resp.capabilities & !CLIENT_CONNECT_ATTRS;
        let decoded = HandshakeResponse41::decode(&payload, server_caps).unwrap();
        resp.capabilities = server_caps;
        assert_eq!(decoded, resp);
    }

    #[test]
    fn response_with_database_round_trips() {
        let resp = HandshakeResponse41 {
            capabilities: CLIENT_PROTOCOL_41
                | CLIENT_SECURE_CONNECTION
                | CLIENT_PLUGIN_AUTH
                | CLIENT_CONNECT_WITH_DB
                | CLIENT_CONNECT_ATTRS
                | CLIENT_MYSQL,
            max_packet_size: 16 << 20,
            character_set: 45,
            mariadb_capabilities: 0,
            username: "root".into(),
            auth_response: vec![],
            database: Some("information_schema".into()),
            auth_plugin_name: Some(MYSQL_NATIVE_PASSWORD.into()),
            connect_attrs: vec![("_client_name".into(), "ferrobus".into())],
        };
        let decoded = HandshakeResponse41::decode(&resp.encode(), u32::MAX).unwrap();
        assert_eq!(decoded, resp);
    }

    #[test]
    fn truncated_response_is_an_error_not_a_panic() {
        let payload = hex(MARIADB_CLI_RESPONSE);
        for len in 0..40 {
            let _ = HandshakeResponse41::decode(&payload[..len], u32::MAX);
        }
        assert!(HandshakeResponse41::decode(&payload[..36], u32::MAX).is_err());
        let greeting = hex(MARIADB_GREETING);
        for len in 0..greeting.len() {
            let _ = HandshakeV10::decode(&greeting[..len]);
        }
    }

    #[test]
    fn ssl_request_is_recognised() {
        let mut payload = Vec::new();
        put_u32(&mut payload, CLIENT_PROTOCOL_41 | CLIENT_SSL);
        payload.resize(RESPONSE_FIXED_LEN, 0);
        assert!(is_ssl_request(&payload));
        assert!(!is_ssl_request(&hex(MARIADB_CLI_RESPONSE)));
    }

    #[test]
    fn auth_switch_round_trips() {
        let req = AuthSwitchRequest {
            plugin_name: MYSQL_NATIVE_PASSWORD.into(),
            plugin_data: b"abcdefghijklmnopqrst".to_vec(),
        };
        let payload = req.encode();
        assert_eq!(payload[0], 0xfe);
        assert_eq!(*payload.last().unwrap(), 0);
        assert_eq!(AuthSwitchRequest::decode(&payload).unwrap(), req);
    }

    #[test]
    fn greeting_round_trips_with_mysql_flag_set() {
        let hs = HandshakeV10 {
            protocol_version: 10,
            server_version: "8.0.36-ferrobus".into(),
            connection_id: 42,
            auth_plugin_data: b"01234567890123456789".to_vec(),
            capabilities: CLIENT_MYSQL
                | CLIENT_PROTOCOL_41
                | CLIENT_SECURE_CONNECTION
                | CLIENT_PLUGIN_AUTH
                | CLIENT_DEPRECATE_EOF,
            character_set: CHARSET_UTF8MB4_GENERAL_CI,
            status_flags: SERVER_STATUS_AUTOCOMMIT,
            mariadb_capabilities: 0,
            auth_plugin_name: MYSQL_NATIVE_PASSWORD.into(),
        };
        assert_eq!(HandshakeV10::decode(&hs.encode()).unwrap(), hs);
    }

    #[test]
    fn auth_more_data_round_trips() {
        // Captured shapes: "fast auth ok" is 01 03, "perform full authentication" 01 04.
        let fast = AuthMoreData {
            data: vec![SHA2_FAST_AUTH_SUCCESS],
        };
        assert_eq!(fast.encode(), [0x01, 0x03]);
        assert_eq!(AuthMoreData::decode(&[0x01, 0x04]).unwrap().data, [0x04]);
        let key = AuthMoreData {
            data: b"-----BEGIN PUBLIC KEY-----\n".to_vec(),
        };
        assert_eq!(AuthMoreData::decode(&key.encode()).unwrap(), key);
        assert!(AuthMoreData::decode(&[]).is_err());
        assert!(AuthMoreData::decode(&[0xfe, 0x03]).is_err());
    }

    #[test]
    fn caching_sha2_switch_carries_the_nonce() {
        // What a MySQL 8 server sends to a client that answered with another plugin: the
        // plugin name, the 20-byte nonce, and a NUL.
        let req = AuthSwitchRequest {
            plugin_name: CACHING_SHA2_PASSWORD.into(),
            plugin_data: b"abcdefghijklmnopqrst".to_vec(),
        };
        let payload = req.encode();
        assert_eq!(&payload[1..22], b"caching_sha2_password");
        assert_eq!(payload.len(), 1 + 22 + 20 + 1);
        assert_eq!(AuthSwitchRequest::decode(&payload).unwrap(), req);
    }
}
