//! One authentication, start to finish, in safe Rust: module arguments,
//! config, who the user is, whether a code is needed, the prompt and the
//! verdict. Starts from "denied"; only an accepted code or a finished
//! enrollment gives `Outcome::Success`. The PAM boundary (`pam`) turns the
//! outcome into a PAM code and an audit line.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::audit::{Level, Line};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::store::postgres::Budget;
use crate::store::{Peek, Store, StoreError};
use crate::users::{Directory, LookupError, UserName};
use crate::verify::{Policy, Proof, Rejection, Verdict};

pub const CODE_PROMPT: &str = "Verification code: ";

/// What the application told PAM about this login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub service: Vec<u8>,
    pub user: Option<Vec<u8>>,
    /// No user: libpam's own user-name prompt failed in the conversation.
    pub user_prompt_failed: bool,
    pub rhost: Option<Vec<u8>>,
    pub tty: Option<Vec<u8>>,
    pub ruser: Option<Vec<u8>>,
}

/// The module arguments from the pam.d line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arguments {
    pub config: PathBuf,
    pub debug: bool,
    /// Test builds only: panic inside the module, to prove it is caught.
    /// Not even compiled into a build without the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub test_panic: bool,
}

/// A conversation with the person logging in.
pub trait Conversation {
    /// Asks without echo; the reply is wiped when dropped.
    fn ask_hidden(&self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError>;
    fn info(&self, text: &str) -> Result<(), ConversationError>;
    fn error(&self, text: &str) -> Result<(), ConversationError>;
}

/// The application's conversation is missing or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationError;

/// The time, passed in so tests can set it.
pub trait Clock {
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.map_or(0, |d| d.as_secs() as i64)
    }
}

/// Why a member was refused without an internal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Code(Rejection),
    /// No secret, and this login may not enroll.
    NotEnrolled,
    /// Enrollment was offered but not finished.
    EnrollmentFailed,
}

impl Denial {
    pub fn reason(self) -> &'static str {
        match self {
            Denial::Code(why) => why.reason(),
            Denial::NotEnrolled => "not_enrolled",
            Denial::EnrollmentFailed => "enrollment_failed",
        }
    }
}

/// An internal error: never a success, never "not ours".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Arguments(Vec<String>),
    Config(ConfigError),
    Lookup(LookupError),
    Store(StoreError),
    Conversation,
    Panic,
}

impl Failure {
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Arguments(_) => "bad_arguments",
            Failure::Config(_) => "bad_config",
            Failure::Lookup(_) => "nss_error",
            Failure::Store(e) => e.reason(),
            Failure::Conversation => "conversation_failed",
            Failure::Panic => "internal_error",
        }
    }

    /// What the audit line says beyond the reason (never a secret).
    pub fn detail(&self) -> String {
        match self {
            Failure::Arguments(unknown) => {
                format!("unknown module arguments: {}", unknown.join(" "))
            }
            Failure::Config(e) => e.to_string(),
            Failure::Lookup(e) => e.to_string(),
            Failure::Store(e) => e.to_string(),
            Failure::Conversation => "the application's conversation failed".to_string(),
            Failure::Panic => "a bug in pam_otpgate was caught".to_string(),
        }
    }
}

/// How an authentication ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not in any configured group: not ours to judge.
    NotMember,
    Success(Proof),
    Enrolled,
    Denied(Denial),
    Locked {
        until: i64,
    },
    UnknownUser,
    BadUserName,
    Failed(Failure),
}

/// The outcome plus what the audit line needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub user: Option<UserName>,
    pub failures: Option<u32>,
    pub max_failures: Option<u32>,
    pub recovery_codes_left: Option<u32>,
    pub debug: bool,
    pub audit_socket: Option<PathBuf>,
    /// Configured groups that do not exist (logged, then skipped).
    pub missing_groups: Vec<String>,
}

impl Report {
    pub fn new(outcome: Outcome) -> Report {
        Report {
            outcome,
            user: None,
            failures: None,
            max_failures: None,
            recovery_codes_left: None,
            debug: false,
            audit_socket: None,
            missing_groups: Vec::new(),
        }
    }
}

/// Parses `config=PATH` and `debug`; returns the arguments it knows and the
/// ones it does not (which refuse the login, by name).
pub fn parse_arguments(args: &[String]) -> (Arguments, Vec<String>) {
    let mut parsed = Arguments {
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
        debug: false,
        #[cfg(feature = "test-hooks")]
        test_panic: false,
    };
    let mut unknown = Vec::new();
    for arg in args {
        match arg.as_str() {
            "debug" => parsed.debug = true,
            #[cfg(feature = "test-hooks")]
            "test_panic" => parsed.test_panic = true,
            other => match other.strip_prefix("config=") {
                Some(path) if !path.is_empty() => parsed.config = PathBuf::from(path),
                _ => unknown.push(other.to_string()),
            },
        }
    }
    (parsed, unknown)
}

/// Everything a login needs from outside, injectable for tests.
pub struct Environment<'a> {
    pub conversation: &'a dyn Conversation,
    pub clock: &'a dyn Clock,
    pub directory: &'a dyn Directory,
    /// Overrides the store the config names (tests).
    pub store: Option<&'a dyn Store>,
}

/// Runs one authentication.
pub fn authenticate(args: &[String], request: &Request, env: &Environment) -> Report {
    let (arguments, unknown) = parse_arguments(args);
    let mut report = Report::new(Outcome::Denied(Denial::NotEnrolled));
    report.debug = arguments.debug;
    let config = Config::load(&arguments.config);
    report.audit_socket = config.as_ref().ok().map(|c| c.audit.socket.clone());

    if !unknown.is_empty() {
        report.outcome = Outcome::Failed(Failure::Arguments(unknown));
        return report;
    }
    #[cfg(feature = "test-hooks")]
    if arguments.test_panic {
        panic!("test_panic requested");
    }

    let config = match config {
        Ok(c) => c,
        Err(e) => {
            report.outcome = Outcome::Failed(Failure::Config(e));
            return report;
        }
    };
    report.max_failures = Some(config.lockout.max_failures);

    let configured;
    let store: &dyn Store = match env.store {
        Some(s) => s,
        None => {
            configured = crate::store::open(&config, Budget::PerLogin);
            configured.as_ref()
        }
    };
    report.outcome = decide(&config, request, env, store, &mut report);
    report
}

fn decide(
    config: &Config,
    request: &Request,
    env: &Environment,
    store: &dyn Store,
    report: &mut Report,
) -> Outcome {
    let Some(raw_user) = request.user.as_deref() else {
        if request.user_prompt_failed {
            return Outcome::Failed(Failure::Conversation);
        }
        return Outcome::UnknownUser;
    };
    let Ok(user) = UserName::parse(raw_user) else {
        return Outcome::BadUserName;
    };
    report.user = Some(user.clone());

    match is_member(config, &user, env.directory, report) {
        Ok(Some(true)) => {}
        Ok(Some(false)) => return Outcome::NotMember,
        Ok(None) => return Outcome::UnknownUser,
        Err(e) => return Outcome::Failed(Failure::Lookup(e)),
    }

    let now = env.clock.now();
    match store.peek(&user, now) {
        Err(e) => Outcome::Failed(Failure::Store(e)),
        Ok(Peek::Enrolled {
            locked_until: Some(until),
        }) => refuse_locked(env, until, now),
        Ok(Peek::Enrolled { locked_until: None }) => {
            ask_and_verify(config, &user, env, store, report)
        }
        Ok(Peek::NotEnrolled) => not_enrolled(config, &user, env, store),
    }
}

/// `Some(true)` for a member, `Some(false)` for a non-member, `None` for an
/// unknown user. Groups that do not exist are skipped.
fn is_member(
    config: &Config,
    user: &UserName,
    directory: &dyn Directory,
    report: &mut Report,
) -> Result<Option<bool>, LookupError> {
    let Some(account) = directory.account(user)? else {
        return Ok(None);
    };
    let gids = directory.group_ids(user, account.gid)?;
    let mut member = false;
    for group in &config.groups {
        match directory.group_id(group)? {
            Some(gid) => member |= gids.contains(&gid),
            None => report.missing_groups.push(group.clone()),
        }
    }
    Ok(Some(member))
}

fn refuse_locked(env: &Environment, until: i64, now: i64) -> Outcome {
    let wait = until.saturating_sub(now).max(1);
    let text = format!(
        "Too many wrong codes. Try again in {}.",
        human_duration(wait)
    );
    let _ = env.conversation.error(&text);
    Outcome::Locked { until }
}

/// "4 min 10 s", "12 s", "2 h 5 min".
pub fn human_duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

fn ask_and_verify(
    config: &Config,
    user: &UserName,
    env: &Environment,
    store: &dyn Store,
    report: &mut Report,
) -> Outcome {
    let reply = match env.conversation.ask_hidden(CODE_PROMPT) {
        Ok(r) => r,
        Err(ConversationError) => return Outcome::Failed(Failure::Conversation),
    };
    let policy = Policy {
        skew: config.skew,
        lockout: config.lockout,
    };
    match store.verify(user, &reply, env.clock.now(), &policy) {
        Err(e) => Outcome::Failed(Failure::Store(e)),
        Ok(None) => not_enrolled(config, user, env, store),
        Ok(Some(verdict)) => outcome_of(verdict, env, report),
    }
}

fn outcome_of(verdict: Verdict, env: &Environment, report: &mut Report) -> Outcome {
    match verdict {
        Verdict::Accepted(proof) => {
            if let Proof::RecoveryCode { left } = proof {
                report.recovery_codes_left = Some(left);
                let _ = env
                    .conversation
                    .info(&format!("Recovery code accepted; {left} left."));
            }
            report.failures = Some(0);
            Outcome::Success(proof)
        }
        Verdict::Rejected {
            why,
            failures,
            locked_until,
        } => {
            report.failures = Some(failures);
            if locked_until.is_some() {
                let _ = env
                    .conversation
                    .error("Too many wrong codes: this account is locked for a while.");
            }
            Outcome::Denied(Denial::Code(why))
        }
        Verdict::Locked { until, failures } => {
            report.failures = Some(failures);
            refuse_locked(env, until, env.clock.now())
        }
    }
}

/// No secret: enrollment at login when the config's mode allows it (see
/// `enroll`), a refusal otherwise.
fn not_enrolled(config: &Config, user: &UserName, env: &Environment, store: &dyn Store) -> Outcome {
    let host = crate::otpauth::host_name();
    crate::enroll::at_login(config, user, &host, env, store)
}

/// The audit line for a report; `None` for a non-member without `debug`.
pub fn audit_line(report: &Report, request: &Request) -> Option<(Level, Line)> {
    let (level, result, reason) = match &report.outcome {
        Outcome::NotMember if !report.debug => return None,
        Outcome::NotMember => (Level::Info, "ignored", "not_member".to_string()),
        Outcome::Success(Proof::Code { .. }) => (Level::Info, "success", "code".to_string()),
        Outcome::Success(Proof::RecoveryCode { .. }) => {
            (Level::Notice, "success", "recovery_code".to_string())
        }
        Outcome::Enrolled => (Level::Notice, "enrolled", "enrollment".to_string()),
        Outcome::Denied(d) => (Level::Warning, "denied", d.reason().to_string()),
        Outcome::Locked { .. } => (Level::Warning, "locked", "locked_out".to_string()),
        Outcome::UnknownUser => (Level::Warning, "denied", "unknown_user".to_string()),
        Outcome::BadUserName => (Level::Warning, "denied", "bad_user_name".to_string()),
        Outcome::Failed(f) => (Level::Error, "error", f.reason().to_string()),
    };
    let user = match (&report.user, &request.user) {
        (Some(u), _) => Some(u.as_str().as_bytes().to_vec()),
        (None, raw) => raw.clone(),
    };
    let mut line = Line::new()
        .field("result", result)
        .field("reason", reason)
        .optional("user", user)
        .optional("rhost", request.rhost.as_ref())
        .optional("tty", request.tty.as_ref())
        .optional("ruser", request.ruser.as_ref());
    if let (Some(n), Some(max)) = (report.failures, report.max_failures) {
        line = line.field("failures", format!("{n}/{max}"));
    }
    if let Outcome::Locked { until } = report.outcome {
        line = line.field("locked_until", until.to_string());
    }
    line = line.optional(
        "recovery_codes_left",
        report.recovery_codes_left.map(|n| n.to_string()),
    );
    if let Outcome::Failed(f) = &report.outcome {
        line = line.field_up_to("detail", f.detail(), crate::audit::MAX_DETAIL);
    }
    Some((level, line))
}

/// One warning per call naming configured groups that do not exist.
pub fn missing_groups_line(report: &Report) -> Option<(Level, Line)> {
    if report.missing_groups.is_empty() {
        return None;
    }
    let line = Line::new()
        .field("result", "config_warning")
        .field("reason", "missing_groups")
        .field("groups", report.missing_groups.join(","));
    Some((Level::Warning, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_panic_is_an_argument_of_test_builds_only() {
        let (_, unknown) = parse_arguments(&["test_panic".to_string()]);

        if cfg!(feature = "test-hooks") {
            assert!(unknown.is_empty());
        } else {
            assert_eq!(unknown, ["test_panic"]);
        }
    }
}
