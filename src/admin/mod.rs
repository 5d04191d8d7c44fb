//! The `otpgate` administrator's command, as a library the thin binary in
//! src/bin/otpgate.rs calls: enroll, reset, allow, unlock, new recovery
//! codes and imports (each logged to syslog with who ran it), plus the
//! read-only `status` and `check-config`.
//!
//! Every command reports failure as one [`AdminError`], a single line the
//! binary prints on stderr before exiting 1.

pub mod check;
pub mod import;
pub mod members;
pub mod status;

use std::fmt;
use std::io::Write;

use zeroize::Zeroizing;

use crate::audit::{Level, Line, Sink};
use crate::config::{Config, EnrollmentMode};
use crate::enroll::Setup;
use crate::login::Clock;
use crate::recovery;
use crate::secret::{Secret, SecretError, MIN_SECRET_BITS};
use crate::store::record::UserRecord;
use crate::store::{Store, StoreError};
use crate::users::{Directory, LookupError, UserName};

/// Why a command failed, in one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError(pub String);

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AdminError {}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        AdminError(e.to_string())
    }
}

impl From<LookupError> for AdminError {
    fn from(e: LookupError) -> AdminError {
        AdminError(e.to_string())
    }
}

/// Who ran the command, for the log: `SUDO_USER` when set (the only thing
/// taken from the environment, and escaped in the line) and the real uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub sudo_user: Option<Vec<u8>>,
    pub uid: u32,
}

/// What a change did, for its log line (never a secret or a code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    pub details: Vec<(&'static str, String)>,
}

/// Is a user one of ours?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember,
    /// The name service does not know the user.
    Unknown,
}

/// Everything a command works with.
pub struct Admin<'a> {
    pub config: Config,
    pub store: &'a dyn Store,
    pub directory: &'a dyn Directory,
    pub clock: &'a dyn Clock,
    pub audit: &'a dyn Sink,
    pub operator: Operator,
    /// This machine's name, for the account label.
    pub host: String,
}

impl Admin<'_> {
    /// Whether `user` exists and is in a configured group.
    pub fn membership(&self, user: &UserName) -> Result<Membership, LookupError> {
        let Some(account) = self.directory.account(user)? else {
            return Ok(Membership::Unknown);
        };
        let gids = self.directory.group_ids(user, account.gid)?;
        for group in &self.config.groups {
            if let Some(gid) = self.directory.group_id(group)? {
                if gids.contains(&gid) {
                    return Ok(Membership::Member);
                }
            }
        }
        Ok(Membership::NotMember)
    }

    /// Refuses users the name service does not know and non-members.
    fn require_member(&self, user: &UserName) -> Result<(), AdminError> {
        match self.membership(user)? {
            Membership::Member => Ok(()),
            Membership::Unknown => Err(AdminError(format!("no such user: {user}"))),
            Membership::NotMember => Err(AdminError(format!(
                "{user} is not a member of any configured group ({}); add them to one first",
                self.config.groups.join(", ")
            ))),
        }
    }

    /// `otpgate enroll USER [--secret BASE32] [--force]`.
    pub fn enroll(
        &self,
        user: &UserName,
        given_secret: Option<&str>,
        force: bool,
        out: &mut dyn Write,
    ) -> Result<Done, AdminError> {
        self.require_member(user)?;
        let secret = match given_secret {
            Some(text) => Secret::from_base32(text, MIN_SECRET_BITS).map_err(secret_error)?,
            None => Secret::generate().map_err(secret_error)?,
        };

        // Save first: nothing is shown for a secret that was not kept.
        let setup = Setup::new(secret, &self.config, user, &self.host);
        let (codes, hashes) = self.new_recovery_codes()?;
        let mut record = UserRecord::new(setup.secret.clone(), self.config.code, self.clock.now());
        record.recovery_codes = hashes;
        self.store
            .enroll(user, &record, None, force)
            .map_err(|e| exists_error(e, user))?;

        print_setup(out, user, &setup);
        print_recovery_codes(out, &codes);
        Ok(Done {
            details: vec![
                (
                    "secret",
                    given_secret.map_or("generated", |_| "given").into(),
                ),
                ("replace", force.to_string()),
                ("recovery_codes", codes.len().to_string()),
            ],
        })
    }

    /// `otpgate reset USER`.
    pub fn reset(&self, user: &UserName, out: &mut dyn Write) -> Result<Done, AdminError> {
        let Some(backup) = self.store.remove(user, self.clock.now())? else {
            return Err(AdminError(format!(
                "{user} has no secret to reset (to let them enroll, use otpgate allow {user})"
            )));
        };
        let _ = writeln!(
            out,
            "Removed the secret of {user}; the old record is kept in {backup}"
        );

        let allowed = self.config.enrollment.mode == EnrollmentMode::AfterReset;
        if allowed {
            self.store.allow(user)?;
        }
        let _ = writeln!(out, "{}", self.next_login_text(user));
        Ok(Done {
            details: vec![("backup", backup), ("allowed", allowed.to_string())],
        })
    }

    /// What happens at `user`'s next login, given the enrollment mode.
    fn next_login_text(&self, user: &UserName) -> String {
        match self.config.enrollment.mode {
            EnrollmentMode::AtLogin | EnrollmentMode::AfterReset => {
                format!("{user} will set up a new secret at their next login.")
            }
            EnrollmentMode::AdminOnly => {
                format!("{user} cannot log in until you enroll them again (otpgate enroll {user}).")
            }
        }
    }

    /// `otpgate allow USER`.
    pub fn allow(&self, user: &UserName, out: &mut dyn Write) -> Result<Done, AdminError> {
        self.require_member(user)?;
        if self.store.load(user)?.is_some() {
            return Err(AdminError(format!(
                "{user} already has a secret; otpgate reset {user} removes it and allows a new \
                 enrollment"
            )));
        }

        self.store.allow(user)?;
        let _ = writeln!(out, "{user} may set up a secret at their next login.");
        match self.config.enrollment.mode {
            EnrollmentMode::AfterReset => {}
            EnrollmentMode::AtLogin => {
                let _ = writeln!(
                    out,
                    "Note: with mode at-login every member without a secret may already do so."
                );
            }
            EnrollmentMode::AdminOnly => {
                let _ = writeln!(
                    out,
                    "Note: mode is admin-only, so this takes effect only if the mode becomes \
                     after-reset."
                );
            }
        }
        Ok(Done::default())
    }

    /// `otpgate unlock USER`.
    pub fn unlock(&self, user: &UserName, out: &mut dyn Write) -> Result<Done, AdminError> {
        if !self.store.unlock(user)? {
            return Err(AdminError(format!("{user} has no secret")));
        }
        let _ = writeln!(
            out,
            "Unlocked {user}: the failure count and the lock are cleared."
        );
        Ok(Done::default())
    }

    /// `otpgate recovery-codes USER`.
    pub fn recovery_codes(&self, user: &UserName, out: &mut dyn Write) -> Result<Done, AdminError> {
        if self.config.enrollment.recovery_codes == 0 {
            return Err(AdminError(
                "[enrollment] recovery_codes is 0 in the config; set it to 1 to 10 to issue codes"
                    .to_string(),
            ));
        }

        let (codes, hashes) = self.new_recovery_codes()?;
        if !self.store.replace_recovery_codes(user, &hashes)? {
            return Err(AdminError(format!("{user} has no secret")));
        }
        let _ = writeln!(
            out,
            "New recovery codes for {user}; the old ones no longer work."
        );
        print_recovery_codes(out, &codes);
        Ok(Done {
            details: vec![("recovery_codes", codes.len().to_string())],
        })
    }

    fn new_recovery_codes(&self) -> Result<(Vec<Zeroizing<String>>, Vec<String>), AdminError> {
        recovery::generate(self.config.enrollment.recovery_codes).map_err(secret_error)
    }

    /// Sends the log line of a change: `command=... user=... result=done`
    /// or `result=failed error=...`, with who ran it.
    pub fn log(&self, command: &str, user: &UserName, result: &Result<Done, AdminError>) {
        let mut line = Line::new()
            .field("command", command)
            .field("user", user.as_str());
        let level = match result {
            Ok(done) => {
                line = line.field("result", "done");
                for (key, value) in &done.details {
                    line = line.field(key, value);
                }
                Level::Notice
            }
            Err(e) => {
                line = line.field("result", "failed").field("error", &e.0);
                Level::Warning
            }
        };
        line = line
            .optional("sudo_user", self.operator.sudo_user.as_ref())
            .field("uid", self.operator.uid.to_string());
        self.audit.send(level, "otpgate", &line);
    }
}

fn secret_error(e: SecretError) -> AdminError {
    AdminError(e.to_string())
}

fn exists_error(e: StoreError, user: &UserName) -> AdminError {
    match e {
        StoreError::Exists => AdminError(format!(
            "{user} already has a secret; add --force to replace it"
        )),
        other => other.into(),
    }
}

/// The QR code, the key and the URI, for the administrator to pass on.
pub fn print_setup(out: &mut dyn Write, user: &UserName, setup: &Setup) {
    let _ = writeln!(
        out,
        "Enrolled {user}. Scan the QR code with an authenticator app, or type the key:"
    );
    if let Some(drawing) = &setup.qr {
        let _ = writeln!(out, "\n{}\n", drawing.as_str());
    }
    let _ = writeln!(out, "Key: {}", setup.key.as_str());
    let _ = writeln!(out, "URI: {}", setup.uri.as_str());
}

/// The recovery codes, one a line, under a heading; nothing when none.
pub fn print_recovery_codes(out: &mut dyn Write, codes: &[Zeroizing<String>]) {
    if codes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Recovery codes (each works once; they are shown only now):"
    );
    for code in codes {
        let _ = writeln!(out, "  {}", code.as_str());
    }
}
