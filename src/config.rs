//! Configuration: built-in defaults, then the TOML file, then command-line flags; validated
//! into a [`Config`] before any thread starts. It must not start anything.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::limits::{HTTP_WORKERS_MAX, SERVER_CONNECTIONS_DEFAULT, SERVER_CONNECTIONS_MAX};

/// Default data directory (relative to the working directory).
pub const DATA_DIR_DEFAULT: &str = "./ferrobus-data";
/// Default admin API address.
pub const ADMIN_ADDR_DEFAULT: &str = "127.0.0.1:9595";

/// The validated configuration of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub admin_addr: String,
    /// Most downstream connections the binlog server accepts at once.
    pub server_max_connections: usize,
    pub http_workers: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            admin_addr: ADMIN_ADDR_DEFAULT.to_string(),
            server_max_connections: SERVER_CONNECTIONS_DEFAULT,
            http_workers: 4,
        }
    }
}

/// Flags that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub admin_addr: Option<String>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    admin_addr: Option<String>,
    http_workers: Option<usize>,
    #[serde(default)]
    server: FileServer,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileServer {
    max_connections: Option<usize>,
}

/// Reads the file (if any), applies the overrides and validates.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
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
        http_workers: parsed.http_workers.unwrap_or(defaults.http_workers),
    };
    validate(&config)?;
    Ok(config)
}

fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    if config.data_dir.as_os_str().is_empty() {
        return Err(ConfigError::Invalid("data_dir is empty".into()));
    }
    check_addr("admin_addr", &config.admin_addr)?;
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
}
