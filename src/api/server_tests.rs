//! In-process tests of the admin API: a real `AdminServer` on 127.0.0.1:0 in front of a fake
//! backend, driven with ureq and with raw sockets, good requests and hostile ones alike,
//! checking after each hostile one that the server still answers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::limits::HTTP_BODY_BYTES_MAX;

/// A backend that keeps running flags, records the arguments it was started with, and
/// can be told to panic on its next status call.
#[derive(Default)]
struct FakeBackend {
    syncer: Mutex<Option<SyncerArgs>>,
    server: Mutex<Option<ServerArgs>>,
    panic_next: AtomicBool,
}

impl FakeBackend {
    fn maybe_panic(&self) {
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("fake backend panics on purpose");
        }
    }
}

impl Backend for FakeBackend {
    fn syncer_start(&self, args: SyncerArgs) -> Result<(), ApiError> {
        let mut syncer = self.syncer.lock().unwrap();
        if syncer.is_some() {
            return Err(ApiError::conflict("syncer already running"));
        }
        *syncer = Some(args);
        Ok(())
    }

    fn syncer_stop(&self) -> Result<(), ApiError> {
        *self.syncer.lock().unwrap() = None;
        Ok(())
    }

    fn syncer_status(&self) -> Result<SyncerStatus, ApiError> {
        self.maybe_panic();
        let syncer = self.syncer.lock().unwrap();
        Ok(SyncerStatus {
            status: if syncer.is_some() {
                SyncerState::Running
            } else {
                SyncerState::Stopped
            },
            mysql_addr: syncer.as_ref().map(|args| args.mysql_addr.clone()),
            mysql_user: syncer.as_ref().map(|args| args.mysql_user.clone()),
            syncer_id: syncer.as_ref().map(|args| args.syncer_id),
            current_gtid: None,
            last_binlog_file: None,
            last_file_position: None,
            executed_gtid_set: None,
            purged_gtid_set: None,
            last_error: None,
            lag_seconds: None,
            events: 3,
            bytes: 300,
        })
    }

    fn server_start(&self, args: ServerArgs) -> Result<(), ApiError> {
        let mut server = self.server.lock().unwrap();
        if server.is_some() {
            return Err(ApiError::conflict("server already running"));
        }
        *server = Some(args);
        Ok(())
    }

    fn server_stop(&self) -> Result<(), ApiError> {
        *self.server.lock().unwrap() = None;
        Ok(())
    }

    fn server_status(&self) -> Result<ServerStatus, ApiError> {
        self.maybe_panic();
        let server = self.server.lock().unwrap();
        Ok(ServerStatus {
            addr: server.as_ref().map(|args| args.addr.clone()),
            user: server.as_ref().map(|args| args.user.clone()),
            status: if server.is_some() {
                ServerState::Running
            } else {
                ServerState::Stopped
            },
            slaves: vec![SlaveInfo {
                server_id: 9,
                host: "10.0.0.9".into(),
                port: 40000,
                mode: SlaveMode::Gtid,
                position: "0-1-5".into(),
                bytes_sent: 1234,
                connected_since: 1_700_000_000,
            }],
        })
    }

    fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            version: "test".into(),
            uptime_seconds: 1,
        }
    }
}

struct Harness {
    server: AdminServer,
    backend: Arc<FakeBackend>,
    agent: ureq::Agent,
}

struct Answer {
    status: u16,
    json: Value,
    allow: Option<String>,
    content_type: Option<String>,
}

impl Harness {
    fn start() -> Harness {
        let backend = Arc::new(FakeBackend::default());
        let server = AdminServer::start("127.0.0.1:0", backend.clone(), 2).unwrap();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .new_agent();
        Harness {
            server,
            backend,
            agent,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = response.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let allow = header("allow");
        let content_type = header("content-type");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        Answer {
            status,
            json,
            allow,
            content_type,
        }
    }

    fn get(&self, path: &str) -> Answer {
        Self::answer(self.agent.get(self.url(path)).call())
    }

    fn put(&self, path: &str, body: &str) -> Answer {
        Self::answer(
            self.agent
                .put(self.url(path))
                .header("Content-Type", "application/json")
                .send(body),
        )
    }

    fn post(&self, path: &str) -> Answer {
        Self::answer(self.agent.post(self.url(path)).send(""))
    }

    fn delete(&self, path: &str) -> Answer {
        Self::answer(self.agent.delete(self.url(path)).call())
    }

    fn assert_alive(&self) {
        let answer = self.get("/health");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json["data"]["status"], "ok");
    }

    /// Sends raw bytes on a fresh connection and returns the first line of whatever comes
    /// back (empty if the server just closed).
    fn raw_first_line(&self, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // The server may reset the connection on garbage; that is an answer too. Closing
        // our side tells a server waiting for more body bytes that none will come.
        let _ = stream.write_all(bytes);
        let _ = stream.shutdown(Shutdown::Write);
        let mut received = Vec::new();
        let mut buf = [0u8; 256];
        while !received.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&received).to_string();
        text.lines().next().unwrap_or("").to_string()
    }
}

fn syncer_body() -> Value {
    json!({
        "syncer_id": 11,
        "mysql_addr": "127.0.0.1:3306",
        "mysql_user": "repl",
        "mysql_password": "pw",
        "gtid": "0-1-10",
    })
}

#[test]
fn syncer_routes() {
    let h = Harness::start();
    let answer = h.put("/binlog/syncer/start", &syncer_body().to_string());
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json, json!({"message": "success", "data": null}));
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let started = h.backend.syncer.lock().unwrap().clone().unwrap();
    assert_eq!(started.syncer_id, 11);
    assert_eq!(started.gtid.as_deref(), Some("0-1-10"));

    let answer = h.put("/binlog/syncer/start", &syncer_body().to_string());
    assert_eq!(answer.status, 409);
    assert_eq!(answer.json, json!({"message": "syncer already running"}));

    let answer = h.get("/binlog/syncer/status");
    assert_eq!(answer.status, 200);
    let data = &answer.json["data"];
    assert_eq!(data["status"], "running");
    assert_eq!(data["mysql_addr"], "127.0.0.1:3306");
    assert_eq!(data["syncer_id"], 11);
    assert!(data["last_error"].is_null());
    assert!(!answer.json.to_string().contains("pw\""), "{}", answer.json);

    // Stop takes no body and succeeds twice.
    for _ in 0..2 {
        let answer = h.put("/binlog/syncer/stop", "");
        assert_eq!(answer.status, 200);
        assert!(answer.json["data"].is_null());
    }
    assert_eq!(
        h.get("/binlog/syncer/status").json["data"]["status"],
        "stopped"
    );
}

#[test]
fn server_routes_and_health() {
    let h = Harness::start();
    let body = json!({"addr": "127.0.0.1:3307", "user": "u", "password": "p"}).to_string();
    assert_eq!(h.put("/binlog/server/start", &body).status, 200);
    assert_eq!(h.put("/binlog/server/start", &body).status, 409);
    let answer = h.get("/binlog/server/status");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json["data"]["status"], "running");
    assert_eq!(answer.json["data"]["slaves"][0]["mode"], "gtid");
    assert_eq!(answer.json["data"]["slaves"][0]["port"], 40000);
    assert_eq!(h.put("/binlog/server/stop", "").status, 200);
    assert_eq!(
        h.get("/binlog/server/status").json["data"]["status"],
        "stopped"
    );

    let answer = h.get("/health?probe=1");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json,
        json!({"message": "success", "data": {"status": "ok", "version": "test", "uptime_seconds": 1}})
    );
}

#[test]
fn bad_bodies_get_400_naming_the_field() {
    let h = Harness::start();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "not valid JSON"),
        ("".into(), "empty"),
        ("[]".into(), "must be a JSON object"),
        (
            json!({"mysql_addr": "a:1", "mysql_user": "u", "mysql_password": ""}).to_string(),
            "missing field `syncer_id`",
        ),
        (
            {
                let mut b = syncer_body();
                b["syncer_id"] = json!("11");
                b.to_string()
            },
            "field `syncer_id` must be a positive integer (u32)",
        ),
        (
            {
                let mut b = syncer_body();
                b["mysql_addr"] = json!("127.0.0.1");
                b.to_string()
            },
            "field `mysql_addr` must be host:port",
        ),
        (
            {
                let mut b = syncer_body();
                b["semi_sync"] = json!(true);
                b.to_string()
            },
            "semi_sync not supported yet",
        ),
        (
            {
                let mut b = syncer_body();
                b["binlog_file"] = json!("f.000001");
                b["binlog_pos"] = json!(4);
                b.to_string()
            },
            "field `gtid` cannot be combined",
        ),
    ];
    for (body, expected) in cases {
        let answer = h.put("/binlog/syncer/start", &body);
        assert_eq!(answer.status, 400, "{body}");
        let message = answer.json["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
        assert!(answer.json.get("data").is_none());
    }
    let answer = h.put(
        "/binlog/server/start",
        r#"{"addr": "0.0.0.0:3307", "user": 5, "password": ""}"#,
    );
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json["message"],
        "field `user` must be a string, got 5"
    );
    assert!(h.backend.syncer.lock().unwrap().is_none());
    h.assert_alive();
}

#[test]
fn unknown_routes_and_wrong_methods() {
    let h = Harness::start();
    for path in ["/", "/nope", "/binlog/syncer", "/health/extra"] {
        let answer = h.get(path);
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.json["message"].as_str().unwrap().contains(path));
    }
    let answer = h.get("/binlog/syncer/start");
    assert_eq!(answer.status, 405);
    assert_eq!(answer.allow.as_deref(), Some("PUT"));
    let answer = h.post("/binlog/server/stop");
    assert_eq!(answer.status, 405);
    assert_eq!(answer.allow.as_deref(), Some("PUT"));
    let answer = h.delete("/health");
    assert_eq!(answer.status, 405);
    assert_eq!(answer.allow.as_deref(), Some("GET"));
    assert!(answer.json["message"].as_str().unwrap().contains("DELETE"));
    let answer = h.put("/binlog/syncer/status", "{}");
    assert_eq!(answer.status, 405);
    assert_eq!(answer.allow.as_deref(), Some("GET"));
    h.assert_alive();
}

#[test]
fn oversized_bodies_get_413() {
    let h = Harness::start();
    // Declared length over the cap.
    let big = "x".repeat(HTTP_BODY_BYTES_MAX + 1);
    let answer = h.put("/binlog/syncer/start", &big);
    assert_eq!(answer.status, 413);
    assert!(answer.json["message"]
        .as_str()
        .unwrap()
        .contains("too large"));
    // A body of exactly the cap is read (and then rejected as JSON, not as too large).
    let just_fits = " ".repeat(HTTP_BODY_BYTES_MAX - 2) + "{}";
    let answer = h.put("/binlog/server/start", &just_fits);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json["message"], "missing field `addr`");
    h.assert_alive();

    // A chunked body (no declared length) that runs past the cap.
    let chunk = vec![b'y'; HTTP_BODY_BYTES_MAX + 10];
    let mut request = format!(
        "PUT /binlog/syncer/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    request.extend_from_slice(&chunk);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(h.raw_first_line(&request), "HTTP/1.1 413 Payload Too Large");
    h.assert_alive();

    // A hostile declared length: answered without reading or draining the body.
    let request =
        b"PUT /binlog/syncer/start HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{";
    assert_eq!(h.raw_first_line(request), "HTTP/1.1 413 Payload Too Large");
    let request = b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n";
    assert_eq!(h.raw_first_line(request), "HTTP/1.1 413 Payload Too Large");
    h.assert_alive();
}

#[test]
fn garbage_on_the_socket_does_not_hurt() {
    let h = Harness::start();
    let garbage: [&[u8]; 6] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 binary junk\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"PUT /binlog/syncer/start HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"syncer_id\"",
        b"",
    ];
    for bytes in garbage {
        // Whatever the reply (400, 505 or a closed connection), the server must survive.
        let _ = h.raw_first_line(bytes);
        h.assert_alive();
    }
    // A truncated body whose client gives up: the worker sees EOF and moves on.
    {
        let mut stream = TcpStream::connect(h.addr()).unwrap();
        stream
            .write_all(
                b"PUT /binlog/server/start HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{\"addr\":",
            )
            .unwrap();
    }
    h.assert_alive();
    // A request with a good body over a raw socket still works.
    let body = json!({"addr": "127.0.0.1:3307", "user": "u", "password": "p"}).to_string();
    let request = format!(
        "PUT /binlog/server/start HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(h.raw_first_line(request.as_bytes()), "HTTP/1.1 200 OK");
}

#[test]
fn a_panicking_handler_costs_one_500() {
    let h = Harness::start();
    for _ in 0..3 {
        h.backend.panic_next.store(true, Ordering::SeqCst);
        let answer = h.get("/binlog/server/status");
        assert_eq!(answer.status, 500);
        assert!(answer.json["message"]
            .as_str()
            .unwrap()
            .contains("panicked"));
    }
    // Both workers are still there: several requests in a row all succeed.
    for _ in 0..4 {
        assert_eq!(h.get("/binlog/syncer/status").status, 200);
    }
    h.assert_alive();
}

#[test]
fn start_binds_port_zero_and_shutdown_joins_workers() {
    let backend: Arc<dyn Backend> = Arc::new(FakeBackend::default());
    let server = AdminServer::start("127.0.0.1:0", backend.clone(), 100).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(server.workers.len(), crate::limits::HTTP_WORKERS_MAX);
    // Binding the same port again fails with an io::Error rather than panicking.
    assert!(AdminServer::start(&addr.to_string(), backend.clone(), 1).is_err());
    server.shutdown();

    let server = AdminServer::start("127.0.0.1:0", backend, 0).unwrap();
    assert_eq!(server.workers.len(), 1);
    drop(server);
}

#[test]
fn ctl_talks_to_the_server() {
    use crate::cli::{CtlArgs, CtlCommand};
    use crate::ctl::{run, EXIT_NODE_ERROR, EXIT_OK};

    let h = Harness::start();
    let ctl = |command: CtlCommand| {
        run(CtlArgs {
            admin: h.addr().to_string(),
            json: false,
            command,
        })
    };
    let start = CtlCommand::ServerStart(ServerArgs {
        addr: "127.0.0.1:3307".into(),
        user: "u".into(),
        password: "p".into(),
    });
    assert_eq!(ctl(start.clone()), EXIT_OK);
    assert_eq!(ctl(start), EXIT_NODE_ERROR);
    assert_eq!(ctl(CtlCommand::ServerStatus), EXIT_OK);
    assert_eq!(ctl(CtlCommand::ServerStop), EXIT_OK);
    assert_eq!(ctl(CtlCommand::SyncerStatus), EXIT_OK);
    assert_eq!(ctl(CtlCommand::Health), EXIT_OK);
    assert!(h.backend.server.lock().unwrap().is_none());
}
