//! A blocking MySQL client, enough for the syncer: log in, run text queries, send binlog
//! commands and read the packets that follow.
//!
//! Login speaks mysql_native_password (MariaDB, MySQL 5.7) and caching_sha2_password
//! (MySQL 8.0+, the only password plugin of MySQL 9), whichever the server greets with or
//! switches to. caching_sha2_password takes the fast path when the server has our proof in
//! its cache, and otherwise the full path over a plain connection: ask for the server's RSA
//! public key, send the password encrypted with it. Like `--get-server-public-key`, that
//! trusts the key the server sends (there is no TLS to pin it with).
//!
//! Every socket has connect, read and write timeouts. The client never retries and never
//! reconnects: a failed call returns a typed [`NetError`] and the caller decides.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::conn::PacketConn;
use super::NetError;
use crate::limits::{CLIENT_READ_BUFFER_BYTES, LOGICAL_PACKET_MAX};
use crate::mysql::auth::{
    caching_sha2_auth_response, encrypt_password, native_auth_response, nonce_from_slice,
    parse_public_key_pem,
};
use crate::mysql::command::Command;
use crate::mysql::handshake::{
    AuthMoreData, AuthPlugin, AuthSwitchRequest, HandshakeResponse41, HandshakeV10, AUTH_MORE_DATA,
    AUTH_SWITCH_REQUEST, CACHING_SHA2_PASSWORD, CHARSET_UTF8MB4_GENERAL_CI, CLIENT_CONNECT_ATTRS,
    CLIENT_DEPRECATE_EOF, CLIENT_LONG_FLAG, CLIENT_MULTI_RESULTS, CLIENT_MYSQL, CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION,
    CLIENT_TRANSACTIONS, MYSQL_NATIVE_PASSWORD, SCRAMBLE_LEN, SERVER_MORE_RESULTS_EXISTS,
    SHA2_FAST_AUTH_SUCCESS, SHA2_PERFORM_FULL_AUTHENTICATION, SHA2_REQUEST_PUBLIC_KEY,
};
use crate::mysql::resultset::{
    ErrPacket, OkPacket, Response, ResultSetStep, TextResultSet, TextResultSetDecoder, ERR_HEADER,
    OK_HEADER,
};

/// Capabilities the client asks for. Not DEPRECATE_EOF (EOF-terminated result sets work
/// everywhere), not SSL, not LOCAL_FILES, not MariaDB extended metadata (CLIENT_MYSQL set).
const CLIENT_CAPABILITIES: u32 = CLIENT_MYSQL
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_CONNECT_ATTRS;

/// How the login went: which plugin proved the password, and for caching_sha2_password
/// which path the server made us take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    NativePassword,
    /// The server had our proof in its cache (AuthMoreData 0x03).
    Sha2Fast,
    /// The server asked for the full authentication (0x04); the password went RSA-encrypted.
    Sha2Full,
}

/// The rows of a query; empty for statements that return OK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

pub struct Client {
    conn: PacketConn<TcpStream>,
    server_version: String,
    connection_id: u32,
    /// Flags in effect: ours masked by the server's.
    capabilities: u32,
    auth_outcome: AuthOutcome,
}

impl Client {
    /// A second handle on the socket, to shut it down from another thread (stopping a
    /// blocked reader).
    pub fn try_clone_stream(&self) -> std::io::Result<TcpStream> {
        self.conn.get_ref().try_clone()
    }

    /// Connects over TCP and logs in as `user`.
    pub fn connect(
        addr: &str,
        user: &str,
        password: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Client, NetError> {
        Client::connect_with(addr, user, password, connect_timeout, io_timeout, |_| {})
    }

    /// As `connect`, handing the socket to `on_socket` as soon as it is connected, before
    /// the handshake: another thread can then shut it down to end a wait on a server that
    /// accepted the connection but says nothing.
    pub fn connect_with(
        addr: &str,
        user: &str,
        password: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
        on_socket: impl FnOnce(&TcpStream),
    ) -> Result<Client, NetError> {
        let stream = connect_tcp(addr, connect_timeout)?;
        on_socket(&stream);
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        let mut conn =
            PacketConn::with_read_buffer(stream, LOGICAL_PACKET_MAX, CLIENT_READ_BUFFER_BYTES);
        let greeting = conn.read_packet()?;
        if greeting.first() == Some(&ERR_HEADER) {
            return Err(NetError::Server(ErrPacket::decode(&greeting)?));
        }
        let greeting = HandshakeV10::decode(&greeting)?;
        let capabilities = negotiate(&greeting)?;
        let nonce = nonce_from_slice(&greeting.auth_plugin_data)
            .ok_or_else(|| NetError::Auth("greeting carries no 20-byte scramble".into()))?;
        // Answer with the server's default plugin when we speak it, so that no switch is
        // needed; otherwise mysql_native_password, and let the server switch us.
        let plugin = AuthPlugin::parse(&greeting.auth_plugin_name).unwrap_or_default();
        let response = HandshakeResponse41 {
            capabilities,
            max_packet_size: LOGICAL_PACKET_MAX as u32,
            character_set: CHARSET_UTF8MB4_GENERAL_CI,
            mariadb_capabilities: 0,
            username: user.to_string(),
            auth_response: first_response(plugin, password.as_bytes(), &nonce),
            database: None,
            auth_plugin_name: Some(plugin.name().to_string()),
            connect_attrs: vec![
                ("_client_name".into(), "ferrobus".into()),
                ("_client_version".into(), env!("CARGO_PKG_VERSION").into()),
            ],
        };
        conn.write_packet(&response.encode())?;
        let auth_outcome = finish_auth(&mut conn, password, plugin, nonce)?;
        log::debug!(
            "logged in to {addr} ({}) as {user}: {auth_outcome:?}",
            greeting.server_version
        );
        Ok(Client {
            conn,
            server_version: greeting.server_version,
            connection_id: greeting.connection_id,
            capabilities,
            auth_outcome,
        })
    }

    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    pub fn capabilities(&self) -> u32 {
        self.capabilities
    }

    /// Which plugin and path the login took.
    pub fn auth_outcome(&self) -> AuthOutcome {
        self.auth_outcome
    }

    /// Runs a text query; returns its rows, or nothing for a statement without a result
    /// set. Further result sets (stored procedures) are read and dropped so the connection
    /// stays in step.
    pub fn query(&mut self, sql: &str) -> Result<QueryResult, NetError> {
        self.send_command(&Command::Query(sql.to_string()))?;
        let mut first: Option<QueryResult> = None;
        loop {
            let (result, status_flags) = self.read_query_response()?;
            first.get_or_insert(result);
            if status_flags & SERVER_MORE_RESULTS_EXISTS == 0 {
                return Ok(first.unwrap_or_default());
            }
        }
    }

    /// The first column of the first row, or `None` if there is no row or it is NULL.
    pub fn query_one_value(&mut self, sql: &str) -> Result<Option<String>, NetError> {
        let result = self.query(sql)?;
        Ok(result
            .rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// One response: an OK, or a result set; with the status flags that ended it.
    fn read_query_response(&mut self) -> Result<(QueryResult, u16), NetError> {
        let payload = self.conn.read_packet()?;
        match Response::decode(&payload)? {
            Response::Ok(ok) => Ok((QueryResult::default(), ok.status_flags)),
            Response::Err(err) => Err(NetError::Server(err)),
            Response::LocalInfile => Err(NetError::Unexpected("LOCAL INFILE request")),
            Response::ResultSet { column_count } => {
                let rs = self.read_resultset(column_count)?;
                let result = QueryResult {
                    columns: rs.columns.into_iter().map(|c| c.name).collect(),
                    rows: rs.rows,
                };
                Ok((result, rs.status_flags))
            }
        }
    }

    fn read_resultset(&mut self, column_count: u64) -> Result<TextResultSet, NetError> {
        let deprecate_eof = self.capabilities & CLIENT_DEPRECATE_EOF != 0;
        let mut decoder = TextResultSetDecoder::new(column_count, deprecate_eof)?;
        let mut payload = Vec::new();
        loop {
            self.conn.read_packet_into(&mut payload)?;
            match decoder.push(&payload)? {
                ResultSetStep::More => {}
                ResultSetStep::Done => return Ok(decoder.finish()),
                ResultSetStep::Error(err) => return Err(NetError::Server(err)),
            }
        }
    }

    /// Starts a command exchange: sequence id 0, then the command, flushed.
    pub fn send_command(&mut self, command: &Command) -> Result<(), NetError> {
        self.conn.reset_seq();
        self.conn.write_packet(&command.encode())
    }

    /// The next logical packet (binlog events after a dump command, for instance).
    pub fn read_packet(&mut self) -> Result<Vec<u8>, NetError> {
        self.conn.read_packet()
    }

    pub fn conn_mut(&mut self) -> &mut PacketConn<TcpStream> {
        &mut self.conn
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), NetError> {
        self.conn.get_ref().set_read_timeout(timeout)?;
        Ok(())
    }

    /// Sends COM_PING and waits for the OK.
    pub fn ping(&mut self) -> Result<(), NetError> {
        self.send_command(&Command::Ping)?;
        let payload = self.conn.read_packet()?;
        match Response::decode(&payload)? {
            Response::Ok(_) => Ok(()),
            Response::Err(err) => Err(NetError::Server(err)),
            _ => Err(NetError::Unexpected("answer to COM_PING")),
        }
    }

    /// Sends COM_QUIT (best effort) and closes the socket.
    pub fn quit(mut self) {
        // The server closes without answering; a failure here changes nothing.
        let _ = self.send_command(&Command::Quit);
    }
}

fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, NetError> {
    let mut last_error = None;
    for sock_addr in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sock_addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(NetError::Io(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{addr} resolves to no address"),
        )
    })))
}

/// The flags in effect, or why this server cannot be spoken to.
fn negotiate(greeting: &HandshakeV10) -> Result<u32, NetError> {
    let required = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
    if greeting.capabilities & required != required {
        return Err(NetError::Auth(format!(
            "server {} lacks protocol 4.1 secure authentication",
            greeting.server_version
        )));
    }
    // CLIENT_MYSQL is ours to set: it tells MariaDB we want no extended capabilities.
    Ok(CLIENT_CAPABILITIES & (greeting.capabilities | CLIENT_MYSQL))
}

/// The first proof `plugin` sends for `nonce`.
fn first_response(plugin: AuthPlugin, password: &[u8], nonce: &[u8; SCRAMBLE_LEN]) -> Vec<u8> {
    match plugin {
        AuthPlugin::NativePassword => native_auth_response(password, nonce),
        AuthPlugin::CachingSha2Password => caching_sha2_auth_response(password, nonce),
    }
}

/// Where a caching_sha2_password exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sha2Step {
    /// Proof sent; waiting for the fast-auth result (or OK / ERR).
    ProofSent,
    /// The server said 0x03: an OK follows.
    FastOk,
    /// We asked for the server's public key (0x02); waiting for the PEM.
    KeyRequested,
    /// The encrypted password is sent; waiting for OK / ERR.
    PasswordSent,
}

/// Reads the server's verdict on the handshake response, following auth switches and the
/// steps of caching_sha2_password.
fn finish_auth(
    conn: &mut PacketConn<TcpStream>,
    password: &str,
    mut plugin: AuthPlugin,
    mut nonce: [u8; SCRAMBLE_LEN],
) -> Result<AuthOutcome, NetError> {
    let mut step = Sha2Step::ProofSent;
    loop {
        let payload = conn.read_packet()?;
        match payload.first() {
            Some(&OK_HEADER) => {
                OkPacket::decode(&payload)?;
                return Ok(match (plugin, step) {
                    (AuthPlugin::NativePassword, _) => AuthOutcome::NativePassword,
                    (AuthPlugin::CachingSha2Password, Sha2Step::PasswordSent) => {
                        AuthOutcome::Sha2Full
                    }
                    // An OK straight after the proof (empty password) counts as fast.
                    (AuthPlugin::CachingSha2Password, _) => AuthOutcome::Sha2Fast,
                });
            }
            Some(&ERR_HEADER) => return Err(NetError::Server(ErrPacket::decode(&payload)?)),
            Some(&AUTH_SWITCH_REQUEST) => {
                let switch = AuthSwitchRequest::decode(&payload)?;
                plugin = AuthPlugin::parse(&switch.plugin_name).ok_or_else(|| {
                    NetError::Auth(format!(
                        "the server requires the auth plugin {}; ferrobus speaks \
                         {MYSQL_NATIVE_PASSWORD} and {CACHING_SHA2_PASSWORD}",
                        switch.plugin_name
                    ))
                })?;
                nonce = nonce_from_slice(&switch.plugin_data).ok_or_else(|| {
                    NetError::Auth("auth switch carries no 20-byte scramble".into())
                })?;
                step = Sha2Step::ProofSent;
                conn.write_packet(&first_response(plugin, password.as_bytes(), &nonce))?;
            }
            Some(&AUTH_MORE_DATA) if plugin == AuthPlugin::CachingSha2Password => {
                let more = AuthMoreData::decode(&payload)?;
                step = sha2_step(conn, password, &nonce, step, &more.data)?;
            }
            _ => {
                return Err(NetError::Auth(format!(
                    "unexpected answer during {} authentication (first byte {:?})",
                    plugin.name(),
                    payload.first()
                )))
            }
        }
    }
}

/// Answers one AuthMoreData of caching_sha2_password; returns the new step.
fn sha2_step(
    conn: &mut PacketConn<TcpStream>,
    password: &str,
    nonce: &[u8; SCRAMBLE_LEN],
    step: Sha2Step,
    data: &[u8],
) -> Result<Sha2Step, NetError> {
    match (step, data) {
        (Sha2Step::ProofSent, [SHA2_FAST_AUTH_SUCCESS]) => Ok(Sha2Step::FastOk),
        (Sha2Step::ProofSent, [SHA2_PERFORM_FULL_AUTHENTICATION]) => {
            // No TLS: the password may only travel RSA-encrypted, with the server's key.
            conn.write_packet(&[SHA2_REQUEST_PUBLIC_KEY])?;
            Ok(Sha2Step::KeyRequested)
        }
        (Sha2Step::KeyRequested, pem) => {
            let key = parse_public_key_pem(pem).map_err(|e| {
                NetError::Auth(format!(
                    "the master asks for caching_sha2_password full authentication and sent \
                     no RSA public key ({e}); without TLS ferrobus cannot send the password \
                     otherwise (check the master's caching_sha2_password_public_key_path)"
                ))
            })?;
            let encrypted =
                encrypt_password(password.as_bytes(), nonce, &key, &mut rsa::rand_core::OsRng)
                    .map_err(|e| {
                        NetError::Auth(format!("caching_sha2_password full authentication: {e}"))
                    })?;
            conn.write_packet(&encrypted)?;
            Ok(Sha2Step::PasswordSent)
        }
        (step, data) => Err(NetError::Auth(format!(
            "unexpected caching_sha2_password step from the server: {} bytes of auth data \
             after {step:?}",
            data.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::auth::{
        decrypt_password, parse_private_key_pem, sha2_double_digest, verify_caching_sha2_cached,
        verify_native, TEST_PRIVATE_KEY_PEM, TEST_PUBLIC_KEY_PEM,
    };
    use crate::mysql::handshake::SERVER_STATUS_AUTOCOMMIT;
    use crate::mysql::resultset::{encode_text_resultset, ER_ACCESS_DENIED_ERROR};
    use std::net::TcpListener;
    use std::thread;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const NONCE: [u8; SCRAMBLE_LEN] = *b"abcdefghijklmnopqrst";
    const SWITCH_NONCE: [u8; SCRAMBLE_LEN] = *b"ABCDEFGHIJKLMNOPQRST";

    /// How the fake server treats the login.
    #[derive(Clone, Copy)]
    enum Login {
        Direct,
        SwitchToNative,
        SwitchToOther,
        /// Greets with caching_sha2_password; `cached`: the server has the proof cached.
        Sha2 {
            cached: bool,
        },
        /// Greets with mysql_native_password, then switches to caching_sha2_password.
        SwitchToSha2 {
            cached: bool,
        },
        /// caching_sha2_password, full path, but the "public key" is not one.
        Sha2NoKey,
    }

    /// A one-connection fake server: greets, checks the password "pw", then answers
    /// `SELECT 1` with a result set and anything else with OK, until COM_QUIT.
    fn fake_server(login: Login) -> (String, thread::JoinHandle<Vec<Command>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut conn = PacketConn::new(stream, 1 << 20);
            serve(&mut conn, login).unwrap_or_default()
        });
        (addr, handle)
    }

    fn serve(conn: &mut PacketConn<TcpStream>, login: Login) -> Result<Vec<Command>, NetError> {
        let greeting_plugin = match login {
            Login::Sha2 { .. } | Login::Sha2NoKey => CACHING_SHA2_PASSWORD,
            _ => MYSQL_NATIVE_PASSWORD,
        };
        let greeting = HandshakeV10 {
            protocol_version: 10,
            server_version: "5.5.5-10.11.0-MariaDB-fake".into(),
            connection_id: 77,
            auth_plugin_data: NONCE.to_vec(),
            capabilities: CLIENT_CAPABILITIES | CLIENT_DEPRECATE_EOF,
            character_set: 45,
            status_flags: SERVER_STATUS_AUTOCOMMIT,
            mariadb_capabilities: 0,
            auth_plugin_name: greeting_plugin.into(),
        };
        conn.write_packet(&greeting.encode())?;
        let resp = HandshakeResponse41::decode(&conn.read_packet()?, greeting.capabilities)?;
        let verified = match login {
            Login::Direct => verify_native(b"pw", &NONCE, &resp.auth_response),
            Login::SwitchToNative | Login::SwitchToOther => {
                let plugin_name = match login {
                    Login::SwitchToOther => "client_ed25519",
                    _ => MYSQL_NATIVE_PASSWORD,
                };
                let switch = AuthSwitchRequest {
                    plugin_name: plugin_name.into(),
                    plugin_data: SWITCH_NONCE.to_vec(),
                };
                conn.write_packet(&switch.encode())?;
                verify_native(b"pw", &SWITCH_NONCE, &conn.read_packet()?)
            }
            Login::Sha2 { cached } => {
                assert_eq!(
                    resp.auth_plugin_name.as_deref(),
                    Some(CACHING_SHA2_PASSWORD)
                );
                serve_sha2(conn, &NONCE, &resp.auth_response, cached, true)?
            }
            Login::SwitchToSha2 { cached } => {
                let switch = AuthSwitchRequest {
                    plugin_name: CACHING_SHA2_PASSWORD.into(),
                    plugin_data: SWITCH_NONCE.to_vec(),
                };
                conn.write_packet(&switch.encode())?;
                let proof = conn.read_packet()?;
                serve_sha2(conn, &SWITCH_NONCE, &proof, cached, true)?
            }
            Login::Sha2NoKey => serve_sha2(conn, &NONCE, &resp.auth_response, false, false)?,
        };
        if resp.username != "repl" || !verified {
            let err = ErrPacket::new(ER_ACCESS_DENIED_ERROR, "Access denied for user 'repl'");
            conn.write_packet(&err.encode())?;
            return Ok(Vec::new());
        }
        conn.write_packet(&OkPacket::new().encode())?;
        let mut commands = Vec::new();
        loop {
            conn.reset_seq();
            conn.set_seq(0);
            let cmd = Command::decode(&conn.read_packet()?)?;
            commands.push(cmd.clone());
            match cmd {
                Command::Quit => return Ok(commands),
                Command::Query(q) if q == "SELECT 1" => {
                    let rows = vec![vec![Some("1".to_string())], vec![None]];
                    for p in encode_text_resultset(&["1"], &rows, false) {
                        conn.write_packet_no_flush(&p)?;
                    }
                    conn.flush()?;
                }
                _ => conn.write_packet(&OkPacket::new().encode())?,
            }
        }
    }

    /// The caching_sha2_password steps of a server whose account password is "pw":
    /// fast path when `cached` and the proof matches, else the full path over RSA (serving
    /// the test public key, or garbage when `send_key` is false).
    fn serve_sha2(
        conn: &mut PacketConn<TcpStream>,
        nonce: &[u8; SCRAMBLE_LEN],
        proof: &[u8],
        cached: bool,
        send_key: bool,
    ) -> Result<bool, NetError> {
        let more = |data: &[u8]| {
            AuthMoreData {
                data: data.to_vec(),
            }
            .encode()
        };
        if cached && verify_caching_sha2_cached(&sha2_double_digest(b"pw"), nonce, proof) {
            conn.write_packet(&more(&[SHA2_FAST_AUTH_SUCCESS]))?;
            return Ok(true);
        }
        conn.write_packet(&more(&[SHA2_PERFORM_FULL_AUTHENTICATION]))?;
        assert_eq!(conn.read_packet()?, [SHA2_REQUEST_PUBLIC_KEY]);
        if !send_key {
            conn.write_packet(&more(b"no key configured"))?;
            return Ok(false);
        }
        conn.write_packet(&more(TEST_PUBLIC_KEY_PEM.as_bytes()))?;
        let ciphertext = conn.read_packet()?;
        let key = parse_private_key_pem(TEST_PRIVATE_KEY_PEM).unwrap();
        let password = decrypt_password(&ciphertext, nonce, &key, &mut rsa::rand_core::OsRng);
        Ok(password.as_deref() == Ok(&b"pw"[..]))
    }

    fn login_outcome(login: Login, password: &str) -> Result<AuthOutcome, NetError> {
        let (addr, server) = fake_server(login);
        let result = Client::connect(&addr, "repl", password, TIMEOUT, TIMEOUT).map(|client| {
            let outcome = client.auth_outcome();
            client.quit();
            outcome
        });
        server.join().unwrap();
        result
    }

    #[test]
    fn caching_sha2_fast_and_full_paths() {
        assert_eq!(
            login_outcome(Login::Sha2 { cached: true }, "pw").unwrap(),
            AuthOutcome::Sha2Fast
        );
        assert_eq!(
            login_outcome(Login::Sha2 { cached: false }, "pw").unwrap(),
            AuthOutcome::Sha2Full
        );
        assert_eq!(
            login_outcome(Login::SwitchToSha2 { cached: true }, "pw").unwrap(),
            AuthOutcome::Sha2Fast
        );
        assert_eq!(
            login_outcome(Login::SwitchToSha2 { cached: false }, "pw").unwrap(),
            AuthOutcome::Sha2Full
        );
        assert_eq!(
            login_outcome(Login::SwitchToNative, "pw").unwrap(),
            AuthOutcome::NativePassword
        );
    }

    #[test]
    fn caching_sha2_wrong_password_is_a_server_error() {
        // A cached server sends a wrong proof down the full path too; both end in 1045.
        for login in [
            Login::Sha2 { cached: true },
            Login::Sha2 { cached: false },
            Login::SwitchToSha2 { cached: false },
        ] {
            match login_outcome(login, "nope") {
                Err(NetError::Server(err)) => assert_eq!(err.code, ER_ACCESS_DENIED_ERROR),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn caching_sha2_without_a_public_key_says_so() {
        match login_outcome(Login::Sha2NoKey, "pw") {
            Err(NetError::Auth(message)) => {
                assert!(message.contains("sent no RSA public key"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logs_in_queries_and_quits() {
        let (addr, server) = fake_server(Login::Direct);
        let mut client = Client::connect(&addr, "repl", "pw", TIMEOUT, TIMEOUT).unwrap();
        assert_eq!(client.connection_id(), 77);
        assert_eq!(client.server_version(), "5.5.5-10.11.0-MariaDB-fake");
        assert_eq!(client.capabilities() & CLIENT_DEPRECATE_EOF, 0);
        let result = client.query("SELECT 1").unwrap();
        assert_eq!(result.columns, ["1"]);
        assert_eq!(result.rows, vec![vec![Some("1".to_string())], vec![None]]);
        assert_eq!(
            client.query_one_value("SELECT 1").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(client.query("SET @a=1").unwrap(), QueryResult::default());
        client.ping().unwrap();
        client.quit();
        let commands = server.join().unwrap();
        assert_eq!(commands.len(), 5);
        assert_eq!(commands[4], Command::Quit);
    }

    #[test]
    fn follows_auth_switch_to_native_password() {
        let (addr, server) = fake_server(Login::SwitchToNative);
        let client = Client::connect(&addr, "repl", "pw", TIMEOUT, TIMEOUT).unwrap();
        client.quit();
        assert_eq!(server.join().unwrap(), [Command::Quit]);
    }

    #[test]
    fn refuses_auth_switch_to_other_plugins() {
        let (addr, server) = fake_server(Login::SwitchToOther);
        let err = Client::connect(&addr, "repl", "pw", TIMEOUT, TIMEOUT)
            .err()
            .unwrap();
        assert!(matches!(err, NetError::Auth(_)), "{err}");
        drop(err);
        server.join().unwrap();
    }

    #[test]
    fn wrong_password_is_a_server_error() {
        let (addr, server) = fake_server(Login::Direct);
        match Client::connect(&addr, "repl", "nope", TIMEOUT, TIMEOUT) {
            Err(NetError::Server(err)) => {
                assert_eq!(err.code, ER_ACCESS_DENIED_ERROR);
                assert_eq!(&err.sql_state, b"28000");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("logged in with a wrong password"),
        }
        server.join().unwrap();
    }

    /// Starts a dump of the first binlog file and checks the stream opens with the
    /// artificial ROTATE then the FORMAT_DESCRIPTION event.
    fn read_binlog_start(client: &mut Client) {
        use crate::mysql::command::{BinlogDump, RegisterSlave};
        let Some(file) = client.query_one_value("SHOW MASTER STATUS").unwrap() else {
            return; // binary log disabled
        };
        client.query("SET @master_binlog_checksum='NONE'").unwrap();
        client.query("SET @mariadb_slave_capability=4").unwrap();
        let server_id = 4_000_000_000;
        client
            .send_command(&Command::RegisterSlave(RegisterSlave {
                server_id,
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(client.read_packet().unwrap()[0], OK_HEADER);
        client
            .send_command(&Command::BinlogDump(BinlogDump {
                binlog_pos: 4,
                flags: 0,
                server_id,
                binlog_filename: file,
            }))
            .unwrap();
        // Payload: 0x00, then the event header (timestamp u32, type u8, ...).
        let rotate = client.read_packet().unwrap();
        assert_eq!((rotate[0], rotate[5]), (OK_HEADER, 0x04));
        let fde = client.read_packet().unwrap();
        assert_eq!((fde[0], fde[5]), (OK_HEADER, 0x0f));
    }

    /// Against a real server: FERROBUS_TEST_MARIADB_ADDR=127.0.0.1:3306, with
    /// FERROBUS_TEST_MARIADB_USER / FERROBUS_TEST_MARIADB_PASSWORD (default root, empty).
    #[test]
    fn real_mariadb_when_configured() {
        let Ok(addr) = std::env::var("FERROBUS_TEST_MARIADB_ADDR") else {
            return;
        };
        let user = std::env::var("FERROBUS_TEST_MARIADB_USER").unwrap_or_else(|_| "root".into());
        let password = std::env::var("FERROBUS_TEST_MARIADB_PASSWORD").unwrap_or_default();
        let mut client = Client::connect(&addr, &user, &password, TIMEOUT, TIMEOUT).unwrap();
        assert!(client.server_version().contains("MariaDB"));
        let result = client
            .query("SELECT 1 AS one, NULL AS n, 'abc' AS s")
            .unwrap();
        assert_eq!(result.columns, ["one", "n", "s"]);
        assert_eq!(
            result.rows,
            vec![vec![Some("1".to_string()), None, Some("abc".to_string())]]
        );
        let vars = client.query("SHOW VARIABLES LIKE 'server_id'").unwrap();
        assert_eq!(vars.columns, ["Variable_name", "Value"]);
        assert_eq!(client.query("SET @x = 1").unwrap(), QueryResult::default());
        assert_eq!(
            client.query_one_value("SELECT @x").unwrap().as_deref(),
            Some("1")
        );
        match client.query("SELEC 1") {
            Err(NetError::Server(err)) => assert_eq!(err.code, 1064),
            other => panic!("{other:?}"),
        }
        // Still in step after an error.
        client.ping().unwrap();
        let bad = Client::connect(&addr, &user, "definitely-wrong", TIMEOUT, TIMEOUT);
        assert!(matches!(bad, Err(NetError::Server(ref e)) if e.code == ER_ACCESS_DENIED_ERROR));
        // Last: after a dump the connection only streams events.
        read_binlog_start(&mut client);
    }
}
