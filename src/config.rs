//! Configuration: built-in defaults, then the TOML file, then command-line flags; validated
//! into a [`Config`] before any thread starts. It must not start anything.
//!
//! Cluster identity lives here too: the node's name, its peer address, and the initial
//! cluster (`name=HOST:PORT,...`); without an initial cluster a node is a one-node cluster
//! of itself, so single-node use needs no cluster flag.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::validate::{self, FieldError};
use crate::consensus::state;
use crate::limits::{HTTP_WORKERS_MAX, SERVER_CONNECTIONS_DEFAULT, SERVER_CONNECTIONS_MAX};
use crate::server::auth::AuthPlugin;

/// Default data directory (relative to the working directory).
pub const DATA_DIR_DEFAULT: &str = "./ferrobus-data";
/// Default admin API address.
pub const ADMIN_ADDR_DEFAULT: &str = "127.0.0.1:9595";
/// Default member name.
pub const NAME_DEFAULT: &str = "default";
/// Default raft peer address (listen and advertise).
pub const PEER_ADDR_DEFAULT: &str = "127.0.0.1:9596";
/// Default period of the retention check.
pub const RETENTION_CHECK_INTERVAL_SECONDS_DEFAULT: u64 = 60;
/// Longest period of the retention check (a day).
pub const RETENTION_CHECK_INTERVAL_SECONDS_MAX: u64 = 86_400;
/// Most members an initial cluster may list (Raft clusters are 3 or 5 nodes; more only
/// slows every commit).
pub const INITIAL_CLUSTER_MEMBERS_MAX: usize = 9;

/// Whether the node starts a new cluster or joins one that runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialClusterState {
    /// The initial members bootstrap a brand-new cluster together.
    #[default]
    New,
    /// The node was added (`POST /members`) to a running cluster and joins it.
    Existing,
}

impl InitialClusterState {
    /// `new` or `existing`.
    pub fn parse(text: &str) -> Option<InitialClusterState> {
        match text {
            "new" => Some(InitialClusterState::New),
            "existing" => Some(InitialClusterState::Existing),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InitialClusterState::New => "new",
            InitialClusterState::Existing => "existing",
        }
    }
}

/// One entry of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPeer {
    pub name: String,
    /// `host:port` (canonical: a leading `http://` dropped).
    pub peer_url: String,
}

impl ClusterPeer {
    /// Its raft id.
    pub fn id(&self) -> u64 {
        state::member_id(&self.name, &self.peer_url)
    }
}

/// Binlog retention (used by the purge loop). `None` means unlimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: Option<u64>,
    pub max_age_seconds: Option<u64>,
    pub check_interval_seconds: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_bytes: None,
            max_age_seconds: None,
            check_interval_seconds: RETENTION_CHECK_INTERVAL_SECONDS_DEFAULT,
        }
    }
}

/// Default cluster token (see `Config::cluster_token`).
pub const CLUSTER_TOKEN_DEFAULT: &str = "ferrobus";

/// The validated configuration of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub admin_addr: String,
    /// Most downstream connections the binlog server accepts at once.
    pub server_max_connections: usize,
    /// The binlog server's login plugin when `server start` names none.
    pub server_auth_plugin: AuthPlugin,
    /// caching_sha2_password's RSA private key (PEM) when `server start` names none.
    pub server_rsa_private_key_path: Option<String>,
    pub http_workers: usize,
    /// This member's name.
    pub name: String,
    /// Where the raft peer transport listens, `host:port`. It equals this member's entry
    /// in `initial_cluster`, or has a wildcard host (0.0.0.0, `[::]`) and the same port.
    pub peer_addr: String,
    /// The initial members, this one included (never empty: a one-node cluster of
    /// `name=peer_addr` when none was given).
    pub initial_cluster: Vec<ClusterPeer>,
    pub initial_cluster_state: InitialClusterState,
    /// Names the cluster; every member must have the same (default "ferrobus").
    pub cluster_token: String,
    pub retention: Retention,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            admin_addr: ADMIN_ADDR_DEFAULT.to_string(),
            server_max_connections: SERVER_CONNECTIONS_DEFAULT,
            server_auth_plugin: AuthPlugin::default(),
            server_rsa_private_key_path: None,
            http_workers: 4,
            name: NAME_DEFAULT.to_string(),
            peer_addr: PEER_ADDR_DEFAULT.to_string(),
            initial_cluster: vec![ClusterPeer {
                name: NAME_DEFAULT.to_string(),
                peer_url: PEER_ADDR_DEFAULT.to_string(),
            }],
            initial_cluster_state: InitialClusterState::New,
            cluster_token: CLUSTER_TOKEN_DEFAULT.to_string(),
            retention: Retention::default(),
        }
    }
}

impl Config {
    /// One line for the log at start: what this node runs with (the cluster token itself
    /// is left out, only whether it is the default).
    pub fn summary(&self) -> String {
        let limit = |v: Option<u64>, unit: &str| {
            v.map_or("unlimited".to_string(), |n| format!("{n}{unit}"))
        };
        format!(
            "data dir {}, admin API {} ({} workers), name {}, peer address {}, initial \
             cluster {} ({}), cluster token {}, binlog server default login {} (at most {} \
             connections), retention by size {}, by age {} (checked every {} s)",
            self.data_dir.display(),
            self.admin_addr,
            self.http_workers,
            self.name,
            self.peer_addr,
            self.initial_cluster
                .iter()
                .map(|p| format!("{}={}", p.name, p.peer_url))
                .collect::<Vec<_>>()
                .join(","),
            self.initial_cluster_state.as_str(),
            if self.cluster_token == CLUSTER_TOKEN_DEFAULT {
                "the default"
            } else {
                "set"
            },
            self.server_auth_plugin.name(),
            self.server_max_connections,
            limit(self.retention.max_bytes, " bytes"),
            limit(self.retention.max_age_seconds, " s"),
            self.retention.check_interval_seconds,
        )
    }

    /// This member's entry in the initial cluster (validation guarantees there is one).
    pub fn own_entry(&self) -> &ClusterPeer {
        self.initial_cluster
            .iter()
            .find(|peer| peer.name == self.name)
            .expect("validated: the node's name is in the initial cluster")
    }

    /// This node's raft id: from its name and its advertised peer address.
    pub fn member_id(&self) -> u64 {
        self.own_entry().id()
    }

    /// The cluster id, from the initial cluster.
    /// The cluster's id, from its token: the same on founders and on nodes that join later
    /// (peers of another cluster are refused at the transport's hello).
    pub fn cluster_id(&self) -> u64 {
        state::cluster_id(&self.cluster_token)
    }

    /// The other initial members as `(raft id, peer address)`.
    pub fn other_peers(&self) -> Vec<(u64, String)> {
        self.initial_cluster
            .iter()
            .filter(|peer| peer.name != self.name)
            .map(|peer| (peer.id(), peer.peer_url.clone()))
            .collect()
    }

    /// The initial members as `(name, peer address)`, for
    /// [`state::ClusterState::bootstrap_commands`].
    pub fn initial_members(&self) -> Vec<(String, String)> {
        self.initial_cluster
            .iter()
            .map(|peer| (peer.name.clone(), peer.peer_url.clone()))
            .collect()
    }
}

/// Flags that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub admin_addr: Option<String>,
}

/// Cluster flags that override the file (`serve --name ...`), as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterOverrides {
    pub name: Option<String>,
    pub peer_addr: Option<String>,
    /// `name=HOST:PORT,...`, unparsed.
    pub initial_cluster: Option<String>,
    pub initial_cluster_state: Option<InitialClusterState>,
    pub cluster_token: Option<String>,
}

/// A configuration that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::Parse { path, message } => {
                write!(f, "config file {}: {message}", path.display())
            }
            ConfigError::Invalid(m) => write!(f, "invalid configuration: {m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<FieldError> for ConfigError {
    fn from(error: FieldError) -> ConfigError {
        ConfigError::Invalid(error.message.replace("field `", "`"))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    admin_addr: Option<String>,
    http_workers: Option<usize>,
    name: Option<String>,
    peer_addr: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    cluster_token: Option<String>,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    retention: FileRetention,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileServer {
    max_connections: Option<usize>,
    auth_plugin: Option<String>,
    rsa_private_key_path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    max_bytes: Option<u64>,
    max_age_seconds: Option<u64>,
    check_interval_seconds: Option<u64>,
}

/// Reads the file (if any), applies the overrides and validates; no cluster flags.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    load_with_cluster(file, overrides, &ClusterOverrides::default())
}

/// Reads the file (if any), applies the overrides (cluster flags included) and validates.
pub fn load_with_cluster(
    file: Option<&Path>,
    overrides: &Overrides,
    cluster: &ClusterOverrides,
) -> Result<Config, ConfigError> {
    let parsed = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            parse(&text).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            })?
        }
        None => FileConfig::default(),
    };
    let defaults = Config::default();
    let initial_cluster_state = match (cluster.initial_cluster_state, &parsed.initial_cluster_state)
    {
        (Some(state), _) => state,
        (None, Some(text)) => InitialClusterState::parse(text).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "initial_cluster_state must be \"new\" or \"existing\", not {text:?}"
            ))
        })?,
        (None, None) => InitialClusterState::New,
    };
    let (name, peer_addr, initial_cluster) = resolve_cluster(
        cluster.name.clone().or(parsed.name),
        cluster.peer_addr.clone().or(parsed.peer_addr),
        cluster.initial_cluster.clone().or(parsed.initial_cluster),
    )?;
    let server_auth_plugin = match parsed.server.auth_plugin.as_deref() {
        None => defaults.server_auth_plugin,
        Some(name) => AuthPlugin::parse(name).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "server.auth_plugin must be \"mysql_native_password\" or \
                 \"caching_sha2_password\", not {name:?}"
            ))
        })?,
    };
    let config = Config {
        data_dir: overrides
            .data_dir
            .clone()
            .or(parsed.data_dir)
            .unwrap_or(defaults.data_dir),
        admin_addr: overrides
            .admin_addr
            .clone()
            .or(parsed.admin_addr)
            .unwrap_or(defaults.admin_addr),
        server_max_connections: parsed
            .server
            .max_connections
            .unwrap_or(defaults.server_max_connections),
        server_auth_plugin,
        server_rsa_private_key_path: parsed.server.rsa_private_key_path.clone(),
        http_workers: parsed.http_workers.unwrap_or(defaults.http_workers),
        name,
        peer_addr,
        initial_cluster,
        initial_cluster_state,
        cluster_token: cluster
            .cluster_token
            .clone()
            .or(parsed.cluster_token.clone())
            .unwrap_or_else(|| CLUSTER_TOKEN_DEFAULT.to_string()),
        retention: retention(&parsed.retention)?,
    };
    validate(&config)?;
    Ok(config)
}

fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// The name, the peer address to listen on, and the initial cluster, checked together.
fn resolve_cluster(
    name: Option<String>,
    peer_addr: Option<String>,
    initial_cluster: Option<String>,
) -> Result<(String, String, Vec<ClusterPeer>), ConfigError> {
    let name = name.unwrap_or_else(|| NAME_DEFAULT.to_string());
    validate::check_member_name("name", &name)?;
    let Some(list) = initial_cluster else {
        let peer_addr = match peer_addr {
            Some(addr) => validate::canonical_addr("peer_addr", &addr)?,
            None => PEER_ADDR_DEFAULT.to_string(),
        };
        let me = ClusterPeer {
            name: name.clone(),
            peer_url: peer_addr.clone(),
        };
        return Ok((name, peer_addr, vec![me]));
    };
    let members = parse_initial_cluster(&list).map_err(ConfigError::Invalid)?;
    let own = members
        .iter()
        .find(|peer| peer.name == name)
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "initial_cluster does not list this node's name {name:?} (give --name, or add \
                 {name}=HOST:PORT to the list)"
            ))
        })?;
    let peer_addr = match peer_addr {
        None => own.peer_url.clone(),
        Some(addr) => {
            // Where this node listens may differ from where the others reach it (its list
            // entry): a wildcard host, NAT, or a proxy in between.
            validate::canonical_addr("peer_addr", &addr)?
        }
    };
    Ok((name, peer_addr, members))
}

/// Parses `name=HOST:PORT,name=HOST:PORT,...` (blanks around entries allowed; an address
/// may be written `http://HOST:PORT`): names valid and unique, addresses valid and unique.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<ClusterPeer>, String> {
    if text.trim().is_empty() {
        return Err("initial_cluster is empty: give name=HOST:PORT,... or leave it out".into());
    }
    let mut members: Vec<ClusterPeer> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let (name, addr) = entry
            .split_once('=')
            .ok_or_else(|| format!("initial_cluster entry {entry:?} must be name=HOST:PORT"))?;
        let (name, addr) = (name.trim(), addr.trim());
        validate::check_member_name("name", name)
            .map_err(|error| format!("initial_cluster entry {entry:?}: {error}"))?;
        let peer_url = validate::canonical_addr("peer_url", addr)
            .map_err(|error| format!("initial_cluster entry {entry:?}: {error}"))?;
        if members.iter().any(|peer| peer.name == name) {
            return Err(format!("initial_cluster lists the name {name:?} twice"));
        }
        if let Some(other) = members.iter().find(|peer| peer.peer_url == peer_url) {
            return Err(format!(
                "initial_cluster gives {} and {name} the same address {peer_url}",
                other.name
            ));
        }
        members.push(ClusterPeer {
            name: name.to_string(),
            peer_url,
        });
    }
    if members.len() > INITIAL_CLUSTER_MEMBERS_MAX {
        return Err(format!(
            "initial_cluster lists {} members; at most {INITIAL_CLUSTER_MEMBERS_MAX} are allowed",
            members.len()
        ));
    }
    Ok(members)
}

fn retention(file: &FileRetention) -> Result<Retention, ConfigError> {
    let check_interval_seconds = file
        .check_interval_seconds
        .unwrap_or(RETENTION_CHECK_INTERVAL_SECONDS_DEFAULT);
    if !(1..=RETENTION_CHECK_INTERVAL_SECONDS_MAX).contains(&check_interval_seconds) {
        return Err(ConfigError::Invalid(format!(
            "retention.check_interval_seconds must be between 1 and \
             {RETENTION_CHECK_INTERVAL_SECONDS_MAX}, not {check_interval_seconds}"
        )));
    }
    // 0 means unlimited, like leaving the key out.
    Ok(Retention {
        max_bytes: file.max_bytes.filter(|&bytes| bytes > 0),
        max_age_seconds: file.max_age_seconds.filter(|&seconds| seconds > 0),
        check_interval_seconds,
    })
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    if config.data_dir.as_os_str().is_empty() {
        return Err(ConfigError::Invalid("data_dir is empty".into()));
    }
    check_addr("admin_addr", &config.admin_addr)?;
    if config.admin_addr == config.peer_addr {
        return Err(ConfigError::Invalid(format!(
            "admin_addr and peer_addr are both {}: the admin API and the raft peers need a \
             port each",
            config.admin_addr
        )));
    }
    if config.cluster_token.is_empty() {
        // The same rule as `--cluster-token`: an empty token is a slip, not a choice.
        return Err(ConfigError::Invalid("cluster_token is empty".into()));
    }
    if !(1..=SERVER_CONNECTIONS_MAX).contains(&config.server_max_connections) {
        return Err(ConfigError::Invalid(format!(
            "server.max_connections must be between 1 and {SERVER_CONNECTIONS_MAX}, not {}",
            config.server_max_connections
        )));
    }
    if !(1..=HTTP_WORKERS_MAX).contains(&config.http_workers) {
        return Err(ConfigError::Invalid(format!(
            "http_workers must be between 1 and {HTTP_WORKERS_MAX}, not {}",
            config.http_workers
        )));
    }
    if config.initial_cluster_state == InitialClusterState::Existing
        && config.initial_cluster.len() < 2
    {
        return Err(ConfigError::Invalid(
            "initial_cluster_state \"existing\" joins a running cluster: initial_cluster must \
             list its members and this node"
                .into(),
        ));
    }
    Ok(())
}

/// `host:port` with a numeric port.
pub fn check_addr(field: &str, addr: &str) -> Result<(), ConfigError> {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    match port.and_then(|p| p.parse::<u16>().ok()) {
        Some(_) => Ok(()),
        None => Err(ConfigError::Invalid(format!(
            "{field} must be HOST:PORT, not {addr:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = load(None, &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.admin_addr, "127.0.0.1:9595");
        assert_eq!(c.data_dir, PathBuf::from("./ferrobus-data"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            "data_dir = \"/var/lib/fb\"\nadmin_addr = \"0.0.0.0:1\"\n[server]\nmax_connections = 9\n",
        )
        .unwrap();
        let c = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/fb"));
        assert_eq!(c.server_max_connections, 9);
        assert_eq!(c.server_auth_plugin, AuthPlugin::NativePassword);
        assert_eq!(c.server_rsa_private_key_path, None);
        let o = Overrides {
            data_dir: Some("/x".into()),
            admin_addr: Some("127.0.0.1:2".into()),
        };
        let c = load(Some(&path), &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.admin_addr, "127.0.0.1:2");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "datadir = 1\n").unwrap();
        let e = load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("datadir"), "{e}");
        std::fs::write(&path, "admin_addr = \"nohost\"\n").unwrap();
        let e = load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("HOST:PORT"), "{e}");
        let e = load(
            Some(&dir.path().join("missing.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }

    fn cluster(
        name: Option<&str>,
        peer_addr: Option<&str>,
        list: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let flags = ClusterOverrides {
            name: name.map(str::to_string),
            peer_addr: peer_addr.map(str::to_string),
            initial_cluster: list.map(str::to_string),
            initial_cluster_state: None,
            cluster_token: None,
        };
        load_with_cluster(None, &Overrides::default(), &flags)
    }

    /// `load` of a configuration file holding `text`, without flags.
    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path), &Overrides::default())
    }

    fn invalid(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("expected an invalid configuration, got {other:?}"),
        }
    }

    const THREE: &str = "n1=127.0.0.1:9601,n2=127.0.0.1:9602, n3 = http://127.0.0.1:9603/";

    #[test]
    fn without_a_cluster_a_node_is_a_cluster_of_one() {
        let c = Config::default();
        assert_eq!(c.name, "default");
        assert_eq!(c.peer_addr, "127.0.0.1:9596");
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.member_id(), state::member_id("default", "127.0.0.1:9596"));
        assert!(c.other_peers().is_empty());
        // The cluster id comes from the token, so a node that joins later computes it too.
        assert_eq!(c.cluster_id(), state::cluster_id(CLUSTER_TOKEN_DEFAULT));
        let c = cluster(Some("solo"), Some("10.0.0.1:7000"), None).unwrap();
        assert_eq!(
            c.initial_cluster,
            vec![ClusterPeer {
                name: "solo".into(),
                peer_url: "10.0.0.1:7000".into()
            }]
        );
        assert_eq!(
            c.initial_members(),
            vec![("solo".into(), "10.0.0.1:7000".into())]
        );
    }

    #[test]
    fn initial_cluster_flags() {
        let c = cluster(Some("n2"), None, Some(THREE)).unwrap();
        assert_eq!(
            c.peer_addr, "127.0.0.1:9602",
            "defaults to the node's own entry"
        );
        assert_eq!(c.initial_cluster[2].peer_url, "127.0.0.1:9603");
        assert_eq!(c.member_id(), state::member_id("n2", "127.0.0.1:9602"));
        let others: Vec<String> = c.other_peers().into_iter().map(|(_, a)| a).collect();
        assert_eq!(others, ["127.0.0.1:9601", "127.0.0.1:9603"]);
        // Every node computes the same cluster id, whatever the order of the list.
        let reordered = "n3=127.0.0.1:9603,n1=127.0.0.1:9601,n2=127.0.0.1:9602";
        let other = cluster(Some("n3"), None, Some(reordered)).unwrap();
        assert_eq!(other.cluster_id(), c.cluster_id());
        // A wildcard listen address on the advertised port is fine.
        let c = cluster(Some("n1"), Some("0.0.0.0:9601"), Some(THREE)).unwrap();
        assert_eq!(c.peer_addr, "0.0.0.0:9601");
        assert_eq!(c.member_id(), state::member_id("n1", "127.0.0.1:9601"));
        // So is another address (behind NAT or a proxy): the id follows the list entry.
        let c = cluster(Some("n1"), Some("127.0.0.1:9999"), Some(THREE)).unwrap();
        assert_eq!(c.peer_addr, "127.0.0.1:9999");
        assert_eq!(c.member_id(), state::member_id("n1", "127.0.0.1:9601"));
    }

    #[test]
    fn initial_cluster_errors() {
        let cases = [
            (
                Some("n4"),
                None,
                Some(THREE),
                "does not list this node's name \"n4\"",
            ),
            (
                None,
                None,
                Some(THREE),
                "does not list this node's name \"default\"",
            ),
            (
                Some("n1"),
                None,
                Some("n1=h:1,n1=h:2"),
                "lists the name \"n1\" twice",
            ),
            (
                Some("n1"),
                None,
                Some("n1=h:1,n2=h:1"),
                "n1 and n2 the same address h:1",
            ),
            (
                Some("n1"),
                None,
                Some("n1=h:1,n2"),
                "must be name=HOST:PORT",
            ),
            (Some("n1"), None, Some("n1=h"), "must be host:port"),
            (Some("n1"), None, Some("n1=h:0"), "port in 1..65535"),
            (Some("n1"), None, Some(" "), "initial_cluster is empty"),
            (Some("n 1"), None, None, "`name` must consist of"),
            (Some(""), None, None, "`name` must not be empty"),
            (None, Some("nohost"), None, "`peer_addr` must be host:port"),
        ];
        for (name, peer_addr, list, expected) in cases {
            let message = invalid(cluster(name, peer_addr, list));
            assert!(message.contains(expected), "{name:?} {list:?}: {message}");
        }
        let many: Vec<String> = (0..10).map(|n| format!("n{n}=h:{}", n + 1)).collect();
        let message = invalid(cluster(Some("n0"), None, Some(&many.join(","))));
        assert!(message.contains("at most 9"), "{message}");
        let flags = ClusterOverrides {
            initial_cluster_state: Some(InitialClusterState::Existing),
            cluster_token: None,
            ..ClusterOverrides::default()
        };
        let message = invalid(load_with_cluster(None, &Overrides::default(), &flags));
        assert!(message.contains("existing"), "{message}");
    }

    #[test]
    fn cluster_and_retention_keys_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"n3\"\npeer_addr = \"0.0.0.0:9603\"\ninitial_cluster = \"{THREE}\"\n\
                 initial_cluster_state = \"existing\"\n[retention]\nmax_bytes = 1073741824\n\
                 max_age_seconds = 0\ncheck_interval_seconds = 30\n"
            ),
        )
        .unwrap();
        let c = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.name, "n3");
        assert_eq!(c.peer_addr, "0.0.0.0:9603");
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.initial_cluster_state, InitialClusterState::Existing);
        assert_eq!(
            c.retention,
            Retention {
                max_bytes: Some(1 << 30),
                max_age_seconds: None,
                check_interval_seconds: 30
            }
        );
        // Flags win over the file.
        let flags = ClusterOverrides {
            name: Some("n1".into()),
            peer_addr: Some("127.0.0.1:9601".into()),
            initial_cluster: None,
            initial_cluster_state: Some(InitialClusterState::New),
            cluster_token: None,
        };
        let c = load_with_cluster(Some(&path), &Overrides::default(), &flags).unwrap();
        assert_eq!(
            (c.name.as_str(), c.peer_addr.as_str()),
            ("n1", "127.0.0.1:9601")
        );
        assert_eq!(c.initial_cluster_state, InitialClusterState::New);
        assert_eq!(c.retention.max_bytes, Some(1 << 30));

        for (text, expected) in [
            (
                "initial_cluster_state = \"old\"\n",
                "must be \"new\" or \"existing\"",
            ),
            (
                "[retention]\ncheck_interval_seconds = 0\n",
                "between 1 and 86400",
            ),
            ("[retention]\nmax_bytes = -1\n", "max_bytes"),
            ("[retention]\nmax_files = 3\n", "max_files"),
            ("initial_cluster = [\"a\"]\n", "initial_cluster"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load(Some(&path), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
        // Absent retention keys mean unlimited, checked every minute.
        std::fs::write(&path, "").unwrap();
        let c = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.retention, Retention::default());
        assert_eq!(c.retention.check_interval_seconds, 60);
    }

    #[test]
    fn server_auth_plugin_and_key_from_file() {
        let c = load_toml(
            "[server]\nauth_plugin = \"caching_sha2_password\"\nrsa_private_key_path = \"/k.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.server_auth_plugin, AuthPlugin::CachingSha2Password);
        assert_eq!(c.server_rsa_private_key_path.as_deref(), Some("/k.pem"));
        let error = load_toml("[server]\nauth_plugin = \"sha256_password\"\n").unwrap_err();
        assert!(error.to_string().contains("server.auth_plugin"), "{error}");
    }

    #[test]
    fn the_start_summary_names_the_settings_but_not_the_token() {
        let mut c = Config::default();
        let line = c.summary();
        for part in [
            "data dir ./ferrobus-data",
            "admin API 127.0.0.1:9595",
            "initial cluster default=127.0.0.1:9596 (new)",
            "cluster token the default",
            "retention by size unlimited, by age unlimited",
        ] {
            assert!(line.contains(part), "{part:?} not in {line}");
        }
        c.cluster_token = "s3cret-token".into();
        c.retention.max_bytes = Some(1 << 30);
        let line = c.summary();
        assert!(!line.contains("s3cret"), "{line}");
        assert!(
            line.contains("cluster token set") && line.contains("1073741824 bytes"),
            "{line}"
        );
    }

    #[test]
    fn the_admin_and_peer_addresses_must_differ() {
        let message = invalid(load_toml(
            "admin_addr = \"127.0.0.1:7000\"\npeer_addr = \"127.0.0.1:7000\"\n",
        ));
        assert!(message.contains("a port each"), "{message}");
    }

    #[test]
    fn an_empty_cluster_token_is_refused_as_on_the_command_line() {
        let message = invalid(load_toml("cluster_token = \"\"\n"));
        assert!(message.contains("cluster_token is empty"), "{message}");
    }
}
