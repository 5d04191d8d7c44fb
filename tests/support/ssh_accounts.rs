//! Throw-away Unix accounts for tests that need real ones (sshd's privilege
//! separation and pam_unix see only the real name service and shadow file):
//! groups and users named `otpg-<pid>-<kind><n>`, created with groupadd,
//! useradd and chpasswd, and removed by the [`Accounts`] guard when it is
//! dropped, even when the test fails. Accounts left by a test process that
//! was killed are removed by the next one. The account commands run under
//! one lock file (`flock`), as useradd refuses to run while another holds
//! /etc/passwd.
//!
//! Include it with `#[path = "support/ssh_accounts.rs"] mod ssh_accounts;`.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every account or group a test creates starts with this.
const PREFIX: &str = "otpg-";

/// Held while useradd, userdel, groupadd or groupdel runs.
const ACCOUNTS_LOCK: &str = "/run/lock/otpgate-test-accounts.lock";

/// Runs a command to completion, panicking with its output when it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `flock LOCK program args...`: one account command at a time, across
/// test processes.
fn locked(program: &str) -> Command {
    let mut command = Command::new("flock");
    command.args(["-w", "60", ACCOUNTS_LOCK, program]);
    command
}

// ---------------------------------------------------------------------------
// Accounts

/// Throw-away groups and users, removed on drop.
pub struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Accounts {
    /// An empty set, after removing what dead test processes left behind.
    pub fn new() -> Accounts {
        fs::create_dir_all("/run/lock").expect("creating /run/lock");
        remove_stale_accounts();
        Accounts {
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// A new group; its name is returned.
    pub fn add_group(&mut self) -> String {
        let name = fresh_name("g");
        run(locked("groupadd").arg(&name));
        self.groups.push(name.clone());
        name
    }

    /// A new user with a home folder, `/bin/sh`, a password and the given
    /// supplementary groups; returns the name and the password.
    pub fn add_user(&mut self, groups: &[&str]) -> (String, String) {
        let name = fresh_name("u");
        let mut useradd = locked("useradd");
        useradd.args(["--create-home", "--shell", "/bin/sh", "--user-group"]);
        if !groups.is_empty() {
            useradd.args(["--groups", &groups.join(",")]);
        }
        run(useradd.arg(&name));
        self.users.push(name.clone());

        let password = format!("Pw-{name}-{}", std::process::id() % 9973);
        set_password(&name, &password);
        (name, password)
    }

    /// The user's home folder, as the passwd entry says.
    pub fn home(&self, user: &str) -> PathBuf {
        let output = run(Command::new("getent").args(["passwd", user]));
        let entry = String::from_utf8_lossy(&output.stdout).into_owned();
        let home = entry.trim_end().split(':').nth(5).expect("a home field");
        PathBuf::from(home)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in self.users.drain(..) {
            remove_user(&user);
        }
        for group in self.groups.drain(..) {
            remove_group(&group);
        }
    }
}

/// `otpg-<pid>-<kind><n>`, unique in this process.
fn fresh_name(kind: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let number = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{PREFIX}{}-{kind}{number}", std::process::id())
}

fn set_password(user: &str, password: &str) {
    let mut child = locked("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("running chpasswd");
    let mut stdin = child.stdin.take().expect("chpasswd's input");
    writeln!(stdin, "{user}:{password}").expect("writing to chpasswd");
    drop(stdin);
    let status = child.wait().expect("waiting for chpasswd");
    assert!(status.success(), "chpasswd failed: {status}");
}

/// Removes a user with its home folder and personal group. Never panics:
/// it runs from `drop`, maybe while a failed test unwinds.
fn remove_user(user: &str) {
    let result = locked("userdel")
        .args(["--remove", "--force", user])
        .stderr(Stdio::null())
        .status();
    if Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("could not remove the test account {user}: {result:?}");
    }
}

fn remove_group(group: &str) {
    let _ = locked("groupdel").arg(group).stderr(Stdio::null()).status();
}

/// Removes `otpg-<pid>-...` users and groups whose process is gone.
fn remove_stale_accounts() {
    for (file, remove) in [
        ("/etc/passwd", remove_user as fn(&str)),
        ("/etc/group", remove_group as fn(&str)),
    ] {
        let text = fs::read_to_string(file).unwrap_or_default();
        let stale: Vec<String> = text
            .lines()
            .filter_map(|line| line.split(':').next())
            .filter(|name| is_stale(name))
            .map(String::from)
            .collect();
        for name in stale {
            remove(&name);
        }
    }
}

fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    !Path::new(&format!("/proc/{pid}")).exists()
}
