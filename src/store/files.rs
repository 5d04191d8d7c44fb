//! The default store: a root-owned folder with, per user, `<user>.toml`
//! (the record, replaced atomically when it changes) and `<user>.counters`
//! (two checksummed slots updated in place; also the user's lock file).
//! docs/state-file.md specifies both.

use std::cell::OnceCell;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fsutil::{self, FsError, Problem, Rules, STATE_RULES};
use crate::store::counters::{self, Counters, FileState, Slot};
use crate::store::record::UserRecord;
use crate::store::{Peek, Store, StoreError};
use crate::users::UserName;
use crate::verify::{self, Policy, Verdict};

/// How long a login waits for another login of the same user.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

const COUNTER_RULES: Rules = Rules {
    forbidden_mode: 0o077,
    max_size: counters::FILE_SIZE,
};

/// State in files under one root-owned folder.
pub struct FileStore {
    dir: PathBuf,
    lock_timeout: Duration,
    /// The folder, walked to and checked once, then used by every call of
    /// this store (a login makes two: before and after the prompt).
    opened: OnceCell<OwnedFd>,
}

/// A user's counters file, open and locked until dropped.
struct Locked {
    file: File,
    state: FileState,
    shown: String,
}

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_path_buf(),
            lock_timeout: LOCK_TIMEOUT,
            opened: OnceCell::new(),
        }
    }

    /// Shortens the lock wait (tests).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> FileStore {
        self.lock_timeout = timeout;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state folder. The walk from `/` costs three system calls per
    /// folder on the path, so it is done once per store; the descriptor
    /// keeps naming the folder that passed the checks.
    fn open_dir(&self) -> Result<&OwnedFd, StoreError> {
        if let Some(dir) = self.opened.get() {
            return Ok(dir);
        }
        let dir = fsutil::open_trusted_dir(&self.dir).map_err(StoreError::Unsafe)?;
        Ok(self.opened.get_or_init(|| dir))
    }

    fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.display())
    }

    fn read_record(
        &self,
        dir: &OwnedFd,
        user: &UserName,
    ) -> Result<Option<UserRecord>, StoreError> {
        let name = record_name(user);
        let shown = self.shown(&name);
        let c_name = c_string(&name);
        let Some(mut file) = fsutil::open_trusted_file(dir, &c_name, &shown, STATE_RULES)
            .map_err(StoreError::Unsafe)?
        else {
            return Ok(None);
        };
        let bytes = zeroize::Zeroizing::new(
            fsutil::read_limited(&mut file, STATE_RULES.max_size, &shown)
                .map_err(StoreError::Unsafe)?,
        );
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt(&shown, "not UTF-8"))?;
        UserRecord::parse(text)
            .map(Some)
            .map_err(|e| corrupt(&shown, &e.0))
    }

    fn read_counters_unlocked(
        &self,
        dir: &OwnedFd,
        user: &UserName,
    ) -> Result<FileState, StoreError> {
        let name = counters_name(user);
        let shown = self.shown(&name);
        let opened = fsutil::open_trusted_file(dir, &c_string(&name), &shown, COUNTER_RULES)
            .map_err(StoreError::Unsafe)?;
        match opened {
            Some(file) => read_counter_file(&file, &shown),
            None => Ok(FileState::Fresh),
        }
    }

    /// Opens (creating if needed) and locks the user's counters file.
    fn lock(&self, dir: &OwnedFd, user: &UserName) -> Result<Locked, StoreError> {
        let name = counters_name(user);
        let shown = self.shown(&name);
        let file = open_or_create_counters(dir, &name, &shown)?;
        wait_for_lock(&file, self.lock_timeout).map_err(|_| StoreError::LockTimeout {
            path: shown.clone(),
        })?;

        // The file may have been checked before another process replaced
        // it; check the locked descriptor once more.
        let fd = OwnedFd::from(file);
        check_counter_fd(&fd, &shown)?;
        let file = File::from(fd);
        let state = read_counter_file(&file, &shown)?;
        Ok(Locked { file, state, shown })
    }
}

impl Locked {
    fn counters_for(&self, record: &UserRecord) -> Result<Counters, StoreError> {
        effective_counters(&self.state, record, &self.shown)
    }

    /// Writes `counters` for `record`'s secret into the older slot and
    /// waits for it to reach the disk.
    fn save(&mut self, record: &UserRecord, counters: Counters) -> Result<(), StoreError> {
        let (generation, index) = match self.state {
            FileState::Current { slot, next_index } => (slot.generation + 1, next_index),
            _ => (1, 0),
        };
        let slot = Slot {
            generation,
            fingerprint: counters::fingerprint(&record.secret),
            counters,
        };
        let io = |e: std::io::Error| {
            StoreError::Unsafe(FsError {
                path: self.shown.clone(),
                problem: Problem::Io {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                },
            })
        };

        if self.file.metadata().map_err(io)?.len() != counters::FILE_SIZE {
            self.file.set_len(counters::FILE_SIZE).map_err(io)?;
        }
        self.file
            .write_all_at(
                &counters::encode(&slot),
                (index * counters::SLOT_SIZE) as u64,
            )
            .map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.state = FileState::Current {
            slot,
            next_index: 1 - index,
        };
        Ok(())
    }
}

impl Store for FileStore {
    fn peek(&self, user: &UserName, now: i64) -> Result<Peek, StoreError> {
        let dir = self.open_dir()?;
        let Some(record) = self.read_record(dir, user)? else {
            return Ok(Peek::NotEnrolled);
        };
        let state = self.read_counters_unlocked(dir, user)?;
        let counters = effective_counters(&state, &record, &self.shown(&counters_name(user)))?;
        Ok(Peek::Enrolled {
            locked_until: verify::locked_until(&counters, now),
        })
    }

    fn verify(
        &self,
        user: &UserName,
        reply: &[u8],
        now: i64,
        policy: &Policy,
    ) -> Result<Option<Verdict>, StoreError> {
        let dir = self.open_dir()?;
        let mut locked = self.lock(dir, user)?;
        let Some(mut record) = self.read_record(dir, user)? else {
            return Ok(None);
        };
        let current = locked.counters_for(&record)?;

        let judgement = verify::judge(&record, current, reply, now, policy);
        if let Some(index) = judgement.used_recovery_code {
            record.recovery_codes.remove(index);
            self.write_record(dir, user, &record)?;
        }
        if judgement.counters != current {
            locked.save(&record, judgement.counters)?;
        }
        Ok(Some(judgement.verdict))
    }

    fn enroll(
        &self,
        user: &UserName,
        record: &UserRecord,
        used_step: Option<u64>,
        replace: bool,
    ) -> Result<(), StoreError> {
        let dir = self.open_dir()?;
        let mut locked = self.lock(dir, user)?;
        if !replace && self.read_record(dir, user)?.is_some() {
            return Err(StoreError::Exists);
        }

        self.forget_allowance(dir, user)?;
        self.write_record(dir, user, record)?;
        let counters = Counters {
            last_step: used_step.max(record.initial.last_step),
            ..record.initial
        };
        locked.save(record, counters)
    }

    fn load(&self, user: &UserName) -> Result<Option<(UserRecord, Counters)>, StoreError> {
        let dir = self.open_dir()?;
        // Without a record there is nothing to lock: creating the user's
        // counters file just to look would leave files behind.
        if self.read_record(dir, user)?.is_none() {
            return Ok(None);
        }

        let locked = self.lock(dir, user)?;
        let Some(record) = self.read_record(dir, user)? else {
            return Ok(None);
        };
        let counters = locked.counters_for(&record)?;
        Ok(Some((record, counters)))
    }

    fn remove(&self, user: &UserName, now: i64) -> Result<Option<String>, StoreError> {
        let dir = self.open_dir()?;
        let _locked = self.lock(dir, user)?;
        if self.read_record(dir, user)?.is_none() {
            return Ok(None);
        }
        let backup = format!("{}.reset-{now}", record_name(user));
        fsutil::rename_in(dir, &record_name(user), &backup).map_err(|p| {
            StoreError::Unsafe(FsError {
                path: self.shown(&backup),
                problem: p,
            })
        })?;
        Ok(Some(self.shown(&backup)))
    }

    fn unlock(&self, user: &UserName) -> Result<bool, StoreError> {
        let dir = self.open_dir()?;
        let mut locked = self.lock(dir, user)?;
        let Some(record) = self.read_record(dir, user)? else {
            return Ok(false);
        };
        let current = locked.counters_for(&record)?;
        let cleared = Counters {
            failures: 0,
            locked_until: 0,
            ..current
        };
        locked.save(&record, cleared)?;
        Ok(true)
    }

    fn allow(&self, user: &UserName) -> Result<(), StoreError> {
        let dir = self.open_dir()?;
        let name = allowance_name(user);
        fsutil::remove_stale_temps(dir, &name);
        fsutil::replace_file(dir, &name, b"", &self.dir.display()).map_err(StoreError::Unsafe)
    }

    fn is_allowed(&self, user: &UserName) -> Result<bool, StoreError> {
        let dir = self.open_dir()?;
        let name = allowance_name(user);
        let shown = self.shown(&name);
        let opened = fsutil::open_trusted_file(dir, &c_string(&name), &shown, ALLOWANCE_RULES)
            .map_err(StoreError::Unsafe)?;
        Ok(opened.is_some())
    }

    fn users(&self) -> Result<Vec<UserName>, StoreError> {
        let _checked = self.open_dir()?;
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io_error(&e))?;

        let mut users = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_error(&e))?;
            users.extend(user_of_file(entry.file_name().as_encoded_bytes()));
        }

        users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        users.dedup();
        Ok(users)
    }

    fn replace_recovery_codes(
        &self,
        user: &UserName,
        hashes: &[String],
    ) -> Result<bool, StoreError> {
        let dir = self.open_dir()?;
        let _locked = self.lock(dir, user)?;
        let Some(mut record) = self.read_record(dir, user)? else {
            return Ok(false);
        };

        record.recovery_codes = hashes.to_vec();
        self.write_record(dir, user, &record)?;
        Ok(true)
    }
}

impl FileStore {
    /// Replaces the user's record atomically (the caller holds the lock).
    pub(crate) fn write_record(
        &self,
        dir: &OwnedFd,
        user: &UserName,
        record: &UserRecord,
    ) -> Result<(), StoreError> {
        let name = record_name(user);
        fsutil::remove_stale_temps(dir, &name);
        let shown_dir = self.dir.display();
        fsutil::replace_file(dir, &name, record.to_toml().as_bytes(), &shown_dir)
            .map_err(StoreError::Unsafe)
    }

    /// Removes the user's allowance to enroll, if there is one.
    fn forget_allowance(&self, dir: &OwnedFd, user: &UserName) -> Result<(), StoreError> {
        let name = allowance_name(user);
        let shown = self.shown(&name);
        let c_name = c_string(&name);
        // SAFETY: `dir` is an open directory and `c_name` a valid C string.
        let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), c_name.as_ptr(), 0) };
        if rc != 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if errno == libc::ENOENT {
                return Ok(());
            }
            return Err(StoreError::Unsafe(FsError {
                path: shown,
                problem: Problem::Io { errno },
            }));
        }
        fsutil::sync_fd(dir).map_err(|problem| {
            StoreError::Unsafe(FsError {
                path: shown,
                problem,
            })
        })
    }

    fn io_error(&self, e: &std::io::Error) -> StoreError {
        StoreError::Unsafe(FsError {
            path: self.dir.display().to_string(),
            problem: Problem::Io {
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            },
        })
    }
}

/// An allowance file is empty; anything larger was not written by us.
const ALLOWANCE_RULES: Rules = Rules {
    forbidden_mode: 0o077,
    max_size: 0,
};

pub fn record_name(user: &UserName) -> String {
    format!("{user}.toml")
}

/// `<user>.allow`: present while the user may enroll at a login.
pub fn allowance_name(user: &UserName) -> String {
    format!("{user}.allow")
}

/// The user a state file belongs to: `<user>.toml` or `<user>.allow`.
/// Temp files, backups and anything else give `None`.
fn user_of_file(file_name: &[u8]) -> Option<UserName> {
    let stem = file_name
        .strip_suffix(b".toml")
        .or_else(|| file_name.strip_suffix(b".allow"))?;
    UserName::parse(stem).ok()
}

pub fn counters_name(user: &UserName) -> String {
    format!("{user}.counters")
}

fn c_string(name: &str) -> CString {
    // User names never hold NUL (see UserName::parse); an empty name cannot
    // match any file.
    CString::new(name).unwrap_or_default()
}

/// The counters in force for `record` (see [`counters::for_secret`]).
fn effective_counters(
    state: &FileState,
    record: &UserRecord,
    shown: &str,
) -> Result<Counters, StoreError> {
    counters::for_secret(state, &record.secret, record.initial)
        .ok_or_else(|| corrupt(shown, "both counter slots are damaged"))
}

fn corrupt(path: &str, why: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_string(),
        why: why.to_string(),
    }
}

fn read_counter_file(file: &File, shown: &str) -> Result<FileState, StoreError> {
    let mut bytes = vec![0u8; counters::FILE_SIZE as usize + 1];
    let mut filled = 0;
    loop {
        match file.read_at(&mut bytes[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(StoreError::Unsafe(FsError {
                    path: shown.to_string(),
                    problem: Problem::Io {
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                    },
                }))
            }
        }
        if filled == bytes.len() {
            break;
        }
    }
    bytes.truncate(filled);
    match counters::read_file(&bytes) {
        FileState::Corrupt => Err(corrupt(shown, "both counter slots are damaged")),
        state => Ok(state),
    }
}

fn open_or_create_counters(dir: &OwnedFd, name: &str, shown: &str) -> Result<File, StoreError> {
    let c_name = c_string(name);
    let base =
        libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: `dir` is an open directory and `c_name` a valid C string.
    let created = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c_name.as_ptr(),
            base | libc::O_CREAT | libc::O_EXCL,
            0o600 as libc::c_uint,
        )
    };
    if created >= 0 {
        // SAFETY: `created` was just returned by openat and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(created) };
        fsutil::sync_fd(dir).map_err(|p| {
            StoreError::Unsafe(FsError {
                path: shown.to_string(),
                problem: p,
            })
        })?;
        return Ok(File::from(fd));
    }
    // SAFETY: as above, without O_CREAT.
    let raw = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), base) };
    if raw < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        let problem = match errno {
            libc::ELOOP => Problem::Symlink,
            libc::ENXIO | libc::EISDIR => Problem::NotRegular,
            other => Problem::Io { errno: other },
        };
        return Err(StoreError::Unsafe(FsError {
            path: shown.to_string(),
            problem,
        }));
    }
    // SAFETY: `raw` was just returned by openat and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    check_counter_fd(&fd, shown)?;
    Ok(File::from(fd))
}

fn check_counter_fd(fd: &OwnedFd, shown: &str) -> Result<(), StoreError> {
    fsutil::check_trusted_file(fd, COUNTER_RULES).map_err(|problem| {
        StoreError::Unsafe(FsError {
            path: shown.to_string(),
            problem,
        })
    })
}

/// flock(2) has no timeout: poll with a growing pause until the deadline.
fn wait_for_lock(file: &File, timeout: Duration) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        // SAFETY: `file` is an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(());
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::totp::CodeSettings;

    fn user(name: &str) -> UserName {
        UserName::parse(name.as_bytes()).unwrap()
    }

    fn record() -> UserRecord {
        UserRecord::new(Secret::generate().unwrap(), CodeSettings::default(), 1)
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_allowance_lasts_until_an_enrollment_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let alice = user("alice");
        assert!(!store.is_allowed(&alice).unwrap());

        store.allow(&alice).unwrap();
        store.allow(&alice).unwrap();
        assert!(store.is_allowed(&alice).unwrap());
        let mode = std::fs::metadata(dir.path().join("alice.allow"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        store.enroll(&alice, &record(), Some(7), false).unwrap();
        assert!(!store.is_allowed(&alice).unwrap());
        assert_eq!(files_in(dir.path()), ["alice.counters", "alice.toml"]);
    }

    #[test]
    fn a_second_enrollment_without_replace_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let alice = user("alice");
        let first = record();

        store.enroll(&alice, &first, Some(1), false).unwrap();
        let second = store.enroll(&alice, &record(), Some(2), false);

        assert_eq!(second, Err(StoreError::Exists));
        let (kept, counters) = store.load(&alice).unwrap().unwrap();
        assert_eq!(kept.secret, first.secret);
        assert_eq!(counters.last_step, Some(1));
    }

    #[test]
    fn concurrent_enrollments_leave_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<UserRecord> = (0..4).map(|_| record()).collect();

        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = records
                .iter()
                .map(|r| {
                    let path = dir.path();
                    scope.spawn(move || FileStore::new(path).enroll(&user("bob"), r, None, false))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let winners: Vec<usize> = (0..4).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let (saved, _) = FileStore::new(dir.path())
            .load(&user("bob"))
            .unwrap()
            .unwrap();
        assert_eq!(saved.secret, records[winners[0]].secret);
    }

    #[test]
    fn users_are_those_with_a_record_or_an_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.enroll(&user("dave"), &record(), None, false).unwrap();
        store
            .enroll(&user("alice"), &record(), None, false)
            .unwrap();
        store.allow(&user("alice")).unwrap();
        store.allow(&user("bob")).unwrap();
        store
            .enroll(&user("carol"), &record(), None, false)
            .unwrap();
        store.remove(&user("carol"), 1_700_000_000).unwrap();
        std::fs::write(dir.path().join(".erin.toml.tmp-00"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();

        let names: Vec<String> = store
            .users()
            .unwrap()
            .iter()
            .map(|u| u.as_str().to_string())
            .collect();

        assert_eq!(names, ["alice", "bob", "dave"]);
    }

    #[test]
    fn recovery_codes_are_replaced_for_enrolled_users_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let mut first = record();
        first.recovery_codes = vec![crate::recovery::hash("1111").unwrap()];
        store.enroll(&user("alice"), &first, None, false).unwrap();
        let fresh = vec![crate::recovery::hash("2222").unwrap()];

        assert!(store
            .replace_recovery_codes(&user("alice"), &fresh)
            .unwrap());
        assert!(!store.replace_recovery_codes(&user("bob"), &fresh).unwrap());

        let (saved, _) = store.load(&user("alice")).unwrap().unwrap();
        assert_eq!(saved.recovery_codes, fresh);
        assert_eq!(saved.secret, first.secret);
    }

    #[test]
    fn looking_at_a_user_without_state_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());

        assert_eq!(store.load(&user("alice")).unwrap(), None);
        assert!(!store.is_allowed(&user("alice")).unwrap());

        assert!(files_in(dir.path()).is_empty());
    }
}
