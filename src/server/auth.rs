//! Logging a downstream client in: the greeting, the client's answer, an auth switch when
//! the client answered with another plugin, and the password check of the configured
//! plugin, ending in OK or ERR 1045.
//!
//! Two plugins, chosen per binlog server ([`AuthPlugin`]):
//! - `mysql_native_password` (the default, what MariaDB replicas use): one round.
//! - `caching_sha2_password` (MySQL 8.0+ replicas; MySQL 9 has nothing else), emulating
//!   MySQL's cache: the first successful login of the account since the binlog server
//!   started takes the full path (AuthMoreData 0x04; the client asks for the RSA public key
//!   with 0x02 and sends its password RSA-OAEP encrypted), which caches
//!   SHA256(SHA256(password)); later logins with the right proof take the fast path (0x03).
//!   ferrobus has no TLS, so a password sent in clear text is refused with a clear error.
//!
//! The RSA key pair comes from `rsa_private_key_path` (PEM, PKCS#8 or PKCS#1) or is
//! generated once per process (2048 bits; a few seconds in a debug build, about a second in
//! release), in the background as soon as a caching_sha2_password server starts.
//!
//! This module decides who may log in; it must not touch the store or the session's
//! commands.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

use crate::limits::RSA_KEY_FILE_BYTES_MAX;
use crate::mysql::auth::{
    self, constant_time_eq, decrypt_password, is_empty_sha2_response, parse_private_key_pem,
    public_key_pem, sha2_double_digest, verify_caching_sha2_cached, SHA2_SCRAMBLE_LEN,
};
use crate::mysql::handshake::{
    self, AuthMoreData, AuthSwitchRequest, HandshakeResponse41, HandshakeV10,
    MYSQL_NATIVE_PASSWORD, SCRAMBLE_LEN, SHA2_FAST_AUTH_SUCCESS, SHA2_PERFORM_FULL_AUTHENTICATION,
    SHA2_REQUEST_PUBLIC_KEY,
};
use crate::mysql::resultset::{ER_ACCESS_DENIED_ERROR, ER_HANDSHAKE_ERROR};
use crate::net::conn::PacketConn;
use crate::net::NetError;

use super::session::{send_err, send_ok};
use super::Shared;

/// RSA key size of a generated key pair, as MySQL's own (`mysql_ssl_rsa_setup`, auto
/// generation).
const RSA_GENERATED_KEY_BITS: usize = 2048;

/// ER_NOT_SUPPORTED_AUTH_MODE: the client cannot follow an auth switch.
const ER_NOT_SUPPORTED_AUTH_MODE: u16 = 1251;

/// Capabilities the binlog server offers.
pub(crate) const SERVER_CAPABILITIES: u32 = handshake::CLIENT_LONG_PASSWORD
    | handshake::CLIENT_FOUND_ROWS
    | handshake::CLIENT_LONG_FLAG
    | handshake::CLIENT_CONNECT_WITH_DB
    | handshake::CLIENT_PROTOCOL_41
    | handshake::CLIENT_TRANSACTIONS
    | handshake::CLIENT_SECURE_CONNECTION
    | handshake::CLIENT_MULTI_RESULTS
    | handshake::CLIENT_PLUGIN_AUTH
    | handshake::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

const STATUS_AUTOCOMMIT: u16 = handshake::SERVER_STATUS_AUTOCOMMIT;

/// The password plugin a binlog server asks for (one type with the client's, in mysql).
pub use crate::mysql::handshake::AuthPlugin;

/// An RSA key pair and the PEM of its public half, as served to clients.
struct RsaKeys {
    private: RsaPrivateKey,
    public_pem: String,
}

impl RsaKeys {
    fn new(private: RsaPrivateKey) -> Result<RsaKeys, String> {
        let public_pem = public_key_pem(&private).map_err(|e| e.to_string())?;
        Ok(RsaKeys {
            private,
            public_pem,
        })
    }
}

/// The key pair generated for this process, shared by every caching_sha2_password server
/// it runs (restarting the binlog server does not cost another generation).
static GENERATED_KEYS: OnceLock<Result<Arc<RsaKeys>, String>> = OnceLock::new();

fn generated_keys() -> Result<Arc<RsaKeys>, String> {
    GENERATED_KEYS
        .get_or_init(|| {
            let started = Instant::now();
            let keys = RsaPrivateKey::new(&mut OsRng, RSA_GENERATED_KEY_BITS)
                .map_err(|e| format!("cannot generate an RSA key pair: {e}"))
                .and_then(RsaKeys::new)?;
            log::info!(
                "binlog server: generated a {RSA_GENERATED_KEY_BITS}-bit RSA key pair for \
                 caching_sha2_password in {:.1} s (set rsa_private_key_path to use a fixed one)",
                started.elapsed().as_secs_f64()
            );
            Ok(Arc::new(keys))
        })
        .clone()
}

/// Where the RSA key pair of a caching_sha2_password server comes from.
enum KeySource {
    Loaded(Arc<RsaKeys>),
    Generated,
}

/// Per binlog server: the plugin, the RSA keys, MySQL's cache emulation and counters.
pub struct AuthState {
    plugin: AuthPlugin,
    keys: KeySource,
    /// user → SHA256(SHA256(password)), filled by a successful full authentication.
    cache: Mutex<HashMap<String, [u8; SHA2_SCRAMBLE_LEN]>>,
    fast_logins: AtomicU64,
    full_logins: AtomicU64,
}

impl AuthState {
    /// For `plugin`; with caching_sha2_password, loads the key at `rsa_private_key_path`,
    /// or starts generating the process's key pair in the background.
    pub fn new(plugin: AuthPlugin, rsa_private_key_path: Option<&str>) -> io::Result<AuthState> {
        let keys = match (plugin, rsa_private_key_path) {
            (AuthPlugin::CachingSha2Password, Some(path)) => {
                KeySource::Loaded(Arc::new(load_keys(path)?))
            }
            (AuthPlugin::CachingSha2Password, None) => {
                // The first full authentication waits for it; start now so it rarely does.
                std::thread::Builder::new()
                    .name("rsa-keygen".into())
                    .spawn(|| {
                        let _ = generated_keys();
                    })?;
                KeySource::Generated
            }
            (AuthPlugin::NativePassword, _) => KeySource::Generated,
        };
        Ok(AuthState {
            plugin,
            keys,
            cache: Mutex::new(HashMap::new()),
            fast_logins: AtomicU64::new(0),
            full_logins: AtomicU64::new(0),
        })
    }

    pub fn plugin(&self) -> AuthPlugin {
        self.plugin
    }

    /// caching_sha2_password logins that took the fast path (cache hit), since start.
    pub fn fast_logins(&self) -> u64 {
        self.fast_logins.load(Ordering::Relaxed)
    }

    /// caching_sha2_password logins that took the full path (RSA), since start.
    pub fn full_logins(&self) -> u64 {
        self.full_logins.load(Ordering::Relaxed)
    }

    fn keys(&self) -> Result<Arc<RsaKeys>, String> {
        match &self.keys {
            KeySource::Loaded(keys) => Ok(keys.clone()),
            KeySource::Generated => generated_keys(),
        }
    }

    fn cached(&self, user: &str) -> Option<[u8; SHA2_SCRAMBLE_LEN]> {
        self.cache
            .lock()
            .expect("auth cache lock")
            .get(user)
            .copied()
    }

    fn remember(&self, user: &str, password: &[u8]) {
        self.cache
            .lock()
            .expect("auth cache lock")
            .insert(user.to_string(), sha2_double_digest(password));
    }
}

fn load_keys(path: &str) -> io::Result<RsaKeys> {
    let cannot_read = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot read the RSA private key file {path} (rsa_private_key_path): {e}"),
        )
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot_read)?
        .take(RSA_KEY_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(cannot_read)?;
    if text.len() as u64 > RSA_KEY_FILE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{path} (rsa_private_key_path) is larger than {RSA_KEY_FILE_BYTES_MAX} bytes: \
                 not a PEM RSA private key"
            ),
        ));
    }
    let invalid = |e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} (rsa_private_key_path): {e}"),
        )
    };
    let private = parse_private_key_pem(&text).map_err(|e| invalid(&e))?;
    RsaKeys::new(private).map_err(|e| invalid(&e))
}

/// How a login that passed went, for the log.
enum Passed {
    Native,
    EmptyPassword,
    Sha2Fast,
    Sha2Full,
}

/// Greets the client, checks its credentials against the binlog server's account, and
/// answers OK (returning the user name) or ERR 1045 (returning an error).
pub fn authenticate<S: Read + Write>(
    conn: &mut PacketConn<S>,
    peer: SocketAddr,
    conn_id: u64,
    shared: &Shared,
) -> Result<String, NetError> {
    let nonce = crate::net::random_nonce()?;
    let view = shared.view();
    let plugin = shared.auth.plugin();
    let greeting = HandshakeV10 {
        protocol_version: 10,
        server_version: shared.handshake_version(&view.version),
        connection_id: conn_id as u32,
        auth_plugin_data: nonce.to_vec(),
        capabilities: SERVER_CAPABILITIES,
        character_set: 45,
        status_flags: STATUS_AUTOCOMMIT,
        auth_plugin_name: plugin.name().to_string(),
        mariadb_capabilities: 0,
    };
    conn.set_seq(0);
    conn.write_packet(&greeting.encode())?;
    conn.flush()?;
    let payload = conn.read_packet()?;
    let response = match HandshakeResponse41::decode(&payload, SERVER_CAPABILITIES) {
        Ok(r) => r,
        Err(e) => {
            send_err(conn, ER_HANDSHAKE_ERROR, "08S01", "Bad handshake")?;
            return Err(NetError::Protocol(e));
        }
    };
    let mut proof = response.auth_response.clone();
    let client_plugin = response
        .auth_plugin_name
        .as_deref()
        .unwrap_or(MYSQL_NATIVE_PASSWORD);
    if client_plugin != plugin.name() {
        if response.capabilities & handshake::CLIENT_PLUGIN_AUTH == 0 {
            let message = format!(
                "Client does not support authentication protocol requested by server; this \
                 binlog server asks for {}",
                plugin.name()
            );
            log::info!("binlog server: refusing {peer}: {message}");
            send_err(conn, ER_NOT_SUPPORTED_AUTH_MODE, "08004", &message)?;
            return Err(NetError::Auth(message));
        }
        let switch = AuthSwitchRequest {
            plugin_name: plugin.name().to_string(),
            plugin_data: nonce.to_vec(),
        };
        conn.write_packet(&switch.encode())?;
        conn.flush()?;
        proof = conn.read_packet()?;
    }
    let args = shared.args();
    let user_ok = response.username == args.user;
    let passed = match plugin {
        AuthPlugin::NativePassword => (user_ok
            && auth::verify_native(args.password.as_bytes(), &nonce, &proof))
        .then_some(Passed::Native),
        // An unknown user goes through the same exchange as a wrong password (and is then
        // refused), so that the answers do not tell which user names exist.
        AuthPlugin::CachingSha2Password => check_sha2(
            conn,
            peer,
            Claim {
                user: &response.username,
                known: user_ok,
            },
            args.password.as_bytes(),
            &nonce,
            &proof,
            &shared.auth,
        )?,
    };
    let Some(passed) = passed else {
        let using = if proof.is_empty() { "NO" } else { "YES" };
        let message = format!(
            "Access denied for user '{}'@'{}' (using password: {using})",
            response.username,
            peer.ip()
        );
        log::info!("binlog server: {message}");
        send_err(conn, ER_ACCESS_DENIED_ERROR, "28000", &message)?;
        return Err(NetError::Auth(message));
    };
    match passed {
        Passed::Sha2Fast => log::info!(
            "binlog server: {}@{peer} logged in with caching_sha2_password (fast path: cached)",
            response.username
        ),
        Passed::Sha2Full => log::info!(
            "binlog server: {}@{peer} logged in with caching_sha2_password (full \
             authentication, RSA-encrypted password; cached until the server stops)",
            response.username
        ),
        Passed::Native | Passed::EmptyPassword => {}
    }
    send_ok(conn)?;
    Ok(response.username)
}

/// The user name a client logs in with, and whether it is the server's account.
struct Claim<'a> {
    user: &'a str,
    known: bool,
}

/// caching_sha2_password after the client's proof: the empty password, the fast path, or
/// the full path over RSA. `None`: wrong password, or an unknown user (who goes through the
/// same exchange, is refused at its end and is never cached). An ERR other than 1045 (clear
/// text without TLS, no RSA key) is sent here and returned as an error.
fn check_sha2<S: Read + Write>(
    conn: &mut PacketConn<S>,
    peer: SocketAddr,
    claim: Claim<'_>,
    password: &[u8],
    nonce: &[u8; SCRAMBLE_LEN],
    proof: &[u8],
    state: &AuthState,
) -> Result<Option<Passed>, NetError> {
    let user = claim.user;
    if password.is_empty() || is_empty_sha2_response(proof) {
        // Nothing to encrypt: MySQL answers an empty password with OK or ERR at once.
        return Ok(
            (claim.known && password.is_empty() && is_empty_sha2_response(proof))
                .then_some(Passed::EmptyPassword),
        );
    }
    // Only the server's account is ever cached, so an unknown user has no fast path.
    if let Some(cached) = state.cached(user) {
        if verify_caching_sha2_cached(&cached, nonce, proof) {
            send_more(conn, &[SHA2_FAST_AUTH_SUCCESS])?;
            state.fast_logins.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Passed::Sha2Fast));
        }
        // As MySQL: a proof that does not match the cache goes to the full path, so that a
        // changed password is checked against the account rather than the cache.
    }
    send_more(conn, &[SHA2_PERFORM_FULL_AUTHENTICATION])?;
    let mut packet = conn.read_packet()?;
    let keys = match state.keys() {
        Ok(keys) => keys,
        Err(why) => {
            let message = format!("caching_sha2_password full authentication impossible: {why}");
            log::error!("binlog server: {peer}: {message}");
            send_err(conn, ER_ACCESS_DENIED_ERROR, "28000", &message)?;
            return Err(NetError::Auth(message));
        }
    };
    if packet == [SHA2_REQUEST_PUBLIC_KEY] {
        send_more(conn, keys.public_pem.as_bytes())?;
        packet = conn.read_packet()?;
    }
    if packet.len() != keys.private.size() {
        // A client that believes the connection is secure sends password + NUL in clear.
        let message = "caching_sha2_password: the client sent its password unencrypted, but \
                       this connection has no TLS (ferrobus has none); let the client request \
                       the server's RSA public key (mysql --get-server-public-key, \
                       GET_SOURCE_PUBLIC_KEY=1) or give it the key file"
            .to_string();
        log::info!("binlog server: refusing {user}@{peer}: {message}");
        send_err(conn, ER_ACCESS_DENIED_ERROR, "28000", &message)?;
        return Err(NetError::Auth(message));
    }
    let sent = match decrypt_password(&packet, nonce, &keys.private, &mut OsRng) {
        Ok(p) => p,
        Err(e) => {
            log::info!("binlog server: {user}@{peer}: caching_sha2_password: {e}");
            return Ok(None);
        }
    };
    if !claim.known || !constant_time_eq(password, &sent) {
        return Ok(None);
    }
    state.remember(user, password);
    state.full_logins.fetch_add(1, Ordering::Relaxed);
    Ok(Some(Passed::Sha2Full))
}

fn send_more<S: Read + Write>(conn: &mut PacketConn<S>, data: &[u8]) -> Result<(), NetError> {
    let more = AuthMoreData {
        data: data.to_vec(),
    };
    conn.write_packet(&more.encode())?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::auth::{
        caching_sha2_auth_response, encrypt_password, native_auth_response, nonce_from_slice,
        parse_public_key_pem, TEST_PRIVATE_KEY_PEM,
    };
    use crate::mysql::handshake::{
        CACHING_SHA2_PASSWORD, CHARSET_UTF8MB4_GENERAL_CI, CLIENT_PROTOCOL_41,
    };
    use crate::mysql::resultset::ErrPacket;
    use crate::server::{BinlogServer, ServerConfig};
    use crate::store::Store;
    use std::net::TcpStream;
    use std::time::Duration;

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// An in-process binlog server over an empty store, account repl / "pw", with the test
    /// RSA key from a file (a generated one takes seconds in a debug build).
    fn start(plugin: AuthPlugin) -> (tempfile::TempDir, BinlogServer) {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("private_key.pem");
        std::fs::write(&key_path, TEST_PRIVATE_KEY_PEM).unwrap();
        let (store, _) = Store::open(&dir.path().join("store")).unwrap();
        let config = ServerConfig {
            addr: "127.0.0.1:0".into(),
            user: "repl".into(),
            password: "pw".into(),
            max_connections: 8,
            auth_plugin: plugin,
            rsa_private_key_path: Some(key_path.to_string_lossy().into_owned()),
            server_uuid: crate::server::node_server_uuid(1, 2),
        };
        let server =
            BinlogServer::start(config, Arc::new(store), "8.0.36-ferrobus".into()).unwrap();
        (dir, server)
    }

    fn mysql_crate_login(server: &BinlogServer, password: &str) -> Result<(), mysql::Error> {
        mysql_crate_login_as(server, "repl", password)
    }

    fn mysql_crate_login_as(
        server: &BinlogServer,
        user: &str,
        password: &str,
    ) -> Result<(), mysql::Error> {
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(server.local_addr().port())
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .max_allowed_packet(Some(1 << 24))
            .read_timeout(Some(TIMEOUT));
        let mut conn = mysql::Conn::new(opts)?;
        conn.ping()?;
        Ok(())
    }

    /// (full, fast) logins the server has counted.
    fn logins(server: &BinlogServer) -> (u64, u64) {
        (server.auth().full_logins(), server.auth().fast_logins())
    }

    fn denied(result: Result<(), mysql::Error>) -> u16 {
        match result {
            Err(mysql::Error::MySqlError(e)) => e.code,
            other => panic!("expected an ERR packet, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_user_is_refused_after_the_full_path_and_never_cached() {
        let (_dir, server) = start(AuthPlugin::CachingSha2Password);
        // The right password under another name: the same exchange, then 1045.
        for _ in 0..2 {
            assert_eq!(
                denied(mysql_crate_login_as(&server, "other", "pw")),
                ER_ACCESS_DENIED_ERROR
            );
        }
        assert_eq!(logins(&server), (0, 0));
        // The account's first login is still a full one.
        mysql_crate_login(&server, "pw").unwrap();
        assert_eq!(logins(&server), (1, 0));
    }

    #[test]
    fn mysql_crate_full_then_fast_path() {
        let (_dir, server) = start(AuthPlugin::CachingSha2Password);
        // No cache entry yet: a wrong password goes the full path and is refused.
        assert_eq!(
            denied(mysql_crate_login(&server, "nope")),
            ER_ACCESS_DENIED_ERROR
        );
        assert_eq!(server.auth().full_logins(), 0);
        mysql_crate_login(&server, "pw").unwrap();
        assert_eq!(logins(&server), (1, 0));
        mysql_crate_login(&server, "pw").unwrap();
        mysql_crate_login(&server, "pw").unwrap();
        assert_eq!(logins(&server), (1, 2));
        // A wrong password after the cache is filled: full path again, refused.
        assert_eq!(
            denied(mysql_crate_login(&server, "pW")),
            ER_ACCESS_DENIED_ERROR
        );
        assert_eq!(logins(&server), (1, 2));
        server.stop();
    }

    #[test]
    fn ferrobus_client_full_then_fast_path() {
        use crate::net::client::{AuthOutcome, Client};
        let (_dir, server) = start(AuthPlugin::CachingSha2Password);
        let addr = server.local_addr().to_string();
        let login = |password: &str| {
            Client::connect(&addr, "repl", password, TIMEOUT, TIMEOUT).map(|c| c.auth_outcome())
        };
        assert_eq!(login("pw").unwrap(), AuthOutcome::Sha2Full);
        assert_eq!(login("pw").unwrap(), AuthOutcome::Sha2Fast);
        match login("wrong") {
            Err(NetError::Server(e)) => assert_eq!(e.code, ER_ACCESS_DENIED_ERROR),
            other => panic!("{other:?}"),
        }
        let other_user = Client::connect(&addr, "root", "pw", TIMEOUT, TIMEOUT);
        assert!(
            matches!(other_user, Err(NetError::Server(ref e)) if e.code == ER_ACCESS_DENIED_ERROR)
        );
        server.stop();
    }

    #[test]
    fn native_default_is_unchanged() {
        let (_dir, server) = start(AuthPlugin::NativePassword);
        mysql_crate_login(&server, "pw").unwrap();
        assert_eq!(
            denied(mysql_crate_login(&server, "nope")),
            ER_ACCESS_DENIED_ERROR
        );
        assert_eq!(logins(&server), (0, 0));
        server.stop();
    }

    /// A client by hand: answers the greeting with `plugin`'s proof.
    fn hand_login(
        server: &BinlogServer,
        plugin: &str,
    ) -> (PacketConn<TcpStream>, [u8; SCRAMBLE_LEN], Vec<u8>) {
        let stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = PacketConn::new(stream, 1 << 20);
        let greeting = HandshakeV10::decode(&conn.read_packet().unwrap()).unwrap();
        assert_eq!(greeting.auth_plugin_name, CACHING_SHA2_PASSWORD);
        let nonce = nonce_from_slice(&greeting.auth_plugin_data).unwrap();
        let proof = match plugin {
            MYSQL_NATIVE_PASSWORD => native_auth_response(b"pw", &nonce),
            _ => caching_sha2_auth_response(b"pw", &nonce),
        };
        let response = HandshakeResponse41 {
            capabilities: SERVER_CAPABILITIES,
            max_packet_size: 1 << 24,
            character_set: CHARSET_UTF8MB4_GENERAL_CI,
            username: "repl".into(),
            auth_response: proof,
            auth_plugin_name: Some(plugin.into()),
            ..Default::default()
        };
        conn.write_packet(&response.encode()).unwrap();
        let answer = conn.read_packet().unwrap();
        (conn, nonce, answer)
    }

    #[test]
    fn native_answer_is_switched_then_full_path_by_hand() {
        let (_dir, server) = start(AuthPlugin::CachingSha2Password);
        let (mut conn, nonce, answer) = hand_login(&server, MYSQL_NATIVE_PASSWORD);
        let switch = AuthSwitchRequest::decode(&answer).unwrap();
        assert_eq!(switch.plugin_name, CACHING_SHA2_PASSWORD);
        assert_eq!(switch.plugin_data, nonce);
        conn.write_packet(&caching_sha2_auth_response(b"pw", &nonce))
            .unwrap();
        assert_eq!(conn.read_packet().unwrap(), [0x01, 0x04]);
        // A password in clear text (what a client on TLS would send) is refused.
        conn.write_packet(b"pw\0").unwrap();
        let err = ErrPacket::decode(&conn.read_packet().unwrap()).unwrap();
        assert_eq!(err.code, ER_ACCESS_DENIED_ERROR);
        assert!(err.message.contains("no TLS"), "{}", err.message);

        // Again, asking for the key this time.
        let (mut conn, nonce, answer) = hand_login(&server, CACHING_SHA2_PASSWORD);
        assert_eq!(answer, [0x01, 0x04]);
        conn.write_packet(&[SHA2_REQUEST_PUBLIC_KEY]).unwrap();
        let pem = AuthMoreData::decode(&conn.read_packet().unwrap())
            .unwrap()
            .data;
        let key = parse_public_key_pem(&pem).unwrap();
        let encrypted = encrypt_password(b"pw", &nonce, &key, &mut OsRng).unwrap();
        conn.write_packet(&encrypted).unwrap();
        assert_eq!(conn.read_packet().unwrap()[0], 0x00);
        // Cached now: the fast path, 01 03 then OK.
        let (mut conn, _, answer) = hand_login(&server, CACHING_SHA2_PASSWORD);
        assert_eq!(answer, [0x01, 0x03]);
        assert_eq!(conn.read_packet().unwrap()[0], 0x00);
        server.stop();
    }

    #[test]
    fn client_without_plugin_auth_cannot_be_switched() {
        let (_dir, server) = start(AuthPlugin::CachingSha2Password);
        let stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = PacketConn::new(stream, 1 << 20);
        conn.read_packet().unwrap();
        let response = HandshakeResponse41 {
            capabilities: CLIENT_PROTOCOL_41 | handshake::CLIENT_SECURE_CONNECTION,
            max_packet_size: 1 << 24,
            character_set: CHARSET_UTF8MB4_GENERAL_CI,
            username: "repl".into(),
            auth_response: vec![0; 20],
            ..Default::default()
        };
        conn.write_packet(&response.encode()).unwrap();
        let err = ErrPacket::decode(&conn.read_packet().unwrap()).unwrap();
        assert_eq!(err.code, ER_NOT_SUPPORTED_AUTH_MODE);
        server.stop();
    }

    #[test]
    fn bad_key_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let missing = AuthState::new(AuthPlugin::CachingSha2Password, path.to_str())
            .err()
            .unwrap();
        assert!(missing.to_string().contains("key.pem"), "{missing}");
        std::fs::write(&path, "not a key").unwrap();
        let bad = AuthState::new(AuthPlugin::CachingSha2Password, path.to_str())
            .err()
            .unwrap();
        assert!(bad.to_string().contains("rsa_private_key_path"), "{bad}");
        std::fs::write(&path, vec![b'x'; RSA_KEY_FILE_BYTES_MAX as usize + 1]).unwrap();
        let huge = AuthState::new(AuthPlugin::CachingSha2Password, path.to_str())
            .err()
            .unwrap();
        assert!(huge.to_string().contains("larger than"), "{huge}");
        // The native plugin never reads it.
        assert!(AuthState::new(AuthPlugin::NativePassword, path.to_str()).is_ok());
    }

    #[test]
    fn plugin_names() {
        for plugin in [AuthPlugin::NativePassword, AuthPlugin::CachingSha2Password] {
            assert_eq!(AuthPlugin::parse(plugin.name()), Some(plugin));
        }
        assert_eq!(AuthPlugin::parse("sha256_password"), None);
        assert_eq!(AuthPlugin::default(), AuthPlugin::NativePassword);
    }
}
