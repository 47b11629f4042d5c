//! `ctl import` and `ctl export`: native binlog files to and from a running node, streamed
//! over the admin API (`POST /binlog/import?file=NAME`, `GET /binlog/files[/NAME]`).
//!
//! Import checks locally first that the files are binlogs and form a chain by the node's
//! rule (see [`chain_names`]), so a mistake in the command line is caught before anything
//! is sent; then it sends them one by one and stops
//! at the first refusal. Export writes each file to a temporary name, syncs it and renames
//! it. Each request uses a fresh connection (no pooling: see the README's note on
//! tiny_http keep-alive).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{render, EXIT_NODE_ERROR, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::api::forward::admin_agent as agent;
use crate::api::model::{BinlogFileInfo, ImportSummary};
use crate::api::validate::percent_encode;
use crate::binlog::event::{FormatDescription, CHECKSUM_LEN};
use crate::binlog::file::{numbered_name, BinlogFileReader};
use crate::cli::{CtlArgs, CtlCommand};
use crate::daemon::import::{next_name, LastEvent, Tail};
use crate::limits::{EXPORT_TIMEOUT_MS, HTTP_CLIENT_TIMEOUT_MS, IMPORT_TIMEOUT_MS};
use crate::store::export::{choose, prepare_dir, write_atomically};

/// Reads a whole local binlog file (checking it as the node will) and says how it ends,
/// as a [`Tail`] named after the file.
pub fn file_end(path: &Path) -> Result<Tail, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BinlogFileReader::new(BufReader::new(file));
    let mut last = None;
    let mut mariadb = false;
    while let Some((pos, ev)) = reader
        .next_event()
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        if last.is_none() {
            mariadb = FormatDescription::parse(&ev).is_ok_and(|f| f.is_mariadb());
        }
        last = Some((pos, ev));
    }
    let Some((pos, last)) = last else {
        return Err(format!("{}: holds no event", path.display()));
    };
    let checksum_len = reader.checksum_alg().checksum_len().min(CHECKSUM_LEN);
    Ok(Tail {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        end_pos: pos + last.len() as u64,
        last_event: LastEvent::of(&last, checksum_len),
        mariadb,
    })
}

/// The names the files are stored under, by the node's rule ([`next_name`]): the first
/// one's `first_name` (default: its file name), then for each file the name that follows
/// the one before it.
pub fn chain_names(
    files: &[PathBuf],
    ends: &[Tail],
    first_name: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let Some((previous, end)) = names.last().zip(i.checked_sub(1).and_then(|p| ends.get(p)))
        else {
            let name = match first_name {
                Some(n) => n.to_string(),
                None => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| format!("{}: not a file name", path.display()))?
                    .to_string(),
            };
            names.push(name);
            continue;
        };
        let tail = Tail {
            file: previous.clone(),
            ..end.clone()
        };
        let name = next_name(&tail).map_err(|e| {
            format!(
                "{}: {e}; give the files in order, the last one last",
                files[i - 1].display()
            )
        })?;
        // Local names may carry another base or numbering (copies saved as `copy.1`,
        // `copy.2`, stored with --name), but their numbers must step as the stored names
        // do: a file given out of order would otherwise be stored under the wrong name.
        let step = |p: &PathBuf, stored: &str| {
            let own = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let number = |name| numbered_name(name).map(|(_, _, number)| number);
            number(own)
                .zip(number(stored))
                .map(|(own, stored)| i128::from(own) - i128::from(stored))
        };
        if let (Some(first), Some(this)) = (step(&files[0], &names[0]), step(path, &name)) {
            if first != this {
                return Err(format!(
                    "{} would be stored as {name}, the file that follows {}: give the files \
                     in order, the last one last",
                    path.display(),
                    files[i - 1].display()
                ));
            }
        }
        names.push(name);
    }
    Ok(names)
}

/// `ctl import`.
pub fn import_files(args: &CtlArgs, files: &[PathBuf], first_name: Option<&str>) -> i32 {
    let ends: Result<Vec<Tail>, String> = files.iter().map(|p| file_end(p)).collect();
    let names = ends.and_then(|ends| chain_names(files, &ends, first_name));
    let names = match names {
        Ok(names) => names,
        Err(message) => {
            eprintln!("error: {message}; nothing was imported");
            return EXIT_USAGE;
        }
    };
    let command = CtlCommand::Import {
        files: files.to_vec(),
        name: first_name.map(str::to_string),
    };
    for (i, (path, name)) in files.iter().zip(&names).enumerate() {
        if path.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
            eprintln!("note: importing {} as {name}", path.display());
        }
        let url = format!(
            "http://{}/binlog/import?file={}",
            args.admin,
            percent_encode(name)
        );
        let sent = File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                let mut response = agent(IMPORT_TIMEOUT_MS)
                    .post(&url)
                    .header("Content-Type", "application/octet-stream")
                    .send(file)
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| e.to_string())?;
                Ok((status, body))
            });
        // The node refuses a doomed file (stored already, not next, a syncer configured)
        // before reading its body and closes the connection; a large upload then fails
        // while sending. An empty body asks the same name-only questions again: a 409 or
        // 503 is the reason (an empty file itself would be a 400).
        let sent = sent.or_else(|error| match probe(&url) {
            Some((status, body)) if status == 409 || status == 503 => Ok((status, body)),
            _ => Err(error),
        });
        let (status, body) = match sent {
            Ok(reply) => reply,
            Err(error) => {
                eprintln!(
                    "error: sending {} to the node at {}: {error}",
                    path.display(),
                    args.admin
                );
                report_rest(&names[i..]);
                return EXIT_UNREACHABLE;
            }
        };
        let outcome = render(&command, status, &body, args.json);
        print!("{}", outcome.stdout);
        eprint!("{}", outcome.stderr);
        if outcome.exit_code != EXIT_OK {
            report_rest(&names[i..]);
            return outcome.exit_code;
        }
    }
    EXIT_OK
}

/// `POST url` with an empty body: (status, body), or None when the node cannot be asked.
fn probe(url: &str) -> Option<(u16, String)> {
    let mut response = agent(HTTP_CLIENT_TIMEOUT_MS)
        .post(url)
        .header("Content-Type", "application/octet-stream")
        .send(&[][..])
        .ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((status, body))
}

fn report_rest(names: &[String]) {
    eprintln!("not imported: {}", names.join(", "));
}

/// One line per imported file.
pub fn format_import(summary: &ImportSummary) -> String {
    format!(
        "imported {}: {} events, {} bytes, positions {}..{}\n",
        summary.file, summary.events, summary.bytes, summary.first_pos, summary.end_pos
    )
}

/// `ctl export`.
pub fn export_files(args: &CtlArgs, to: &Path, only: Option<&str>, force: bool) -> i32 {
    let url = format!("http://{}/binlog/files", args.admin);
    let listed = agent(HTTP_CLIENT_TIMEOUT_MS)
        .get(&url)
        .call()
        .and_then(|mut r| Ok((r.status().as_u16(), r.body_mut().read_to_string()?)));
    let (status, body) = match listed {
        Ok(reply) => reply,
        Err(error) => {
            eprintln!("error: {}", super::unreachable(&args.admin, &error));
            return EXIT_UNREACHABLE;
        }
    };
    let command = CtlCommand::Export {
        to: to.to_path_buf(),
        file: only.map(str::to_string),
        force,
    };
    if !(200..300).contains(&status) {
        let outcome = render(&command, status, &body, args.json);
        eprint!("{}", outcome.stderr);
        return outcome.exit_code;
    }
    let files: Vec<BinlogFileInfo> = match serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("data")?.clone()).ok())
    {
        Some(files) => files,
        None => {
            eprintln!("error: the node's file list is not what ctl expects: {body}");
            return EXIT_NODE_ERROR;
        }
    };
    let chosen = match choose(&files, only) {
        Ok((chosen, skipped)) => {
            for (_, why) in skipped {
                eprintln!("warning: skipping {why}");
            }
            chosen
        }
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_NODE_ERROR;
        }
    };
    if let Err(message) = prepare_dir(to, &chosen, force) {
        eprintln!("error: {message}; nothing was exported");
        return EXIT_NODE_ERROR;
    }
    let mut written = Vec::new();
    for file in &chosen {
        match download(&args.admin, file, to) {
            Ok(bytes) => {
                if !args.json {
                    println!("exported {}: {bytes} bytes", file.name);
                }
                written.push(serde_json::json!({"file": file.name, "bytes": bytes}));
            }
            Err((code, message)) => {
                eprintln!("error: {message}");
                return code;
            }
        }
    }
    if args.json {
        println!("{}", Value::Array(written));
    }
    EXIT_OK
}

/// Downloads one file into `to` (temporary name, sync, rename). The error carries the exit
/// status.
fn download(admin: &str, file: &BinlogFileInfo, to: &Path) -> Result<u64, (i32, String)> {
    let url = format!("http://{admin}/binlog/files/{}", percent_encode(&file.name));
    let mut response = agent(EXPORT_TIMEOUT_MS)
        .get(&url)
        .call()
        .map_err(|e| (EXIT_UNREACHABLE, format!("downloading {}: {e}", file.name)))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(body);
        return Err((
            EXIT_NODE_ERROR,
            format!("downloading {}: {message} (HTTP {status})", file.name),
        ));
    }
    let local = |e: io::Error, path: &Path| (EXIT_NODE_ERROR, format!("{}: {e}", path.display()));
    let declared = response
        .headers()
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    write_atomically(to, &file.name, local, |out| {
        let copied = io::copy(&mut response.body_mut().as_reader(), out)
            .map_err(|e| (EXIT_UNREACHABLE, format!("downloading {}: {e}", file.name)))?;
        check_download(file, copied, declared).map_err(|m| (EXIT_UNREACHABLE, m))?;
        Ok(copied)
    })
}

/// Whether a download is whole: exactly the Content-Length the node announced, and at
/// least the size the file list gave (a file only grows; the last one may have grown
/// since the list was read). A short body means the connection broke off: the file must
/// not be renamed into place.
fn check_download(file: &BinlogFileInfo, copied: u64, declared: Option<u64>) -> Result<(), String> {
    if let Some(declared) = declared.filter(|&d| d != copied) {
        return Err(format!(
            "downloading {}: received {copied} bytes but the node announced {declared}; the              connection broke off, nothing was written under this name",
            file.name
        ));
    }
    if copied < file.end_pos {
        return Err(format!(
            "downloading {}: received {copied} bytes but the node lists the file with {}              bytes; the download is short, nothing was written under this name",
            file.name, file.end_pos
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::file::FIRST_EVENT_POSITION;
    use std::fs;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/mysql")
            .join(name)
    }

    #[test]
    fn the_kingbus_files_chain_under_their_master_names() {
        let files: Vec<PathBuf> = ["000011", "000012", "000013"]
            .iter()
            .map(|n| fixture(&format!("kingbus-5.7-mysql_bin.{n}")))
            .collect();
        let ends: Vec<Tail> = files.iter().map(|p| file_end(p).unwrap()).collect();
        assert_eq!(
            ends[0].last_event,
            LastEvent::Rotate {
                next_file: "mysql_bin.000012".to_string(),
                position: FIRST_EVENT_POSITION
            }
        );
        assert!(!matches!(ends[2].last_event, LastEvent::Rotate { .. }));
        assert_eq!(
            chain_names(&files, &ends, Some("mysql_bin.000011")).unwrap(),
            ["mysql_bin.000011", "mysql_bin.000012", "mysql_bin.000013"]
        );
        assert_eq!(
            chain_names(&files, &ends, None).unwrap()[0],
            "kingbus-5.7-mysql_bin.000011"
        );
        // .000013 does not end with a ROTATE (its master was still writing it): as after a
        // master's crash, the next number follows it (the node checks PREVIOUS_GTIDS).
        let swapped = [files[2].clone(), files[0].clone()];
        let ends2 = [
            file_end(&swapped[0]).unwrap(),
            file_end(&swapped[1]).unwrap(),
        ];
        assert!(ends2[0].last_event == LastEvent::Other && !ends2[0].mariadb);
        // So .000011 given after it would be stored as .000014: refused before sending.
        let err = chain_names(&swapped, &ends2, Some("mysql_bin.000013")).unwrap_err();
        assert!(
            err.contains("would be stored as mysql_bin.000014") && err.contains("in order"),
            "{err}"
        );
        // Without a number in the name nothing can follow it.
        let err = chain_names(&swapped, &ends2, Some("mysql_bin")).unwrap_err();
        assert!(err.contains("no number"), "{err}");
    }

    #[test]
    fn after_a_stop_the_next_number_follows_and_mariadb_needs_a_rotate_or_stop() {
        // binlog-invisible-columns.000001 ends with a STOP: the node takes .000002 next.
        let stop = fixture("binlog-invisible-columns.000001");
        let end = file_end(&stop).unwrap();
        assert_eq!(end.last_event, LastEvent::Stop);
        // Copies numbered as the chain goes (each ends with a STOP, as after restarts).
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (1..=3)
            .map(|n| {
                let path = dir
                    .path()
                    .join(format!("binlog-invisible-columns.00000{n}"));
                std::fs::copy(&stop, &path).unwrap();
                path
            })
            .collect();
        let ends: Vec<Tail> = files.iter().map(|p| file_end(p).unwrap()).collect();
        assert_eq!(
            chain_names(&files, &ends, None).unwrap(),
            [
                "binlog-invisible-columns.000001",
                "binlog-invisible-columns.000002",
                "binlog-invisible-columns.000003"
            ]
        );
        // The first file given again after the second (the operator review's slip): it
        // would be stored as .000003, refused before anything is sent.
        let slipped = [files[1].clone(), files[0].clone()];
        let slipped_ends = [ends[1].clone(), ends[0].clone()];
        let err = chain_names(&slipped, &slipped_ends, None).unwrap_err();
        assert!(
            err.contains("would be stored as binlog-invisible-columns.000003"),
            "{err}"
        );
        // Copies numbered their own way, stored under --name: their numbers step alike.
        let copies: Vec<PathBuf> = (1..=2)
            .map(|n| {
                let path = dir.path().join(format!("copy.{n}"));
                std::fs::copy(&stop, &path).unwrap();
                path
            })
            .collect();
        assert_eq!(
            chain_names(&copies, &ends[..2], Some("mysql-bin.000007")).unwrap(),
            ["mysql-bin.000007", "mysql-bin.000008"]
        );
        let reversed = [copies[1].clone(), copies[0].clone()];
        assert!(chain_names(&reversed, &ends[..2], Some("mysql-bin.000007")).is_err());
        // A MariaDB file that ends with neither: nothing may follow it.
        let open = Tail {
            last_event: LastEvent::Other,
            mariadb: true,
            ..file_end(&files[0]).unwrap()
        };
        let ends = [open, file_end(&files[1]).unwrap()];
        let err = chain_names(&files[..2], &ends, None).unwrap_err();
        assert!(err.contains("MariaDB"), "{err}");
    }

    #[test]
    fn local_files_that_are_not_binlogs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        fs::write(&path, "hello").unwrap();
        let err = file_end(&path).unwrap_err();
        assert!(
            err.contains("notes.txt") && err.contains("not a binlog"),
            "{err}"
        );
        let err = file_end(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn choosing_files_to_export() {
        let info = |name: &str, complete: bool| BinlogFileInfo {
            name: name.into(),
            start_pos: if complete { 4 } else { 900 },
            end_pos: 1000,
            bytes: 996,
            events: 3,
            complete,
        };
        let files = [info("a.1", false), info("a.2", true), info("a.3", true)];
        let names = |v: Vec<BinlogFileInfo>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
        let (chosen, skipped) = choose(&files, None).unwrap();
        assert_eq!(names(chosen), ["a.2", "a.3"]);
        assert_eq!(skipped[0].0, "a.1");
        assert_eq!(names(choose(&files, Some("a.3")).unwrap().0), ["a.3"]);
        assert!(choose(&files, Some("a.1"))
            .unwrap_err()
            .to_string()
            .contains("position 900"));
        assert!(choose(&files, Some("zz"))
            .unwrap_err()
            .to_string()
            .contains("zz"));
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.2"), "x").unwrap();
        let err = prepare_dir(dir.path(), &files[1..], false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        prepare_dir(dir.path(), &files[1..], true).unwrap();
    }

    #[test]
    fn a_short_download_is_refused() {
        let file = BinlogFileInfo {
            name: "a.2".into(),
            start_pos: 4,
            end_pos: 1000,
            bytes: 996,
            events: 3,
            complete: true,
        };
        check_download(&file, 1000, Some(1000)).unwrap();
        // The last file grew since the list was read.
        check_download(&file, 1200, Some(1200)).unwrap();
        check_download(&file, 1000, None).unwrap();
        let err = check_download(&file, 700, Some(1000)).unwrap_err();
        assert!(err.contains("a.2") && err.contains("1000"), "{err}");
        let err = check_download(&file, 700, Some(700)).unwrap_err();
        assert!(err.contains("short"), "{err}");
        let err = check_download(&file, 700, None).unwrap_err();
        assert!(err.contains("short"), "{err}");
    }
}
