//! The benchmark's world on disk, under one work folder on the real disk:
//! nss_wrapper passwd and group files, PAM service files, otpgate's configs
//! and state folders, pam_google_authenticator's secret files and
//! pam_oath's usersfile. Also the reset that puts every module's state back
//! to "last login an hour ago" before each timed run.
//!
//! Every module gets the same protections: a root-owned secret per user
//! that only root can read, replay protection, and failure limits
//! (otpgate's lockout, google-authenticator's RATE_LIMIT; pam_oath has
//! none to offer).

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use otpgate::secret::base32_encode;
use otpgate::store::counters::{self, Counters, Slot};
use otpgate::store::record::UserRecord;

use crate::accounts::{self, MEMBERS, OUTSIDER};

/// The group whose members must give a code.
pub const GROUP: &str = "vms-admins";

/// Members in the large group of the group-size row.
pub const BIG_GROUP_MEMBERS: usize = 10_000;

/// Recovery codes (otpgate) and scratch codes (google-authenticator) per
/// user, as each tool creates by default.
const SPARE_CODES: u32 = 5;

/// The otpgate state folders: how many users are enrolled in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enrolled {
    Hundred,
    Thousand,
    HundredThousand,
}

impl Enrolled {
    pub fn count(self) -> usize {
        match self {
            Enrolled::Hundred => 100,
            Enrolled::Thousand => MEMBERS,
            Enrolled::HundredThousand => 100_000,
        }
    }

    /// How many of the enrolled users log in during a run.
    pub fn logging_in(self) -> usize {
        self.count().min(MEMBERS)
    }

    fn label(self) -> &'static str {
        match self {
            Enrolled::Hundred => "100",
            Enrolled::Thousand => "1000",
            Enrolled::HundredThousand => "100k",
        }
    }

    /// The names of the enrolled users: the members first, then fillers.
    fn users(self) -> impl Iterator<Item = String> {
        let members = self.logging_in();
        let fillers = self.count() - members;
        (0..members)
            .map(accounts::member)
            .chain((0..fillers).map(accounts::filler))
    }
}

/// The work folder and the module under test.
pub struct World {
    pub root: PathBuf,
    pub module: PathBuf,
}

impl World {
    pub fn new(root: &Path, module: &Path) -> World {
        World {
            root: root.to_path_buf(),
            module: module.to_path_buf(),
        }
    }

    pub fn pam_dir(&self) -> PathBuf {
        self.root.join("pam.d")
    }

    pub fn passwd(&self) -> PathBuf {
        self.root.join("nss/passwd")
    }

    /// The group file; `big` gives the configured group 10,000 members.
    pub fn group(&self, big: bool) -> PathBuf {
        let name = if big { "group-10k" } else { "group" };
        self.root.join("nss").join(name)
    }

    fn otpgate_dir(&self) -> PathBuf {
        self.root.join("otpgate")
    }

    pub fn state_dir(&self, enrolled: Enrolled) -> PathBuf {
        self.otpgate_dir()
            .join(format!("state-{}", enrolled.label()))
    }

    fn config(&self, enrolled: Enrolled) -> PathBuf {
        self.otpgate_dir()
            .join(format!("config-{}.toml", enrolled.label()))
    }

    /// The PAM service that runs otpgate on a state folder.
    pub fn otpgate_service(enrolled: Enrolled) -> String {
        format!("otpgate-{}", enrolled.label())
    }

    fn ga_dir(&self) -> PathBuf {
        self.root.join("google-authenticator")
    }

    fn oath_users(&self) -> PathBuf {
        self.root.join("oath/users")
    }

    /// Lays out everything but the large state folder (see
    /// [`World::ensure_large_store`]).
    pub fn prepare(&self) -> io::Result<()> {
        for (dir, mode) in [
            (self.root.clone(), 0o755),
            (self.root.join("nss"), 0o755),
            (self.pam_dir(), 0o755),
            (self.otpgate_dir(), 0o755),
            (self.ga_dir(), 0o700),
            (self.root.join("oath"), 0o700),
        ] {
            make_dir(&dir, mode)?;
        }

        self.write_nss()?;
        self.write_services()?;
        for enrolled in [Enrolled::Hundred, Enrolled::Thousand] {
            self.write_config(enrolled)?;
            self.write_store(enrolled)?;
        }
        self.write_config(Enrolled::HundredThousand)
    }

    fn write_nss(&self) -> io::Result<()> {
        let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
        passwd.push_str(&format!(
            "{OUTSIDER}:x:1999:1999::/nonexistent:/usr/sbin/nologin\n"
        ));
        for index in 0..MEMBERS {
            let uid = 10_000 + index;
            let name = accounts::member(index);
            passwd.push_str(&format!(
                "{name}:x:{uid}:100::/nonexistent:/usr/sbin/nologin\n"
            ));
        }
        write_file(&self.passwd(), passwd.as_bytes(), 0o644)?;

        let members: Vec<String> = (0..MEMBERS).map(accounts::member).collect();
        write_file(&self.group(false), group_file(&members).as_bytes(), 0o644)?;
        write_file(
            &self.group(true),
            group_file(&big_group()).as_bytes(),
            0o644,
        )
    }

    fn write_services(&self) -> io::Result<()> {
        let module = self.module.display();
        let mut services = vec![
            // Without an `other` file libpam logs an error at every
            // pam_start; a real /etc/pam.d has one. This one loads nothing.
            (
                "other".to_string(),
                "# Deliberately empty: no fallback stack.\n".to_string(),
            ),
            (
                "permit".to_string(),
                "auth required pam_permit.so\n".to_string(),
            ),
            (
                "google-authenticator".to_string(),
                format!(
                    "auth required pam_google_authenticator.so secret={}/${{USER}} user=root\n",
                    self.ga_dir().display()
                ),
            ),
            (
                "oath".to_string(),
                format!(
                    "auth required pam_oath.so usersfile={} window=1 digits=6\n",
                    self.oath_users().display()
                ),
            ),
        ];
        for enrolled in [
            Enrolled::Hundred,
            Enrolled::Thousand,
            Enrolled::HundredThousand,
        ] {
            let line = format!(
                "auth required {module} config={}\n",
                self.config(enrolled).display()
            );
            services.push((World::otpgate_service(enrolled), line));
        }

        for (name, text) in services {
            write_file(&self.pam_dir().join(name), text.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    fn write_config(&self, enrolled: Enrolled) -> io::Result<()> {
        let text = format!(
            "groups = [\"{GROUP}\"]\n\
             state_dir = \"{}\"\n\n\
             [code]\ndigits = 6\nperiod = 30\nalgorithm = \"SHA1\"\nskew = 1\n\n\
             [lockout]\nmax_failures = 5\nlock_seconds = 300\n\n\
             [enrollment]\nmode = \"admin-only\"\n\n\
             [audit]\nsocket = \"/dev/log\"\n",
            self.state_dir(enrolled).display()
        );
        write_file(&self.config(enrolled), text.as_bytes(), 0o644)
    }

    /// Writes a state folder from scratch: a record and counters per user.
    fn write_store(&self, enrolled: Enrolled) -> io::Result<()> {
        let dir = self.state_dir(enrolled);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        make_dir(&dir, 0o700)?;

        let now = accounts::now();
        for user in enrolled.users() {
            write_record(&dir, &user, now)?;
            write_counters(&dir, &user, now)?;
        }
        Ok(())
    }

    /// Builds the 100,000-user state folder unless a complete one is there
    /// from an earlier run. Returns whether it had to be built.
    pub fn ensure_large_store(&self) -> io::Result<bool> {
        let enrolled = Enrolled::HundredThousand;
        let marker = self.otpgate_dir().join("state-100k.complete");
        let expected = format!("v1 {}\n", enrolled.count());
        if fs::read_to_string(&marker).ok().as_deref() == Some(expected.as_str()) {
            return Ok(false);
        }

        let _ = fs::remove_file(&marker);
        self.write_store(enrolled)?;
        sync_all();
        write_file(&marker, expected.as_bytes(), 0o644)?;
        Ok(true)
    }

    /// Puts the state of the users who log in back to "logged in an hour
    /// ago, no failures", for every module, and waits for it to reach the
    /// disk so the timed run does not pay for this run's writes.
    pub fn reset(&self) -> io::Result<()> {
        let now = accounts::now();
        for enrolled in [
            Enrolled::Hundred,
            Enrolled::Thousand,
            Enrolled::HundredThousand,
        ] {
            let dir = self.state_dir(enrolled);
            if !dir.is_dir() {
                continue;
            }
            for index in 0..enrolled.logging_in() {
                write_counters(&dir, &accounts::member(index), now)?;
            }
        }

        for index in 0..MEMBERS {
            let user = accounts::member(index);
            write_file(&self.ga_dir().join(&user), &ga_file(&user, now), 0o400)?;
        }
        self.write_oath_users()?;
        sync_all();
        Ok(())
    }

    fn write_oath_users(&self) -> io::Result<()> {
        let mut text = String::with_capacity(MEMBERS * 80);
        for index in 0..MEMBERS {
            let user = accounts::member(index);
            let hex: String = accounts::secret_bytes(&user)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            text.push_str(&format!("HOTP/T30/6\t{user}\t-\t{hex}\n"));
        }
        write_file(&self.oath_users(), text.as_bytes(), 0o600)
    }
}

/// The group file: root, the personal group of the outsider, `users`, and
/// the configured group with `members`.
fn group_file(members: &[String]) -> String {
    format!(
        "root:x:0:\nusers:x:100:\n{OUTSIDER}:x:1999:\nstaff:x:3001:{OUTSIDER}\n{GROUP}:x:3000:{}\n",
        members.join(",")
    )
}

/// 10,000 members: the 1,000 who log in spread evenly among 9,000 others.
fn big_group() -> Vec<String> {
    let spacing = BIG_GROUP_MEMBERS / MEMBERS;
    let mut extra = 0;
    (0..BIG_GROUP_MEMBERS)
        .map(|slot| {
            if slot % spacing == spacing / 2 {
                accounts::member(slot / spacing)
            } else {
                extra += 1;
                format!("{}{:04}", accounts::EXTRA_MEMBER_PREFIX, extra - 1)
            }
        })
        .collect()
}

/// `<user>.toml` with the user's secret and five recovery code hashes.
fn write_record(dir: &Path, user: &str, now: i64) -> io::Result<()> {
    let mut record = UserRecord::new(accounts::secret(user), accounts::settings(), now - 86_400);
    let (_, hashes) = otpgate::recovery::generate(SPARE_CODES)
        .map_err(|e| io::Error::other(format!("recovery codes: {e}")))?;
    record.recovery_codes = hashes;
    let path = dir.join(format!("{user}.toml"));
    write_file(&path, record.to_toml().as_bytes(), 0o600)
}

/// `<user>.counters` as after a login an hour ago: slot 0 written once,
/// slot 1 never.
fn write_counters(dir: &Path, user: &str, now: i64) -> io::Result<()> {
    let secret = accounts::secret(user);
    let hour_ago = now - 3_600;
    let slot = Slot {
        generation: 1,
        fingerprint: counters::fingerprint(&secret),
        counters: Counters {
            last_step: Some(accounts::settings().step_at(hour_ago)),
            last_success: hour_ago,
            ..Counters::default()
        },
    };
    let mut bytes = vec![0u8; counters::FILE_SIZE as usize];
    bytes[..counters::SLOT_SIZE].copy_from_slice(&counters::encode(&slot));
    write_file(&dir.join(format!("{user}.counters")), &bytes, 0o600)
}

/// A google-authenticator secret file as after a login an hour ago, with
/// DISALLOW_REUSE, RATE_LIMIT (3 logins in 30 s, its documented example)
/// and five scratch codes.
fn ga_file(user: &str, now: i64) -> Vec<u8> {
    let hour_ago = now - 3_600;
    let step = accounts::settings().step_at(hour_ago);
    let mut text = format!(
        "{}\n\" RATE_LIMIT 3 30 {hour_ago}\n\" DISALLOW_REUSE {step}\n\" TOTP_AUTH\n",
        base32_encode(&accounts::secret_bytes(user)).as_str()
    );
    for n in 0..SPARE_CODES {
        text.push_str(&format!("{}\n", 10_000_000 + 7_919 * (n + 1)));
    }
    text.into_bytes()
}

/// Creates `dir` if needed and sets its mode (root owns it: we run as root).
fn make_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Writes `bytes` to `path` with `mode`, without fsync (see [`sync_all`]).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    let mut writer = BufWriter::new(file);
    writer.write_all(bytes)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// Flushes every dirty page to the disk: the setup's writes must not land
/// in the journal commits of the timed logins.
pub fn sync_all() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_group_holds_every_member_once() {
        let group = big_group();
        assert_eq!(group.len(), BIG_GROUP_MEMBERS);
        let members: Vec<&String> = group.iter().filter(|m| m.starts_with('u')).collect();
        assert_eq!(members.len(), MEMBERS);
        assert_eq!(members[0], "u0000");
        assert_eq!(members[MEMBERS - 1], "u0999");
    }

    #[test]
    fn counters_written_for_the_bench_are_read_back_by_otpgate() {
        let dir = std::env::temp_dir().join(format!("otpgate-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        write_counters(&dir, "u0007", 1_700_000_000).unwrap();

        let bytes = fs::read(dir.join("u0007.counters")).unwrap();
        let state = counters::read_file(&bytes);
        let expected = accounts::settings().step_at(1_700_000_000 - 3_600);
        fs::remove_dir_all(&dir).unwrap();

        match state {
            counters::FileState::Current { slot, next_index } => {
                assert_eq!(next_index, 1);
                assert_eq!(slot.counters.last_step, Some(expected));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn records_written_for_the_bench_parse() {
        let dir = std::env::temp_dir().join(format!("otpgate-bench-rec-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        write_record(&dir, "u0001", 1_700_000_000).unwrap();

        let text = fs::read_to_string(dir.join("u0001.toml")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let record = UserRecord::parse(&text).unwrap();

        assert_eq!(record.secret, accounts::secret("u0001"));
        assert_eq!(record.recovery_codes.len(), SPARE_CODES as usize);
    }
}
