//! The administrator's configuration file (TOML): which groups must give a
//! code, where state lives, and the code, lockout, enrollment and audit
//! settings. A file that does not parse or validate is never partly used.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fsutil::{self, FsError, CONFIG_RULES};
use crate::totp::{Algorithm, CodeSettings};

/// Where the module looks when no `config=` argument is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/otpgate/otpgate.toml";

/// NIST SP 800-63B allows at most 100 consecutive failures before a lock.
pub const MAX_FAILURES_LIMIT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Members of any of these groups must give a code.
    pub groups: Vec<String>,
    pub state_dir: PathBuf,
    pub code: CodeSettings,
    /// Steps accepted on either side of now.
    pub skew: u32,
    pub lockout: Lockout,
    pub enrollment: Enrollment,
    pub audit: Audit,
    pub store: StoreKind,
}

/// Where per-user state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Root-owned files under `state_dir` (the default).
    Files,
    /// A PostgreSQL database shared by a fleet (docs/fleet.md).
    Postgres(PostgresSettings),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub max_failures: u32,
    pub lock_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnrollmentMode {
    /// Members without a secret enroll in their next login.
    AtLogin,
    /// Only members an administrator allowed may enroll at login.
    AfterReset,
    /// Only an administrator enrolls.
    AdminOnly,
}

impl fmt::Display for EnrollmentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnrollmentMode::AtLogin => "at-login",
            EnrollmentMode::AfterReset => "after-reset",
            EnrollmentMode::AdminOnly => "admin-only",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub mode: EnrollmentMode,
    pub issuer: String,
    /// The account shown in the app, with `{user}` and `{host}` filled in.
    pub account: String,
    pub recovery_codes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The syslog socket.
    pub socket: PathBuf,
}

/// The `[store.postgres]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Host names, addresses or (with `sslmode = "disable"`) socket
    /// folders, tried in order.
    pub hosts: Vec<String>,
    pub port: u16,
    pub database: String,
    /// The database role to log in as.
    pub user: String,
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The longest the store may take over one login (or one admin call).
    pub deadline_ms: u32,
    /// The name this server gives in the database's audit trail; `None`
    /// means the host name at the time of the login.
    pub host_name: Option<String>,
}

/// How the connection to the database is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// TLS, the server's certificate checked against `ca_file` and its name.
    VerifyFull,
    /// No TLS: only for Unix sockets on this machine.
    Disable,
}

/// The default and the bounds of `deadline_ms`.
pub const DEFAULT_DEADLINE_MS: u32 = 3000;
const DEADLINE_RANGE: std::ops::RangeInclusive<u32> = 100..=30_000;

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file or its folder is missing, unsafe or unreadable.
    File(FsError),
    /// Not valid TOML, an unknown key or a value of the wrong type.
    Parse { path: String, message: String },
    /// A value outside what is allowed.
    Invalid { path: String, message: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File(e) => write!(f, "config {e}"),
            ConfigError::Parse { path, message } => write!(f, "config {path}: {message}"),
            ConfigError::Invalid { path, message } => write!(f, "config {path}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

// The file as written; every section and key but `groups` is optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    groups: Vec<String>,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    code: RawCode,
    #[serde(default)]
    lockout: RawLockout,
    #[serde(default)]
    enrollment: RawEnrollment,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    store: RawStore,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/otpgate")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCode {
    digits: u8,
    period: u64,
    algorithm: Algorithm,
    skew: u32,
}

impl Default for RawCode {
    fn default() -> Self {
        RawCode {
            digits: 6,
            period: 30,
            algorithm: Algorithm::SHA1,
            skew: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLockout {
    max_failures: u32,
    lock_seconds: u64,
}

impl Default for RawLockout {
    fn default() -> Self {
        RawLockout {
            max_failures: 5,
            lock_seconds: 300,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEnrollment {
    mode: EnrollmentMode,
    issuer: String,
    account: String,
    recovery_codes: u32,
}

impl Default for RawEnrollment {
    fn default() -> Self {
        RawEnrollment {
            mode: EnrollmentMode::AtLogin,
            issuer: "otpgate".to_string(),
            account: crate::otpauth::DEFAULT_ACCOUNT.to_string(),
            recovery_codes: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    socket: PathBuf,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            socket: PathBuf::from("/dev/log"),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    kind: RawStoreKind,
    postgres: Option<RawPostgres>,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawStoreKind {
    #[default]
    Files,
    Postgres,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    hosts: Vec<String>,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_database")]
    database: String,
    user: String,
    #[serde(default = "default_sslmode")]
    sslmode: SslMode,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default = "default_deadline_ms")]
    deadline_ms: u32,
    host_name: Option<String>,
}

fn default_port() -> u16 {
    5432
}

fn default_database() -> String {
    "otpgate".to_string()
}

fn default_sslmode() -> SslMode {
    SslMode::VerifyFull
}

fn default_deadline_ms() -> u32 {
    DEFAULT_DEADLINE_MS
}

impl Config {
    /// Reads, checks and validates the file at `path`: the file and its
    /// folder must be root-owned and not writable by group or others.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = fsutil::read_trusted(path, CONFIG_RULES).map_err(ConfigError::File)?;
        let shown = path.display().to_string();
        let text = std::str::from_utf8(&bytes).map_err(|_| ConfigError::Parse {
            path: shown.clone(),
            message: "not valid UTF-8".to_string(),
        })?;
        Config::parse(text, &shown)
    }

    /// Parses and validates config text; `shown_path` only labels errors.
    pub fn parse(text: &str, shown_path: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: shown_path.to_string(),
            message: one_line(&e.to_string()),
        })?;
        validate(raw).map_err(|message| ConfigError::Invalid {
            path: shown_path.to_string(),
            message,
        })
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn validate(raw: RawConfig) -> Result<Config, String> {
    validate_groups(&raw.groups)?;
    validate_code(&raw.code)?;
    validate_lockout(&raw.lockout)?;
    validate_enrollment(&raw.enrollment)?;
    if !raw.state_dir.is_absolute() {
        return Err("state_dir must be an absolute path".to_string());
    }
    if !raw.audit.socket.is_absolute() {
        return Err("audit.socket must be an absolute path".to_string());
    }
    let store = validate_store(raw.store)?;

    Ok(Config {
        groups: raw.groups,
        state_dir: raw.state_dir,
        code: CodeSettings {
            digits: raw.code.digits,
            period: raw.code.period,
            algorithm: raw.code.algorithm,
        },
        skew: raw.code.skew,
        lockout: Lockout {
            max_failures: raw.lockout.max_failures,
            lock_seconds: raw.lockout.lock_seconds,
        },
        enrollment: Enrollment {
            mode: raw.enrollment.mode,
            issuer: raw.enrollment.issuer,
            account: raw.enrollment.account,
            recovery_codes: raw.enrollment.recovery_codes,
        },
        audit: Audit {
            socket: raw.audit.socket,
        },
        store,
    })
}

fn validate_store(raw: RawStore) -> Result<StoreKind, String> {
    match (raw.kind, raw.postgres) {
        (RawStoreKind::Files, None) => Ok(StoreKind::Files),
        (RawStoreKind::Files, Some(_)) => Err(
            "[store.postgres] is set but store.kind is \"files\": set kind = \"postgres\" or \
             remove the section"
                .to_string(),
        ),
        (RawStoreKind::Postgres, None) => {
            Err("store.kind is \"postgres\" but [store.postgres] is missing".to_string())
        }
        (RawStoreKind::Postgres, Some(pg)) => validate_postgres(pg).map(StoreKind::Postgres),
    }
}

fn validate_postgres(raw: RawPostgres) -> Result<PostgresSettings, String> {
    validate_hosts(&raw.hosts, raw.sslmode)?;
    for (key, value) in [("database", &raw.database), ("user", &raw.user)] {
        if value.is_empty() || value.len() > 63 || !value.bytes().all(is_name_byte) {
            return Err(format!(
                "store.postgres.{key} must be 1 to 63 letters, digits, '_', '-' or '.'"
            ));
        }
    }
    if raw.port == 0 {
        return Err("store.postgres.port must be 1 to 65535".to_string());
    }
    validate_tls_files(&raw)?;
    if !DEADLINE_RANGE.contains(&raw.deadline_ms) {
        return Err(format!(
            "store.postgres.deadline_ms is {}; it must be {} to {}",
            raw.deadline_ms,
            DEADLINE_RANGE.start(),
            DEADLINE_RANGE.end()
        ));
    }
    if let Some(name) = &raw.host_name {
        if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "store.postgres.host_name must be 1 to 255 printable characters without spaces"
                    .to_string(),
            );
        }
    }

    Ok(PostgresSettings {
        hosts: raw.hosts,
        port: raw.port,
        database: raw.database,
        user: raw.user,
        sslmode: raw.sslmode,
        ca_file: raw.ca_file,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        deadline_ms: raw.deadline_ms,
        host_name: raw.host_name,
    })
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Host names or addresses; socket folders (absolute paths) only without
/// TLS, and TLS everywhere else.
fn validate_hosts(hosts: &[String], sslmode: SslMode) -> Result<(), String> {
    if hosts.is_empty() || hosts.len() > 16 {
        return Err("store.postgres.hosts must name 1 to 16 hosts".to_string());
    }
    for host in hosts {
        let socket = host.starts_with('/');
        let valid = if socket {
            host.len() < 100 && !host.contains([',', '=', '\'', '\\']) && !has_control(host)
        } else {
            !host.is_empty() && host.len() <= 253 && host.bytes().all(is_host_byte)
        };
        if !valid {
            return Err(format!(
                "store.postgres.hosts: {host:?} is not a host name, an address or a socket folder"
            ));
        }
        if socket != (sslmode == SslMode::Disable) {
            return Err(
                "store.postgres.sslmode = \"disable\" is only for socket folders (hosts that \
                 start with /), and socket folders need it: use \"verify-full\" for hosts on \
                 the network"
                    .to_string(),
            );
        }
    }
    Ok(())
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_')
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// verify-full needs the CA; a client certificate comes with its key.
fn validate_tls_files(raw: &RawPostgres) -> Result<(), String> {
    let files = [
        ("ca_file", &raw.ca_file),
        ("cert_file", &raw.cert_file),
        ("key_file", &raw.key_file),
    ];
    for (key, path) in files {
        let bad = path
            .as_ref()
            .is_some_and(|p| !p.is_absolute() || has_control(&p.to_string_lossy()));
        if bad {
            return Err(format!("store.postgres.{key} must be an absolute path"));
        }
    }
    if raw.sslmode == SslMode::VerifyFull && raw.ca_file.is_none() {
        return Err("store.postgres.ca_file is needed with sslmode = \"verify-full\"".to_string());
    }
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        return Err("store.postgres.cert_file and key_file go together".to_string());
    }
    Ok(())
}

fn validate_groups(groups: &[String]) -> Result<(), String> {
    if groups.is_empty() {
        return Err("groups must name at least one group".to_string());
    }
    let bad = groups
        .iter()
        .find(|g| g.is_empty() || g.bytes().any(|b| b.is_ascii_control()));
    if let Some(g) = bad {
        return Err(format!(
            "group name {g:?} is empty or has control characters"
        ));
    }
    Ok(())
}

fn validate_code(code: &RawCode) -> Result<(), String> {
    if !(6..=8).contains(&code.digits) {
        return Err(format!(
            "code.digits is {}; it must be 6, 7 or 8",
            code.digits
        ));
    }
    if !(15..=300).contains(&code.period) {
        return Err(format!(
            "code.period is {}; it must be 15 to 300 seconds",
            code.period
        ));
    }
    if code.skew > 10 {
        return Err(format!(
            "code.skew is {}; it must be 0 to 10 steps",
            code.skew
        ));
    }
    Ok(())
}

fn validate_lockout(lockout: &RawLockout) -> Result<(), String> {
    if !(1..=MAX_FAILURES_LIMIT).contains(&lockout.max_failures) {
        return Err(format!(
            "lockout.max_failures is {}; it must be 1 to {MAX_FAILURES_LIMIT}",
            lockout.max_failures
        ));
    }
    if !(1..=86_400 * 365).contains(&lockout.lock_seconds) {
        return Err("lockout.lock_seconds must be 1 second to 1 year".to_string());
    }
    Ok(())
}

fn validate_enrollment(enrollment: &RawEnrollment) -> Result<(), String> {
    let issuer = &enrollment.issuer;
    if issuer.is_empty()
        || issuer.len() > 64
        || issuer.contains(':')
        || issuer.chars().any(char::is_control)
    {
        return Err(
            "enrollment.issuer must be 1 to 64 characters without ':' or control characters"
                .to_string(),
        );
    }
    validate_account(&enrollment.account)?;
    if enrollment.recovery_codes > 10 {
        return Err(format!(
            "enrollment.recovery_codes is {}; it must be 0 to 10",
            enrollment.recovery_codes
        ));
    }
    Ok(())
}

/// The account template: 1 to 64 characters, no `:` (it ends the issuer
/// in the label) and no control characters; `{user}` and `{host}` are the
/// only placeholders.
fn validate_account(template: &str) -> Result<(), String> {
    let bare = template.replace("{user}", "").replace("{host}", "");
    let bad = template.is_empty()
        || template.chars().count() > 64
        || bare.contains(['{', '}', ':'])
        || template.chars().any(char::is_control);
    if bad {
        return Err(
            "enrollment.account must be 1 to 64 characters without ':' or control characters; \
             {user} and {host} are the only placeholders"
                .to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
groups = ["vms-admins"]
state_dir = "/var/lib/otpgate"

[code]
digits = 6
period = 30
algorithm = "SHA1"
skew = 1

[lockout]
max_failures = 5
lock_seconds = 300

[enrollment]
mode = "at-login"
issuer = "otpgate"
"#;

    #[test]
    fn the_documented_example_parses() {
        let config = Config::parse(FULL, "t").unwrap();
        assert_eq!(config.groups, ["vms-admins"]);
        assert_eq!(config.code, CodeSettings::default());
        assert_eq!(config.skew, 1);
        assert_eq!(
            config.lockout,
            Lockout {
                max_failures: 5,
                lock_seconds: 300
            }
        );
        assert_eq!(config.enrollment.mode, EnrollmentMode::AtLogin);
        assert_eq!(config.audit.socket, PathBuf::from("/dev/log"));
    }

    #[test]
    fn only_groups_is_required() {
        let config = Config::parse("groups = [\"wheel\"]", "t").unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/otpgate"));
        assert_eq!(config.enrollment.recovery_codes, 5);
        assert_eq!(config.enrollment.account, "{user}@{host}");
    }

    fn invalid(text: &str) -> String {
        Config::parse(text, "t").unwrap_err().to_string()
    }

    #[test]
    fn faults_are_refused_with_a_reason() {
        assert!(invalid("").contains("groups"));
        assert!(invalid("groups = []").contains("at least one"));
        assert!(invalid("groups = [\"a\"]\nfoo = 1").contains("unknown field"));
        assert!(invalid("groups = [\"a\"]\n[code]\ndigits = 9").contains("digits"));
        assert!(invalid("groups = [\"a\"]\n[code]\ndigits = 5").contains("digits"));
        assert!(
            invalid("groups = [\"a\"]\n[code]\nalgorithm = \"MD5\"").contains("unknown variant")
        );
        assert!(invalid("groups = [\"a\"]\n[lockout]\nmax_failures = 101").contains("100"));
        assert!(invalid("groups = [\"a\"]\n[lockout]\nmax_failures = 0").contains("max_failures"));
        assert!(
            invalid("groups = [\"a\"]\n[enrollment]\nmode = \"never\"").contains("unknown variant")
        );
        assert!(invalid("groups = [\"a\"]\nstate_dir = \"rel\"").contains("absolute"));
        assert!(invalid("groups = [\"a\"]\ngroups = [\"b\"]").contains("duplicate"));
        assert!(invalid("groups = [\"a\"]\n[code]\nskew = -1").contains("skew"));
        assert!(invalid("groups = [\"a\"]\n[enrollment]\naccount = \"{uid}\"").contains("account"));
        assert!(invalid("groups = [\"a\"]\n[enrollment]\naccount = \"a:b\"").contains("account"));
    }

    const POSTGRES: &str = r#"
groups = ["vms-admins"]

[store]
kind = "postgres"

[store.postgres]
hosts = ["db1.example.org", "10.0.0.2"]
database = "otpgate"
user = "otpgate_server"
ca_file = "/etc/otpgate/db-ca.pem"
cert_file = "/etc/otpgate/db-client.pem"
key_file = "/etc/otpgate/db-client.key"
host_name = "vm7"
"#;

    #[test]
    fn files_is_the_default_store() {
        let config = Config::parse("groups = [\"wheel\"]", "t").unwrap();
        assert_eq!(config.store, StoreKind::Files);
        let explicit = Config::parse("groups = [\"wheel\"]\n[store]\nkind = \"files\"", "t");
        assert_eq!(explicit.unwrap().store, StoreKind::Files);
    }

    #[test]
    fn a_postgres_store_parses_with_its_defaults() {
        let config = Config::parse(POSTGRES, "t").unwrap();
        let StoreKind::Postgres(pg) = config.store else {
            panic!("not postgres");
        };
        assert_eq!(pg.hosts, ["db1.example.org", "10.0.0.2"]);
        assert_eq!(pg.port, 5432);
        assert_eq!(pg.sslmode, SslMode::VerifyFull);
        assert_eq!(pg.deadline_ms, DEFAULT_DEADLINE_MS);
        assert_eq!(pg.host_name.as_deref(), Some("vm7"));
        assert_eq!(
            pg.key_file,
            Some(PathBuf::from("/etc/otpgate/db-client.key"))
        );
    }

    #[test]
    fn a_socket_folder_may_go_without_tls() {
        let text = "groups = [\"a\"]\n[store]\nkind = \"postgres\"\n[store.postgres]\n\
                    hosts = [\"/run/postgresql\"]\nuser = \"otpgate_admin\"\nsslmode = \"disable\"";
        let StoreKind::Postgres(pg) = Config::parse(text, "t").unwrap().store else {
            panic!("not postgres");
        };
        assert_eq!(pg.sslmode, SslMode::Disable);
        assert_eq!(pg.ca_file, None);
    }

    #[test]
    fn postgres_faults_are_refused_with_a_reason() {
        let with = |from: &str, to: &str| {
            assert!(POSTGRES.contains(from), "{from}");
            invalid(&POSTGRES.replace(from, to))
        };
        assert!(with("kind = \"postgres\"", "kind = \"files\"").contains("remove the section"));
        assert!(with("kind = \"postgres\"", "kind = \"mysql\"").contains("unknown variant"));
        assert!(with("host_name = \"vm7\"", "hostname = \"vm7\"").contains("unknown field"));
        assert!(with("[\"db1.example.org\", \"10.0.0.2\"]", "[]").contains("hosts"));
        assert!(with("\"db1.example.org\"", "\"db1 x\"").contains("not a host name"));
        assert!(with("\"db1.example.org\"", "\"/run/postgresql\"").contains("disable"));
        assert!(with("database = \"otpgate\"", "sslmode = \"disable\"").contains("disable"));
        assert!(with("database = \"otpgate\"", "sslmode = \"require\"").contains("unknown variant"));
        assert!(with("ca_file = \"/etc/otpgate/db-ca.pem\"\n", "").contains("ca_file"));
        assert!(with("key_file = \"/etc/otpgate/db-client.key\"\n", "").contains("together"));
        assert!(with("\"/etc/otpgate/db-ca.pem\"", "\"db-ca.pem\"").contains("absolute"));
        assert!(with("user = \"otpgate_server\"", "user = \"a b\"").contains("user"));
        assert!(with("user = \"otpgate_server\"\n", "").contains("user"));
        assert!(with("host_name = \"vm7\"", "deadline_ms = 50").contains("deadline_ms"));
        assert!(with("host_name = \"vm7\"", "host_name = \"a\\tb\"").contains("host_name"));
        let without_section = POSTGRES.split("[store.postgres]").next().unwrap();
        assert!(invalid(without_section).contains("missing"));
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert!(!invalid("groups = [\"a\"\nx").contains('\n'));
    }
}
