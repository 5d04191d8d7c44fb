//! Where per-user state lives, behind one small interface so the login logic
//! does not care whether it is a folder of root-owned files or, for a fleet,
//! a shared database.

pub mod counters;
pub mod files;
pub mod postgres;
pub mod record;

use std::fmt;

use crate::config::{Config, StoreKind};
use crate::fsutil::FsError;
use crate::users::UserName;
use crate::verify::{Policy, Verdict};
use counters::Counters;
use record::UserRecord;

/// What a login needs to know before it asks for anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    NotEnrolled,
    Enrolled { locked_until: Option<i64> },
}

/// The operations a store offers. Every change is durable when the call
/// returns `Ok`; every read-modify-write holds the user's lock throughout.
pub trait Store {
    /// Enrolled or not, and locked or not, at `now`.
    fn peek(&self, user: &UserName, now: i64) -> Result<Peek, StoreError>;

    /// Judges `reply` under the user's lock and saves the new counters before
    /// returning. `Ok(None)`: the user has no secret (any more).
    fn verify(
        &self,
        user: &UserName,
        reply: &[u8],
        now: i64,
        policy: &Policy,
    ) -> Result<Option<Verdict>, StoreError>;

    /// Saves an enrollment, with `used_step` recorded as used. Without
    /// `replace`, an existing secret is kept and `StoreError::Exists` returned.
    /// A saved enrollment also ends the user's allowance to enroll (see
    /// [`Store::allow`]); the allowance is dropped before the secret is
    /// written, so a failed save never leaves both.
    fn enroll(
        &self,
        user: &UserName,
        record: &UserRecord,
        used_step: Option<u64>,
        replace: bool,
    ) -> Result<(), StoreError>;

    /// The record and current counters, for the administrator. Reading a
    /// user without a record creates nothing.
    fn load(&self, user: &UserName) -> Result<Option<(UserRecord, Counters)>, StoreError>;

    /// Removes the secret, keeping a backup; returns where the backup is.
    fn remove(&self, user: &UserName, now: i64) -> Result<Option<String>, StoreError>;

    /// Clears the failure count and the lock; `false` when not enrolled.
    fn unlock(&self, user: &UserName) -> Result<bool, StoreError>;

    /// Allows `user` to enroll at a later login (the `after-reset` mode).
    /// The allowance stays until an enrollment is saved for the user; giving
    /// it twice is the same as once.
    fn allow(&self, user: &UserName) -> Result<(), StoreError>;

    /// Whether `user` holds an allowance to enroll.
    fn is_allowed(&self, user: &UserName) -> Result<bool, StoreError>;

    /// Every user the store holds a secret or an allowance for, sorted by
    /// name. Backups of removed secrets do not count.
    fn users(&self) -> Result<Vec<UserName>, StoreError>;

    /// Replaces all the recovery code hashes of an enrolled user with
    /// `hashes`, so the old codes stop working; `false` when not enrolled.
    fn replace_recovery_codes(
        &self,
        user: &UserName,
        hashes: &[String],
    ) -> Result<bool, StoreError>;
}

/// The store the config names; `budget` says how the database store spends
/// its deadline (one per login in the module, one per call for `otpgate`).
pub fn open(config: &Config, budget: postgres::Budget) -> Box<dyn Store> {
    match &config.store {
        StoreKind::Files => Box::new(files::FileStore::new(&config.state_dir)),
        StoreKind::Postgres(settings) => {
            Box::new(postgres::PostgresStore::new(settings.clone(), budget))
        }
    }
}

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A file or folder is unsafe: a link, wrong type, owner, mode or size.
    Unsafe(FsError),
    /// A file is safe but its content cannot be used.
    Corrupt { path: String, why: String },
    /// The user's lock was not had in time.
    LockTimeout { path: String },
    /// A secret already exists and would be replaced.
    Exists,
    /// The store cannot be reached.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unsafe(e) => write!(f, "{e}"),
            StoreError::Corrupt { path, why } => write!(f, "{path} cannot be used: {why}"),
            StoreError::LockTimeout { path } => write!(f, "{path} stayed locked too long"),
            StoreError::Exists => write!(f, "the user already has a secret"),
            StoreError::Unavailable(why) => write!(f, "the store is unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// A short reason for the audit line. A read or write that failed
    /// (full disk, read-only file system, I/O error) is told apart from an
    /// unsafe file, so nobody hunts for a bad owner when the disk is full.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Unsafe(FsError {
                problem: crate::fsutil::Problem::Io { .. },
                ..
            }) => "state_io_error",
            StoreError::Unsafe(_) => "state_unsafe",
            StoreError::Corrupt { .. } => "state_corrupt",
            StoreError::LockTimeout { .. } => "state_lock_timeout",
            StoreError::Exists => "state_exists",
            StoreError::Unavailable(_) => "store_unavailable",
        }
    }
}
