//! The ferrobus command line: turns the program's arguments into a [`Cli`] value, or into a
//! [`UsageError`] that says what is wrong and which `--help` to read, and holds the help text
//! of every command.
//!
//! Parsing only: this module runs nothing, prints nothing and touches no file or socket
//! (`parse` reads one environment variable, the default admin address; the rest is pure).
//! Flags are taken as `--flag value` or `--flag=value`.

use std::fmt;
use std::path::PathBuf;

use crate::api::validate::{self, FieldError};
use crate::api::{MemberAdd, MemberUpdate, ServerArgs, SyncerArgs};
use crate::config::{self, ClusterOverrides, InitialClusterState};

/// Where `ctl` finds the admin API unless told otherwise.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9595";

/// Environment variable that replaces [`DEFAULT_ADMIN_ADDR`].
pub const ADMIN_ADDR_ENV: &str = "FERROBUS_ADMIN";

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cli {
    Serve(ServeArgs),
    Ctl(CtlArgs),
    /// `ferrobus export`: write a stopped node's stored binlog as native files.
    Export(ExportArgs),
    /// Print this text to stdout and exit 0.
    Help(String),
    /// Print [`version_text`] and exit 0.
    Version,
}

/// `ferrobus serve`; `None` means "not given" (the config file or built-in default applies).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub admin_addr: Option<String>,
    /// `--name`, `--peer-addr`, `--initial-cluster`, `--initial-cluster-state`; for
    /// [`config::load_with_cluster`].
    pub cluster: ClusterOverrides,
}

/// `ferrobus export` (offline, on a stopped node's data directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportArgs {
    pub data_dir: PathBuf,
    /// Directory the files are written to (created if missing).
    pub to: PathBuf,
    /// Only this stored file.
    pub file: Option<String>,
    /// Overwrite files that exist in `to`.
    pub force: bool,
}

/// `ferrobus ctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlArgs {
    /// The node's admin API, `host:port`.
    pub admin: String,
    /// Print the raw JSON reply.
    pub json: bool,
    pub command: CtlCommand,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtlCommand {
    /// `password_file`: the master password is read from this file by `ctl` (then
    /// `args.mysql_password` is empty until it is).
    SyncerStart {
        args: SyncerArgs,
        password_file: Option<PathBuf>,
    },
    SyncerStop,
    SyncerStatus,
    /// `password_file`: as for `SyncerStart`, for `args.password`.
    ServerStart {
        args: ServerArgs,
        password_file: Option<PathBuf>,
    },
    ServerStop,
    ServerStatus,
    Health,
    MembersList,
    MemberAdd(MemberAdd),
    MemberUpdate(MemberUpdate),
    MemberRemove {
        name: String,
    },
    Cluster,
    /// `ctl raft`: this node's raft state, log syncs and commit rounds.
    Raft,
    Purge {
        to_file: String,
    },
    /// `ctl import FILE...`: the files in chain order; `name` names the first one on the
    /// node (default: its file name).
    Import {
        files: Vec<PathBuf>,
        name: Option<String>,
    },
    /// `ctl export --to DIR [--file NAME] [--force]`.
    Export {
        to: PathBuf,
        file: Option<String>,
        force: bool,
    },
}

/// A command line that cannot be run. Exit status 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    /// The command whose help explains the fix, e.g. `ferrobus ctl syncer start --help`.
    pub help_command: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error: {}\nRun `{}` for usage.",
            self.message, self.help_command
        )
    }
}

impl std::error::Error for UsageError {}

/// `"ferrobus <version>"`.
pub fn version_text() -> String {
    format!("ferrobus {}", env!("CARGO_PKG_VERSION"))
}

/// Parses the arguments after the program name (`std::env::args().skip(1)`). The default
/// admin address comes from `FERROBUS_ADMIN` when set.
pub fn parse(args: &[String]) -> Result<Cli, UsageError> {
    let from_env = std::env::var(ADMIN_ADDR_ENV)
        .ok()
        .filter(|addr| !addr.trim().is_empty());
    parse_with_default_admin(args, from_env.as_deref().unwrap_or(DEFAULT_ADMIN_ADDR))
}

/// [`parse`] with the default admin address given: pure.
pub fn parse_with_default_admin(args: &[String], default_admin: &str) -> Result<Cli, UsageError> {
    let mut tokens = Tokens::new(args);
    let top = Level(&[]);
    match tokens.next() {
        None => Err(top.error("no command given")),
        Some(Token::Flag { name, inline }) => match name {
            "--help" | "-h" => Ok(top.help()),
            "--version" | "-V" => {
                top.no_value(name, inline)?;
                tokens.expect_end(top)?;
                Ok(Cli::Version)
            }
            _ => Err(top.unknown_flag(name)),
        },
        Some(Token::Word(word)) => match word {
            "serve" => parse_serve(&mut tokens),
            "ctl" => parse_ctl(&mut tokens, default_admin),
            "export" => parse_export(&mut tokens),
            "help" => help_command(&mut tokens),
            "version" => {
                tokens.expect_end(top)?;
                Ok(Cli::Version)
            }
            _ => Err(top.unknown_command(word)),
        },
    }
}

/// `ferrobus help [COMMAND...]`.
fn help_command(tokens: &mut Tokens<'_>) -> Result<Cli, UsageError> {
    let path: Vec<&str> = tokens.rest().iter().map(String::as_str).collect();
    help_text(&path)
        .map(Cli::Help)
        .ok_or_else(|| Level(&[]).error(&format!("no help for `{}`", path.join(" "))))
}

fn parse_serve(tokens: &mut Tokens<'_>) -> Result<Cli, UsageError> {
    let level = Level(&["serve"]);
    let mut args = ServeArgs::default();
    while let Some(token) = tokens.next() {
        let (name, inline) = level.flag(token)?;
        match name {
            "--help" | "-h" => return Ok(level.help()),
            "--config" => set_once(&mut args.config, name, level, || {
                tokens.path(name, inline, level)
            })?,
            "--data-dir" => set_once(&mut args.data_dir, name, level, || {
                tokens.path(name, inline, level)
            })?,
            "--admin-addr" => set_once(&mut args.admin_addr, name, level, || {
                let addr = tokens.value(name, inline, level)?;
                validate::check_bind_addr("admin_addr", &addr)
                    .map_err(|error| level.error(&flag_message(&error)))?;
                Ok(addr)
            })?,
            "--name" => set_once(&mut args.cluster.name, name, level, || {
                let value = tokens.value(name, inline, level)?;
                validate::check_member_name("name", &value)
                    .map_err(|error| level.error(&flag_message(&error)))?;
                Ok(value)
            })?,
            "--peer-addr" => set_once(&mut args.cluster.peer_addr, name, level, || {
                let value = tokens.value(name, inline, level)?;
                validate::canonical_addr("peer_addr", &value)
                    .map_err(|error| level.error(&flag_message(&error)))
            })?,
            "--initial-cluster" => {
                set_once(&mut args.cluster.initial_cluster, name, level, || {
                    let value = tokens.value(name, inline, level)?;
                    config::parse_initial_cluster(&value)
                        .map_err(|message| level.error(&format!("option {name}: {message}")))?;
                    Ok(value)
                })?
            }
            "--cluster-token" => set_once(&mut args.cluster.cluster_token, name, level, || {
                let value = tokens.value(name, inline, level)?;
                if value.is_empty() {
                    return Err(level.error("option --cluster-token: must not be empty"));
                }
                Ok(value)
            })?,
            "--initial-cluster-state" => {
                set_once(&mut args.cluster.initial_cluster_state, name, level, || {
                    let value = tokens.value(name, inline, level)?;
                    InitialClusterState::parse(&value)
                        .ok_or_else(|| level.bad_value(name, "new or existing", &value))
                })?
            }
            _ => return Err(level.unknown_flag(name)),
        }
    }
    Ok(Cli::Serve(args))
}

/// `ferrobus export`.
fn parse_export(tokens: &mut Tokens<'_>) -> Result<Cli, UsageError> {
    let level = Level(&["export"]);
    let mut data_dir = None;
    let mut target = ExportTarget::default();
    while let Some(token) = tokens.next() {
        let (name, inline) = level.flag(token)?;
        match name {
            "--help" | "-h" => return Ok(level.help()),
            "--data-dir" => set_once(&mut data_dir, name, level, || {
                tokens.path(name, inline, level)
            })?,
            _ if target.take(tokens, name, inline, level)? => {}
            _ => return Err(level.unknown_flag(name)),
        }
    }
    Ok(Cli::Export(ExportArgs {
        data_dir: data_dir.unwrap_or_else(|| PathBuf::from(config::DATA_DIR_DEFAULT)),
        to: required(target.to, "--to", level)?,
        file: target.file,
        force: target.force,
    }))
}

/// `--to DIR [--file NAME] [--force]`: where `ferrobus export` and `ctl export` write.
#[derive(Default)]
struct ExportTarget {
    to: Option<PathBuf>,
    file: Option<String>,
    force: bool,
}

impl ExportTarget {
    /// Takes `flag` if it is one of the target's; `Ok(false)` if it is not one.
    fn take(
        &mut self,
        tokens: &mut Tokens<'_>,
        flag: &str,
        inline: Option<&str>,
        level: Level,
    ) -> Result<bool, UsageError> {
        match flag {
            "--to" => set_once(&mut self.to, flag, level, || {
                tokens.path(flag, inline, level)
            })?,
            "--file" => set_once(&mut self.file, flag, level, || {
                export_file_name(tokens.value(flag, inline, level)?, level)
            })?,
            "--force" => {
                level.no_value(flag, inline)?;
                self.force = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn export_file_name(name: String, level: Level) -> Result<String, UsageError> {
    validate::check_file_name("file", &name).map_err(|error| level.error(&flag_message(&error)))?;
    Ok(name)
}

/// `ctl import [--name NAME] FILE...`.
fn parse_ctl_import(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "import"]);
    let mut files = Vec::new();
    let mut name = None;
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => files.push(PathBuf::from(word)),
            Token::Flag { name: flag, inline } => {
                if flag == "--help" || flag == "-h" {
                    return Ok(Step::Help(level));
                }
                if globals.take(tokens, flag, inline, level)? {
                    continue;
                }
                if flag != "--name" {
                    return Err(level.unknown_flag(flag));
                }
                set_once(&mut name, flag, level, || {
                    export_file_name(tokens.value(flag, inline, level)?, level)
                })?;
            }
        }
    }
    if files.is_empty() {
        return Err(level.error("no binlog file given"));
    }
    Ok(Step::Run(CtlCommand::Import { files, name }))
}

/// `ctl export --to DIR [--file NAME] [--force]`.
fn parse_ctl_export(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "export"]);
    let mut target = ExportTarget::default();
    while let Some(token) = tokens.next() {
        let (flag, inline) = level.flag(token)?;
        match flag {
            "--help" | "-h" => return Ok(Step::Help(level)),
            _ if target.take(tokens, flag, inline, level)? => {}
            _ if globals.take(tokens, flag, inline, level)? => {}
            _ => return Err(level.unknown_flag(flag)),
        }
    }
    Ok(Step::Run(CtlCommand::Export {
        to: required(target.to, "--to", level)?,
        file: target.file,
        force: target.force,
    }))
}

/// `--admin` and `--json`, accepted anywhere after `ctl`.
struct CtlGlobals {
    admin: Option<String>,
    json: bool,
}

impl CtlGlobals {
    /// Takes `name` if it is a global flag; `Ok(false)` if it is not one.
    fn take(
        &mut self,
        tokens: &mut Tokens<'_>,
        name: &str,
        inline: Option<&str>,
        level: Level,
    ) -> Result<bool, UsageError> {
        match name {
            "--admin" => {
                set_once(&mut self.admin, name, level, || {
                    let addr = tokens.value(name, inline, level)?;
                    check_addr("admin", &addr, level)?;
                    Ok(addr)
                })?;
                Ok(true)
            }
            "--json" => {
                level.no_value(name, inline)?;
                if self.json {
                    return Err(level.error(&format!("option {name} given twice")));
                }
                self.json = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn parse_ctl(tokens: &mut Tokens<'_>, default_admin: &str) -> Result<Cli, UsageError> {
    let level = Level(&["ctl"]);
    let mut globals = CtlGlobals {
        admin: None,
        json: false,
    };
    let command = loop {
        match tokens.next() {
            None => {
                return Err(level
                    .error("missing command (syncer, server, members, cluster, raft, purge, import, export or health)"))
            }
            Some(Token::Flag { name, inline }) => {
                if name == "--help" || name == "-h" {
                    return Ok(level.help());
                }
                if !globals.take(tokens, name, inline, level)? {
                    return Err(level.unknown_flag(name));
                }
            }
            Some(Token::Word(word)) => match word {
                "syncer" => break parse_syncer(tokens, &mut globals)?,
                "server" => break parse_server(tokens, &mut globals)?,
                "members" => break parse_members(tokens, &mut globals)?,
                "cluster" => {
                    let level = Level(&["ctl", "cluster"]);
                    break parse_no_options(tokens, &mut globals, level, CtlCommand::Cluster)?;
                }
                "raft" => {
                    let level = Level(&["ctl", "raft"]);
                    break parse_no_options(tokens, &mut globals, level, CtlCommand::Raft)?;
                }
                "purge" => break parse_purge(tokens, &mut globals)?,
                "import" => break parse_ctl_import(tokens, &mut globals)?,
                "export" => break parse_ctl_export(tokens, &mut globals)?,
                "health" => {
                    let level = Level(&["ctl", "health"]);
                    break parse_no_options(tokens, &mut globals, level, CtlCommand::Health)?;
                }
                _ => return Err(level.unknown_command(word)),
            },
        }
    };
    Ok(match command {
        Step::Run(command) => {
            let admin = match globals.admin {
                Some(admin) => admin,
                None => {
                    // The default comes from $FERROBUS_ADMIN when set: checked as --admin is.
                    validate::check_host_port("admin", default_admin).map_err(|error| {
                        Level(&["ctl"]).error(&format!(
                            "{ADMIN_ADDR_ENV}={default_admin:?}: {}",
                            flag_message(&error)
                        ))
                    })?;
                    default_admin.to_string()
                }
            };
            Cli::Ctl(CtlArgs {
                admin,
                json: globals.json,
                command,
            })
        }
        Step::Help(level) => level.help(),
    })
}

/// What a sub-parser found: something to run, or `--help` at some level.
enum Step<T> {
    Run(T),
    Help(Level),
}

/// `ctl syncer ...`.
fn parse_syncer(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "syncer"]);
    let word = match subcommand(tokens, globals, level, "start, stop or status")? {
        Step::Run(word) => word,
        Step::Help(level) => return Ok(Step::Help(level)),
    };
    match word {
        "start" => parse_syncer_start(tokens, globals),
        "stop" => {
            let level = Level(&["ctl", "syncer", "stop"]);
            parse_no_options(tokens, globals, level, CtlCommand::SyncerStop)
        }
        "status" => {
            let level = Level(&["ctl", "syncer", "status"]);
            parse_no_options(tokens, globals, level, CtlCommand::SyncerStatus)
        }
        _ => Err(level.unknown_command(word)),
    }
}

/// `ctl server ...`.
fn parse_server(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "server"]);
    let word = match subcommand(tokens, globals, level, "start, stop or status")? {
        Step::Run(word) => word,
        Step::Help(level) => return Ok(Step::Help(level)),
    };
    match word {
        "start" => parse_server_start(tokens, globals),
        "stop" => {
            let level = Level(&["ctl", "server", "stop"]);
            parse_no_options(tokens, globals, level, CtlCommand::ServerStop)
        }
        "status" => {
            let level = Level(&["ctl", "server", "status"]);
            parse_no_options(tokens, globals, level, CtlCommand::ServerStatus)
        }
        _ => Err(level.unknown_command(word)),
    }
}

/// `ctl members ...`.
fn parse_members(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "members"]);
    let word = match subcommand(tokens, globals, level, "list, add, remove or update")? {
        Step::Run(word) => word,
        Step::Help(level) => return Ok(Step::Help(level)),
    };
    match word {
        "list" => {
            let level = Level(&["ctl", "members", "list"]);
            parse_no_options(tokens, globals, level, CtlCommand::MembersList)
        }
        "add" => parse_member_add(tokens, globals),
        "remove" => parse_member_remove(tokens, globals),
        "update" => parse_member_update(tokens, globals),
        _ => Err(level.unknown_command(word)),
    }
}

/// The `--flag value` options of a leaf command, each at most once; `None` on `--help`.
fn parse_valued_options(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
    level: Level,
    allowed: &[&str],
) -> Result<Option<Vec<(String, String)>>, UsageError> {
    let mut values: Vec<(String, String)> = Vec::new();
    while let Some(token) = tokens.next() {
        let (name, inline) = level.flag(token)?;
        if name == "--help" || name == "-h" {
            return Ok(None);
        }
        if globals.take(tokens, name, inline, level)? {
            continue;
        }
        if !allowed.contains(&name) {
            return Err(level.unknown_flag(name));
        }
        if values.iter().any(|(flag, _)| flag == name) {
            return Err(level.error(&format!("option {name} given twice")));
        }
        let value = tokens.value(name, inline, level)?;
        values.push((name.to_string(), value));
    }
    Ok(Some(values))
}

/// Takes the value of `flag` out of `values`.
fn take_value(values: &mut Vec<(String, String)>, flag: &str) -> Option<String> {
    let position = values.iter().position(|(name, _)| name == flag)?;
    Some(values.swap_remove(position).1)
}

fn member_name(values: &mut Vec<(String, String)>, level: Level) -> Result<String, UsageError> {
    let name = required(take_value(values, "--name"), "--name", level)?;
    validate::check_member_name("name", &name)
        .map_err(|error| level.error(&flag_message(&error)))?;
    Ok(name)
}

fn member_addr(
    values: &mut Vec<(String, String)>,
    flag: &str,
    field: &'static str,
    level: Level,
) -> Result<Option<String>, UsageError> {
    take_value(values, flag)
        .map(|url| {
            validate::canonical_addr(field, &url)
                .map_err(|error| level.error(&flag_message(&error)))
        })
        .transpose()
}

fn parse_member_add(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "members", "add"]);
    let allowed = ["--name", "--peer-url", "--admin-url"];
    let Some(mut values) = parse_valued_options(tokens, globals, level, &allowed)? else {
        return Ok(Step::Help(level));
    };
    let name = member_name(&mut values, level)?;
    let peer_url = member_addr(&mut values, "--peer-url", "peer_url", level)?;
    let peer_url = required(peer_url, "--peer-url", level)?;
    let admin_url = member_addr(&mut values, "--admin-url", "admin_url", level)?;
    Ok(Step::Run(CtlCommand::MemberAdd(MemberAdd {
        name,
        peer_url,
        admin_url,
    })))
}

fn parse_member_update(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "members", "update"]);
    let Some(mut values) = parse_valued_options(tokens, globals, level, &["--name", "--peer-url"])?
    else {
        return Ok(Step::Help(level));
    };
    let name = member_name(&mut values, level)?;
    let peer_url = member_addr(&mut values, "--peer-url", "peer_url", level)?;
    let new_peer_url = required(peer_url, "--peer-url", level)?;
    Ok(Step::Run(CtlCommand::MemberUpdate(MemberUpdate {
        name,
        new_peer_url,
    })))
}

fn parse_member_remove(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "members", "remove"]);
    let Some(mut values) = parse_valued_options(tokens, globals, level, &["--name"])? else {
        return Ok(Step::Help(level));
    };
    let name = member_name(&mut values, level)?;
    Ok(Step::Run(CtlCommand::MemberRemove { name }))
}

fn parse_purge(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "purge"]);
    let Some(mut values) = parse_valued_options(tokens, globals, level, &["--to-file"])? else {
        return Ok(Step::Help(level));
    };
    let to_file = required(take_value(&mut values, "--to-file"), "--to-file", level)?;
    validate::check_binlog_file("to_file", &to_file)
        .map_err(|error| level.error(&flag_message(&error)))?;
    Ok(Step::Run(CtlCommand::Purge { to_file }))
}

/// Reads up to the next word of a command group, taking global flags on the way;
/// `expected` lists the words, for the error when there is none.
fn subcommand<'a>(
    tokens: &mut Tokens<'a>,
    globals: &mut CtlGlobals,
    level: Level,
    expected: &str,
) -> Result<Step<&'a str>, UsageError> {
    loop {
        match tokens.next() {
            None => return Err(level.error(&format!("missing command ({expected})"))),
            Some(Token::Word(word)) => return Ok(Step::Run(word)),
            Some(Token::Flag { name, inline }) => {
                if name == "--help" || name == "-h" {
                    return Ok(Step::Help(level));
                }
                if !globals.take(tokens, name, inline, level)? {
                    return Err(level.unknown_flag(name));
                }
            }
        }
    }
}

/// A leaf command without options of its own.
fn parse_no_options(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
    level: Level,
    command: CtlCommand,
) -> Result<Step<CtlCommand>, UsageError> {
    while let Some(token) = tokens.next() {
        let (name, inline) = level.flag(token)?;
        if name == "--help" || name == "-h" {
            return Ok(Step::Help(level));
        }
        if !globals.take(tokens, name, inline, level)? {
            return Err(level.unknown_flag(name));
        }
    }
    Ok(Step::Run(command))
}

/// The options of `ctl syncer start`, as given.
#[derive(Default)]
struct SyncerStartOptions {
    syncer_id: Option<u32>,
    mysql_addr: Option<String>,
    mysql_user: Option<String>,
    mysql_password: Option<String>,
    mysql_password_file: Option<PathBuf>,
    syncer_uuid: Option<String>,
    semi_sync: bool,
    gtid: Option<String>,
    binlog_file: Option<String>,
    binlog_pos: Option<u64>,
}

fn parse_syncer_start(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "syncer", "start"]);
    let mut options = SyncerStartOptions::default();
    while let Some(token) = tokens.next() {
        let (name, inline) = level.flag(token)?;
        if name == "--help" || name == "-h" {
            return Ok(Step::Help(level));
        }
        if globals.take(tokens, name, inline, level)? {
            continue;
        }
        let o = &mut options;
        match name {
            "--syncer-id" => set_once(&mut o.syncer_id, name, level, || {
                let text = tokens.value(name, inline, level)?;
                parse_number::<u32>(&text)
                    .filter(|&id| id > 0)
                    .ok_or_else(|| level.bad_value(name, "a positive integer (u32)", &text))
            })?,
            "--mysql-addr" => set_once(&mut o.mysql_addr, name, level, || {
                tokens.value(name, inline, level)
            })?,
            "--mysql-user" => set_once(&mut o.mysql_user, name, level, || {
                tokens.value(name, inline, level)
            })?,
            "--mysql-password" => set_once(&mut o.mysql_password, name, level, || {
                tokens.value(name, inline, level)
            })?,
            "--mysql-password-file" => set_once(&mut o.mysql_password_file, name, level, || {
                tokens.value(name, inline, level).map(PathBuf::from)
            })?,
            "--syncer-uuid" => set_once(&mut o.syncer_uuid, name, level, || {
                tokens.value(name, inline, level)
            })?,
            "--gtid" => set_once(&mut o.gtid, name, level, || {
                tokens.value(name, inline, level)
            })?,
            "--binlog-file" => set_once(&mut o.binlog_file, name, level, || {
                tokens.value(name, inline, level)
            })?,
            "--binlog-pos" => set_once(&mut o.binlog_pos, name, level, || {
                let text = tokens.value(name, inline, level)?;
                parse_number::<u64>(&text)
                    .ok_or_else(|| level.bad_value(name, "an unsigned integer (u64)", &text))
            })?,
            "--semi-sync" => {
                level.no_value(name, inline)?;
                o.semi_sync = true;
            }
            _ => return Err(level.unknown_flag(name)),
        }
    }
    let syncer_id = required(options.syncer_id, "--syncer-id", level)?;
    let mysql_addr = required(options.mysql_addr, "--mysql-addr", level)?;
    let mysql_user = required(options.mysql_user, "--mysql-user", level)?;
    let (mysql_password, password_file) = password_or_file(
        options.mysql_password,
        options.mysql_password_file,
        "--mysql-password",
        level,
    )?;
    let args = SyncerArgs {
        syncer_id,
        mysql_addr,
        mysql_user,
        mysql_password,
        syncer_uuid: options.syncer_uuid,
        semi_sync: options.semi_sync,
        gtid: options.gtid,
        binlog_file: options.binlog_file,
        binlog_pos: options.binlog_pos,
    };
    validate::check_syncer_args(&args).map_err(|error| level.error(&flag_message(&error)))?;
    Ok(Step::Run(CtlCommand::SyncerStart {
        args,
        password_file,
    }))
}

fn parse_server_start(
    tokens: &mut Tokens<'_>,
    globals: &mut CtlGlobals,
) -> Result<Step<CtlCommand>, UsageError> {
    let level = Level(&["ctl", "server", "start"]);
    let (mut addr, mut user, mut password, mut password_file) = (None, None, None, None);
    let (mut auth_plugin, mut rsa_private_key_path) = (None, None);
    while let Some(token) = tokens.next() {
        let (name, inline) = level.flag(token)?;
        if name == "--help" || name == "-h" {
            return Ok(Step::Help(level));
        }
        if globals.take(tokens, name, inline, level)? {
            continue;
        }
        let slot = match name {
            "--addr" => &mut addr,
            "--user" => &mut user,
            "--password" => &mut password,
            "--password-file" => &mut password_file,
            "--auth-plugin" => &mut auth_plugin,
            "--rsa-private-key-path" => &mut rsa_private_key_path,
            _ => return Err(level.unknown_flag(name)),
        };
        set_once(slot, name, level, || tokens.value(name, inline, level))?;
    }
    let addr = required(addr, "--addr", level)?;
    let user = required(user, "--user", level)?;
    let (password, password_file) = password_or_file(
        password,
        password_file.map(PathBuf::from),
        "--password",
        level,
    )?;
    let args = ServerArgs {
        addr,
        user,
        password,
        auth_plugin,
        rsa_private_key_path,
    };
    validate::check_server_args(&args).map_err(|error| level.error(&flag_message(&error)))?;
    Ok(Step::Run(CtlCommand::ServerStart {
        args,
        password_file,
    }))
}

/// Exactly one of `FLAG PASSWORD` and `FLAG-file FILE`: the password given (empty when it
/// is to be read from the file), and the file.
fn password_or_file(
    password: Option<String>,
    file: Option<PathBuf>,
    flag: &str,
    level: Level,
) -> Result<(String, Option<PathBuf>), UsageError> {
    match (password, file) {
        (Some(password), None) => Ok((password, None)),
        (None, Some(file)) => Ok((String::new(), Some(file))),
        (Some(_), Some(_)) => Err(level.error(&format!(
            "options {flag} and {flag}-file cannot be combined; give one"
        ))),
        (None, None) => {
            Err(level.error(&format!("missing required option {flag} (or {flag}-file)")))
        }
    }
}

fn required<T>(value: Option<T>, flag: &str, level: Level) -> Result<T, UsageError> {
    value.ok_or_else(|| level.error(&format!("missing required option {flag}")))
}

/// Stores the value `produce` yields, refusing a flag given twice.
fn set_once<T>(
    slot: &mut Option<T>,
    flag: &str,
    level: Level,
    produce: impl FnOnce() -> Result<T, UsageError>,
) -> Result<(), UsageError> {
    if slot.is_some() {
        return Err(level.error(&format!("option {flag} given twice")));
    }
    *slot = Some(produce()?);
    Ok(())
}

/// Decimal digits only (no sign, no blanks), within `T`'s range.
fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn check_addr(field: &'static str, addr: &str, level: Level) -> Result<(), UsageError> {
    validate::check_host_port(field, addr).map_err(|error| level.error(&flag_message(&error)))
}

/// Rewrites a validation message about JSON fields in terms of command-line options:
/// "field `binlog_pos` ... `binlog_file`" becomes "option --binlog-pos ... --binlog-file".
fn flag_message(error: &FieldError) -> String {
    // The request fields that have a command-line option of the same name.
    const OTHER_FIELDS: [&str; 7] = [
        "admin",
        "admin_addr",
        "name",
        "peer_addr",
        "peer_url",
        "admin_url",
        "to_file",
    ];
    let mut message = error.message.clone();
    let mut named = false;
    let fields = validate::SYNCER_FIELDS
        .iter()
        .chain(&validate::SERVER_FIELDS)
        .chain(&OTHER_FIELDS);
    for field in fields {
        let flag = format!("--{}", field.replace('_', "-"));
        let as_field = format!("field `{field}`");
        let quoted = format!("`{field}`");
        named |= message.contains(&quoted);
        message = message
            .replace(&as_field, &format!("option {flag}"))
            .replace(&quoted, &flag);
    }
    if named || error.field.is_empty() {
        message
    } else {
        format!("--{}: {message}", error.field.replace('_', "-"))
    }
}

/// One command-line token.
enum Token<'a> {
    /// `--name`, `--name=inline`, or a short `-x`.
    Flag {
        name: &'a str,
        inline: Option<&'a str>,
    },
    Word(&'a str),
}

/// The arguments, consumed left to right.
struct Tokens<'a> {
    args: &'a [String],
    next_index: usize,
}

impl<'a> Tokens<'a> {
    fn new(args: &'a [String]) -> Tokens<'a> {
        Tokens {
            args,
            next_index: 0,
        }
    }

    fn next_raw(&mut self) -> Option<&'a str> {
        let arg = self.args.get(self.next_index)?;
        self.next_index += 1;
        Some(arg.as_str())
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let arg = self.next_raw()?;
        Some(
            if let Some(long) = arg.strip_prefix("--").filter(|s| !s.is_empty()) {
                match long.split_once('=') {
                    Some((name, inline)) => Token::Flag {
                        // `name` is `arg` minus its "=value" tail, still borrowed from `args`.
                        name: &arg[..name.len() + 2],
                        inline: Some(inline),
                    },
                    None => Token::Flag {
                        name: arg,
                        inline: None,
                    },
                }
            } else if arg.len() > 1 && arg.starts_with('-') {
                Token::Flag {
                    name: arg,
                    inline: None,
                }
            } else {
                Token::Word(arg)
            },
        )
    }

    /// Everything not consumed yet.
    fn rest(&mut self) -> &'a [String] {
        let rest = self.args.get(self.next_index..).unwrap_or(&[]);
        self.next_index = self.args.len();
        rest
    }

    fn expect_end(&mut self, level: Level) -> Result<(), UsageError> {
        match self.next_raw() {
            None => Ok(()),
            Some(extra) => Err(level.error(&format!("unexpected argument `{extra}`"))),
        }
    }

    /// The value of `flag`: its `=value`, else the next argument (whatever it looks like,
    /// so that a password may start with a dash).
    fn value(
        &mut self,
        flag: &str,
        inline: Option<&str>,
        level: Level,
    ) -> Result<String, UsageError> {
        match inline {
            Some(value) => Ok(value.to_string()),
            None => self
                .next_raw()
                .map(str::to_string)
                .ok_or_else(|| level.error(&format!("option {flag} needs a value"))),
        }
    }

    fn path(
        &mut self,
        flag: &str,
        inline: Option<&str>,
        level: Level,
    ) -> Result<PathBuf, UsageError> {
        let value = self.value(flag, inline, level)?;
        if value.is_empty() {
            return Err(level.error(&format!("option {flag} needs a non-empty path")));
        }
        Ok(PathBuf::from(value))
    }
}

/// A position in the command tree, for help texts and error hints.
#[derive(Clone, Copy)]
struct Level(&'static [&'static str]);

impl Level {
    fn help_command(self) -> String {
        let mut words = vec!["ferrobus"];
        words.extend_from_slice(self.0);
        words.push("--help");
        words.join(" ")
    }

    fn error(self, message: &str) -> UsageError {
        UsageError {
            message: message.to_string(),
            help_command: self.help_command(),
        }
    }

    fn help(self) -> Cli {
        Cli::Help(help_text(self.0).unwrap_or_default())
    }

    fn unknown_flag(self, flag: &str) -> UsageError {
        self.error(&format!("unknown option {flag}"))
    }

    fn unknown_command(self, word: &str) -> UsageError {
        self.error(&format!("unknown command `{word}`"))
    }

    fn bad_value(self, flag: &str, expected: &str, got: &str) -> UsageError {
        self.error(&format!("option {flag} must be {expected}, got {got:?}"))
    }

    fn no_value(self, flag: &str, inline: Option<&str>) -> Result<(), UsageError> {
        match inline {
            None => Ok(()),
            Some(_) => Err(self.error(&format!("option {flag} takes no value"))),
        }
    }

    /// Only flags are allowed from here on.
    fn flag(self, token: Token<'_>) -> Result<(&str, Option<&str>), UsageError> {
        match token {
            Token::Flag { name, inline } => Ok((name, inline)),
            Token::Word(word) => Err(self.error(&format!("unexpected argument `{word}`"))),
        }
    }
}

/// The help text of a command path (`[]` is the top level), or `None` if there is no such
/// command.
pub fn help_text(path: &[&str]) -> Option<String> {
    let text = match path {
        [] => top_help(),
        ["serve"] => SERVE_HELP.to_string(),
        ["ctl"] => ctl_help(),
        ["ctl", "syncer"] => format!("{SYNCER_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "syncer", "start"] => format!("{SYNCER_START_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "syncer", "stop"] => format!("{SYNCER_STOP_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "syncer", "status"] => format!("{SYNCER_STATUS_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "server"] => format!("{SERVER_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "server", "start"] => format!("{SERVER_START_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "server", "stop"] => format!("{SERVER_STOP_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "server", "status"] => format!("{SERVER_STATUS_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "health"] => format!("{HEALTH_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "members"] => format!("{MEMBERS_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "members", "list"] => format!("{MEMBERS_LIST_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "members", "add"] => format!("{MEMBERS_ADD_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "members", "remove"] => format!("{MEMBERS_REMOVE_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "members", "update"] => format!("{MEMBERS_UPDATE_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "cluster"] => format!("{CLUSTER_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "raft"] => format!("{RAFT_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "purge"] => format!("{PURGE_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "import"] => format!("{IMPORT_HELP}{CTL_OPTIONS_NOTE}"),
        ["ctl", "export"] => format!("{CTL_EXPORT_HELP}{CTL_OPTIONS_NOTE}"),
        ["export"] => EXPORT_HELP.to_string(),
        _ => return None,
    };
    Some(text)
}

fn top_help() -> String {
    format!(
        "{version} - a Raft-replicated MySQL/MariaDB binlog server

Usage:
  ferrobus serve [OPTIONS]          run a node
  ferrobus ctl [OPTIONS] COMMAND    control a running node through its admin API
  ferrobus export --to DIR [...]    write a stopped node's binlog as native files
  ferrobus help [COMMAND...]        show the help of a command
  ferrobus --version                print the version

Options:
  -h, --help       print this help
  -V, --version    print the version

Examples:
  ferrobus serve --data-dir /var/lib/ferrobus
  ferrobus ctl syncer status
  ferrobus help ctl syncer start

Run `ferrobus <command> --help` (e.g. `ferrobus ctl --help`) for the options of a command.
",
        version = version_text()
    )
}

const SERVE_HELP: &str =
    "Run a ferrobus node: the HTTP admin API, the Raft peer transport, and the syncer and
binlog server it is told to start (a restarted node resumes what was running).

Usage:
  ferrobus serve [--config FILE] [--data-dir DIR] [--admin-addr HOST:PORT]
                 [--name NAME] [--peer-addr HOST:PORT]
                 [--initial-cluster NAME=HOST:PORT,...] [--initial-cluster-state new|existing]
                 [--cluster-token TOKEN]

Options:
  --config FILE            TOML configuration file; every key in it is optional
                           (default: none)
  --data-dir DIR           where the binlog and the node's state are kept; overrides
                           data_dir from the config file (default: ./ferrobus-data)
  --admin-addr HOST:PORT   address of the HTTP admin API; overrides admin_addr from the
                           config file; port 0 picks a free port, which the log shows
                           (default: 127.0.0.1:9595)
  --name NAME              this node's name in the cluster: letters, digits, - _ .
                           (default: default)
  --peer-addr HOST:PORT    where the Raft peer transport listens; 0.0.0.0 or [::] with
                           the port of this node's --initial-cluster entry listens on all
                           interfaces (default: this node's --initial-cluster entry, else
                           127.0.0.1:9596)
  --initial-cluster NAME=HOST:PORT,...
                           every initial member and its peer address, this node included;
                           all nodes of a new cluster get the same list (default: a
                           one-node cluster NAME=PEER_ADDR)
  --cluster-token TOKEN    names the cluster: every member needs the same token; peers
                           with another are refused (default: ferrobus)
  --initial-cluster-state new|existing
                           new: bootstrap a new cluster with the listed members;
                           existing: join a running cluster after `ferrobus ctl members
                           add` (the list then names its members and this node)
                           (default: new)
  -h, --help               print this help

The config file (TOML) takes data_dir, admin_addr, http_workers, name, peer_addr,
initial_cluster, initial_cluster_state, cluster_token, [server] max_connections,
auth_plugin, rsa_private_key_path, and [retention] max_bytes, max_age_seconds,
check_interval_seconds (see the README's configuration table). The admin API has no
authentication: keep it on an address only operators reach. A node's raft id comes from its name and peer address; ids
are never reused, so a removed node comes back under a new name or address.
Logs go to stderr; set RUST_LOG to change the level (default: info).
SIGTERM, SIGINT or SIGHUP stops the node cleanly.

Examples:
  ferrobus serve
  ferrobus serve --config /etc/ferrobus.toml --data-dir /var/lib/ferrobus --admin-addr 0.0.0.0:9595
  ferrobus serve --name n1 --peer-addr 10.0.0.1:9596 --admin-addr 10.0.0.1:9595 \\
      --initial-cluster n1=10.0.0.1:9596,n2=10.0.0.2:9596,n3=10.0.0.3:9596
";

fn ctl_help() -> String {
    format!(
        "Control a running ferrobus node through its HTTP admin API.

Usage:
  ferrobus ctl [--admin HOST:PORT] [--json] COMMAND

Commands:
  syncer start    start pulling the binlog from a MySQL/MariaDB master
  syncer stop     stop the syncer
  syncer status   show the syncer's state and position
  server start    start serving the stored binlog to replicas
  server stop     stop the binlog server
  server status   show the binlog server's state and connected replicas
  members list    list the cluster's members
  members add     add a member (then start it with --initial-cluster-state existing)
  members remove  remove a member
  members update  change a member's peer address
  cluster         list the members and which one leads
  raft            this node's raft state, its followers' progress, sync and commit times
  purge           drop the stored binlog before a file, on every node
  import          store native binlog files (a chain of them) through the leader
  export          download the stored binlog as native binlog files
  health          check that the node answers

Options (accepted anywhere after `ctl`):
  --admin HOST:PORT   the node's admin API (default: {DEFAULT_ADMIN_ADDR}, or the
                      {ADMIN_ADDR_ENV} environment variable when set)
  --json              print the node's raw JSON reply instead of text
  -h, --help          print this help

Any node takes any command: a follower forwards syncer, membership and purge
commands to the leader and prints the leader's answer.

Exit status: 0 success, 1 the node answered with an error (printed to stderr),
2 usage error, 3 the node could not be reached.

Examples:
  ferrobus ctl health
  ferrobus ctl --admin 10.0.0.5:9595 --json syncer status
  ferrobus ctl syncer start --help
"
    )
}

const CTL_OPTIONS_NOTE: &str = "
Common options: --admin HOST:PORT (default: 127.0.0.1:9595, or $FERROBUS_ADMIN) and
--json (print the raw JSON reply); see `ferrobus ctl --help`.
";

const SYNCER_HELP: &str =
    "Control the syncer, which pulls the binlog from a MySQL/MariaDB master as a
replica would and stores it on this node.

Usage:
  ferrobus ctl [OPTIONS] syncer start --syncer-id N --mysql-addr HOST:PORT
                                      --mysql-user USER --mysql-password PASSWORD [...]
  ferrobus ctl [OPTIONS] syncer stop
  ferrobus ctl [OPTIONS] syncer status

Run `ferrobus ctl syncer start --help` for the options of `start`.

Examples:
  ferrobus ctl syncer status
  ferrobus ctl syncer stop
";

const SYNCER_START_HELP: &str =
    "Start the syncer: connect to a master as a replica and store its binlog.
Fails (HTTP 409) if the syncer already runs; the node keeps these settings and
resumes the syncer after a restart.

Usage:
  ferrobus ctl [OPTIONS] syncer start --syncer-id N --mysql-addr HOST:PORT
      --mysql-user USER (--mysql-password PASSWORD | --mysql-password-file FILE)
      [--syncer-uuid UUID] [--gtid GTIDLIST | --binlog-file FILE --binlog-pos N]

Options:
  --syncer-id N              server_id to register with on the master, unique among
                             its replicas (required; 1..4294967295)
  --mysql-addr HOST:PORT     the master (required; IPv6 as [::1]:3306)
  --mysql-user USER          replication user on the master (required)
  --mysql-password PASSWORD  its password (this or --mysql-password-file is required;
                             may be empty: --mysql-password=)
  --mysql-password-file FILE read the password from FILE instead (keeps it out of the
                             process list): one line of at most 4096 bytes, its newline
                             dropped; an empty file is refused (FILE may be /dev/stdin)
  --syncer-uuid UUID         replica UUID announced to a MySQL master as
                             @slave_uuid (default: derived from --syncer-id)
  --semi-sync                semi-synchronous replication (not supported yet)
  --gtid GTIDLIST            start after this MariaDB GTID list, e.g. 0-1-100,1-2-5,
                             or MySQL GTID set, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5
                             (from the start of the file the master begins that dump in;
                             cannot be combined with --binlog-file)
  --binlog-file FILE         start in this binlog file of the master (needs --binlog-pos)
  --binlog-pos N             at this byte offset in it, 4 or more (needs --binlog-file)
  -h, --help                 print this help

Without --gtid or --binlog-file an empty node starts at the master's oldest binlog
file still on disk (position 4); a node that holds binlog always resumes right after
what it has stored (a start point is refused then). A password given on the
command line is visible to other local users in the process list; a password file
is not. The node keeps the password with the syncer settings in its Raft log.

Examples:
  ferrobus ctl syncer start --syncer-id 1001 --mysql-addr 10.0.0.1:3306 \\
      --mysql-user repl --mysql-password secret --gtid 0-1-100
  ferrobus ctl syncer start --syncer-id 1001 --mysql-addr db.example.com:3306 \\
      --mysql-user repl --mysql-password-file /etc/ferrobus/repl.pw \\
      --binlog-file mysql-bin.000003 --binlog-pos 4
";

const SYNCER_STOP_HELP: &str = "Stop the syncer. Succeeds when it is already stopped.

Usage:
  ferrobus ctl [OPTIONS] syncer stop

Options:
  -h, --help   print this help

Example:
  ferrobus ctl syncer stop
";

const SYNCER_STATUS_HELP: &str =
    "Show the syncer's state (running, connecting, stopped or error), its master,
position (GTID, binlog file and offset), lag, counters and last error.

Usage:
  ferrobus ctl [OPTIONS] syncer status

Options:
  -h, --help   print this help

Examples:
  ferrobus ctl syncer status
  ferrobus ctl --json syncer status
";

const SERVER_HELP: &str =
    "Control the binlog server, which serves the stored binlog to downstream replicas
and CDC clients as a MySQL/MariaDB master would.

Usage:
  ferrobus ctl [OPTIONS] server start --addr HOST:PORT --user USER --password PASSWORD
  ferrobus ctl [OPTIONS] server stop
  ferrobus ctl [OPTIONS] server status

Run `ferrobus ctl server start --help` for the options of `start`.

Examples:
  ferrobus ctl server status
  ferrobus ctl server stop
";

const SERVER_START_HELP: &str =
    "Start the binlog server. Fails (HTTP 409) if it already runs; the node keeps
these settings and restarts the server after a restart.

Usage:
  ferrobus ctl [OPTIONS] server start --addr HOST:PORT --user USER
        (--password PASSWORD | --password-file FILE)
        [--auth-plugin NAME] [--rsa-private-key-path FILE]

Options:
  --addr HOST:PORT      address to listen on for replicas (required; e.g. 0.0.0.0:3307)
  --user USER           user name replicas must log in with (required)
  --password PASSWORD   its password (this or --password-file is required; may be
                        empty: --password=)
  --password-file FILE  read the password from FILE instead (keeps it out of the
                        process list): one line of at most 4096 bytes, its newline
                        dropped; an empty file is refused (FILE may be /dev/stdin)
  --auth-plugin NAME    mysql_native_password (MariaDB replicas) or
                        caching_sha2_password (MySQL 8.0+/9 replicas); default: the
                        node's [server] auth_plugin (mysql_native_password unless set)
  --rsa-private-key-path FILE
                        PEM RSA private key on the node for caching_sha2_password
                        (default: a key pair generated when the node starts serving)
  -h, --help            print this help

The node keeps these settings, the password included, in DATA_DIR/desired.json
(mode 0600).

Examples:
  ferrobus ctl server start --addr 0.0.0.0:3307 --user repl \\
      --password-file /etc/ferrobus/replicas.pw
  ferrobus ctl server start --addr 127.0.0.1:3307 --user repl --password secret
";

const SERVER_STOP_HELP: &str =
    "Stop the binlog server, disconnecting its replicas. Succeeds when it is already
stopped.

Usage:
  ferrobus ctl [OPTIONS] server stop

Options:
  -h, --help   print this help

Example:
  ferrobus ctl server stop
";

const SERVER_STATUS_HELP: &str =
    "Show the binlog server's state, address and user, and a table of connected
replicas (server_id, address, mode, position, bytes sent, connected since).

Usage:
  ferrobus ctl [OPTIONS] server status

Options:
  -h, --help   print this help

Examples:
  ferrobus ctl server status
  ferrobus ctl --json server status
";

const MEMBERS_HELP: &str = "Manage the members of the cluster (through the leader).

Usage:
  ferrobus ctl [OPTIONS] members list
  ferrobus ctl [OPTIONS] members add --name NAME --peer-url HOST:PORT [--admin-url HOST:PORT]
  ferrobus ctl [OPTIONS] members remove --name NAME
  ferrobus ctl [OPTIONS] members update --name NAME --peer-url HOST:PORT

Run `ferrobus ctl members <command> --help` for the details of each.

Examples:
  ferrobus ctl members list
  ferrobus ctl members add --name n4 --peer-url 10.0.0.4:9596 --admin-url 10.0.0.4:9595
";

const MEMBERS_LIST_HELP: &str =
    "List the cluster's members: name, raft id, peer address, admin API address,
binlog server address and role (voter; learner while it catches up; none when
raft does not know it: for a moment during every change, or for good after an
add that failed (add it again) or a removal that stopped halfway (remove it
again)), as this node knows them.

Usage:
  ferrobus ctl [OPTIONS] members list

Options:
  -h, --help   print this help

Examples:
  ferrobus ctl members list
  ferrobus ctl --json members list
";

const MEMBERS_ADD_HELP: &str =
    "Add a member to the cluster. Then start the new node with the same --name and
--peer-addr, --initial-cluster listing the members and itself, and
--initial-cluster-state existing: it joins as a learner (it receives the log
but does not vote) and catches up; the leader then promotes it to voter, once
the voters it hears from, with it, make a quorum. Refused (HTTP 409) when the
name's id was used before (ids are never reused), the address is taken, another
membership change is still in progress, or this node runs alone on the default
peer address (no other node could reach it). Adding a member again keeps its
addresses and role. A member whose ROLE reads none (its add failed) is repaired
by adding it again; one left so by a removal that stopped halfway is removed
again (adding it would bring the removed node back).

Usage:
  ferrobus ctl [OPTIONS] members add --name NAME --peer-url HOST:PORT [--admin-url HOST:PORT]

Options:
  --name NAME             the new node's name (required)
  --peer-url HOST:PORT    its Raft peer address (required; http:// is accepted and dropped)
  --admin-url HOST:PORT   its admin API address (default: announced by the node itself
                          once it runs)
  -h, --help              print this help

Example:
  ferrobus ctl members add --name n4 --peer-url 10.0.0.4:9596 --admin-url 10.0.0.4:9595
";

const MEMBERS_REMOVE_HELP: &str =
    "Remove a member from the cluster. Refused when it would break the quorum; the
removed node's id is never given again. The removed process keeps running until you
stop it: it stops its binlog server and its /health says `removed`. To bring the
machine back, clear its data directory and add it under another name or peer address.
Removing the leader hands leadership over first; one call does it.

Usage:
  ferrobus ctl [OPTIONS] members remove --name NAME

Options:
  --name NAME   the member to remove (required)
  -h, --help    print this help

Example:
  ferrobus ctl members remove --name n3
";

const MEMBERS_UPDATE_HELP: &str = "Change a member's Raft peer address (its id stays the same).
Then restart that node listening there (--peer-addr), with its own --initial-cluster
entry naming the new address; the others reach it there (and learn it from its hello).

Usage:
  ferrobus ctl [OPTIONS] members update --name NAME --peer-url HOST:PORT

Options:
  --name NAME            the member (required)
  --peer-url HOST:PORT   its new peer address (required)
  -h, --help             print this help

Example:
  ferrobus ctl members update --name n2 --peer-url 10.0.0.12:9596
";

const CLUSTER_HELP: &str = "List the cluster's members and show which one is the leader.
Asked of the leader, it also shows how long ago the leader last heard from each
member (HEARD; `heard_ms_ago` with --json), and names those not heard from for
over 2.5 s (down, or cut off) or never since it started; a follower cannot tell,
and names the leader's admin address to ask instead. The exit status is 0
whenever the node answers, whatever the cluster's health.

Usage:
  ferrobus ctl [OPTIONS] cluster

Options:
  -h, --help   print this help

Examples:
  ferrobus ctl cluster
  ferrobus ctl --json cluster
";

const RAFT_HELP: &str =
    "Show this node's raft state (not forwarded: ask each node): its role, term and
leader, its log (first, last, durable, committed and applied index), on the leader
each follower's progress (matched index, state, when last heard from), how long
the log's fdatasyncs have taken since the node started, and how long the proposals
made here as leader took from its raft thread to applied (one commit round); each as
count, mean, p50, p99, p99.9 and max (a quantile is at most 25 % above the true value).

Usage:
  ferrobus ctl [OPTIONS] raft

Options:
  -h, --help   print this help

Examples:
  ferrobus ctl raft
  ferrobus ctl --admin 10.0.0.2:9595 --json raft
";

const PURGE_HELP: &str =
    "Drop the stored binlog before a file, on every node (through the leader), like
PURGE BINARY LOGS TO. Replicas that still need purged data get an error saying so.

Usage:
  ferrobus ctl [OPTIONS] purge --to-file FILE

Options:
  --to-file FILE   the first binlog file to keep, e.g. mysql-bin.000042 (required)
  -h, --help       print this help

Example:
  ferrobus ctl purge --to-file mysql-bin.000042
";

const IMPORT_HELP: &str =
    "Store native binlog files (as a master writes them) on the cluster, through the
leader and Raft like synced events: they keep their names and positions and are
served like events from a master. Several files must form a chain, in order: each
later file is stored under the name the one before leads to (the file its ROTATE
names, or after a STOP the next number), and the files' own numbers must step as
those names do (checked here before sending). Importing the last stored file again continues it
when an earlier import of it stopped part of the way.
Files are sent one by one; the first refusal stops the import with the node's
message, and a refused file leaves the store unchanged.

The node refuses (HTTP 409) while a syncer is configured, a file that is stored
already, or one that does not continue the stored binlog (after a file ending with
a ROTATE, only the file it names); and (HTTP 400) a file that is not a binlog, is
truncated, fails a CRC32 check, or was written without checksums.

Usage:
  ferrobus ctl [OPTIONS] import [--name NAME] FILE...

Options:
  --name NAME   the name the first file is stored under (default: its file name);
                the following files take the names the ROTATE events give them
  -h, --help    print this help

Examples:
  ferrobus ctl import /backup/mysql-bin.000011 /backup/mysql-bin.000012
  ferrobus ctl import --name mysql-bin.000007 ./copy-of-000007
";

const CTL_EXPORT_HELP: &str =
    "Download the stored binlog of a running node as native binlog files, one per
stored master file, byte for byte as imported or synced (the FORMAT_DESCRIPTION's
in-use flag is set on the last file when it does not end with a ROTATE or STOP, as
on the master). Any node answers from its own copy. A file the node holds only from
a later position (its store began inside it) is skipped with a warning.

Usage:
  ferrobus ctl [OPTIONS] export --to DIR [--file NAME] [--force]

Options:
  --to DIR      where to write the files (created if missing; required)
  --file NAME   only this stored file
  --force       overwrite files that exist in DIR (default: refuse)
  -h, --help    print this help

Example:
  ferrobus ctl export --to /backup/binlog
";

const EXPORT_HELP: &str =
    "Write the binlog stored in a stopped node's data directory as native binlog
files, one per stored master file, byte for byte as imported or synced (the
FORMAT_DESCRIPTION's in-use flag is set on the last file when it does not end
with a ROTATE or STOP, as on the master). The log is read as the node would
apply it at its next start; a transaction not stored whole is left out. A file
stored only from a position after 4 (the store began inside it) is skipped with
a warning (an error with --file). Refuses to run while a node uses the data
directory (use `ferrobus ctl export`).

Usage:
  ferrobus export [--data-dir DIR] --to OUTDIR [--file NAME] [--force]

Options:
  --data-dir DIR   the node's data directory (default: ./ferrobus-data)
  --to OUTDIR      where to write the files (created if missing; required)
  --file NAME      only this stored file
  --force          overwrite files that exist in OUTDIR (default: refuse, before
                   writing anything)
  -h, --help       print this help

Example:
  ferrobus export --data-dir /var/lib/ferrobus --to /backup/binlog
";

const HEALTH_HELP: &str = "Check that the node answers; prints its status and version.

Usage:
  ferrobus ctl [OPTIONS] health

Options:
  -h, --help   print this help

Example:
  ferrobus ctl --admin 127.0.0.1:9595 health
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Cli, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse_with_default_admin(&args, "127.0.0.1:9595")
    }

    fn ctl(line: &str) -> CtlArgs {
        match parse_words(line) {
            Ok(Cli::Ctl(args)) => args,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn usage_error(line: &str) -> UsageError {
        match parse_words(line) {
            Err(error) => error,
            other => panic!("{line}: expected a usage error, got {other:?}"),
        }
    }

    fn help(line: &str) -> String {
        match parse_words(line) {
            Ok(Cli::Help(text)) => text,
            other => panic!("{line}: expected help, got {other:?}"),
        }
    }

    const START: &str = "ctl syncer start --syncer-id 7 --mysql-addr db:3306 --mysql-user repl \
                         --mysql-password pw";

    #[test]
    fn top_level() {
        assert!(help("--help").contains("ferrobus serve"));
        assert!(help("-h").contains("ferrobus ctl"));
        assert!(help("help").starts_with(&version_text()));
        assert_eq!(parse_words("--version"), Ok(Cli::Version));
        assert_eq!(parse_words("-V"), Ok(Cli::Version));
        assert_eq!(parse_words("version"), Ok(Cli::Version));
        assert_eq!(usage_error("").message, "no command given");
        let error = usage_error("frobnicate");
        assert_eq!(error.message, "unknown command `frobnicate`");
        assert_eq!(error.help_command, "ferrobus --help");
        assert_eq!(usage_error("--bogus").message, "unknown option --bogus");
        for line in ["--version extra", "version extra"] {
            assert_eq!(
                usage_error(line).message,
                "unexpected argument `extra`",
                "{line}"
            );
        }
        assert!(usage_error("help nope")
            .message
            .contains("no help for `nope`"));
    }

    #[test]
    fn serve() {
        assert_eq!(parse_words("serve"), Ok(Cli::Serve(ServeArgs::default())));
        assert_eq!(
            parse_words("serve --config /etc/f.toml --data-dir=/d --admin-addr [::1]:9000"),
            Ok(Cli::Serve(ServeArgs {
                config: Some("/etc/f.toml".into()),
                data_dir: Some("/d".into()),
                admin_addr: Some("[::1]:9000".into()),
                cluster: ClusterOverrides::default(),
            }))
        );
        let Ok(Cli::Serve(args)) = parse_words("serve --admin-addr 127.0.0.1:0") else {
            panic!()
        };
        assert_eq!(args.admin_addr.as_deref(), Some("127.0.0.1:0"));
        assert!(help("serve --help").contains("--data-dir DIR"));
        assert!(help("serve --data-dir /x -h").contains("--admin-addr"));
        assert_eq!(
            usage_error("serve --config").message,
            "option --config needs a value"
        );
        assert_eq!(
            usage_error("serve --data-dir=").message,
            "option --data-dir needs a non-empty path"
        );
        assert_eq!(
            usage_error("serve --data-dir a --data-dir b").message,
            "option --data-dir given twice"
        );
        let error = usage_error("serve --admin-addr localhost");
        assert!(
            error
                .message
                .starts_with("option --admin-addr must be host:port"),
            "{}",
            error.message
        );
        assert_eq!(error.help_command, "ferrobus serve --help");
        assert_eq!(
            usage_error("serve now").message,
            "unexpected argument `now`"
        );
        assert_eq!(usage_error("serve --json").message, "unknown option --json");
    }

    #[test]
    fn serve_cluster_flags() {
        let Ok(Cli::Serve(args)) = parse_words(
            "serve --name n2 --peer-addr=http://10.0.0.2:9596 --initial-cluster \
             n1=10.0.0.1:9596,n2=10.0.0.2:9596 --initial-cluster-state existing",
        ) else {
            panic!()
        };
        assert_eq!(
            args.cluster,
            ClusterOverrides {
                name: Some("n2".into()),
                peer_addr: Some("10.0.0.2:9596".into()),
                initial_cluster: Some("n1=10.0.0.1:9596,n2=10.0.0.2:9596".into()),
                initial_cluster_state: Some(InitialClusterState::Existing),
                cluster_token: None,
            }
        );
        let cases = [
            ("serve --name 'x'", "option --name must consist of"),
            ("serve --name=", "option --name must not be empty"),
            (
                "serve --peer-addr h",
                "option --peer-addr must be host:port",
            ),
            (
                "serve --initial-cluster n1=h:1,n1=h:2",
                "option --initial-cluster: initial_cluster lists the name \"n1\" twice",
            ),
            (
                "serve --initial-cluster-state old",
                "option --initial-cluster-state must be new or existing, got \"old\"",
            ),
            ("serve --name a --name b", "option --name given twice"),
        ];
        for (line, expected) in cases {
            let error = usage_error(line);
            assert!(
                error.message.starts_with(expected),
                "{line}: {}",
                error.message
            );
            assert_eq!(error.help_command, "ferrobus serve --help");
        }
        let text = help("serve --help");
        for flag in [
            "--name NAME",
            "--peer-addr HOST:PORT",
            "--initial-cluster NAME=HOST:PORT",
            "new|existing",
            "[retention]",
        ] {
            assert!(text.contains(flag), "{flag}");
        }
    }

    #[test]
    fn ctl_cluster_commands() {
        assert_eq!(ctl("ctl members list").command, CtlCommand::MembersList);
        assert_eq!(ctl("ctl cluster --json").command, CtlCommand::Cluster);
        assert_eq!(ctl("ctl raft").command, CtlCommand::Raft);
        assert!(help("ctl raft --help").contains("fdatasyncs"));
        assert!(help("ctl --help").contains("raft "));
        assert_eq!(
            usage_error("ctl raft now").message,
            usage_error("ctl cluster now")
                .message
                .replace("cluster", "raft")
        );
        assert_eq!(
            ctl("ctl members add --name n4 --peer-url http://10.0.0.4:9596 --admin-url=10.0.0.4:9595")
                .command,
            CtlCommand::MemberAdd(MemberAdd {
                name: "n4".into(),
                peer_url: "10.0.0.4:9596".into(),
                admin_url: Some("10.0.0.4:9595".into()),
            })
        );
        assert_eq!(
            ctl("ctl members add --peer-url h:1 --name n4").command,
            CtlCommand::MemberAdd(MemberAdd {
                name: "n4".into(),
                peer_url: "h:1".into(),
                admin_url: None,
            })
        );
        assert_eq!(
            ctl("ctl --admin h:9 members update --name n2 --peer-url h:2").command,
            CtlCommand::MemberUpdate(MemberUpdate {
                name: "n2".into(),
                new_peer_url: "h:2".into(),
            })
        );
        assert_eq!(
            ctl("ctl members remove --name n3").command,
            CtlCommand::MemberRemove { name: "n3".into() }
        );
        assert_eq!(
            ctl("ctl purge --to-file mysql-bin.000042").command,
            CtlCommand::Purge {
                to_file: "mysql-bin.000042".into()
            }
        );
        let cases = [
            (
                "ctl members",
                "missing command (list, add, remove or update)",
                "ctl members",
            ),
            ("ctl members join", "unknown command `join`", "ctl members"),
            (
                "ctl members add --name n4",
                "missing required option --peer-url",
                "ctl members add",
            ),
            (
                "ctl members add --peer-url h:1",
                "missing required option --name",
                "ctl members add",
            ),
            (
                "ctl members add --name n4 --peer-url h",
                "option --peer-url must be host:port",
                "ctl members add",
            ),
            (
                "ctl members add --name n4 --peer-url h:1 --admin-url x",
                "option --admin-url must be host:port",
                "ctl members add",
            ),
            (
                "ctl members add --name a=b --peer-url h:1",
                "option --name must consist of",
                "ctl members add",
            ),
            (
                "ctl members add --name a --name b",
                "option --name given twice",
                "ctl members add",
            ),
            (
                "ctl members remove",
                "missing required option --name",
                "ctl members remove",
            ),
            (
                "ctl members remove --name n1 --peer-url h:1",
                "unknown option --peer-url",
                "ctl members remove",
            ),
            (
                "ctl members update --name n1",
                "missing required option --peer-url",
                "ctl members update",
            ),
            (
                "ctl members list --name x",
                "unknown option --name",
                "ctl members list",
            ),
            (
                "ctl members remove n1",
                "unexpected argument `n1`",
                "ctl members remove",
            ),
            (
                "ctl cluster now",
                "unexpected argument `now`",
                "ctl cluster",
            ),
            (
                "ctl purge",
                "missing required option --to-file",
                "ctl purge",
            ),
            (
                "ctl purge --to-file a/b",
                "option --to-file must be a plain file name",
                "ctl purge",
            ),
            (
                "ctl purge --to-file",
                "option --to-file needs a value",
                "ctl purge",
            ),
        ];
        for (line, expected, help_of) in cases {
            let error = usage_error(line);
            assert!(
                error.message.starts_with(expected),
                "{line}: {}",
                error.message
            );
            assert_eq!(
                error.help_command,
                format!("ferrobus {help_of} --help"),
                "{line}"
            );
        }
    }

    #[test]
    fn ctl_simple_commands_and_globals() {
        let args = ctl("ctl health");
        assert_eq!(args.admin, "127.0.0.1:9595");
        assert!(!args.json);
        assert_eq!(args.command, CtlCommand::Health);
        assert_eq!(ctl("ctl syncer stop").command, CtlCommand::SyncerStop);
        assert_eq!(ctl("ctl syncer status").command, CtlCommand::SyncerStatus);
        assert_eq!(ctl("ctl server stop").command, CtlCommand::ServerStop);
        assert_eq!(ctl("ctl server status").command, CtlCommand::ServerStatus);
        // Globals before the command, between words, after it, with `=`.
        for line in [
            "ctl --admin 10.0.0.5:1 --json server status",
            "ctl server --json --admin=10.0.0.5:1 status",
            "ctl server status --admin 10.0.0.5:1 --json",
        ] {
            let args = ctl(line);
            assert_eq!(args.admin, "10.0.0.5:1", "{line}");
            assert!(args.json, "{line}");
        }
        let error = parse_with_default_admin(&["ctl".into(), "health".into()], "nope").unwrap_err();
        assert!(
            error.to_string().contains("FERROBUS_ADMIN=\"nope\"")
                && error.to_string().contains("host:port"),
            "{error}"
        );
        let args =
            parse_with_default_admin(&["ctl".into(), "health".into()], "env-host:1").unwrap();
        assert_eq!(
            args,
            Cli::Ctl(CtlArgs {
                admin: "env-host:1".into(),
                json: false,
                command: CtlCommand::Health
            })
        );
    }

    #[test]
    fn ctl_errors() {
        let error = usage_error("ctl");
        assert!(error.message.starts_with("missing command"));
        assert_eq!(error.help_command, "ferrobus ctl --help");
        assert_eq!(
            usage_error("ctl syncer").help_command,
            "ferrobus ctl syncer --help"
        );
        assert_eq!(
            usage_error("ctl syncer restart").message,
            "unknown command `restart`"
        );
        assert_eq!(
            usage_error("ctl reboot").message,
            "unknown command `reboot`"
        );
        assert_eq!(
            usage_error("ctl health now").message,
            "unexpected argument `now`"
        );
        assert_eq!(
            usage_error("ctl server status --verbose").message,
            "unknown option --verbose"
        );
        assert_eq!(
            usage_error("ctl --json --json health").message,
            "option --json given twice"
        );
        assert_eq!(
            usage_error("ctl --json=yes health").message,
            "option --json takes no value"
        );
        assert_eq!(
            usage_error("ctl health --admin").message,
            "option --admin needs a value"
        );
        assert!(usage_error("ctl --admin nohost health")
            .message
            .starts_with("option --admin must be host:port"));
        let error = usage_error("ctl syncer stop --force");
        assert_eq!(error.help_command, "ferrobus ctl syncer stop --help");
    }

    #[test]
    fn help_at_every_level() {
        assert!(help("ctl --help").contains("--admin HOST:PORT"));
        assert!(help("ctl --json -h").contains("Exit status"));
        assert!(help("ctl syncer --help").contains("syncer status"));
        assert!(help("ctl syncer start --help").contains("--binlog-pos N"));
        assert!(help(&format!("{START} --help")).contains("--syncer-uuid UUID"));
        assert!(help("ctl syncer stop --help").contains("already stopped"));
        assert!(help("ctl syncer status -h").contains("lag"));
        assert!(help("ctl server --help").contains("server start --addr"));
        assert!(help("ctl server start --help").contains("--password PASSWORD"));
        assert!(help("ctl server stop --help").contains("disconnecting"));
        assert!(help("ctl server status --help").contains("replicas"));
        assert!(help("ctl health --help").contains("version"));
        assert!(help("ctl --help").contains("members add"));
        assert!(help("ctl --help").contains("forwards"));
        assert!(help("ctl members --help").contains("members update --name NAME"));
        assert!(help("ctl members list --help").contains("raft id"));
        assert!(help("ctl members add --name x --help").contains("--admin-url HOST:PORT"));
        assert!(help("ctl members remove -h").contains("never given again"));
        assert!(help("ctl members update --help").contains("id stays"));
        assert!(help("ctl cluster --help").contains("leader"));
        assert!(help("ctl purge --help").contains("--to-file FILE"));
        assert_eq!(help("help ctl members add"), help("ctl members add --help"));
        assert_eq!(
            help("help ctl syncer start"),
            help("ctl syncer start --help")
        );
        assert_eq!(help("help serve"), help("serve --help"));
        // Every leaf mentions the common ctl options and an example.
        for path in [
            &["ctl", "syncer", "start"][..],
            &["ctl", "syncer", "stop"],
            &["ctl", "server", "start"],
            &["ctl", "health"],
            &["ctl", "members"],
            &["ctl", "members", "list"],
            &["ctl", "members", "add"],
            &["ctl", "members", "remove"],
            &["ctl", "members", "update"],
            &["ctl", "cluster"],
            &["ctl", "purge"],
        ] {
            let text = help_text(path).unwrap();
            assert!(text.contains("--admin HOST:PORT"), "{path:?}");
            assert!(text.contains("Example"), "{path:?}");
        }
    }

    #[test]
    fn syncer_start_minimal_and_full() {
        let args = ctl(START);
        assert_eq!(
            args.command,
            CtlCommand::SyncerStart {
                args: SyncerArgs {
                    syncer_id: 7,
                    mysql_addr: "db:3306".into(),
                    mysql_user: "repl".into(),
                    mysql_password: "pw".into(),
                    syncer_uuid: None,
                    semi_sync: false,
                    gtid: None,
                    binlog_file: None,
                    binlog_pos: None,
                },
                password_file: None,
            }
        );
        let args = ctl(&format!(
            "{START} --syncer-uuid=1b4e28ba-2fa1-11d2-883f-0016d3cca427 --binlog-file mysql-bin.000003 --binlog-pos=4 --json"
        ));
        assert!(args.json);
        let CtlCommand::SyncerStart { args: start, .. } = args.command else {
            panic!()
        };
        assert_eq!(start.binlog_file.as_deref(), Some("mysql-bin.000003"));
        assert_eq!(start.binlog_pos, Some(4));
        assert!(start.syncer_uuid.is_some());
        let CtlCommand::SyncerStart { args: start, .. } =
            ctl(&format!("{START} --gtid 0-1-100,1-2-5")).command
        else {
            panic!()
        };
        assert_eq!(start.gtid.as_deref(), Some("0-1-100,1-2-5"));
    }

    #[test]
    fn a_password_may_come_from_a_file_instead() {
        const BASE: &str = "ctl syncer start --syncer-id 7 --mysql-addr db:3306 --mysql-user repl";
        let CtlCommand::SyncerStart {
            args,
            password_file,
        } = ctl(&format!("{BASE} --mysql-password-file /etc/f/pw")).command
        else {
            panic!()
        };
        assert_eq!(args.mysql_password, "");
        assert_eq!(password_file, Some(PathBuf::from("/etc/f/pw")));
        let CtlCommand::SyncerStart { password_file, .. } = ctl(START).command else {
            panic!()
        };
        assert_eq!(password_file, None);
        let both = usage_error(&format!("{START} --mysql-password-file /f"));
        assert!(
            both.message.contains("cannot be combined"),
            "{}",
            both.message
        );
        let neither = usage_error(BASE);
        assert_eq!(
            neither.message,
            "missing required option --mysql-password (or --mysql-password-file)"
        );

        const SERVER: &str = "ctl server start --addr 0.0.0.0:3307 --user u";
        let CtlCommand::ServerStart {
            args,
            password_file,
        } = ctl(&format!("{SERVER} --password-file=/run/pw")).command
        else {
            panic!()
        };
        assert_eq!(args.password, "");
        assert_eq!(password_file, Some(PathBuf::from("/run/pw")));
        assert!(
            usage_error(&format!("{SERVER} --password p --password-file /f"))
                .message
                .contains("cannot be combined")
        );
        assert!(help("ctl syncer start --help").contains("--mysql-password-file FILE"));
        assert!(help("ctl server start --help").contains("--password-file FILE"));
    }

    #[test]
    fn passwords_may_be_empty_or_start_with_a_dash() {
        let args: Vec<String> = [
            "ctl",
            "syncer",
            "start",
            "--syncer-id",
            "1",
            "--mysql-addr",
            "h:1",
            "--mysql-user",
            "u",
            "--mysql-password",
            "--not-a-flag",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let Ok(Cli::Ctl(CtlArgs {
            command: CtlCommand::SyncerStart { args: start, .. },
            ..
        })) = parse_with_default_admin(&args, DEFAULT_ADMIN_ADDR)
        else {
            panic!()
        };
        assert_eq!(start.mysql_password, "--not-a-flag");
        let CtlCommand::ServerStart { args: server, .. } =
            ctl("ctl server start --addr 0.0.0.0:3307 --user u --password=").command
        else {
            panic!()
        };
        assert_eq!(server.password, "");
        assert_eq!(server.addr, "0.0.0.0:3307");
        assert_eq!(server.auth_plugin, None);
        let CtlCommand::ServerStart { args: server, .. } = ctl(
            "ctl server start --addr h:1 --user u --password=p --auth-plugin caching_sha2_password \
             --rsa-private-key-path /etc/k.pem",
        )
        .command
        else {
            panic!()
        };
        assert_eq!(server.auth_plugin.as_deref(), Some("caching_sha2_password"));
        assert_eq!(server.rsa_private_key_path.as_deref(), Some("/etc/k.pem"));
        let error = usage_error("ctl server start --addr h:1 --user u --password= --auth-plugin x");
        assert!(error.message.contains("auth-plugin"), "{}", error.message);
    }

    #[test]
    fn syncer_start_errors_name_the_option() {
        let cases = [
            ("ctl syncer start", "missing required option --syncer-id"),
            (
                "ctl syncer start --syncer-id 1 --mysql-addr h:1 --mysql-user u",
                "missing required option --mysql-password (or --mysql-password-file)",
            ),
            (
                "ctl syncer start --syncer-id 0",
                "option --syncer-id must be a positive integer (u32), got \"0\"",
            ),
            (
                "ctl syncer start --syncer-id -3",
                "option --syncer-id must be a positive integer (u32), got \"-3\"",
            ),
            (
                "ctl syncer start --syncer-id 4294967296",
                "option --syncer-id must be a positive integer (u32)",
            ),
            (
                "ctl syncer start --binlog-pos x",
                "option --binlog-pos must be an unsigned integer (u64), got \"x\"",
            ),
            (
                "ctl syncer start --syncer-id 1 --syncer-id 2",
                "option --syncer-id given twice",
            ),
            (
                "ctl syncer start --semi-sync=1",
                "option --semi-sync takes no value",
            ),
            (
                "ctl syncer start --mysql-host h",
                "unknown option --mysql-host",
            ),
            ("ctl syncer start extra", "unexpected argument `extra`"),
        ];
        for (line, expected) in cases {
            let error = usage_error(line);
            assert!(
                error.message.starts_with(expected),
                "{line}: {}",
                error.message
            );
            assert_eq!(error.help_command, "ferrobus ctl syncer start --help");
        }
        let validated = [
            ("--mysql-addr=db", "option --mysql-addr must be host:port"),
            ("--semi-sync", "--semi-sync: semi_sync not supported yet"),
            (
                "--binlog-file f.000001",
                "option --binlog-pos is required when --binlog-file is given",
            ),
            (
                "--binlog-pos 4",
                "option --binlog-file is required when --binlog-pos is given",
            ),
            (
                "--binlog-file f.000001 --binlog-pos 3",
                "option --binlog-pos must be at least 4",
            ),
            (
                "--gtid 0-1-1 --binlog-file f.1 --binlog-pos 4",
                "option --gtid cannot be combined with --binlog-file",
            ),
            ("--gtid 0-1", "option --gtid must be a MariaDB GTID list"),
            ("--syncer-uuid nope", "option --syncer-uuid must be a UUID"),
        ];
        for (extra, expected) in validated {
            // A later --mysql-addr replaces nothing: build the line without the default one.
            let line = if extra.starts_with("--mysql-addr") {
                format!(
                    "ctl syncer start --syncer-id 7 --mysql-user repl --mysql-password pw {extra}"
                )
            } else {
                format!("{START} {extra}")
            };
            let error = usage_error(&line);
            assert!(
                error.message.starts_with(expected),
                "{line}: {}",
                error.message
            );
        }
        assert_eq!(
            usage_error(
                "ctl syncer start --syncer-id 7 --mysql-addr h:1 --mysql-user= --mysql-password p"
            )
            .message,
            "option --mysql-user must not be empty"
        );
    }

    #[test]
    fn server_start_errors() {
        assert_eq!(
            usage_error("ctl server start --addr h:1 --user u").message,
            "missing required option --password (or --password-file)"
        );
        assert!(
            usage_error("ctl server start --addr h --user u --password p")
                .message
                .starts_with("option --addr must be host:port")
        );
        assert_eq!(
            usage_error("ctl server start --addr h:1 --user= --password p").message,
            "option --user must not be empty"
        );
        assert_eq!(
            usage_error("ctl server start --port 1").message,
            "unknown option --port"
        );
        assert_eq!(
            usage_error("ctl server start --user a --user b").message,
            "option --user given twice"
        );
    }

    #[test]
    fn usage_error_display_has_the_hint() {
        let text = usage_error("ctl syncer restart").to_string();
        assert_eq!(
            text,
            "error: unknown command `restart`\nRun `ferrobus ctl syncer --help` for usage."
        );
    }

    #[test]
    fn debug_of_parsed_commands_hides_passwords() {
        let text = format!("{:?}", parse_words(START));
        assert!(!text.contains("\"pw\""), "{text}");
    }
    #[test]
    fn import_and_export_commands() {
        assert_eq!(
            ctl("ctl import a/x.000001 b.000002 --name m.000001").command,
            CtlCommand::Import {
                files: vec![PathBuf::from("a/x.000001"), PathBuf::from("b.000002")],
                name: Some("m.000001".into()),
            }
        );
        assert_eq!(
            ctl("ctl --json export --to out --file m.000001 --force").command,
            CtlCommand::Export {
                to: PathBuf::from("out"),
                file: Some("m.000001".into()),
                force: true,
            }
        );
        assert_eq!(
            parse_words("export --data-dir d --to o").unwrap(),
            Cli::Export(ExportArgs {
                data_dir: PathBuf::from("d"),
                to: PathBuf::from("o"),
                file: None,
                force: false,
            })
        );
        assert!(usage_error("ctl import").message.contains("no binlog file"));
        assert!(usage_error("ctl export").message.contains("--to"));
        assert!(usage_error("export --data-dir d").message.contains("--to"));
        assert!(usage_error("ctl import --name .. f")
            .message
            .contains("file"));
        assert!(usage_error("export --to o --force=yes")
            .message
            .contains("no value"));
        for path in [&["ctl", "import"][..], &["ctl", "export"], &["export"]] {
            assert!(help_text(path).is_some(), "{path:?}");
        }
    }
}
