//! The default store: a root-owned folder with, per user, `<user>.toml`
//! (the record, replaced atomically when it changes) and `<user>.counters`
//! (two checksummed slots updated in place; also the user's lock file).
//! docs/state-file.md specifies both.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fsutil::{self, nlink, FsError, Problem, Rules, STATE_RULES};
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

    fn open_dir(&self) -> Result<OwnedFd, StoreError> {
        fsutil::open_trusted_dir(&self.dir).map_err(StoreError::Unsafe)
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
        let from_file = counters::for_secret(&self.state, &record.secret)
            .ok_or_else(|| corrupt(&self.shown, "both counter slots are damaged"))?;
        let bound = matches!(self.state, FileState::Current { slot, .. } if slot.fingerprint == counters::fingerprint(&record.secret));
        Ok(if bound { from_file } else { record.initial })
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
        let Some(record) = self.read_record(&dir, user)? else {
            return Ok(Peek::NotEnrolled);
        };
        let state = self.read_counters_unlocked(&dir, user)?;
        let from_file = counters::for_secret(&state, &record.secret).ok_or_else(|| {
            corrupt(
                &self.shown(&counters_name(user)),
                "both counter slots are damaged",
            )
        })?;
        let bound = matches!(state, FileState::Current { slot, .. } if slot.fingerprint == counters::fingerprint(&record.secret));
        let counters = if bound { from_file } else { record.initial };
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
        let mut locked = self.lock(&dir, user)?;
        let Some(mut record) = self.read_record(&dir, user)? else {
            return Ok(None);
        };
        let current = locked.counters_for(&record)?;

        let judgement = verify::judge(&record, current, reply, now, policy);
        if let Some(index) = judgement.used_recovery_code {
            record.recovery_codes.remove(index);
            self.write_record(&dir, user, &record)?;
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
        let mut locked = self.lock(&dir, user)?;
        if !replace && self.read_record(&dir, user)?.is_some() {
            return Err(StoreError::Exists);
        }
        self.write_record(&dir, user, record)?;
        let counters = Counters {
            last_step: used_step.max(record.initial.last_step),
            ..record.initial
        };
        locked.save(record, counters)
    }

    fn load(&self, user: &UserName) -> Result<Option<(UserRecord, Counters)>, StoreError> {
        let dir = self.open_dir()?;
        let locked = self.lock(&dir, user)?;
        let Some(record) = self.read_record(&dir, user)? else {
            return Ok(None);
        };
        let counters = locked.counters_for(&record)?;
        Ok(Some((record, counters)))
    }

    fn remove(&self, user: &UserName, now: i64) -> Result<Option<String>, StoreError> {
        let dir = self.open_dir()?;
        let _locked = self.lock(&dir, user)?;
        if self.read_record(&dir, user)?.is_none() {
            return Ok(None);
        }
        let backup = format!("{}.reset-{now}", record_name(user));
        fsutil::rename_in(&dir, &record_name(user), &backup).map_err(|p| {
            StoreError::Unsafe(FsError {
                path: self.shown(&backup),
                problem: p,
            })
        })?;
        Ok(Some(self.shown(&backup)))
    }

    fn unlock(&self, user: &UserName) -> Result<bool, StoreError> {
        let dir = self.open_dir()?;
        let mut locked = self.lock(&dir, user)?;
        let Some(record) = self.read_record(&dir, user)? else {
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
        fsutil::remove_stale_temps(&self.dir, dir, &name);
        let shown_dir = self.dir.display();
        fsutil::replace_file(dir, &name, record.to_toml().as_bytes(), &shown_dir)
            .map_err(StoreError::Unsafe)
    }
}

pub fn record_name(user: &UserName) -> String {
    format!("{user}.toml")
}

pub fn counters_name(user: &UserName) -> String {
    format!("{user}.counters")
}

fn c_string(name: &str) -> CString {
    // User names never hold NUL (see UserName::parse); an empty name cannot
    // match any file.
    CString::new(name).unwrap_or_default()
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
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(StoreError::Unsafe(FsError {
            path: shown.to_string(),
            problem: Problem::Io { errno: libc::EIO },
        }));
    }
    let problem = if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        Some(Problem::NotRegular)
    } else if st.st_uid != 0 {
        Some(Problem::WrongOwner { uid: st.st_uid })
    } else if st.st_mode & 0o077 != 0 {
        Some(Problem::BadMode {
            mode: st.st_mode & 0o7777,
        })
    } else if st.st_nlink != 1 {
        Some(Problem::HardLinked { links: nlink(&st) })
    } else if st.st_size as u64 > counters::FILE_SIZE {
        Some(Problem::TooLarge {
            size: st.st_size as u64,
            max: counters::FILE_SIZE,
        })
    } else {
        None
    };
    match problem {
        Some(problem) => Err(StoreError::Unsafe(FsError {
            path: shown.to_string(),
            problem,
        })),
        None => Ok(()),
    }
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
