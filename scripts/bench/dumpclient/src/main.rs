//! Benchmark client for `make bench`: N concurrent non-blocking binlog dumps (COM_BINLOG_DUMP
//! with BINLOG_DUMP_NON_BLOCK and BINLOG_SEND_ANNOTATE_ROWS_EVENT) of a whole binlog from one server, MariaDB or ferrobus; every
//! event is counted and dropped, so the client costs as little CPU as possible and the server
//! side is what gets measured.
//!
//! Usage: dumpclient HOST:PORT USER PASSWORD FIRST_FILE CLIENTS SERVER_ID_BASE
//! Prints one JSON line: clients, seconds (wall, from the first dump request to the last EOF),
//! bytes and events summed over the clients, per-client min/max seconds and bytes.
//! Exits 1 if any client fails (ERR packet, connection loss, bad handshake).
//!
//! It must not write anything anywhere but stdout/stderr. Std only: the protocol bits it needs
//! (handshake v10, mysql_native_password with its own SHA-1, COM_QUERY, COM_BINLOG_DUMP) are
//! written out here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;
const MAX_PACKET: u32 = 1 << 24;
const CHARSET_UTF8: u8 = 33;
const COM_QUERY: u8 = 0x03;
const COM_BINLOG_DUMP: u8 = 0x12;
const BINLOG_DUMP_NON_BLOCK: u16 = 1;
/// Without it MariaDB leaves ANNOTATE_ROWS events out (a quarter of a sysbench binlog);
/// mariadb-binlog and ferrobus's syncer ask for them, so the clients read every event too.
const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 2;
const NATIVE: &str = "mysql_native_password";
const READ_BUFFER_BYTES: usize = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(120);
const FULL_PACKET: usize = 0xFF_FFFF;

type Res<T> = Result<T, String>;

struct Conn {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
    seq: u8,
}

impl Conn {
    fn connect(addr: &str) -> Res<Conn> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let wr = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn {
            rd: BufReader::with_capacity(READ_BUFFER_BYTES, s),
            wr,
            seq: 0,
        })
    }

    fn header(&mut self) -> Res<usize> {
        let mut h = [0u8; 4];
        self.rd
            .read_exact(&mut h)
            .map_err(|e| format!("read header: {e}"))?;
        self.seq = h[3].wrapping_add(1);
        Ok(usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16)
    }

    /// A whole (small) packet; used for the handshake and command replies only.
    fn read_packet(&mut self) -> Res<Vec<u8>> {
        let len = self.header()?;
        let mut p = vec![0u8; len];
        self.rd
            .read_exact(&mut p)
            .map_err(|e| format!("read packet: {e}"))?;
        Ok(p)
    }

    fn write_packet(&mut self, payload: &[u8]) -> Res<()> {
        let len = payload.len();
        let mut out = Vec::with_capacity(len + 4);
        out.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq]);
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.wr.write_all(&out).map_err(|e| format!("write: {e}"))
    }

    /// Reads `len` payload bytes and drops them; returns the first byte (if any).
    fn skip(&mut self, mut len: usize) -> Res<Option<u8>> {
        let mut first = None;
        while len > 0 {
            let buf = self.rd.fill_buf().map_err(|e| format!("read event: {e}"))?;
            if buf.is_empty() {
                return Err("connection closed mid-packet".into());
            }
            if first.is_none() {
                first = Some(buf[0]);
            }
            let n = buf.len().min(len);
            self.rd.consume(n);
            len -= n;
        }
        Ok(first)
    }
}

fn err_text(p: &[u8]) -> String {
    let code = if p.len() >= 3 {
        u16::from_le_bytes([p[1], p[2]])
    } else {
        0
    };
    let msg = if p.len() > 9 {
        String::from_utf8_lossy(&p[9..]).to_string()
    } else {
        String::new()
    };
    format!("ERR {code}: {msg}")
}

fn expect_ok(p: &[u8], what: &str) -> Res<()> {
    match p.first() {
        Some(0x00) => Ok(()),
        Some(0xFF) => Err(format!("{what}: {}", err_text(p))),
        _ => Err(format!(
            "{what}: unexpected reply {:02x?}",
            &p[..p.len().min(16)]
        )),
    }
}

fn cstr(p: &[u8], at: usize) -> Res<(&[u8], usize)> {
    let rest = p.get(at..).ok_or("short handshake")?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or("unterminated string")?;
    Ok((&rest[..end], at + end + 1))
}

/// (20-byte nonce, plugin name) from a HandshakeV10 payload.
fn parse_handshake(p: &[u8]) -> Res<(Vec<u8>, String)> {
    if p.first() != Some(&10) {
        return Err(format!(
            "not a v10 handshake: {:02x?}",
            &p[..p.len().min(16)]
        ));
    }
    let (_, mut at) = cstr(p, 1)?;
    at += 4; // connection id
    let mut nonce = p.get(at..at + 8).ok_or("short handshake")?.to_vec();
    at += 8 + 1 + 2 + 1 + 2 + 2; // filler, caps low, charset, status, caps high
    let data_len = usize::from(*p.get(at).ok_or("short handshake")?);
    at += 1 + 10;
    let part2 = data_len.saturating_sub(8).max(13);
    let tail = p.get(at..at + part2).ok_or("short handshake")?;
    nonce.extend_from_slice(&tail[..12]);
    at += part2;
    let plugin = match cstr(p, at) {
        Ok((name, _)) => String::from_utf8_lossy(name).to_string(),
        Err(_) => NATIVE.to_string(),
    };
    Ok((nonce, plugin))
}

fn native_scramble(password: &str, nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = sha1(password.as_bytes());
    let h2 = sha1(&h1);
    let mut salted = nonce.to_vec();
    salted.extend_from_slice(&h2);
    let h3 = sha1(&salted);
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

fn login(addr: &str, user: &str, password: &str) -> Res<Conn> {
    let mut c = Conn::connect(addr)?;
    let hs = c.read_packet()?;
    if hs.first() == Some(&0xFF) {
        return Err(format!("handshake: {}", err_text(&hs)));
    }
    let (nonce, _plugin) = parse_handshake(&hs)?;
    let caps = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_PLUGIN_AUTH;
    let mut r = Vec::new();
    r.extend_from_slice(&caps.to_le_bytes());
    r.extend_from_slice(&MAX_PACKET.to_le_bytes());
    r.push(CHARSET_UTF8);
    r.extend_from_slice(&[0u8; 23]);
    r.extend_from_slice(user.as_bytes());
    r.push(0);
    let auth = native_scramble(password, &nonce);
    r.push(auth.len() as u8);
    r.extend_from_slice(&auth);
    r.extend_from_slice(NATIVE.as_bytes());
    r.push(0);
    c.write_packet(&r)?;
    let mut reply = c.read_packet()?;
    if reply.first() == Some(&0xFE) {
        // Auth switch: plugin name, then new nonce (NUL-terminated).
        let (name, at) = cstr(&reply, 1)?;
        if name != NATIVE.as_bytes() {
            return Err(format!(
                "server wants auth plugin {}",
                String::from_utf8_lossy(name)
            ));
        }
        let data = &reply[at..];
        let data = data.strip_suffix(&[0]).unwrap_or(data);
        let auth = native_scramble(password, data);
        c.write_packet(&auth)?;
        reply = c.read_packet()?;
    }
    expect_ok(&reply, "login")?;
    Ok(c)
}

fn query(c: &mut Conn, sql: &str) -> Res<()> {
    c.seq = 0;
    let mut p = vec![COM_QUERY];
    p.extend_from_slice(sql.as_bytes());
    c.write_packet(&p)?;
    let reply = c.read_packet()?;
    expect_ok(&reply, sql)
}

struct Outcome {
    start: Instant,
    end: Instant,
    bytes: u64,
    events: u64,
}

fn dump(
    addr: &str,
    user: &str,
    password: &str,
    file: &str,
    server_id: u32,
    start: &Barrier,
) -> Res<Outcome> {
    let mut c = login(addr, user, password)?;
    query(&mut c, "SET @master_binlog_checksum='CRC32'")?;
    query(&mut c, "SET @mariadb_slave_capability=4")?;
    start.wait();
    let t0 = Instant::now();
    c.seq = 0;
    let mut p = vec![COM_BINLOG_DUMP];
    p.extend_from_slice(&4u32.to_le_bytes());
    p.extend_from_slice(&(BINLOG_DUMP_NON_BLOCK | BINLOG_SEND_ANNOTATE_ROWS_EVENT).to_le_bytes());
    p.extend_from_slice(&server_id.to_le_bytes());
    p.extend_from_slice(file.as_bytes());
    c.write_packet(&p)?;
    let (mut bytes, mut events) = (0u64, 0u64);
    let mut continued = false;
    loop {
        let len = c.header()?;
        if continued {
            c.skip(len)?;
        } else if len < 9 && len > 0 {
            // Could be EOF (0xFE) or a short ERR: read it whole.
            let mut small = vec![0u8; len];
            c.rd.read_exact(&mut small)
                .map_err(|e| format!("read: {e}"))?;
            match small[0] {
                0xFE => break,
                0xFF => return Err(err_text(&small)),
                _ => events += 1,
            }
        } else {
            let first = if len > 0 { c.skip(len)? } else { None };
            match first {
                Some(0x00) => events += 1,
                // An ERR longer than 8 bytes: its text was skipped with the payload.
                Some(0xFF) => return Err("ERR packet during dump (see the server's log)".into()),
                other => return Err(format!("unexpected packet starting {other:02x?}")),
            }
        }
        bytes += len as u64;
        continued = len == FULL_PACKET;
    }
    Ok(Outcome {
        start: t0,
        end: Instant::now(),
        bytes,
        events,
    })
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: dumpclient HOST:PORT USER PASSWORD FIRST_FILE CLIENTS SERVER_ID_BASE");
        std::process::exit(2);
    }
    let clients: usize = a[5].parse().expect("CLIENTS is a number");
    let base: u32 = a[6].parse().expect("SERVER_ID_BASE is a number");
    // Every client logs in first; the clock starts when all are ready to send the dump.
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::new();
    for i in 0..clients {
        let (addr, user, pw, file) = (a[1].clone(), a[2].clone(), a[3].clone(), a[4].clone());
        let b = barrier.clone();
        handles.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let r = dump(&addr, &user, &pw, &file, base + i as u32, &b);
                    if r.is_err() {
                        // Never leave the others waiting at the barrier forever.
                        b.wait();
                    }
                    r
                })
                .expect("spawn"),
        );
    }
    barrier.wait();
    let mut outs = Vec::new();
    let mut failed = false;
    for h in handles {
        match h.join().expect("client thread") {
            Ok(o) => outs.push(o),
            Err(e) => {
                eprintln!("dumpclient: {e}");
                failed = true;
            }
        }
    }
    if failed || outs.is_empty() {
        std::process::exit(1);
    }
    // Wall time from the first client's dump request to the last client's EOF, taken in the
    // client threads (the main thread may be scheduled late on a busy machine).
    let first = outs.iter().map(|o| o.start).min().expect("non-empty");
    let last = outs.iter().map(|o| o.end).max().expect("non-empty");
    let seconds = last.duration_since(first).as_secs_f64();
    let secs = |o: &Outcome| o.end.duration_since(o.start).as_secs_f64();
    let bytes: u64 = outs.iter().map(|o| o.bytes).sum();
    let events: u64 = outs.iter().map(|o| o.events).sum();
    let min_s = outs.iter().map(secs).fold(f64::MAX, f64::min);
    let max_s = outs.iter().map(secs).fold(0.0, f64::max);
    let min_b = outs.iter().map(|o| o.bytes).min().unwrap_or(0);
    let max_b = outs.iter().map(|o| o.bytes).max().unwrap_or(0);
    println!(
        "{{\"clients\": {clients}, \"seconds\": {seconds:.6}, \"bytes\": {bytes}, \"events\": {events}, \
         \"client_min_s\": {min_s:.6}, \"client_max_s\": {max_s:.6}, \"client_min_bytes\": {min_b}, \
         \"client_max_bytes\": {max_b}}}"
    );
}

/// SHA-1 (FIPS 180-4), only for mysql_native_password.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }
}
