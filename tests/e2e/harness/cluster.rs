//! A ferrobus Raft cluster for one test: named nodes (`n1`, `n2`, …) on free peer, admin and
//! binlog-server ports of 127.0.0.1, each a harness `Node` started with `--name`,
//! `--peer-addr` and the same `--initial-cluster`.
//!
//! It finds the leader the way a user would (GET /cluster on every live node), kills and
//! restarts nodes by name, and reads what each node's binlog server holds. It asserts
//! nothing itself; waits are bounded polls. Drop stops every node by pid (through `Node`),
//! and a failing test prints every node's log.

use super::proxy::PeerProxy;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::{json, Value};

use super::clients::{mysql_connect, Source};
use super::mariadb::{MariaDb, REPL_PASSWORD, REPL_USER};
use super::node::{Node, FERRO_PASSWORD, FERRO_USER};
use super::replica::Upstream;
use super::util::{fail, free_port, normalize_gtid_list, poll, Poll, Result, WorkDir};

/// Bound for an election (or a restart) to produce a leader every live node knows.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// One named member: its ports and its process (None once removed for good).
pub struct Member {
    pub name: String,
    pub peer_port: u16,
    pub binlog_port: u16,
    pub node: Node,
}

impl Member {
    /// "127.0.0.1:<peer port>"
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// The downstream account on this member's binlog server.
    pub fn source(&self) -> Source {
        Source {
            port: self.binlog_port,
            user: FERRO_USER.to_string(),
            password: FERRO_PASSWORD.to_string(),
        }
    }

    /// This member's binlog server as a replica upstream.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            port: self.binlog_port,
            user: FERRO_USER.to_string(),
            password: FERRO_PASSWORD.to_string(),
        }
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    // Declared last: dropped after every node is stopped.
    work: WorkDir,
}

/// `n1=127.0.0.1:P1,n2=…` for the given (name, peer port) pairs.
fn initial_cluster(pairs: &[(String, u16)]) -> String {
    pairs
        .iter()
        .map(|(name, port)| format!("{name}=127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn serve_args(name: &str, peer_port: u16, initial: &str, existing: bool) -> Vec<String> {
    let mut args = vec![
        "--name".to_string(),
        name.to_string(),
        "--peer-addr".to_string(),
        format!("127.0.0.1:{peer_port}"),
        "--initial-cluster".to_string(),
        initial.to_string(),
    ];
    if existing {
        args.push("--initial-cluster-state".to_string());
        args.push("existing".to_string());
    }
    args
}

impl Cluster {
    /// Starts `size` nodes n1..n<size> as a new cluster (each waits for its /health only;
    /// use `wait_leader` for the cluster to form).
    pub fn start(test: &str, size: usize) -> Result<Cluster> {
        let work = WorkDir::new(&format!("cluster-{test}"))?;
        let pairs: Vec<(String, u16)> =
            (1..=size).map(|i| (format!("n{i}"), free_port())).collect();
        let initial = initial_cluster(&pairs);
        let mut members = Vec::new();
        for (name, peer_port) in &pairs {
            let args = serve_args(name, *peer_port, &initial, false);
            let node = Node::start_with_args(&work.join(name), &args)?;
            members.push(Member {
                name: name.clone(),
                peer_port: *peer_port,
                binlog_port: free_port(),
                node,
            });
        }
        Ok(Cluster { members, work })
    }

    /// As `start`, but every node's peer port sits behind a [`PeerProxy`] the test controls
    /// (the list entries name the proxies; each node listens on its own port behind its
    /// proxy), to cut a node off from the others. Proxies are returned in member order.
    pub fn start_behind_proxies(test: &str, size: usize) -> Result<(Cluster, Vec<PeerProxy>)> {
        let work = WorkDir::new(&format!("cluster-{test}"))?;
        let pairs: Vec<(String, u16)> =
            (1..=size).map(|i| (format!("n{i}"), free_port())).collect();
        let initial = initial_cluster(&pairs);
        let mut members = Vec::new();
        let mut proxies = Vec::new();
        for (name, proxy_port) in &pairs {
            let listen_port = free_port();
            proxies.push(PeerProxy::start(
                *proxy_port,
                &format!("127.0.0.1:{listen_port}"),
            )?);
            let mut args = serve_args(name, *proxy_port, &initial, false);
            args[3] = format!("127.0.0.1:{listen_port}");
            let node = Node::start_with_args(&work.join(name), &args)?;
            members.push(Member {
                name: name.clone(),
                peer_port: *proxy_port,
                binlog_port: free_port(),
                node,
            });
        }
        Ok((Cluster { members, work }, proxies))
    }

    /// A free peer port for a member not started yet (see `join`).
    pub fn new_peer_port() -> u16 {
        free_port()
    }

    /// Starts `name` on `peer_port` with `--initial-cluster-state existing`, the initial
    /// cluster being every current member plus it. The cluster must have been told first
    /// (POST /members).
    pub fn join(&mut self, name: &str, peer_port: u16) -> Result<&Member> {
        let mut pairs: Vec<(String, u16)> = self
            .members
            .iter()
            .map(|m| (m.name.clone(), m.peer_port))
            .collect();
        pairs.push((name.to_string(), peer_port));
        let args = serve_args(name, peer_port, &initial_cluster(&pairs), true);
        let node = Node::start_with_args(&self.work.join(name), &args)?;
        self.members.push(Member {
            name: name.to_string(),
            peer_port,
            binlog_port: free_port(),
            node,
        });
        Ok(self.members.last().expect("just pushed"))
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name} in this test's cluster"))
    }

    pub fn member_mut(&mut self, name: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name} in this test's cluster"))
    }

    pub fn node(&self, name: &str) -> &Node {
        &self.member(name).node
    }

    /// Members whose process runs.
    pub fn live(&self) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| m.node.is_running())
            .collect()
    }

    /// Names of the live members other than `name`.
    pub fn live_others(&self, name: &str) -> Vec<String> {
        self.live()
            .into_iter()
            .filter(|m| m.name != name)
            .map(|m| m.name.clone())
            .collect()
    }

    /// GET /cluster on `name`: the members it lists.
    pub fn cluster_view(&self, name: &str) -> Result<Vec<Value>> {
        let data = self.node(name).get_ok("/cluster")?;
        match data.as_array() {
            Some(list) => Ok(list.clone()),
            None => fail(format!(
                "GET /cluster on {name}: data is not a list: {data}"
            )),
        }
    }

    /// The leader `name` sees, with its admin address known there: Some(leader name).
    fn leader_seen_by(&self, name: &str) -> Result<Option<String>> {
        let view = self.cluster_view(name)?;
        let leaders: Vec<&Value> = view.iter().filter(|m| m["isLeader"] == true).collect();
        match leaders.as_slice() {
            [] => Ok(None),
            [leader] => {
                let admin_known = leader["adminURLs"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|u| u.as_str().is_some_and(|s| !s.is_empty())));
                Ok(admin_known.then(|| leader["name"].as_str().unwrap_or("").to_string()))
            }
            _ => fail(format!(
                "GET /cluster on {name} lists more than one leader: {view:?}"
            )),
        }
    }

    /// Waits until every live node names the same live leader (whose admin address it
    /// knows, so forwarding works); returns its name.
    pub fn wait_leader(&self, timeout: Duration) -> Result<String> {
        poll("a leader known on every live node", timeout, || {
            let live = self.live();
            if live.is_empty() {
                return fail("no node is running");
            }
            let mut seen = Vec::new();
            for m in &live {
                match self.leader_seen_by(&m.name) {
                    Ok(leader) => seen.push((m.name.clone(), leader)),
                    Err(e) => return Ok(Poll::Pending(format!("{}: {}", m.name, e.0))),
                }
            }
            let first = seen[0].1.clone();
            let agreed = seen.iter().all(|(_, l)| *l == first);
            match first {
                Some(leader) if agreed && live.iter().any(|m| m.name == leader) => {
                    Ok(Poll::Ready(leader))
                }
                _ => Ok(Poll::Pending(format!("leaders seen: {seen:?}"))),
            }
        })
    }

    /// The live members other than the leader `leader`.
    pub fn followers(&self, leader: &str) -> Vec<String> {
        self.live_others(leader)
    }

    /// kill -9 of `name`.
    pub fn kill9(&mut self, name: &str) {
        self.member_mut(name).node.kill9();
    }

    /// SIGTERM of `name`; its exit code.
    pub fn terminate(&mut self, name: &str) -> Result<Option<i32>> {
        self.member_mut(name).node.terminate()
    }

    /// Restarts `name` listening on `peer_port` (after `PUT /members` moved it there): the
    /// initial cluster it is given names every member at its current port.
    pub fn restart_moved(&mut self, name: &str, peer_port: u16) -> Result<()> {
        self.member_mut(name).peer_port = peer_port;
        let pairs: Vec<(String, u16)> = self
            .members
            .iter()
            .map(|m| (m.name.clone(), m.peer_port))
            .collect();
        let args = serve_args(name, peer_port, &initial_cluster(&pairs), false);
        let node = &mut self.member_mut(name).node;
        node.set_args(args);
        node.restart()
    }

    /// Starts `name` again (same data dir, ports and flags).
    pub fn restart(&mut self, name: &str) -> Result<()> {
        self.member_mut(name).node.restart()
    }

    /// Starts the syncer through `via` (forwarded to the leader when `via` follows).
    pub fn start_syncer_via(&self, via: &str, master: &MariaDb, syncer_id: u32) -> Result<Value> {
        self.node(via).put_ok(
            "/binlog/syncer/start",
            &json!({
                "syncer_id": syncer_id,
                "mysql_addr": master.addr(),
                "mysql_user": REPL_USER,
                "mysql_password": REPL_PASSWORD,
            }),
        )
    }

    /// Starts `name`'s own binlog server on its binlog port.
    pub fn start_server(&self, name: &str) -> Result<Value> {
        let m = self.member(name);
        m.node.start_server(m.binlog_port)
    }

    /// Starts every member's own binlog server on its binlog port.
    pub fn start_servers(&self) -> Result<()> {
        for m in &self.members {
            m.node.start_server(m.binlog_port)?;
        }
        Ok(())
    }

    /// Adds member `name` through `via` (POST /members, which must answer 200), starts it
    /// as a joiner, waits for a leader and starts its binlog server. Returns its peer port.
    pub fn add_and_join(&mut self, via: &str, name: &str) -> Result<u16> {
        let peer_port = Cluster::new_peer_port();
        let add = json!({"name": name, "peer_url": format!("127.0.0.1:{peer_port}")});
        let bytes = serde_json::to_vec(&add)?;
        let (status, reply) = self
            .node(via)
            .request_json("POST", "/members", Some(&bytes))?;
        if status != 200 {
            return fail(format!(
                "POST /members through {via}: HTTP {status}: {reply}"
            ));
        }
        self.join(name, peer_port)?;
        self.wait_leader(LEADER_TIMEOUT)?;
        self.start_server(name)?;
        Ok(peer_port)
    }

    /// GET /binlog/syncer/status through `via`: Ok(None) while the node answers non-200
    /// (e.g. 503 during an election), so polls can wait it out.
    pub fn syncer_status_via(&self, via: &str) -> Result<Option<Value>> {
        let (status, reply) = self.node(via).api_get("/binlog/syncer/status")?;
        if status == 200 && reply["message"] == "success" {
            return Ok(Some(reply["data"].clone()));
        }
        Ok(None)
    }

    /// Waits until the syncer status asked through `via` reports everything the master has
    /// written stored (file and position equal SHOW MASTER STATUS). Call it when the master
    /// has no more writes coming.
    pub fn wait_synced_via(&self, via: &str, master: &MariaDb, timeout: Duration) -> Result<Value> {
        let desc = format!("the syncer (status through {via}) to store all of the master's binlog");
        poll(&desc, timeout, || {
            self.node(via).check_alive()?;
            let (file, pos) = master.master_status()?;
            let Some(status) = self.syncer_status_via(via)? else {
                return Ok(Poll::Pending(format!("{via} answers non-200")));
            };
            if status["last_binlog_file"] == file.as_str() && status["last_file_position"] == pos {
                return Ok(Poll::Ready(status));
            }
            if status["status"] == "stopped" {
                return fail(format!("the syncer is stopped: {status}"));
            }
            Ok(Poll::Pending(format!(
                "master at {file}:{pos}, syncer status {status}"
            )))
        })
    }

    /// @@gtid_binlog_pos of `name`'s binlog server (normalized).
    pub fn served_gtid_pos(&self, name: &str) -> Result<String> {
        served_gtid_pos(&self.member(name).source())
    }

    /// Waits until `name`'s binlog server holds exactly the master's @@gtid_binlog_pos.
    pub fn wait_serves_master(
        &self,
        name: &str,
        master: &MariaDb,
        timeout: Duration,
    ) -> Result<()> {
        let target = master.gtid_binlog_pos()?;
        let desc = format!("{name}'s binlog server to hold gtid_binlog_pos {target}");
        poll(&desc, timeout, || {
            self.node(name).check_alive()?;
            Ok(match self.served_gtid_pos(name) {
                Ok(pos) if pos == target => Poll::Ready(()),
                Ok(pos) => Poll::Pending(format!("serves {pos:?}")),
                Err(e) => Poll::Pending(e.0),
            })
        })
    }

    pub fn print_logs(&self) {
        for m in &self.members {
            m.node.print_log();
        }
    }
}

/// @@gtid_binlog_pos as a binlog server (ferrobus or MariaDB) answers it, normalized.
pub fn served_gtid_pos(src: &Source) -> Result<String> {
    let mut conn = mysql_connect(src, Duration::from_secs(30))
        .map_err(|e| format!("connecting to the binlog server on port {}: {e}", src.port))?;
    let pos: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
        .map_err(|e| format!("SELECT @@GLOBAL.gtid_binlog_pos on port {}: {e}", src.port))?;
    Ok(normalize_gtid_list(&pos.unwrap_or_default()))
}

/// Waits until the syncer status asked through every live node says `want`.
pub fn wait_status_everywhere(cluster: &Cluster, want: &str) -> Vec<(String, Value)> {
    poll(
        &format!("syncer status {want:?} through every live node"),
        LEADER_TIMEOUT,
        || {
            let mut seen = Vec::new();
            for m in cluster.live() {
                match cluster.syncer_status_via(&m.name)? {
                    Some(s) if s["status"] == want => seen.push((m.name.clone(), s)),
                    other => return Ok(Poll::Pending(format!("{}: {other:?}", m.name))),
                }
            }
            Ok(Poll::Ready(seen))
        },
    )
    .unwrap()
}

/// The raft id of `name` as the cluster lists it (hex in `Id`).
pub fn raft_id(cluster: &Cluster, name: &str) -> u64 {
    let view = cluster.cluster_view(name).unwrap();
    let member = view
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in its own cluster view"));
    u64::from_str_radix(member["Id"].as_str().unwrap(), 16).unwrap()
}

/// The leader named by `asker`'s cluster view, if any.
pub fn leader_seen_by(cluster: &Cluster, asker: &str) -> Option<String> {
    let view = cluster.cluster_view(asker).ok()?;
    view.iter()
        .find(|m| m["isLeader"] == true)
        .and_then(|m| m["name"].as_str().map(str::to_string))
}

/// Cuts member `name` (raft id `id`, see [`raft_id`]: ask before the cut, a node cut off
/// may not answer) off from the others (`cut`), or heals it: its own proxy refuses every
/// connection, and the others' refuse its raft id. `proxies` are in member order, as
/// `Cluster::start_behind_proxies` returns them.
pub fn cut_off(cluster: &Cluster, proxies: &[PeerProxy], name: &str, id: u64, cut: bool) {
    let position = cluster
        .members
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not a member"));
    for (i, proxy) in proxies.iter().enumerate() {
        if i == position {
            proxy.set_isolated(cut);
        } else {
            proxy.set_blocked(id, cut);
        }
    }
}
