//! A TCP proxy in front of one ferrobus node's Raft peer port that the test controls, to cut
//! a node off from the others without touching the nodes: it reads each connection's hello
//! (8-byte magic, sender's raft id, cluster id), and refuses or cuts connections from the
//! senders it blocks, or every connection when the node it fronts is isolated.
//!
//! Every thread ends when the proxy is dropped (its listener is woken and every socket shut
//! down).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::util::Result;

/// Bytes of the transport's hello.
const HELLO_LEN: usize = 24;

struct Shared {
    target: String,
    /// Drop everything (the fronted node is cut off from the others).
    isolated: AtomicBool,
    /// Raft ids whose connections are refused (the cut-off node, seen from the others).
    blocked: Mutex<BTreeSet<u64>>,
    /// Open pairs: (sender id, client socket, target socket).
    open: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    stop: AtomicBool,
}

pub struct PeerProxy {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl PeerProxy {
    /// Listens on 127.0.0.1:`port` and forwards to `target`.
    pub fn start(port: u16, target: &str) -> Result<PeerProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let shared = Arc::new(Shared {
            target: target.to_string(),
            isolated: AtomicBool::new(false),
            blocked: Mutex::new(BTreeSet::new()),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    thread::spawn(move || serve(conn, &s));
                }
            }
        });
        Ok(PeerProxy {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// Cuts the fronted node off (true) or lets it talk again (false); open connections are
    /// cut at once.
    pub fn set_isolated(&self, isolated: bool) {
        self.shared.isolated.store(isolated, Ordering::SeqCst);
        if isolated {
            self.cut(|_| true);
        }
    }

    /// Refuses (and cuts) connections from raft node `id`, or lets them through again.
    pub fn set_blocked(&self, id: u64, blocked: bool) {
        let mut set = self.shared.blocked.lock().unwrap();
        if blocked {
            set.insert(id);
        } else {
            set.remove(&id);
        }
        drop(set);
        if blocked {
            self.cut(|sender| sender == id);
        }
    }

    fn cut(&self, which: impl Fn(u64) -> bool) {
        let mut open = self.shared.open.lock().unwrap();
        open.retain(|(sender, a, b)| {
            if which(*sender) {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }
}

impl Drop for PeerProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut(|_| true);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut hello = [0u8; HELLO_LEN];
    if client.read_exact(&mut hello).is_err() {
        return;
    }
    let sender = u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes"));
    let refused = shared.isolated.load(Ordering::SeqCst)
        || shared.blocked.lock().unwrap().contains(&sender)
        || shared.stop.load(Ordering::SeqCst);
    if refused {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(mut target) = TcpStream::connect(&shared.target) else {
        return;
    };
    if target.write_all(&hello).is_err() {
        return;
    }
    let _ = client.set_read_timeout(None);
    let (Ok(c2), Ok(t2)) = (client.try_clone(), target.try_clone()) else {
        return;
    };
    if let (Ok(c3), Ok(t3)) = (client.try_clone(), target.try_clone()) {
        shared.open.lock().unwrap().push((sender, c3, t3));
    }
    let up = thread::spawn(move || pump(client, target));
    pump(t2, c2);
    let _ = up.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
