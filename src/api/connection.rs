//! The TCP socket under an admin request: tiny_http (0.12) neither sets a read timeout on
//! the connections it accepts nor hands their sockets out, so a request body that stops
//! arriving would hold the worker reading it forever. This finds the socket by the
//! request's peer address among this process's open descriptors, so that every request's
//! reads and writes are bounded (`HTTP_IO_TIMEOUT_MS`), an import's body reads more tightly
//! (`IMPORT_BODY_STALL_MS`), and an import can close a connection whose body it will not
//! read. Linux only (`/proc/self/fd`); elsewhere nothing is found and the caller says so.
//! It never closes or replaces a descriptor it does not own.

use std::fs;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, RawFd};

/// A new handle (a duplicated descriptor) on this process's TCP socket whose peer is
/// `peer`. An accepted connection is the only socket of the process with a given remote
/// address and port: the client holds that port, so no other connection of this process
/// can have it as its far end.
pub fn socket_to_peer(peer: SocketAddr) -> Option<TcpStream> {
    let entries = fs::read_dir("/proc/self/fd").ok()?;
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is borrowed, never closed (ManuallyDrop): only queried
        // (getpeername) and, when it is the socket sought, duplicated. A descriptor closed
        // meanwhile makes these calls fail (EBADF), which is skipped; one reused meanwhile
        // is taken only if it is a socket to the same peer, i.e. the same connection.
        let borrowed = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if borrowed.peer_addr().ok() == Some(peer) {
            return borrowed.try_clone().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::time::Duration;

    #[test]
    fn finds_the_accepted_socket_of_a_client() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let found = socket_to_peer(peer).unwrap();
        assert_eq!(found.local_addr().unwrap(), accepted.local_addr().unwrap());
        // A read timeout set through it bounds reads on the accepted socket.
        found
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let err = (&accepted).read(&mut [0u8; 8]).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        // A shutdown through it ends the connection for the client.
        client.write_all(b"x").unwrap();
        found.shutdown(Shutdown::Both).unwrap();
        // The server side never writes, so the client's read must end (EOF, or a reset
        // because its byte was never read); a shutdown that did nothing would leave the read
        // waiting, which the timeout turns into a failure instead of a hang.
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match client.read(&mut [0u8; 8]) {
            Ok(0) => {}
            Ok(n) => panic!("the client read {n} bytes after the shutdown"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the shutdown did not end the connection for the client: {e}")
            }
            Err(e) => panic!("the client's read failed unexpectedly: {e}"),
        }
        // Not a peer of this process.
        assert!(socket_to_peer("127.0.0.1:1".parse().unwrap()).is_none());
    }
}
