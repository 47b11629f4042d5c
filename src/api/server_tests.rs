//! In-process tests of the admin API: a real `AdminServer` on 127.0.0.1:0 in front of a fake
//! backend, driven with ureq and with raw sockets, good requests and hostile ones alike,
//! checking after each hostile one that the server still answers; and pairs of servers
//! whose fake backends disagree about who leads, for leader forwarding.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::limits::HTTP_BODY_BYTES_MAX;

/// A backend that keeps running flags, records the arguments it was started with, can be
/// told to panic on its next status call, and whose import reads its body to the end and
/// records how that went.
#[derive(Default)]
struct FakeBackend {
    syncer: Mutex<Option<SyncerArgs>>,
    server: Mutex<Option<ServerArgs>>,
    panic_next: AtomicBool,
    route: Mutex<ClusterRoute>,
    members: Mutex<Vec<MemberView>>,
    purged_to: Mutex<Option<String>>,
    import_reading: AtomicBool,
    import_outcome: Mutex<Option<String>>,
}

fn view(name: &str, peer_url: &str, admin_url: Option<String>) -> MemberView {
    MemberView {
        id: MemberView::format_id(crate::consensus::state::member_id(name, peer_url)),
        name: name.into(),
        peer_urls: vec![peer_url.into()],
        admin_urls: admin_url.into_iter().collect(),
        binlog_addr: None,
        is_leader: None,
        role: crate::api::model::MemberRole::Voter,
        heard_ms_ago: None,
    }
}

impl FakeBackend {
    fn maybe_panic(&self) {
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("fake backend panics on purpose");
        }
    }
}

impl Backend for FakeBackend {
    fn binlog_import(&self, _file: &str, body: &mut dyn Read) -> Result<ImportSummary, ApiError> {
        self.import_reading.store(true, Ordering::SeqCst);
        let mut sink = Vec::new();
        let outcome = match body.read_to_end(&mut sink) {
            Ok(n) => format!("read to the end: {n} bytes"),
            Err(e) => format!("error: {e}"),
        };
        *self.import_outcome.lock().unwrap() = Some(outcome.clone());
        Err(ApiError::bad_request(outcome))
    }

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
            last_error_at: None,
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
            pid: 4242,
        }
    }

    fn cluster_route(&self) -> ClusterRoute {
        self.route.lock().unwrap().clone()
    }

    fn members_list(&self) -> Result<Vec<MemberView>, ApiError> {
        Ok(self.members.lock().unwrap().clone())
    }

    fn member_add(&self, args: MemberAdd) -> Result<Vec<MemberView>, ApiError> {
        let mut members = self.members.lock().unwrap();
        if members.iter().any(|m| m.name == args.name) {
            return Err(ApiError::conflict(format!(
                "member {:?} already exists",
                args.name
            )));
        }
        members.push(view(&args.name, &args.peer_url, args.admin_url));
        Ok(members.clone())
    }

    fn member_update(&self, args: MemberUpdate) -> Result<Vec<MemberView>, ApiError> {
        let mut members = self.members.lock().unwrap();
        let member = members
            .iter_mut()
            .find(|m| m.name == args.name)
            .ok_or_else(|| ApiError::not_found(format!("no such member: {:?}", args.name)))?;
        member.peer_urls = vec![args.new_peer_url];
        Ok(members.clone())
    }

    fn member_remove(&self, name: String) -> Result<Vec<MemberView>, ApiError> {
        let mut members = self.members.lock().unwrap();
        let before = members.len();
        members.retain(|m| m.name != name);
        if members.len() == before {
            return Err(ApiError::not_found(format!("no such member: {name:?}")));
        }
        Ok(members.clone())
    }

    fn cluster(&self) -> Result<Vec<MemberView>, ApiError> {
        let members = self.members.lock().unwrap();
        Ok(members
            .iter()
            .enumerate()
            .map(|(index, m)| MemberView {
                is_leader: Some(index == 0),
                ..m.clone()
            })
            .collect())
    }

    fn purge(&self, to_file: String) -> Result<(), ApiError> {
        *self.purged_to.lock().unwrap() = Some(to_file);
        Ok(())
    }
}

/// A backend with only the required methods: the cluster ones keep their defaults.
struct BareBackend(FakeBackend);

impl Backend for BareBackend {
    fn syncer_start(&self, args: SyncerArgs) -> Result<(), ApiError> {
        self.0.syncer_start(args)
    }
    fn syncer_stop(&self) -> Result<(), ApiError> {
        self.0.syncer_stop()
    }
    fn syncer_status(&self) -> Result<SyncerStatus, ApiError> {
        self.0.syncer_status()
    }
    fn server_start(&self, args: ServerArgs) -> Result<(), ApiError> {
        self.0.server_start(args)
    }
    fn server_stop(&self) -> Result<(), ApiError> {
        self.0.server_stop()
    }
    fn server_status(&self) -> Result<ServerStatus, ApiError> {
        self.0.server_status()
    }
    fn health(&self) -> Health {
        self.0.health()
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
        Harness {
            server,
            backend,
            agent: Harness::start_agent(),
        }
    }

    fn start_agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .new_agent()
    }

    /// Status and body text, for replies that need not be JSON.
    fn answer_raw(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, String) {
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
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

    fn post_json(&self, path: &str, body: &str) -> Answer {
        Self::answer(
            self.agent
                .post(self.url(path))
                .header("Content-Type", "application/json")
                .send(body),
        )
    }

    fn delete(&self, path: &str) -> Answer {
        Self::answer(self.agent.delete(self.url(path)).call())
    }

    fn delete_json(&self, path: &str, body: &str) -> Answer {
        Self::answer(
            self.agent
                .delete(self.url(path))
                .force_send_body()
                .send(body),
        )
    }

    /// Makes this node's backend say who leads.
    fn set_route(&self, route: ClusterRoute) {
        *self.backend.route.lock().unwrap() = route;
    }

    /// Makes this node's backend say `leader` leads.
    fn follow(&self, leader: &Harness) {
        self.set_route(ClusterRoute::Forward {
            leader_admin: leader.addr().to_string(),
        });
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
        json!({"message": "success", "data": {"status": "ok", "version": "test", "uptime_seconds": 1, "pid": 4242}})
    );
    // HEAD, as load balancers' health checks send it: 200, no body.
    let (status, body) = Harness::answer_raw(h.agent.head(h.url("/health")).call());
    assert_eq!((status, body.as_str()), (200, ""));
}

#[test]
fn metrics_are_prometheus_text() {
    let h = Harness::start();
    let mut response = h.agent.get(h.url("/metrics")).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(content_type, crate::api::metrics::CONTENT_TYPE);
    let text = response.body_mut().read_to_string().unwrap();
    assert!(
        text.contains("\nferrobus_build_info{version=\"test\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("\nferrobus_uptime_seconds 1\n"), "{text}");
    assert!(
        text.contains("# TYPE ferrobus_binlog_server_running gauge"),
        "{text}"
    );
    let answer = h.put("/metrics", "");
    assert_eq!(answer.status, 405);
    assert_eq!(answer.allow.as_deref(), Some("GET"));
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
    assert_eq!(answer.allow.as_deref(), Some("GET, HEAD"));
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
    use crate::ctl::{run, EXIT_NODE_ERROR, EXIT_OK, EXIT_USAGE};

    let h = Harness::start();
    let ctl = |command: CtlCommand| {
        run(CtlArgs {
            admin: h.addr().to_string(),
            json: false,
            command,
        })
    };
    let args = ServerArgs {
        addr: "127.0.0.1:3307".into(),
        user: "u".into(),
        password: "p".into(),
        ..Default::default()
    };
    let start = CtlCommand::ServerStart {
        args: args.clone(),
        password_file: None,
    };
    assert_eq!(ctl(start.clone()), EXIT_OK);
    assert_eq!(ctl(start), EXIT_NODE_ERROR);
    assert_eq!(ctl(CtlCommand::ServerStatus), EXIT_OK);
    assert_eq!(ctl(CtlCommand::ServerStop), EXIT_OK);
    assert_eq!(ctl(CtlCommand::SyncerStatus), EXIT_OK);
    assert_eq!(ctl(CtlCommand::Health), EXIT_OK);
    assert!(h.backend.server.lock().unwrap().is_none());

    // A password file: its content, less the final newline, is what the node gets.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3 cret\n").unwrap();
    let from_file = |path: &std::path::Path| CtlCommand::ServerStart {
        args: ServerArgs {
            password: String::new(),
            ..args.clone()
        },
        password_file: Some(path.to_path_buf()),
    };
    assert_eq!(ctl(from_file(&dir.path().join("missing"))), EXIT_USAGE);
    assert!(h.backend.server.lock().unwrap().is_none(), "nothing sent");
    assert_eq!(ctl(from_file(&file)), EXIT_OK);
    let started = h.backend.server.lock().unwrap().clone().unwrap();
    assert_eq!(started.password, "s3 cret");
}

/// A request as a fake leader received it, and the raw reply it sends back.
fn capture_one_request(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        // Read the head, then as many body bytes as Content-Length says.
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the request was complete");
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if received.len() >= head_end + 4 + length {
                    break;
                }
            }
        }
        stream.write_all(reply.as_bytes()).unwrap();
        String::from_utf8(received).unwrap()
    });
    (addr, handle)
}

#[test]
fn a_follower_forwards_leader_only_routes_unchanged() {
    let leader = Harness::start();
    let follower = Harness::start();
    follower.follow(&leader);

    // Start through the follower runs on the leader.
    let answer = follower.put("/binlog/syncer/start", &syncer_body().to_string());
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json, json!({"message": "success", "data": null}));
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        leader
            .backend
            .syncer
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .syncer_id,
        11
    );
    assert!(follower.backend.syncer.lock().unwrap().is_none());

    // The leader's refusals come back as they are: its 409 and its 400.
    let answer = follower.put("/binlog/syncer/start", &syncer_body().to_string());
    assert_eq!(answer.status, 409);
    assert_eq!(answer.json, json!({"message": "syncer already running"}));
    let mut bad = syncer_body();
    bad["mysql_addr"] = json!("nohost");
    let direct = leader.put("/binlog/syncer/start", &bad.to_string());
    let relayed = follower.put("/binlog/syncer/start", &bad.to_string());
    assert_eq!(direct.status, 400);
    assert_eq!((relayed.status, &relayed.json), (400, &direct.json));

    // Status asked on either node is the leader's.
    let direct = leader.get("/binlog/syncer/status");
    let relayed = follower.get("/binlog/syncer/status?x=1");
    assert_eq!(relayed.status, 200);
    assert_eq!(relayed.json, direct.json);
    assert_eq!(relayed.json["data"]["status"], "running");

    // Membership changes go to the leader, with their bodies; reads stay local.
    let add =
        json!({"name": "n4", "peer_url": "http://127.0.0.1:9604", "admin_url": "127.0.0.1:9504"});
    let answer = follower.post_json("/members", &add.to_string());
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["data"][0]["name"], "n4");
    assert_eq!(
        answer.json["data"][0]["peerURLs"],
        json!(["127.0.0.1:9604"])
    );
    assert_eq!(
        answer.json["data"][0]["adminURLs"],
        json!(["127.0.0.1:9504"])
    );
    let answer = follower.post_json("/members", &add.to_string());
    assert_eq!(answer.status, 409);
    assert_eq!(
        answer.json,
        json!({"message": "member \"n4\" already exists"})
    );
    assert_eq!(follower.get("/members").json["data"], json!([]));
    assert_eq!(leader.get("/members").json["data"][0]["name"], "n4");

    let update = json!({"name": "n4", "new_peer_url": "127.0.0.1:9614"});
    let answer = follower.put("/members", &update.to_string());
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        answer.json["data"][0]["peerURLs"],
        json!(["127.0.0.1:9614"])
    );
    let answer = follower.delete_json("/members", r#"{"name": "n5"}"#);
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json, json!({"message": "no such member: \"n5\""}));
    let answer = follower.delete_json("/members", r#"{"name": "n4", "peer_url": "x"}"#);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json["data"], json!([]));

    let answer = follower.put("/binlog/purge", r#"{"to_file": "mysql-bin.000003"}"#);
    assert_eq!(answer.status, 200);
    assert_eq!(
        leader.backend.purged_to.lock().unwrap().as_deref(),
        Some("mysql-bin.000003")
    );
    assert!(follower.backend.purged_to.lock().unwrap().is_none());

    // Routes every node serves itself are not forwarded.
    let body = json!({"addr": "127.0.0.1:3307", "user": "u", "password": "p"}).to_string();
    assert_eq!(follower.put("/binlog/server/start", &body).status, 200);
    assert!(follower.backend.server.lock().unwrap().is_some());
    assert!(leader.backend.server.lock().unwrap().is_none());
    follower.assert_alive();

    // A stop through the follower stops the leader's syncer.
    assert_eq!(follower.put("/binlog/syncer/stop", "").status, 200);
    assert!(leader.backend.syncer.lock().unwrap().is_none());
}

#[test]
fn forwarding_sends_method_path_body_and_marker() {
    let (addr, leader) = capture_one_request(
        "HTTP/1.1 418 I'm a teapot\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\
         Connection: close\r\n\r\nnot json!",
    );
    let follower = Harness::start();
    follower.set_route(ClusterRoute::Forward {
        leader_admin: addr.to_string(),
    });
    let body = r#"{"name":"n1"}"#;
    let answer = Harness::answer_raw(
        follower
            .agent
            .delete(follower.url("/members?why=test"))
            .force_send_body()
            .send(body),
    );
    assert_eq!(answer, (418, "not json!".to_string()));
    let request = leader.join().unwrap();
    assert!(
        request.starts_with("DELETE /members?why=test HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("\r\nx-ferrobus-forwarded: 1\r\n"),
        "{request}"
    );
    assert!(request.ends_with(&format!("\r\n\r\n{body}")), "{request}");
}

#[test]
fn no_leader_is_a_503() {
    let node = Harness::start();
    node.set_route(ClusterRoute::NoLeader);
    for answer in [
        node.get("/binlog/syncer/status"),
        node.put("/binlog/syncer/stop", ""),
        node.post_json("/members", "{}"),
        node.put("/binlog/purge", "{}"),
    ] {
        assert_eq!(answer.status, 503);
        assert_eq!(
            answer.json,
            json!({"message": "no leader is known; the cluster may be electing one or has lost its quorum"})
        );
    }
    // Reads of the local table and the node's own routes still work.
    assert_eq!(node.get("/members").status, 200);
    assert_eq!(node.get("/cluster").status, 200);
    assert_eq!(node.get("/binlog/server/status").status, 200);
    node.assert_alive();
}

#[test]
fn two_nodes_that_each_think_the_other_leads_do_not_loop() {
    let a = Harness::start();
    let b = Harness::start();
    a.follow(&b);
    b.follow(&a);
    for answer in [
        a.put("/binlog/syncer/start", &syncer_body().to_string()),
        b.get("/binlog/syncer/status"),
        a.delete_json("/members", r#"{"name": "x"}"#),
    ] {
        assert_eq!(answer.status, 503);
        assert_eq!(
            answer.json,
            json!({"message": "forwarded request reached a node that is not the leader"})
        );
    }
    assert!(a.backend.syncer.lock().unwrap().is_none());
    assert!(b.backend.syncer.lock().unwrap().is_none());
    // A marked request reaching a node that knows no leader is refused the same way.
    b.set_route(ClusterRoute::NoLeader);
    let answer = Harness::answer(
        a.agent
            .get(b.url("/binlog/syncer/status"))
            .header("X-Ferrobus-Forwarded", "1")
            .call(),
    );
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.json["message"],
        "forwarded request reached a node that is not the leader"
    );
    // A marked request reaching the leader is served.
    let answer = Harness::answer(
        a.agent
            .get(a.url("/binlog/syncer/status"))
            .header("X-Ferrobus-Forwarded", "1")
            .call(),
    );
    assert_eq!(answer.status, 503, "a still follows b");
    a.set_route(ClusterRoute::Local);
    let answer = Harness::answer(
        b.agent
            .get(a.url("/binlog/syncer/status"))
            .header("X-Ferrobus-Forwarded", "1")
            .call(),
    );
    assert_eq!(answer.status, 200);
}

#[test]
fn an_unreachable_leader_is_a_502_naming_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let leader_admin = format!("127.0.0.1:{port}");
    let node = Harness::start();
    node.set_route(ClusterRoute::Forward {
        leader_admin: leader_admin.clone(),
    });
    let answer = node.put("/binlog/syncer/stop", "");
    assert_eq!(answer.status, 502);
    let message = answer.json["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot forward the request to the leader at {leader_admin}: "
        )),
        "{message}"
    );
    node.assert_alive();
}

#[test]
fn cluster_routes_served_locally() {
    let h = Harness::start();
    h.backend.members.lock().unwrap().extend([
        view("n1", "h:1", Some("h:2".into())),
        view("n2", "h:3", None),
    ]);
    let answer = h.get("/cluster");
    assert_eq!(answer.status, 200);
    let data = &answer.json["data"];
    assert_eq!(data[0]["isLeader"], true);
    assert_eq!(data[0]["is_leader"], true);
    assert_eq!(data[1]["isLeader"], false);
    assert_eq!(data[1]["adminURLs"], json!([]));
    let answer = h.get("/members");
    assert!(answer.json["data"][0].get("isLeader").is_none());
    assert_eq!(
        answer.json["data"][0]["Id"],
        format!("{:x}", crate::consensus::state::member_id("n1", "h:1"))
    );

    // Bad bodies are 400s naming the field, before the backend sees them.
    for (method, body, expected) in [
        ("POST", r#"{"peer_url": "h:1"}"#, "missing field `name`"),
        (
            "POST",
            r#"{"name": "a b", "peer_url": "h:1"}"#,
            "field `name` must consist of",
        ),
        (
            "POST",
            r#"{"name": "n", "peer_url": "h"}"#,
            "field `peer_url` must be host:port",
        ),
        (
            "POST",
            r#"{"name": "n", "peer_url": "h:1", "admin_url": 5}"#,
            "field `admin_url` must be a string",
        ),
        ("PUT", r#"{"name": "n"}"#, "missing field `new_peer_url`"),
        ("DELETE", "", "request body is empty"),
    ] {
        let answer = match method {
            "POST" => h.post_json("/members", body),
            "PUT" => h.put("/members", body),
            _ => h.delete_json("/members", body),
        };
        assert_eq!(answer.status, 400, "{method} {body}");
        let message = answer.json["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{method} {body}: {message}");
    }
    let answer = h.put("/binlog/purge", r#"{"to_file": "../x"}"#);
    assert_eq!(answer.status, 400);
    assert!(answer.json["message"]
        .as_str()
        .unwrap()
        .contains("field `to_file` must be a plain file name"));
    assert_eq!(h.backend.members.lock().unwrap().len(), 2);
}

#[test]
fn cluster_methods_default_to_not_wired() {
    let backend: Arc<dyn Backend> = Arc::new(BareBackend(FakeBackend::default()));
    let server = AdminServer::start("127.0.0.1:0", backend, 1).unwrap();
    let h = Harness {
        server,
        backend: Arc::new(FakeBackend::default()),
        agent: Harness::start_agent(),
    };
    for answer in [
        h.get("/members"),
        h.get("/cluster"),
        h.post_json("/members", r#"{"name": "n", "peer_url": "h:1"}"#),
        h.put("/binlog/purge", r#"{"to_file": "b.000001"}"#),
    ] {
        assert_eq!(answer.status, 503);
        assert_eq!(
            answer.json,
            json!({"message": "cluster support is not wired yet"})
        );
    }
    // A backend without a cluster serves leader-only routes itself.
    assert_eq!(h.put("/binlog/syncer/stop", "").status, 200);
}

#[test]
fn ctl_cluster_commands_talk_to_the_server() {
    use crate::api::{MemberAdd, MemberUpdate};
    use crate::cli::{CtlArgs, CtlCommand};
    use crate::ctl::{run, EXIT_NODE_ERROR, EXIT_OK};

    let leader = Harness::start();
    let follower = Harness::start();
    follower.follow(&leader);
    let ctl = |command: CtlCommand| {
        run(CtlArgs {
            admin: follower.addr().to_string(),
            json: false,
            command,
        })
    };
    let add = CtlCommand::MemberAdd(MemberAdd {
        name: "n2".into(),
        peer_url: "127.0.0.1:9602".into(),
        admin_url: None,
    });
    assert_eq!(ctl(add.clone()), EXIT_OK);
    assert_eq!(ctl(add), EXIT_NODE_ERROR);
    let update = CtlCommand::MemberUpdate(MemberUpdate {
        name: "n2".into(),
        new_peer_url: "127.0.0.1:9612".into(),
    });
    assert_eq!(ctl(update), EXIT_OK);
    assert_eq!(
        leader.backend.members.lock().unwrap()[0].peer_urls,
        ["127.0.0.1:9612"]
    );
    assert_eq!(ctl(CtlCommand::MembersList), EXIT_OK);
    assert_eq!(ctl(CtlCommand::Cluster), EXIT_OK);
    assert_eq!(
        ctl(CtlCommand::Purge {
            to_file: "b.000002".into()
        }),
        EXIT_OK
    );
    assert_eq!(ctl(CtlCommand::MemberRemove { name: "n2".into() }), EXIT_OK);
    assert_eq!(
        ctl(CtlCommand::MemberRemove { name: "n2".into() }),
        EXIT_NODE_ERROR
    );
    assert!(leader.backend.members.lock().unwrap().is_empty());
    follower.set_route(ClusterRoute::NoLeader);
    assert_eq!(ctl(CtlCommand::SyncerStatus), EXIT_NODE_ERROR);
}

/// A server on `backend` and a client that has begun an import upload: it announced
/// 100000 bytes and sent 4.
fn begin_upload(backend: &Arc<FakeBackend>) -> (AdminServer, TcpStream) {
    let server = AdminServer::start("127.0.0.1:0", backend.clone(), 1).unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client
        .write_all(
            b"POST /binlog/import?file=bin.000001 HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 100000\r\n\r\nfour",
        )
        .unwrap();
    (server, client)
}

/// A node that stops cuts an import upload short instead of waiting for a slow client
/// (up to the 60 s stall bound), and the import sees an error, not an end of the body:
/// nothing of a cut upload may be taken for a whole file.
#[test]
fn stopping_cuts_an_import_upload_short() {
    let backend = Arc::new(FakeBackend::default());
    let (server, client) = begin_upload(&backend);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !backend.import_reading.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The client sends nothing more; the shutdown must not wait for it.
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown();
        let _ = done.send(());
    });
    stopped
        .recv_timeout(Duration::from_secs(20))
        .expect("the shutdown waited for the stalled upload");
    let outcome = backend.import_outcome.lock().unwrap().clone().unwrap();
    assert!(
        outcome.starts_with("error: the node is stopping"),
        "{outcome}"
    );
    drop(client);
}

/// A client that goes away in the middle of a Content-Length upload: the import sees an
/// error, not an end of the body (a file cut between transactions would pass for whole).
#[test]
fn an_upload_cut_by_its_client_is_an_error_not_an_end() {
    let backend = Arc::new(FakeBackend::default());
    let (server, client) = begin_upload(&backend);
    client.shutdown(Shutdown::Write).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        if let Some(outcome) = backend.import_outcome.lock().unwrap().clone() {
            break outcome;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        outcome.contains("ended after 4 of its 100000 bytes"),
        "{outcome}"
    );
    drop(client);
    server.shutdown();
}
