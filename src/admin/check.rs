//! `otpgate check-config`: the checks the module makes at every login, made
//! ahead of time with a fix for each problem: the config file, the groups,
//! the audit socket, the state folder and every file in it (or, with the
//! database store, a call of the database as a login makes it).

use std::ffi::CString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::config::{Config, StoreKind};
use crate::fsutil::{self, FsError, Problem, Rules, STATE_RULES};
use crate::store::counters;
use crate::store::record::UserRecord;
use crate::users::{Directory, UserName};

/// One thing wrong, and how to put it right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "problem: {}\n    fix: {}", self.problem, self.fix)
    }
}

fn finding(problem: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Every problem with the config at `path` and what it points at; empty
/// when all is well. When the config cannot be loaded, that is the only
/// finding.
pub fn check(path: &Path, directory: &dyn Directory) -> Vec<Finding> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => return vec![config_finding(path, &e)],
    };

    let mut findings = check_groups(&config, directory);
    findings.extend(check_socket(&config.audit.socket));
    match &config.store {
        StoreKind::Files => findings.extend(check_state_dir(&config.state_dir)),
        StoreKind::Postgres(settings) => findings.extend(
            crate::admin_db::check_database(settings)
                .into_iter()
                .map(|(problem, fix)| finding(problem, fix)),
        ),
    }
    findings
}

fn config_finding(path: &Path, e: &crate::config::ConfigError) -> Finding {
    match e {
        crate::config::ConfigError::File(fs) => fs_finding(fs, "0644"),
        other => finding(
            other.to_string(),
            format!("edit {} (see pam_otpgate(8) for every key)", path.display()),
        ),
    }
}

/// A problem of a trusted file or folder, with the command that fixes it.
fn fs_finding(e: &FsError, mode: &str) -> Finding {
    let path = &e.path;
    let fix = match &e.problem {
        Problem::Missing => format!("create {path}"),
        Problem::WrongOwner { .. } => format!("chown root:root {path}"),
        Problem::BadMode { .. } => format!("chmod {mode} {path}"),
        Problem::Symlink => format!("replace the link {path} with the real file or folder"),
        Problem::HardLinked { .. } => format!("copy {path} to a new file and remove the old links"),
        Problem::NotRegular | Problem::NotDirectory => format!("remove {path} and create it anew"),
        Problem::TooLarge { .. } => format!("{path} is not an otpgate file: move it away"),
        Problem::Io { .. } => format!("check that {path} is readable by root"),
    };
    finding(e.to_string(), fix)
}

fn check_groups(config: &Config, directory: &dyn Directory) -> Vec<Finding> {
    let mut findings = Vec::new();
    for group in &config.groups {
        match directory.group_id(group) {
            Ok(Some(_)) => {}
            Ok(None) => findings.push(finding(
                format!("group {group} does not exist, so it protects nobody"),
                format!("create the group or remove {group:?} from groups"),
            )),
            Err(e) => findings.push(finding(e.to_string(), "check the name service (NSS)")),
        }
    }
    findings
}

fn check_socket(socket: &Path) -> Option<Finding> {
    let is_socket = std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket());
    (!is_socket).then(|| {
        finding(
            format!(
                "{} is not a socket: audit lines would be lost",
                socket.display()
            ),
            "start the system logger, or set [audit] socket to its socket",
        )
    })
}

fn check_state_dir(dir: &Path) -> Vec<Finding> {
    let fd = match fsutil::open_trusted_dir(dir) {
        Ok(fd) => fd,
        Err(e) if e.problem == Problem::Missing => {
            return vec![finding(
                e.to_string(),
                format!("install -d -o root -g root -m 0700 {}", dir.display()),
            )]
        }
        Err(e) => return vec![fs_finding(&e, "0700")],
    };

    let mut findings = Vec::new();
    let readable = std::fs::metadata(dir).map_or(0, |m| m.mode() & 0o077);
    if readable != 0 {
        findings.push(finding(
            format!(
                "{} can be listed by other users (mode {:04o})",
                dir.display(),
                readable
            ),
            format!("chmod 0700 {}", dir.display()),
        ));
    }
    findings.extend(check_state_files(dir, &fd));
    findings
}

fn check_state_files(dir: &Path, fd: &OwnedFd) -> Vec<Finding> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![finding(
            format!("{} cannot be listed", dir.display()),
            "check that root can read it",
        )];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    names
        .iter()
        .filter_map(|name| check_state_file(dir, fd, name))
        .collect()
}

/// What kind of file a name in the state folder is.
enum Kind {
    Record,
    Counters,
    Allowance,
    Backup,
}

fn kind_of(name: &str) -> Option<(Kind, &str)> {
    if let Some((user, _)) = name.split_once(".toml.reset-") {
        return Some((Kind::Backup, user));
    }
    let kinds = [
        (".toml", Kind::Record),
        (".counters", Kind::Counters),
        (".allow", Kind::Allowance),
    ];
    kinds
        .into_iter()
        .find_map(|(suffix, kind)| name.strip_suffix(suffix).map(|user| (kind, user)))
}

fn check_state_file(dir: &Path, fd: &OwnedFd, name: &str) -> Option<Finding> {
    let shown = format!("{}/{name}", dir.display());
    if name.starts_with('.') {
        return None;
    }
    let Some((kind, user)) = kind_of(name) else {
        return Some(finding(
            format!("{shown} is not an otpgate file"),
            "move it out of the state folder",
        ));
    };
    if UserName::parse(user.as_bytes()).is_err() {
        return Some(finding(
            format!("{shown} is not named after a valid user name"),
            "move it out of the state folder",
        ));
    }

    let rules = match kind {
        Kind::Counters => Rules {
            forbidden_mode: 0o077,
            max_size: counters::FILE_SIZE,
        },
        _ => STATE_RULES,
    };
    let c_name = CString::new(name).ok()?;
    let file = match fsutil::open_trusted_file(fd, &c_name, &shown, rules) {
        Ok(Some(file)) => file,
        Ok(None) => return None,
        Err(e) => return Some(fs_finding(&e, "0600")),
    };
    match kind {
        Kind::Record => check_record(file, &shown, user),
        _ => None,
    }
}

fn check_record(mut file: std::fs::File, shown: &str, user: &str) -> Option<Finding> {
    let bytes = match fsutil::read_limited(&mut file, STATE_RULES.max_size, &shown) {
        Ok(bytes) => zeroize::Zeroizing::new(bytes),
        Err(e) => return Some(fs_finding(&e, "0600")),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Some(finding(
            format!("{shown} is not UTF-8 text"),
            format!("remove it with otpgate reset {user} and enroll again"),
        ));
    };
    UserRecord::parse(text).err().map(|e| {
        finding(
            format!("{shown} cannot be used: {}", e.0),
            format!(
                "repair it (docs/state-file.md) or remove it with otpgate reset {user} and \
                 enroll again"
            ),
        )
    })
}
