//! Leader forwarding: a follower sends a leader-only admin request (same method, path and
//! body) to the leader's admin API and relays the leader's status code and body unchanged.
//!
//! One hop only: the forwarded request carries [`FORWARDED_HEADER`], and a node that
//! receives such a request without being the leader answers 503 instead of forwarding
//! again, so two nodes that each believe the other leads cannot bounce a request between
//! them. Each call uses a fresh connection (no pool: the leader changes, and an idle
//! socket to a dead leader is worth nothing) with a timeout, FORWARD_TIMEOUT_MS.
//!
//! This module decides nothing about who leads (the backend says, see `ClusterRoute`) and
//! never retries.

use std::io::Read;
use std::time::Duration;

use super::routes::Reply;
use super::ApiError;
use crate::limits::{FORWARD_REPLY_BYTES_MAX, FORWARD_TIMEOUT_MS, IMPORT_TIMEOUT_MS};

/// Header that marks a request forwarded by a follower.
pub const FORWARDED_HEADER: &str = "X-Ferrobus-Forwarded";

/// Set on a leader's 503 after it handed leadership over instead of making a change
/// itself (see `ApiError::handed_over`): the node that forwarded the request may send it
/// once more, to the new leader.
pub const HANDED_OVER_HEADER: &str = "X-Ferrobus-Handed-Over";

/// The 503 message when no leader is known.
pub const NO_LEADER_MESSAGE: &str =
    "no leader is known; the cluster may be electing one or has lost its quorum";

/// The 503 message for a forwarded request that reached a node that does not lead.
pub const NOT_LEADER_MESSAGE: &str = "forwarded request reached a node that is not the leader";

/// Sends the request to the leader at `leader_admin` (`host:port`) and returns its reply
/// as is, or a 502 naming the leader when it cannot be reached or its reply cannot be
/// read (504 when it does not answer in time). `target` is the request target as received (path and query).
pub fn forward(method: &str, target: &str, body: &[u8], leader_admin: &str) -> Reply {
    forward_within(FORWARD_TIMEOUT_MS, method, target, body, leader_admin)
}

fn forward_within(
    timeout_ms: u64,
    method: &str,
    target: &str,
    body: &[u8],
    leader_admin: &str,
) -> Reply {
    relay(
        method,
        target,
        leader_admin,
        timeout_ms,
        send(timeout_ms, method, target, body, leader_admin),
    )
}

/// The leader's reply as is, or a 502 naming the leader when it could not be had (504 when
/// it did not answer in time: the outcome is unknown).
fn relay(
    method: &str,
    target: &str,
    leader_admin: &str,
    timeout_ms: u64,
    outcome: Result<(u16, String, bool), ureq::Error>,
) -> Reply {
    match outcome {
        Ok((status, body, handed_over)) => Reply {
            status,
            body,
            allow: None,
            handed_over,
        },
        Err(ureq::Error::Timeout(_)) => {
            log::warn!(
                "admin API: the leader at {leader_admin} did not answer {method} {target} \
                 within {timeout_ms} ms"
            );
            Reply::error(&ApiError::new(
                504,
                format!(
                    "the leader at {leader_admin} did not answer within {} s; the request \
                     may still take effect there: look (GET /members, GET \
                     /binlog/syncer/status) before retrying",
                    timeout_ms / 1000
                ),
            ))
        }
        Err(error) => {
            log::warn!("admin API: forwarding {method} {target} to the leader at {leader_admin} failed: {error}");
            Reply::error(&ApiError::new(
                502,
                format!("cannot forward the request to the leader at {leader_admin}: {error}"),
            ))
        }
    }
}

/// Sends an import (`body` is the binlog file, streamed as it is read, never held whole)
/// to the leader and returns its reply as is, or a 502 as [`forward`] does. The caller
/// bounds `body` (IMPORT_FILE_BYTES_MAX); the timeout is IMPORT_TIMEOUT_MS, since the
/// leader answers only once the whole file is stored.
pub fn forward_stream(
    method: &str,
    target: &str,
    body: &mut dyn Read,
    leader_admin: &str,
) -> Reply {
    let outcome = builder(method, target, leader_admin)
        .header("Content-Type", "application/octet-stream")
        .body(ureq::SendBody::from_reader(body))
        .map_err(ureq::Error::from)
        .and_then(|request| run(IMPORT_TIMEOUT_MS, request));
    relay(method, target, leader_admin, IMPORT_TIMEOUT_MS, outcome)
}

/// An HTTP client for a node's admin API (forwarding, `ctl`): every status is an answer to
/// relay or print; no proxy (nodes are reached directly, an HTTP_PROXY meant for the
/// internet must not capture them) and no redirects; no pooled keep-alive connections
/// (tiny_http 0.12 can leave a new connection unserved while its threads sit on idle
/// keep-alive ones, see the README's known limitations).
pub fn admin_agent(timeout_ms: u64) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
        .new_agent()
}

fn send(
    timeout_ms: u64,
    method: &str,
    target: &str,
    body: &[u8],
    leader_admin: &str,
) -> Result<(u16, String, bool), ureq::Error> {
    let builder = builder(method, target, leader_admin);
    if body.is_empty() {
        run(timeout_ms, builder.body(())?)
    } else {
        let request = builder
            .header("Content-Type", "application/json")
            .body(body)?;
        run(timeout_ms, request)
    }
}

/// The forwarded request to the leader, without its body.
fn builder(method: &str, target: &str, leader_admin: &str) -> ureq::http::request::Builder {
    ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{leader_admin}{target}"))
        .header(FORWARDED_HEADER, "1")
}

/// Runs `request` and reads the leader's status and reply (at most FORWARD_REPLY_BYTES_MAX),
/// and whether the reply says the leader handed leadership over.
fn run(
    timeout_ms: u64,
    request: ureq::http::Request<impl ureq::AsSendBody>,
) -> Result<(u16, String, bool), ureq::Error> {
    let mut response = admin_agent(timeout_ms).run(request)?;
    let status = response.status().as_u16();
    let handed_over = response.headers().contains_key(HANDED_OVER_HEADER);
    let text = response
        .body_mut()
        .with_config()
        .limit(FORWARD_REPLY_BYTES_MAX)
        .read_to_string()?;
    Ok((status, text, handed_over))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leader that takes the request and never answers: the outcome is unknown, which
    /// is a 504 saying so, not a 502 "cannot forward".
    #[test]
    fn a_leader_that_does_not_answer_in_time_is_a_504() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let keep = std::thread::spawn(move || {
            let (conn, _) = silent.accept().unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            drop(conn);
        });
        let reply = forward_within(300, "PUT", "/binlog/syncer/stop", b"", &addr);
        assert_eq!(reply.status, 504, "{}", reply.body);
        assert!(
            reply.body.contains("may still take effect"),
            "{}",
            reply.body
        );
        keep.join().unwrap();
    }
}
