//! A deliberately minimal MySQL protocol client for abuse tests: raw packets, a
//! mysql_native_password login, COM_QUERY, and "what did the server do next" (an OK, an
//! ERR, a closed connection, or nothing at all within a bound).
//!
//! It exists so tests can send what no real client sends (garbage, truncated packets,
//! unknown commands) and check that the server answers with an error or closes that one
//! connection, without hanging. It is not a general client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::util::{fail, Context, Result};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;

pub const COM_QUERY: u8 = 0x03;

/// What the server did after we sent something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Err {
        code: u16,
        message: String,
    },
    /// Any other packet; its first byte (a result set starts with the column count).
    Other(u8),
    /// EOF or reset: the server closed this connection.
    Closed,
    /// Nothing within the bound.
    Silent,
}

impl Outcome {
    /// An error packet or a closed connection: the answer to input that makes no sense.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Outcome::Err { .. } | Outcome::Closed)
    }
}

pub struct Greeting {
    pub server_version: String,
    pub scramble: Vec<u8>,
}

pub struct RawConn {
    stream: TcpStream,
    pub greeting: Option<Greeting>,
}

impl RawConn {
    /// Connects to 127.0.0.1:`port` with a read timeout of `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> Result<RawConn> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            greeting: None,
        })
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .context(|| "writing raw bytes".to_string())
    }

    /// Writes one packet (payload under 16 MiB).
    pub fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<()> {
        assert!(
            payload.len() < 0xff_ffff,
            "write_packet: payload too big for one packet"
        );
        let len = payload.len() as u32;
        let mut bytes = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        bytes.extend_from_slice(payload);
        self.write_raw(&bytes)
    }

    /// Half-closes: the server reads EOF after what was sent.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads one packet: Ok(None) on EOF / reset, Err on timeout.
    pub fn read_packet(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut header) {
            return closed_or_err(e);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        if let Err(e) = self.stream.read_exact(&mut payload) {
            return closed_or_err(e);
        }
        Ok(Some((header[3], payload)))
    }

    /// What the server sent next (one packet), or that it closed or stayed silent.
    pub fn outcome(&mut self) -> Outcome {
        match self.read_packet() {
            Ok(Some((_, payload))) => classify(&payload),
            Ok(None) => Outcome::Closed,
            Err(_) => Outcome::Silent,
        }
    }

    /// Reads and parses the server greeting (HandshakeV10).
    pub fn read_greeting(&mut self) -> Result<&Greeting> {
        let payload = match self.read_packet() {
            Ok(Some((_, p))) => p,
            Ok(None) => return fail("server closed the connection before its greeting"),
            Err(e) => return fail(format!("reading the greeting: {e}")),
        };
        let greeting = parse_greeting(&payload)?;
        Ok(self.greeting.insert(greeting))
    }

    /// Logs in with mysql_native_password. Ok(Ok(())) logged in; Ok(Err(outcome)) the
    /// server refused (an ERR) or did something else.
    pub fn login(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<std::result::Result<(), Outcome>> {
        if self.greeting.is_none() {
            self.read_greeting()?;
        }
        let scramble = self
            .greeting
            .as_ref()
            .map(|g| g.scramble.clone())
            .unwrap_or_default();
        let caps = CLIENT_LONG_PASSWORD
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH;
        let token = native_password_token(password, &scramble);
        let mut p = Vec::new();
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(1u32 << 30).to_le_bytes());
        p.push(33); // utf8_general_ci
        p.extend_from_slice(&[0u8; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(token.len() as u8);
        p.extend_from_slice(&token);
        p.extend_from_slice(b"mysql_native_password\0");
        self.write_packet(1, &p)?;
        let (seq, reply) = match self.read_packet() {
            Ok(Some(pkt)) => pkt,
            Ok(None) => return Ok(Err(Outcome::Closed)),
            Err(_) => return Ok(Err(Outcome::Silent)),
        };
        if reply.first() == Some(&0xfe) && reply.len() > 1 {
            // Auth switch request: plugin name NUL, then new scramble (NUL-terminated).
            let rest = &reply[1..];
            let nul = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let plugin = String::from_utf8_lossy(&rest[..nul]).into_owned();
            if plugin != "mysql_native_password" {
                return fail(format!("server asked for auth plugin {plugin}"));
            }
            let data = rest.get(nul + 1..).unwrap_or(&[]);
            let new_scramble: Vec<u8> = data.iter().copied().take(20).collect();
            self.write_packet(
                seq.wrapping_add(1),
                &native_password_token(password, &new_scramble),
            )?;
            return Ok(match self.outcome() {
                Outcome::Ok => Ok(()),
                other => Err(other),
            });
        }
        Ok(match classify(&reply) {
            Outcome::Ok => Ok(()),
            other => Err(other),
        })
    }

    /// Sends one command packet (sequence 0) and returns what came back first.
    pub fn command(&mut self, payload: &[u8]) -> Result<Outcome> {
        self.write_packet(0, payload)?;
        Ok(self.outcome())
    }

    /// COM_QUERY and the first packet of the answer; a result set is drained so the
    /// connection can be used again.
    pub fn query(&mut self, sql: &str) -> Result<Outcome> {
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        let first = self.command(&p)?;
        if let Outcome::Other(_) = first {
            self.drain_result_set()?;
        }
        Ok(first)
    }

    /// Reads a text result set after its column-count packet: column definitions, EOF,
    /// rows, EOF (we never set CLIENT_DEPRECATE_EOF).
    fn drain_result_set(&mut self) -> Result<()> {
        let mut eofs = 0;
        while eofs < 2 {
            match self.read_packet() {
                Ok(Some((_, p))) if p.first() == Some(&0xfe) && p.len() < 9 => eofs += 1,
                Ok(Some((_, p))) if p.first() == Some(&0xff) => {
                    return fail(format!("error inside a result set: {:?}", classify(&p)))
                }
                Ok(Some(_)) => {}
                Ok(None) => return fail("connection closed inside a result set"),
                Err(e) => return fail(format!("reading a result set: {e}")),
            }
        }
        Ok(())
    }
}

fn closed_or_err<T>(e: std::io::Error) -> std::io::Result<Option<T>> {
    use std::io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => Ok(None),
        _ => Err(e),
    }
}

fn classify(payload: &[u8]) -> Outcome {
    match payload.first() {
        Some(0x00) => Outcome::Ok,
        Some(0xff) => {
            let code = match payload.get(1..3) {
                Some(b) => u16::from_le_bytes([b[0], b[1]]),
                None => 0,
            };
            let rest = payload.get(3..).unwrap_or(&[]);
            let text = if rest.first() == Some(&b'#') {
                rest.get(6..).unwrap_or(&[])
            } else {
                rest
            };
            Outcome::Err {
                code,
                message: String::from_utf8_lossy(text).into_owned(),
            }
        }
        Some(&b) => Outcome::Other(b),
        None => Outcome::Other(0),
    }
}

fn parse_greeting(p: &[u8]) -> Result<Greeting> {
    let bad = || {
        format!(
            "malformed greeting ({} bytes): {:02x?}",
            p.len(),
            &p[..p.len().min(64)]
        )
    };
    if p.first() != Some(&10) {
        return fail(bad());
    }
    let nul = p[1..].iter().position(|&b| b == 0).ok_or_else(bad)? + 1;
    let server_version = String::from_utf8_lossy(&p[1..nul]).into_owned();
    let mut at = nul + 1 + 4; // connection id
    let auth1 = p.get(at..at + 8).ok_or_else(bad)?.to_vec();
    at += 8 + 1 + 2 + 1 + 2 + 2; // filler, caps low, charset, status, caps high
    let auth_len = *p.get(at).ok_or_else(bad)? as usize;
    at += 1 + 10;
    let auth2_len = auth_len.saturating_sub(8).max(13);
    let auth2 = p.get(at..at + auth2_len).ok_or_else(bad)?;
    let mut scramble = auth1;
    scramble.extend(auth2.iter().take_while(|&&b| b != 0).take(12));
    Ok(Greeting {
        server_version,
        scramble,
    })
}

/// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); empty password → empty token.
pub fn native_password_token(password: &str, scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}
