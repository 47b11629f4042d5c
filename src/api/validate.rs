//! Turns admin API request bodies into typed arguments, and checks typed arguments, with an
//! error that names the offending field. `ctl` runs the same checks before it sends.
//!
//! Pure functions only: bytes or values in, arguments or a `FieldError` out. No I/O, no
//! knowledge of HTTP beyond the 400 status `ApiError` conversion. GTID lists are checked
//! only for their shape here; their meaning is the binlog module's business.

use std::fmt;
use std::net::Ipv6Addr;

use serde_json::{Map, Value};

use super::model::{
    MemberAdd, MemberAnnounce, MemberRemove, MemberUpdate, PurgeArgs, ServerArgs, SyncerArgs,
};
use super::ApiError;
use crate::limits::BINLOG_FILE_NAME_MAX;

/// Longest piece of user input echoed back inside an error message.
const ECHO_CHARS_MAX: usize = 64;

/// Longest host name (DNS limit).
const HOST_NAME_MAX: usize = 253;

/// Longest user name taken (with room above what MariaDB and MySQL accept).
const USER_NAME_CHARS_MAX: usize = 128;

/// Longest member name: it appears in logs, tables and the `--initial-cluster` list.
pub const MEMBER_NAME_MAX: usize = 64;

/// URL schemes a member address may be written with (kingbus takes `http://host:port`);
/// the scheme is dropped, the address is `host:port`.
const ADDR_SCHEMES: [&str; 2] = ["http://", "tcp://"];

/// A request or argument problem, tied to the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field name (`""` for the body as a whole).
    pub field: &'static str,
    /// The whole human-readable message, naming the field.
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: String) -> FieldError {
        FieldError { field, message }
    }

    /// "field `x` <problem>".
    fn field(field: &'static str, problem: &str) -> FieldError {
        FieldError::new(field, format!("field `{field}` {problem}"))
    }

    fn body(message: String) -> FieldError {
        FieldError::new("", message)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> ApiError {
        ApiError::bad_request(error.message)
    }
}

/// The fields `PUT /binlog/syncer/start` takes.
pub const SYNCER_FIELDS: [&str; 9] = [
    "syncer_id",
    "mysql_addr",
    "mysql_user",
    "mysql_password",
    "syncer_uuid",
    "semi_sync",
    "gtid",
    "binlog_file",
    "binlog_pos",
];

/// The fields `PUT /binlog/server/start` takes.
pub const SERVER_FIELDS: [&str; 5] = [
    "addr",
    "user",
    "password",
    "auth_plugin",
    "rsa_private_key_path",
];

/// Parses and checks the body of `PUT /binlog/syncer/start`.
pub fn syncer_args_from_json(body: &[u8]) -> Result<SyncerArgs, ApiError> {
    let object = parse_object(body, &SYNCER_FIELDS)?;
    let args = SyncerArgs {
        syncer_id: required_u32(&object, "syncer_id")?,
        mysql_addr: required_string(&object, "mysql_addr")?,
        mysql_user: required_string(&object, "mysql_user")?,
        mysql_password: required_string(&object, "mysql_password")?,
        syncer_uuid: optional_string(&object, "syncer_uuid")?,
        semi_sync: optional_bool(&object, "semi_sync")?.unwrap_or(false),
        gtid: optional_string(&object, "gtid")?,
        binlog_file: optional_string(&object, "binlog_file")?,
        binlog_pos: optional_u64(&object, "binlog_pos")?,
    };
    check_syncer_args(&args)?;
    Ok(args)
}

/// Parses and checks the body of `PUT /binlog/server/start`.
pub fn server_args_from_json(body: &[u8]) -> Result<ServerArgs, ApiError> {
    let object = parse_object(body, &SERVER_FIELDS)?;
    let args = ServerArgs {
        addr: required_string(&object, "addr")?,
        user: required_string(&object, "user")?,
        password: required_string(&object, "password")?,
        auth_plugin: optional_string(&object, "auth_plugin")?,
        rsa_private_key_path: optional_string(&object, "rsa_private_key_path")?,
    };
    check_server_args(&args)?;
    Ok(args)
}

/// Parses and checks the body of `POST /members`: `name`, `peer_url`, and optionally
/// `admin_url` (the node announces its own once it runs). Addresses come back as
/// `host:port`, a leading `http://` dropped.
pub fn member_add_from_json(body: &[u8]) -> Result<MemberAdd, ApiError> {
    let object = parse_object(body, &["name", "peer_url", "admin_url"])?;
    let name = required_string(&object, "name")?;
    check_member_name("name", &name)?;
    let peer_url = canonical_addr("peer_url", &required_string(&object, "peer_url")?)?;
    let admin_url = match optional_string(&object, "admin_url")? {
        Some(url) => Some(canonical_addr("admin_url", &url)?),
        None => None,
    };
    Ok(MemberAdd {
        name,
        peer_url,
        admin_url,
    })
}

/// Parses and checks the body of `PUT /members`: `name` and `new_peer_url`.
pub fn member_update_from_json(body: &[u8]) -> Result<MemberUpdate, ApiError> {
    let object = parse_object(body, &["name", "new_peer_url"])?;
    let name = required_string(&object, "name")?;
    check_member_name("name", &name)?;
    let new_peer_url = canonical_addr("new_peer_url", &required_string(&object, "new_peer_url")?)?;
    Ok(MemberUpdate { name, new_peer_url })
}

/// Parses and checks the body of `DELETE /members`: `name` (kingbus also sends `peer_url`,
/// which is ignored: the name alone identifies a member).
pub fn member_remove_from_json(body: &[u8]) -> Result<MemberRemove, ApiError> {
    let object = parse_object(body, &["name", "peer_url"])?;
    let name = required_string(&object, "name")?;
    check_member_name("name", &name)?;
    Ok(MemberRemove { name })
}

/// Parses and checks the body of `PUT /members/announce`: `name`, `admin_url`, optional
/// `binlog_addr`.
pub fn member_announce_from_json(body: &[u8]) -> Result<MemberAnnounce, ApiError> {
    let object = parse_object(body, &["name", "admin_url", "binlog_addr"])?;
    let name = required_string(&object, "name")?;
    check_member_name("name", &name)?;
    let admin_url = canonical_addr("admin_url", &required_string(&object, "admin_url")?)?;
    let binlog_addr = match object.get("binlog_addr") {
        None | Some(Value::Null) => None,
        Some(Value::String(addr)) => Some(canonical_addr("binlog_addr", addr)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "field `binlog_addr` must be a string (host:port) or null",
            ))
        }
    };
    Ok(MemberAnnounce {
        name,
        admin_url,
        binlog_addr,
    })
}

/// Parses and checks the body of `PUT /binlog/purge`: `to_file`.
pub fn purge_args_from_json(body: &[u8]) -> Result<PurgeArgs, ApiError> {
    let object = parse_object(body, &["to_file"])?;
    let to_file = required_string(&object, "to_file")?;
    check_binlog_file("to_file", &to_file)?;
    Ok(PurgeArgs { to_file })
}

/// Checks a member name: 1..=MEMBER_NAME_MAX of ASCII letters, digits, `-`, `_` and `.`,
/// so that it can stand in `name=host:port,...` lists and tables unquoted.
pub fn check_member_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::field(field, "must not be empty"));
    }
    if name.len() > MEMBER_NAME_MAX {
        return Err(FieldError::field(
            field,
            &format!("must be at most {MEMBER_NAME_MAX} characters long"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(allowed) {
        return Err(FieldError::field(
            field,
            &format!(
                "must consist of letters, digits, `-`, `_` and `.` only, got {}",
                echo(name)
            ),
        ));
    }
    Ok(())
}

/// A member address as `host:port`: an `http://` or `tcp://` prefix and one trailing `/`
/// are dropped (kingbus writes URLs), then the rest must be a valid `host:port`. Ids are
/// derived from this canonical text, so every place that names a member's peer address
/// goes through here.
pub fn canonical_addr(field: &'static str, url: &str) -> Result<String, FieldError> {
    let lowered = url.to_ascii_lowercase();
    let without_scheme = ADDR_SCHEMES
        .iter()
        .find(|scheme| lowered.starts_with(*scheme))
        .map_or(url, |scheme| url.get(scheme.len()..).unwrap_or(""));
    let addr = without_scheme.strip_suffix('/').unwrap_or(without_scheme);
    check_host_port(field, addr)?;
    Ok(addr.to_string())
}

/// Checks syncer arguments however they were obtained (JSON body, command line, state file).
pub fn check_syncer_args(args: &SyncerArgs) -> Result<(), FieldError> {
    if args.syncer_id == 0 {
        return Err(FieldError::field(
            "syncer_id",
            "must be a positive integer (u32), got 0",
        ));
    }
    check_host_port("mysql_addr", &args.mysql_addr)?;
    check_user("mysql_user", &args.mysql_user)?;
    if let Some(uuid) = &args.syncer_uuid {
        check_uuid("syncer_uuid", uuid)?;
    }
    if args.semi_sync {
        return Err(FieldError::new(
            "semi_sync",
            "semi_sync not supported yet".to_string(),
        ));
    }
    check_start_position(args)
}

/// Checks binlog server arguments however they were obtained.
pub fn check_server_args(args: &ServerArgs) -> Result<(), FieldError> {
    check_host_port("addr", &args.addr)?;
    check_user("user", &args.user)?;
    if let Some(name) = &args.auth_plugin {
        if crate::server::auth::AuthPlugin::parse(name).is_none() {
            return Err(FieldError::field(
                "auth_plugin",
                &format!(
                    "must be \"mysql_native_password\" or \"caching_sha2_password\", not {name:?}"
                ),
            ));
        }
    }
    if args.rsa_private_key_path.as_deref() == Some("") {
        return Err(FieldError::field(
            "rsa_private_key_path",
            "must not be empty",
        ));
    }
    Ok(())
}

/// `gtid` excludes `binlog_file`; `binlog_file` and `binlog_pos` come together.
fn check_start_position(args: &SyncerArgs) -> Result<(), FieldError> {
    if let Some(gtid) = &args.gtid {
        if args.binlog_file.is_some() {
            return Err(FieldError::field(
                "gtid",
                "cannot be combined with `binlog_file`: give either a GTID list or a binlog \
                 file and position",
            ));
        }
        check_gtid_start(gtid).map_err(|problem| FieldError::field("gtid", &problem))?;
    }
    match (&args.binlog_file, args.binlog_pos) {
        (Some(_), None) => Err(FieldError::field(
            "binlog_pos",
            "is required when `binlog_file` is given",
        )),
        (None, Some(_)) => Err(FieldError::field(
            "binlog_file",
            "is required when `binlog_pos` is given",
        )),
        (Some(file), Some(pos)) => {
            check_binlog_file("binlog_file", file)?;
            check_binlog_pos(pos)
        }
        (None, None) => Ok(()),
    }
}

/// Checks a binlog file name as the master writes it: no directory, no control characters.
pub fn check_binlog_file(field: &'static str, file: &str) -> Result<(), FieldError> {
    if file.is_empty() {
        return Err(FieldError::field(field, "must not be empty"));
    }
    if file.len() > BINLOG_FILE_NAME_MAX {
        return Err(FieldError::field(
            field,
            &format!("must be at most {BINLOG_FILE_NAME_MAX} bytes long"),
        ));
    }
    // The master names its files without a directory; a separator or control character
    // can only be a mistake (or an attempt to reach outside the data dir).
    if file
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(FieldError::field(
            field,
            &format!(
                "must be a plain file name like \"mysql-bin.000001\", got {}",
                echo(file)
            ),
        ));
    }
    Ok(())
}

fn check_binlog_pos(pos: u64) -> Result<(), FieldError> {
    // Every binlog file starts with the 4-byte magic; no event starts before offset 4.
    if pos < 4 {
        return Err(FieldError::field(
            "binlog_pos",
            &format!("must be at least 4 (events start after the 4-byte binlog magic), got {pos}"),
        ));
    }
    Ok(())
}

fn check_user(field: &'static str, user: &str) -> Result<(), FieldError> {
    if user.is_empty() {
        return Err(FieldError::field(field, "must not be empty"));
    }
    if user.chars().count() > USER_NAME_CHARS_MAX {
        return Err(FieldError::field(
            field,
            &format!(
                "is longer than {USER_NAME_CHARS_MAX} characters (MariaDB user names take 80, \
                 MySQL's 32)"
            ),
        ));
    }
    // The user name travels NUL-terminated in the MySQL handshake.
    if user.contains('\0') {
        return Err(FieldError::field(field, "must not contain a NUL character"));
    }
    Ok(())
}

/// Checks `host:port` (`[v6]:port` for IPv6) with a numeric port in 1..=65535.
pub fn check_host_port(field: &'static str, addr: &str) -> Result<(), FieldError> {
    host_port_problem(addr, 1).map_or(Ok(()), |problem| {
        Err(FieldError::field(
            field,
            &format!(
                "must be host:port with a port in 1..65535 ({problem}), got {}",
                echo(addr)
            ),
        ))
    })
}

/// Checks an address to listen on: like [`check_host_port`], but port 0 ("any free
/// port") is allowed.
pub fn check_bind_addr(field: &'static str, addr: &str) -> Result<(), FieldError> {
    host_port_problem(addr, 0).map_or(Ok(()), |problem| {
        Err(FieldError::field(
            field,
            &format!(
                "must be host:port with a port in 0..65535 ({problem}), got {}",
                echo(addr)
            ),
        ))
    })
}

/// Why `addr` is not a valid `host:port` with a port of at least `port_min`, or `None`
/// when it is.
fn host_port_problem(addr: &str, port_min: u16) -> Option<&'static str> {
    let (host, port) = match split_host_port(addr) {
        Ok(parts) => parts,
        Err(problem) => return Some(problem),
    };
    if let Some(problem) = host_problem(host) {
        return Some(problem);
    }
    port_problem(port, port_min)
}

fn split_host_port(addr: &str) -> Result<(&str, &str), &'static str> {
    if addr.contains("://") {
        return Err("give host:port without a scheme such as http://");
    }
    if let Some(rest) = addr.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("missing `]`")?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err("not an IPv6 address inside `[]`");
        }
        let port = after.strip_prefix(':').ok_or("missing port")?;
        return Ok((v6, port));
    }
    let (host, port) = addr.rsplit_once(':').ok_or("missing port")?;
    if host.contains(':') {
        return Err("an IPv6 address must be written in brackets, like [::1]:3306");
    }
    Ok((host, port))
}

fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("missing host");
    }
    if host.len() > HOST_NAME_MAX {
        return Some("host name too long");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("host contains whitespace or control characters");
    }
    None
}

fn port_problem(port: &str, port_min: u16) -> Option<&'static str> {
    // `u16::from_str` would accept a leading `+`; a port is digits only.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Some("port is not a number");
    }
    match port.parse::<u16>() {
        Ok(port) if port >= port_min => None,
        _ => Some("port out of range"),
    }
}

/// Checks the shape of a MariaDB GTID list: `domain-server-seq` triples of decimal numbers,
/// comma-separated, blanks allowed around entries. An empty list is valid (start from the
/// beginning). Returns the problem, without the field name.
/// A syncer's GTID start point: a MySQL GTID set (`uuid:1-5,...`, for a MySQL master) or
/// a MariaDB GTID list.
pub fn check_gtid_start(gtid: &str) -> Result<(), String> {
    if crate::binlog::gtid::MysqlGtidSet::parse(gtid).is_ok() {
        return Ok(());
    }
    check_gtid_list_syntax(gtid)
}

pub fn check_gtid_list_syntax(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Ok(());
    }
    for entry in list.split(',') {
        check_gtid_syntax(entry.trim())?;
    }
    Ok(())
}

fn check_gtid_syntax(gtid: &str) -> Result<(), String> {
    let problem = || {
        format!(
            "must be a MariaDB GTID list like \"0-1-100,1-2-5\" (domain-server-sequence), \
             got entry {}",
            echo(gtid)
        )
    };
    let mut parts = gtid.split('-');
    let (Some(domain_id), Some(server_id), Some(seq_no), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(problem());
    };
    let numbers_ok = parse_digits::<u32>(domain_id).is_some()
        && parse_digits::<u32>(server_id).is_some()
        && parse_digits::<u64>(seq_no).is_some();
    if numbers_ok {
        Ok(())
    } else {
        Err(problem())
    }
}

fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks an `8-4-4-4-12` hexadecimal UUID.
fn check_uuid(field: &'static str, uuid: &str) -> Result<(), FieldError> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let shape_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()));
    if shape_ok {
        Ok(())
    } else {
        Err(FieldError::field(
            field,
            &format!(
                "must be a UUID like \"1b4e28ba-2fa1-11d2-883f-0016d3cca427\", got {}",
                echo(uuid)
            ),
        ))
    }
}

/// The body as a JSON object whose every field is one of `known`: a field the route does
/// not take is refused rather than ignored, so that a misspelt optional field (a start
/// point, say) cannot silently change what the request does.
fn parse_object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, FieldError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FieldError::body(
            "request body is empty: expected a JSON object".to_string(),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => match object.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(FieldError::body(format!(
                "unknown field {}: this request takes {}",
                echo(unknown),
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => Ok(object),
        },
        Ok(other) => Err(FieldError::body(format!(
            "request body must be a JSON object, got {}",
            json_kind(&other)
        ))),
        Err(error) => Err(FieldError::body(format!(
            "request body is not valid JSON: {error}"
        ))),
    }
}

/// A field's value, with `null` meaning absent.
fn present<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).filter(|value| !value.is_null())
}

fn missing(field: &'static str) -> FieldError {
    FieldError::new(field, format!("missing field `{field}`"))
}

fn wrong_type(field: &'static str, expected: &str, got: &Value) -> FieldError {
    FieldError::field(
        field,
        &format!("must be {expected}, got {}", json_kind(got)),
    )
}

fn required_string(object: &Map<String, Value>, field: &'static str) -> Result<String, FieldError> {
    optional_string(object, field)?.ok_or_else(|| missing(field))
}

fn optional_string(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, FieldError> {
    match present(object, field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn required_u32(object: &Map<String, Value>, field: &'static str) -> Result<u32, FieldError> {
    let value = present(object, field).ok_or_else(|| missing(field))?;
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| wrong_type(field, "a positive integer (u32)", value))
}

fn optional_u64(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<u64>, FieldError> {
    match present(object, field) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong_type(field, "an unsigned integer (u64)", value)),
    }
}

fn optional_bool(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<bool>, FieldError> {
    match present(object, field) {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(wrong_type(field, "true or false", other)),
    }
}

/// Names a JSON value for an error message, showing short scalars themselves.
fn json_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("the string {}", echo(text)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Quotes user input for an error message, cut to a readable length.
fn echo(text: &str) -> String {
    if text.chars().count() <= ECHO_CHARS_MAX {
        return format!("{text:?}");
    }
    let cut: String = text.chars().take(ECHO_CHARS_MAX).collect();
    format!("{cut:?}…")
}

/// Checks the name a binlog file is imported or exported under: a plain file name (see
/// [`check_binlog_file`]) that is not `.` or `..`.
pub fn check_file_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    check_binlog_file(field, name)?;
    if name == "." || name == ".." {
        return Err(FieldError::field(field, "must be a file name, not . or .."));
    }
    Ok(())
}

/// The `file` parameter of `POST /binlog/import?file=NAME` (percent-decoded, checked).
pub fn import_file_from_target(target: &str) -> Result<String, ApiError> {
    let query = target
        .split('#')
        .next()
        .and_then(|t| t.split_once('?'))
        .map_or("", |(_, q)| q);
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("file="))
        .ok_or_else(|| {
            ApiError::bad_request(
                "query parameter `file` is required: POST /binlog/import?file=NAME with the \
                 binlog file as the body",
            )
        })?;
    let name = percent_decode(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "query parameter `file` is badly encoded: {}",
            echo(raw)
        ))
    })?;
    check_file_name("file", &name)?;
    Ok(name)
}

/// The NAME of `GET /binlog/files/NAME` (percent-decoded, checked).
pub fn file_name_from_path(raw: &str) -> Result<String, ApiError> {
    let name = percent_decode(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "file name in the path is badly encoded: {}",
            echo(raw)
        ))
    })?;
    check_file_name("file", &name)?;
    Ok(name)
}

/// Decodes `%XX` escapes (and `+` as a space, as forms send it); None on a bad escape or
/// bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a file name for a URL path or query: everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good_syncer() -> Value {
        json!({
            "syncer_id": 101,
            "mysql_addr": "127.0.0.1:3306",
            "mysql_user": "repl",
            "mysql_password": "pw",
        })
    }

    fn with(mut base: Value, field: &str, value: Value) -> Vec<u8> {
        base[field] = value;
        serde_json::to_vec(&base).unwrap()
    }

    fn without(mut base: Value, field: &str) -> Vec<u8> {
        base.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&base).unwrap()
    }

    fn syncer_error(body: &[u8]) -> String {
        let error = syncer_args_from_json(body).unwrap_err();
        assert_eq!(error.status, 400);
        error.message
    }

    fn server_error(body: &[u8]) -> String {
        let error = server_args_from_json(body).unwrap_err();
        assert_eq!(error.status, 400);
        error.message
    }

    #[test]
    fn minimal_syncer_body_parses() {
        let args = syncer_args_from_json(&serde_json::to_vec(&good_syncer()).unwrap()).unwrap();
        assert_eq!(args.syncer_id, 101);
        assert_eq!(args.mysql_addr, "127.0.0.1:3306");
        assert_eq!(args.mysql_user, "repl");
        assert_eq!(args.mysql_password, "pw");
        assert_eq!(args.syncer_uuid, None);
        assert!(!args.semi_sync);
        assert_eq!(
            (args.gtid, args.binlog_file, args.binlog_pos),
            (None, None, None)
        );
    }

    #[test]
    fn full_syncer_body_parses() {
        let body = json!({
            "syncer_id": 4294967295u64,
            "mysql_addr": "[::1]:3306",
            "mysql_user": "repl",
            "mysql_password": "",
            "syncer_uuid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "semi_sync": false,
            "binlog_file": "mysql-bin.000007",
            "binlog_pos": 4,
        });
        let args = syncer_args_from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(args.syncer_id, u32::MAX);
        assert_eq!(args.binlog_file.as_deref(), Some("mysql-bin.000007"));
        assert_eq!(args.binlog_pos, Some(4));
        assert_eq!(args.mysql_password, "");
    }

    /// A misspelt optional field must not be ignored: a start point that went unseen would
    /// start the syncer at the master's oldest file, and a store that is not empty never
    /// takes a start point again.
    #[test]
    fn unknown_fields_are_refused_by_name() {
        let body = with(good_syncer(), "start_gtid", json!("0-1-10"));
        let message = syncer_error(&body);
        assert!(
            message.contains("unknown field \"start_gtid\"") && message.contains("`gtid`"),
            "{message}"
        );
        let server = json!({"addr": "127.0.0.1:3307", "user": "u", "password": "p",
                            "auth_plugn": "caching_sha2_password"});
        let message = server_error(&serde_json::to_vec(&server).unwrap());
        assert!(message.contains("\"auth_plugn\""), "{message}");
        for (parse, body) in [
            (
                member_add_from_json as fn(&[u8]) -> Result<_, ApiError>,
                json!({"name": "n4", "peer_url": "127.0.0.1:9", "is_learner": true}),
            ),
            (
                member_add_from_json,
                json!({"name": "n4", "peer_url": "127.0.0.1:9", "admin_url": "127.0.0.1:8"}),
            ),
        ] {
            let result = parse(&serde_json::to_vec(&body).unwrap());
            assert_eq!(result.is_err(), body.get("is_learner").is_some(), "{body}");
        }
        // kingbus sends `peer_url` with a removal, and it stays accepted.
        let remove = json!({"name": "n2", "peer_url": "http://127.0.0.1:9"});
        assert!(member_remove_from_json(&serde_json::to_vec(&remove).unwrap()).is_ok());
        let purge = json!({"to_file": "bin.000002", "before": "today"});
        let error = purge_args_from_json(&serde_json::to_vec(&purge).unwrap()).unwrap_err();
        assert!(error.message.contains("\"before\""), "{}", error.message);
        assert_eq!(error.status, 400);
    }

    #[test]
    fn nulls_count_as_absent_for_optional_fields() {
        let body = with(good_syncer(), "gtid", Value::Null);
        assert_eq!(syncer_args_from_json(&body).unwrap().gtid, None);
        let body = with(good_syncer(), "semi_sync", Value::Null);
        assert!(!syncer_args_from_json(&body).unwrap().semi_sync);
    }

    #[test]
    fn gtid_lists_are_accepted() {
        for gtid in [
            "0-1-100",
            "0-1-100,1-2-5",
            " 0-1-1 , 2-3-4 ",
            "",
            "4294967295-1-18446744073709551615",
        ] {
            let body = with(good_syncer(), "gtid", json!(gtid));
            let args = syncer_args_from_json(&body).unwrap();
            assert_eq!(args.gtid.as_deref(), Some(gtid));
        }
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        assert!(syncer_error(b"").contains("empty"));
        assert!(syncer_error(b"  \n").contains("empty"));
        assert!(syncer_error(b"{\"syncer_id\": 1").contains("not valid JSON"));
        assert!(syncer_error(b"\xff\xfe").contains("not valid JSON"));
        assert!(syncer_error(b"[1,2]").contains("must be a JSON object, got an array"));
        assert!(syncer_error(b"42").contains("must be a JSON object"));
        assert!(server_error(b"null").contains("must be a JSON object, got null"));
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["syncer_id", "mysql_addr", "mysql_user", "mysql_password"] {
            let message = syncer_error(&without(good_syncer(), field));
            assert_eq!(message, format!("missing field `{field}`"));
            let message = syncer_error(&with(good_syncer(), field, Value::Null));
            assert_eq!(message, format!("missing field `{field}`"));
        }
    }

    #[test]
    fn syncer_id_must_be_a_positive_u32() {
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("5"),
            json!(4294967296u64),
            json!(true),
        ] {
            let message = syncer_error(&with(good_syncer(), "syncer_id", bad.clone()));
            assert!(
                message.starts_with("field `syncer_id` must be a positive integer (u32)"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn string_fields_reject_other_types() {
        for field in [
            "mysql_addr",
            "mysql_user",
            "mysql_password",
            "syncer_uuid",
            "gtid",
            "binlog_file",
        ] {
            let message = syncer_error(&with(good_syncer(), field, json!(12)));
            assert_eq!(message, format!("field `{field}` must be a string, got 12"));
        }
        let message = syncer_error(&with(good_syncer(), "mysql_user", json!({"a": 1})));
        assert_eq!(
            message,
            "field `mysql_user` must be a string, got an object"
        );
    }

    #[test]
    fn semi_sync_must_be_bool_and_false() {
        let message = syncer_error(&with(good_syncer(), "semi_sync", json!("yes")));
        assert!(
            message.starts_with("field `semi_sync` must be true or false"),
            "{message}"
        );
        let message = syncer_error(&with(good_syncer(), "semi_sync", json!(true)));
        assert_eq!(message, "semi_sync not supported yet");
    }

    #[test]
    fn addresses_must_be_host_port() {
        for good in [
            "db:3306",
            "127.0.0.1:1",
            "[::1]:3306",
            "[fe80::1]:65535",
            "my-host.example.com:3307",
        ] {
            let body = with(good_syncer(), "mysql_addr", json!(good));
            assert!(syncer_args_from_json(&body).is_ok(), "{good}");
        }
        for bad in [
            "db",
            "db:",
            ":3306",
            "db:0",
            "db:65536",
            "db:+33",
            "db:33a",
            "::1:3306",
            "[::1]",
            "[::1]3306",
            "[nothost]:3306",
            "d b:3306",
            "db:-1",
            "",
        ] {
            let message = syncer_error(&with(good_syncer(), "mysql_addr", json!(bad)));
            assert!(
                message.starts_with("field `mysql_addr` must be host:port with a port in 1..65535"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn bind_addresses_may_use_port_zero() {
        assert!(check_bind_addr("admin_addr", "127.0.0.1:0").is_ok());
        assert!(check_bind_addr("admin_addr", "[::]:9595").is_ok());
        assert!(check_host_port("addr", "127.0.0.1:0").is_err());
        let error = check_bind_addr("admin_addr", "127.0.0.1:65536").unwrap_err();
        assert!(error.message.contains("0..65535"), "{}", error.message);
        let error = check_host_port("admin", "http://h:1").unwrap_err();
        assert!(
            error.message.contains("without a scheme"),
            "{}",
            error.message
        );
    }

    #[test]
    fn empty_or_nul_user_is_rejected() {
        let message = syncer_error(&with(good_syncer(), "mysql_user", json!("")));
        assert_eq!(message, "field `mysql_user` must not be empty");
        let message = syncer_error(&with(good_syncer(), "mysql_user", json!("a\u{0}b")));
        assert!(message.contains("NUL"), "{message}");
    }

    #[test]
    fn syncer_uuid_must_look_like_a_uuid() {
        for bad in [
            "",
            "not-a-uuid",
            "1b4e28ba2fa111d2883f0016d3cca427",
            "1b4e28ba-2fa1-11d2-883f-0016d3cca42g",
        ] {
            let message = syncer_error(&with(good_syncer(), "syncer_uuid", json!(bad)));
            assert!(
                message.starts_with("field `syncer_uuid` must be a UUID"),
                "{message}"
            );
        }
    }

    #[test]
    fn gtid_syntax_is_checked() {
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0-1-2,",
            ",0-1-2",
            "0-1--2",
            "0-+1-2",
            "4294967296-1-1",
            "0-1-2;1-1-1",
            "0-1-2 3",
        ] {
            let message = syncer_error(&with(good_syncer(), "gtid", json!(bad)));
            assert!(
                message.starts_with("field `gtid` must be a MariaDB GTID list"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn start_position_combinations() {
        let mut base = good_syncer();
        base["binlog_file"] = json!("mysql-bin.000001");
        let message = syncer_error(&serde_json::to_vec(&base).unwrap());
        assert_eq!(
            message,
            "field `binlog_pos` is required when `binlog_file` is given"
        );

        let message = syncer_error(&with(good_syncer(), "binlog_pos", json!(4)));
        assert_eq!(
            message,
            "field `binlog_file` is required when `binlog_pos` is given"
        );

        base["binlog_pos"] = json!(4);
        base["gtid"] = json!("0-1-1");
        let message = syncer_error(&serde_json::to_vec(&base).unwrap());
        assert!(message.starts_with("field `gtid` cannot be combined with `binlog_file`"));
    }

    #[test]
    fn binlog_pos_and_file_values_are_checked() {
        let mut base = good_syncer();
        base["binlog_file"] = json!("mysql-bin.000001");
        for bad_pos in [json!(0), json!(3)] {
            let message = syncer_error(&with(base.clone(), "binlog_pos", bad_pos));
            assert!(
                message.starts_with("field `binlog_pos` must be at least 4"),
                "{message}"
            );
        }
        for bad_pos in [json!(-4), json!("4"), json!(4.5)] {
            let message = syncer_error(&with(base.clone(), "binlog_pos", bad_pos));
            assert!(
                message.starts_with("field `binlog_pos` must be an unsigned integer (u64)"),
                "{message}"
            );
        }
        base["binlog_pos"] = json!(4);
        for bad_file in ["", "../etc/passwd", "a\\b", "a\nb"] {
            let message = syncer_error(&with(base.clone(), "binlog_file", json!(bad_file)));
            assert!(message.starts_with("field `binlog_file` must"), "{message}");
        }
        let long = "x".repeat(BINLOG_FILE_NAME_MAX + 1);
        let message = syncer_error(&with(base, "binlog_file", json!(long)));
        assert!(message.contains("at most"), "{message}");
    }

    #[test]
    fn server_body() {
        let good = json!({"addr": "0.0.0.0:3307", "user": "u", "password": "p"});
        let args = server_args_from_json(&serde_json::to_vec(&good).unwrap()).unwrap();
        assert_eq!(args.addr, "0.0.0.0:3307");
        for field in ["addr", "user", "password"] {
            assert_eq!(
                server_error(&without(good.clone(), field)),
                format!("missing field `{field}`")
            );
            assert_eq!(
                server_error(&with(good.clone(), field, json!(false))),
                format!("field `{field}` must be a string, got false")
            );
        }
        assert!(server_error(&with(good.clone(), "addr", json!("0.0.0.0")))
            .starts_with("field `addr` must be host:port"));
        assert_eq!(
            server_error(&with(good, "user", json!(""))),
            "field `user` must not be empty"
        );
    }

    #[test]
    fn a_user_name_has_a_length_limit() {
        let long = "u".repeat(USER_NAME_CHARS_MAX + 1);
        let server = json!({"addr": "127.0.0.1:3307", "user": long, "password": "p"});
        let message = server_error(&serde_json::to_vec(&server).unwrap());
        assert!(message.contains("longer than 128"), "{message}");
        let ok = json!({"addr": "127.0.0.1:3307", "user": "u".repeat(80), "password": "p"});
        assert!(server_args_from_json(&serde_json::to_vec(&ok).unwrap()).is_ok());
    }

    #[test]
    fn long_input_is_cut_in_messages() {
        let long = "h".repeat(10_000);
        let message = syncer_error(&with(good_syncer(), "mysql_addr", json!(long)));
        assert!(message.len() < 300, "{}", message.len());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn field_error_names_its_field() {
        let args = SyncerArgs {
            syncer_id: 1,
            mysql_addr: "db".into(),
            mysql_user: "u".into(),
            mysql_password: String::new(),
            syncer_uuid: None,
            semi_sync: false,
            gtid: None,
            binlog_file: None,
            binlog_pos: None,
        };
        assert_eq!(check_syncer_args(&args).unwrap_err().field, "mysql_addr");
    }
    #[test]
    fn import_and_export_file_names() {
        assert_eq!(
            import_file_from_target("/binlog/import?file=mysql-bin.000001").unwrap(),
            "mysql-bin.000001"
        );
        assert_eq!(
            import_file_from_target("/binlog/import?x=1&file=a%20b.000002").unwrap(),
            "a b.000002"
        );
        for bad in [
            "/binlog/import",
            "/binlog/import?file=",
            "/binlog/import?file=..",
            "/binlog/import?file=a%2Fb",
            "/binlog/import?file=%zz",
            "/binlog/import?file=%0a",
        ] {
            let err = import_file_from_target(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert!(err.message.contains("file"), "{bad}: {}", err.message);
        }
        assert_eq!(file_name_from_path("bin.000001").unwrap(), "bin.000001");
        assert!(file_name_from_path("..").is_err());
        let name = "we ird/+%.0001";
        assert_eq!(percent_decode(&percent_encode(name)).unwrap(), name);
        assert_eq!(percent_encode("mysql-bin.000001"), "mysql-bin.000001");
    }
}
