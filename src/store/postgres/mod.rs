//! The fleet store: per-user state in one PostgreSQL database shared by
//! every server, so a user enrolls once, a code taken on one server is a
//! replay on all others, and failures add up to one lockout.
//!
//! Servers log in with a role that may only EXECUTE the SECURITY DEFINER
//! functions of `schema-v1.sql`: the secret is read and the HMAC computed
//! inside the database, on its clock. The administrator's role reads and
//! changes the tables directly (`load`, `remove`, `unlock`, ...).
//!
//! One login uses one connection, opened at its first call, and the time
//! spent in the store over the whole login is bounded by `deadline_ms`
//! (name lookup, connect, TLS and every query). Past it, or on any doubt
//! about a commit, the call fails with `StoreError::Unavailable`: the login
//! is refused. Nothing is cached between logins. docs/fleet.md has the rest.

pub mod libpq;
pub mod schema;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::config::{PostgresSettings, SslMode};
use crate::fsutil::{self, Rules, CONFIG_RULES, STATE_RULES};
use crate::secret::{Secret, MIN_SECRET_BITS};
use crate::store::counters::Counters;
use crate::store::record::{UserRecord, SHORT_SECRET_BITS};
use crate::store::{Peek, Store, StoreError};
use crate::totp::{Algorithm, CodeSettings};
use crate::users::UserName;
use crate::verify::{Policy, Proof, Rejection, Verdict};
use libpq::{Connection, DbError, Rows, Value};

/// A connection idle longer than this is replaced before the next call (a
/// person typing a code may have taken minutes).
const IDLE_REUSE: Duration = Duration::from_secs(5);

/// How the deadline is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// One deadline for all the calls of one login (the PAM module).
    PerLogin,
    /// A fresh deadline for every call (the administrator's command).
    PerCall,
}

/// State in a PostgreSQL database.
pub struct PostgresStore {
    settings: PostgresSettings,
    budget: Budget,
    host_name: String,
    spent: Cell<Duration>,
    connection: RefCell<Option<(Connection, Instant)>>,
}

impl PostgresStore {
    pub fn new(settings: PostgresSettings, budget: Budget) -> PostgresStore {
        let host_name = settings
            .host_name
            .clone()
            .unwrap_or_else(crate::otpauth::host_name);
        PostgresStore {
            settings,
            budget,
            host_name,
            spent: Cell::new(Duration::ZERO),
            connection: RefCell::new(None),
        }
    }

    /// The name this server gives in the database's audit trail.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// Runs one statement within what is left of the deadline, connecting
    /// first when needed. A connection that failed is dropped, never reused.
    pub fn query(&self, sql: &str, params: &[Option<&str>]) -> Result<Rows, StoreError> {
        self.run(|connection, deadline| connection.query(sql, params, deadline))
    }

    /// Runs a script of several statements without parameters (schema
    /// changes), within the deadline.
    pub fn script(&self, sql: &str) -> Result<(), StoreError> {
        self.run(|connection, deadline| connection.script(sql, deadline))
            .map(|_| ())
    }

    fn run<T>(
        &self,
        call: impl FnOnce(&Connection, Instant) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let deadline = started + self.time_left();
        let result = self.run_by(call, deadline);
        if self.budget == Budget::PerLogin {
            self.spent.set(self.spent.get() + started.elapsed());
        }
        result.map_err(|e| match e {
            DbError::Unavailable(why) => StoreError::Unavailable(why),
            DbError::Refused { message, .. } => {
                StoreError::Unavailable(format!("the database refused: {message}"))
            }
        })
    }

    fn run_by<T>(
        &self,
        call: impl FnOnce(&Connection, Instant) -> Result<T, DbError>,
        deadline: Instant,
    ) -> Result<T, DbError> {
        let mut slot = self.connection.borrow_mut();
        if slot
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() > IDLE_REUSE)
        {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some((self.connect(deadline)?, Instant::now()));
        }
        let Some((connection, used)) = slot.as_mut() else {
            return Err(DbError::Unavailable("no connection".to_string()));
        };

        let result = call(connection, deadline);
        *used = Instant::now();
        if matches!(result, Err(DbError::Unavailable(_))) {
            *slot = None;
        }
        result
    }

    fn time_left(&self) -> Duration {
        let total = Duration::from_millis(u64::from(self.settings.deadline_ms));
        match self.budget {
            Budget::PerCall => total,
            Budget::PerLogin => total.saturating_sub(self.spent.get()),
        }
    }

    /// Tries the hosts in order, each with an equal share of the time left,
    /// until one gives a read-write session.
    fn connect(&self, deadline: Instant) -> Result<Connection, DbError> {
        self.check_tls_files()?;
        let hosts = &self.settings.hosts;
        let mut problems = Vec::new();
        for (index, host) in hosts.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = left / (hosts.len() - index) as u32;
            match self.connect_host(host, Instant::now() + share) {
                Ok(connection) => return Ok(connection),
                Err(e) => problems.push(format!("{host}: {e}")),
            }
        }
        if problems.is_empty() {
            problems.push("the deadline passed before any host was tried".to_string());
        }
        Err(DbError::Unavailable(problems.join("; ")))
    }

    fn connect_host(&self, host: &str, deadline: Instant) -> Result<Connection, DbError> {
        let addresses = resolve(host, self.settings.port, deadline)?;
        let mut last = DbError::Unavailable("no address".to_string());
        for address in addresses {
            match Connection::open(&self.params(host, address.as_deref()), deadline) {
                Ok(connection) => return Ok(connection),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Every keyword libpq would otherwise fill in from the environment
    /// (PGHOST, PGSSLMODE, PGOPTIONS...) is given here: under sudo or su
    /// the environment belongs to the person logging in.
    fn params(&self, host: &str, address: Option<&str>) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let millis = s.deadline_ms.to_string();
        let mut params = vec![
            ("host", host.to_string()),
            ("port", s.port.to_string()),
            ("dbname", s.database.clone()),
            ("user", s.user.clone()),
            // Certificates or peer authentication only: a server asking for
            // a password gets this, and the login fails.
            (
                "password",
                "otpgate-authenticates-by-certificate".to_string(),
            ),
            ("passfile", "/dev/null".to_string()),
            ("target_session_attrs", "read-write".to_string()),
            ("application_name", "otpgate".to_string()),
            ("client_encoding", "UTF8".to_string()),
            ("gssencmode", "disable".to_string()),
            (
                "connect_timeout",
                s.deadline_ms.div_ceil(1000).max(2).to_string(),
            ),
            ("tcp_user_timeout", millis.clone()),
            ("keepalives", "1".to_string()),
            (
                "options",
                format!("-c statement_timeout={millis} -c lock_timeout={millis}"),
            ),
        ];
        if let Some(address) = address {
            params.push(("hostaddr", address.to_string()));
        }
        params.extend(self.tls_params());
        params
    }

    fn tls_params(&self) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let shown = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map_or(NO_FILE.to_string(), |p| p.display().to_string())
        };
        match s.sslmode {
            SslMode::Disable => vec![("sslmode", "disable".to_string())],
            SslMode::VerifyFull => vec![
                ("sslmode", "verify-full".to_string()),
                ("sslrootcert", shown(&s.ca_file)),
                ("sslcert", shown(&s.cert_file)),
                ("sslkey", shown(&s.key_file)),
                ("sslsni", "1".to_string()),
                ("ssl_min_protocol_version", "TLSv1.2".to_string()),
            ],
        }
    }

    /// The CA and certificate must be root's and not writable by others,
    /// the key root's alone, as the config itself is checked.
    fn check_tls_files(&self) -> Result<(), DbError> {
        let s = &self.settings;
        let files: [(&Option<std::path::PathBuf>, Rules); 3] = [
            (&s.ca_file, CONFIG_RULES),
            (&s.cert_file, CONFIG_RULES),
            (&s.key_file, STATE_RULES),
        ];
        for (path, rules) in files {
            if let Some(path) = path {
                let checked = fsutil::read_trusted(path, rules).map(Zeroizing::new);
                checked.map_err(|e| DbError::Unavailable(format!("TLS file {e}")))?;
            }
        }
        Ok(())
    }
}

/// A path that never exists: libpq then sends no client certificate
/// instead of looking in the environment or in root's home.
const NO_FILE: &str = "/nonexistent/otpgate-no-client-certificate";

/// The addresses of `host`: none needed for a socket folder (`[None]`), the
/// literal for an address, else a lookup in a helper thread that is given
/// up at the deadline.
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<Option<String>>, DbError> {
    if host.starts_with('/') {
        return Ok(vec![None]);
    }
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(vec![Some(address.to_string())]);
    }

    // getaddrinfo cannot be interrupted: a lookup still running at the
    // deadline is left to finish on its own, in a module kept loaded.
    libpq::pin_this_module();
    let (sender, receiver) = mpsc::channel();
    let name = host.to_string();
    let spawned = std::thread::Builder::new()
        .name("otpgate-dns".to_string())
        .spawn(move || {
            let found: Result<Vec<_>, _> = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.map(|a| a.ip().to_string()).collect());
            let _ = sender.send(found);
        });
    if spawned.is_err() {
        return Err(DbError::Unavailable(
            "cannot start a name lookup".to_string(),
        ));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match receiver.recv_timeout(left) {
        Ok(Ok(addresses)) if !addresses.is_empty() => {
            let mut unique: Vec<Option<String>> = Vec::new();
            for address in addresses {
                if !unique.contains(&Some(address.clone())) {
                    unique.push(Some(address));
                }
            }
            Ok(unique)
        }
        Ok(Ok(_)) => Err(DbError::Unavailable("the name has no address".to_string())),
        Ok(Err(e)) => Err(DbError::Unavailable(format!("name lookup failed: {e}"))),
        Err(_) => Err(DbError::Unavailable(
            "the deadline passed during the name lookup".to_string(),
        )),
    }
}

impl Store for PostgresStore {
    fn peek(&self, user: &UserName, _now: i64) -> Result<Peek, StoreError> {
        let rows = self.query(
            "SELECT enrolled, locked_until FROM otpgate.peek($1)",
            &[Some(user.as_str())],
        )?;
        let row = one_row(&rows)?;
        if !boolean(&row[0])? {
            return Ok(Peek::NotEnrolled);
        }
        let locked_until = row[1].as_deref().map(integer).transpose()?;
        Ok(Peek::Enrolled { locked_until })
    }

    fn verify(
        &self,
        user: &UserName,
        reply: &[u8],
        _now: i64,
        policy: &Policy,
    ) -> Result<Option<Verdict>, StoreError> {
        let code = code_text(reply);
        let recovery = recovery_hex(reply);
        let (skew, max_failures, lock_seconds) = (
            policy.skew.to_string(),
            policy.lockout.max_failures.to_string(),
            policy.lockout.lock_seconds.to_string(),
        );
        let rows = self.query(
            "SELECT outcome, step, failures, locked_until, recovery_codes_left \
             FROM otpgate.verify($1, $2, $3::bytea, $4, $5, $6, $7)",
            &[
                Some(user.as_str()),
                code.as_deref().map(|c| c.as_str()),
                recovery.as_deref().map(|r| r.as_str()),
                Some(&skew),
                Some(&max_failures),
                Some(&lock_seconds),
                Some(&self.host_name),
            ],
        )?;
        verdict_of(one_row(&rows)?)
    }

    fn enroll(
        &self,
        user: &UserName,
        record: &UserRecord,
        used_step: Option<u64>,
        replace: bool,
    ) -> Result<(), StoreError> {
        if replace || record.initial != Counters::default() {
            return self.write_user(user, record, used_step, replace);
        }
        let fields = RecordFields::of(record);
        let used = used_step.map(|s| s.to_string());
        let mut params = fields.params(user);
        params.extend([used.as_deref(), Some(&self.host_name)]);
        let rows = self.query(
            "SELECT otpgate.enroll($1, $2::bytea, $3, $4, $5, $6::text[], $7, $8, $9, NULL, $10)",
            &params,
        )?;
        match boolean(&one_row(&rows)?[0])? {
            true => Ok(()),
            false => Err(StoreError::Exists),
        }
    }

    fn load(&self, user: &UserName) -> Result<Option<(UserRecord, Counters)>, StoreError> {
        let rows = self.query(
            "SELECT secret, digits, period, algorithm, recovery_codes, enrolled_at, \
                    short_secret, last_step, failures, locked_until, last_success, last_failure \
             FROM otpgate.users WHERE name = $1",
            &[Some(user.as_str())],
        )?;
        match rows.rows.first() {
            None => Ok(None),
            Some(row) => record_of(user, row).map(Some),
        }
    }

    fn remove(&self, user: &UserName, _now: i64) -> Result<Option<String>, StoreError> {
        let rows = self.query(
            "WITH moved AS (DELETE FROM otpgate.users WHERE name = $1 RETURNING *), \
                  noted AS (INSERT INTO otpgate.audit (host, name, event) \
                            SELECT $2, name, 'reset' FROM moved) \
             INSERT INTO otpgate.removed_users (name, secret, digits, period, algorithm, \
                    recovery_codes, enrolled_at, short_secret, last_step, failures, \
                    locked_until, last_success, last_failure, enrolled_on) \
             SELECT name, secret, digits, period, algorithm, recovery_codes, enrolled_at, \
                    short_secret, last_step, failures, locked_until, last_success, \
                    last_failure, enrolled_on FROM moved \
             RETURNING id",
            &[Some(user.as_str()), Some(&self.host_name)],
        )?;
        Ok(rows
            .rows
            .first()
            .map(|row| format!("otpgate.removed_users id {}", text(&row[0]))))
    }

    fn unlock(&self, user: &UserName) -> Result<bool, StoreError> {
        let rows = self.query(
            "WITH done AS (UPDATE otpgate.users SET failures = 0, locked_until = 0 \
                           WHERE name = $1 RETURNING name) \
             INSERT INTO otpgate.audit (host, name, event) \
             SELECT $2, name, 'unlocked' FROM done RETURNING 1",
            &[Some(user.as_str()), Some(&self.host_name)],
        )?;
        Ok(!rows.rows.is_empty())
    }

    fn allow(&self, user: &UserName) -> Result<(), StoreError> {
        self.query(
            "INSERT INTO otpgate.allowances (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[Some(user.as_str())],
        )
        .map(|_| ())
    }

    fn is_allowed(&self, user: &UserName) -> Result<bool, StoreError> {
        let rows = self.query("SELECT otpgate.is_allowed($1)", &[Some(user.as_str())])?;
        boolean(&one_row(&rows)?[0])
    }

    fn users(&self) -> Result<Vec<UserName>, StoreError> {
        let rows = self.query(
            "SELECT name FROM (SELECT name FROM otpgate.users \
                               UNION SELECT name FROM otpgate.allowances) AS known \
             ORDER BY name COLLATE \"C\"",
            &[],
        )?;
        rows.rows
            .iter()
            .map(|row| {
                UserName::parse(text(&row[0]).as_bytes())
                    .map_err(|_| corrupt(&text(&row[0]), "not a valid user name"))
            })
            .collect()
    }

    fn replace_recovery_codes(
        &self,
        user: &UserName,
        hashes: &[String],
    ) -> Result<bool, StoreError> {
        let rows = self.query(
            "UPDATE otpgate.users SET recovery_codes = $2::text[] WHERE name = $1 RETURNING 1",
            &[Some(user.as_str()), Some(&text_array(hashes))],
        )?;
        Ok(!rows.rows.is_empty())
    }
}

impl PostgresStore {
    /// Writes a whole record with its counters (the administrator: enroll
    /// with replace, and `store copy`). Ends any allowance, as enroll does.
    fn write_user(
        &self,
        user: &UserName,
        record: &UserRecord,
        used_step: Option<u64>,
        replace: bool,
    ) -> Result<(), StoreError> {
        let fields = RecordFields::of(record);
        let c = &record.initial;
        let last_step = used_step.max(c.last_step).map(|s| s.to_string());
        let counters = [
            c.failures.to_string(),
            c.locked_until.to_string(),
            c.last_success.to_string(),
            c.last_failure.to_string(),
        ];
        let on_conflict = if replace {
            "ON CONFLICT (name) DO UPDATE SET secret = EXCLUDED.secret, digits = EXCLUDED.digits, \
             period = EXCLUDED.period, algorithm = EXCLUDED.algorithm, \
             recovery_codes = EXCLUDED.recovery_codes, enrolled_at = EXCLUDED.enrolled_at, \
             short_secret = EXCLUDED.short_secret, last_step = EXCLUDED.last_step, \
             failures = EXCLUDED.failures, locked_until = EXCLUDED.locked_until, \
             last_success = EXCLUDED.last_success, last_failure = EXCLUDED.last_failure, \
             enrolled_on = EXCLUDED.enrolled_on"
        } else {
            "ON CONFLICT (name) DO NOTHING"
        };
        let sql = format!(
            "WITH gone AS (DELETE FROM otpgate.allowances WHERE name = $1 \
                           AND EXISTS (SELECT 1 WHERE $15::boolean OR NOT EXISTS \
                                       (SELECT 1 FROM otpgate.users WHERE name = $1))) \
             INSERT INTO otpgate.users (name, secret, digits, period, algorithm, \
                    recovery_codes, enrolled_at, short_secret, last_step, failures, \
                    locked_until, last_success, last_failure, enrolled_on) \
             VALUES ($1, $2::bytea, $3, $4, $5, $6::text[], $7, $8, $9, $10, $11, $12, $13, $14) \
             {on_conflict} RETURNING 1"
        );
        let replace_text = replace.to_string();
        let mut params = fields.params(user);
        params.push(last_step.as_deref());
        params.extend(counters.iter().map(|c| Some(c.as_str())));
        params.extend([Some(self.host_name.as_str()), Some(&replace_text)]);
        let rows = self.query(&sql, &params)?;
        match rows.rows.is_empty() {
            true => Err(StoreError::Exists),
            false => Ok(()),
        }
    }
}

/// A record's columns as text parameters.
struct RecordFields {
    secret: Zeroizing<String>,
    digits: String,
    period: String,
    algorithm: String,
    recovery_codes: String,
    enrolled_at: String,
    short_secret: String,
}

impl RecordFields {
    fn of(record: &UserRecord) -> RecordFields {
        RecordFields {
            secret: bytea_hex(record.secret.as_bytes()),
            digits: record.code.digits.to_string(),
            period: record.code.period.to_string(),
            algorithm: record.code.algorithm.to_string(),
            recovery_codes: text_array(&record.recovery_codes),
            enrolled_at: record.enrolled_at.to_string(),
            short_secret: record.short_secret.to_string(),
        }
    }

    /// `$1` to `$8` of the queries that write a user: the name, then the
    /// record's fields in the table's order.
    fn params<'a>(&'a self, user: &'a UserName) -> Vec<Option<&'a str>> {
        vec![
            Some(user.as_str()),
            Some(&self.secret),
            Some(&self.digits),
            Some(&self.period),
            Some(&self.algorithm),
            Some(&self.recovery_codes),
            Some(&self.enrolled_at),
            Some(&self.short_secret),
        ]
    }
}

/// The reply as the database's `p_code`: trimmed, and only when it is all
/// digits (at most 10); anything else cannot be a code.
fn code_text(reply: &[u8]) -> Option<Zeroizing<String>> {
    let trimmed = reply.trim_ascii();
    let digits =
        !trimmed.is_empty() && trimmed.len() <= 10 && trimmed.iter().all(u8::is_ascii_digit);
    digits.then(|| Zeroizing::new(String::from_utf8_lossy(trimmed).into_owned()))
}

/// The reply as a recovery code, normalized as src/recovery.rs does, in
/// bytea hex; `None` when empty or longer than any recovery code.
fn recovery_hex(reply: &[u8]) -> Option<Zeroizing<String>> {
    let normalized = crate::recovery::normalize(reply);
    (!normalized.is_empty() && normalized.len() <= 64).then(|| bytea_hex(&normalized))
}

fn bytea_hex(bytes: &[u8]) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(2 + bytes.len() * 2));
    text.push_str("\\x");
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn unhex_bytea(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let hex = text.strip_prefix("\\x")?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut bytes = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.chunks(2) {
        bytes.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Some(bytes)
}

/// A text[] literal. Recovery code hashes hold only `$`, letters and
/// digits, but quotes and backslashes are escaped all the same.
fn text_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Parses a text[] value as PostgreSQL prints one of hashes: `{a,b}`.
fn parse_text_array(value: &str) -> Option<Vec<String>> {
    let inner = value.strip_prefix('{')?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    Some(
        inner
            .split(',')
            .map(|item| item.trim_matches('"').to_string())
            .collect(),
    )
}

fn verdict_of(row: &[Value]) -> Result<Option<Verdict>, StoreError> {
    let number = |i: usize| row[i].as_deref().map(integer).transpose();
    let failures = number(2)?.unwrap_or(0) as u32;
    let locked_until = number(3)?.unwrap_or(0);
    let rejected = |why| Verdict::Rejected {
        why,
        failures,
        locked_until: (locked_until != 0).then_some(locked_until),
    };
    let verdict = match text(&row[0]).as_str() {
        "not_enrolled" => return Ok(None),
        "code" => {
            let step = number(1)?.ok_or_else(|| corrupt("verify", "no step"))?;
            Verdict::Accepted(Proof::Code { step: step as u64 })
        }
        "recovery_code" => Verdict::Accepted(Proof::RecoveryCode {
            left: number(4)?.unwrap_or(0) as u32,
        }),
        "locked" => Verdict::Locked {
            until: locked_until,
            failures,
        },
        "malformed" => rejected(Rejection::Malformed),
        "wrong_code" => rejected(Rejection::WrongCode),
        "replay" => rejected(Rejection::Replay),
        other => return Err(corrupt("verify", &format!("unknown outcome {other:?}"))),
    };
    Ok(Some(verdict))
}

fn record_of(user: &UserName, row: &[Value]) -> Result<(UserRecord, Counters), StoreError> {
    let bad = |why: &str| corrupt(&format!("otpgate.users {user}"), why);
    let number = |i: usize| row[i].as_deref().map(integer).transpose();
    let short_secret = boolean(&row[6])?;
    let bytes = unhex_bytea(row[0].as_deref().unwrap_or_default())
        .ok_or_else(|| bad("the secret is not bytea"))?;
    let min_bits = if short_secret {
        SHORT_SECRET_BITS
    } else {
        MIN_SECRET_BITS
    };
    let secret = Secret::from_bytes(bytes.to_vec(), min_bits).map_err(|e| bad(&e.to_string()))?;
    let algorithm = match text(&row[3]).as_str() {
        "SHA1" => Algorithm::SHA1,
        "SHA256" => Algorithm::SHA256,
        "SHA512" => Algorithm::SHA512,
        _ => return Err(bad("unknown algorithm")),
    };
    let code = CodeSettings {
        digits: number(1)?.unwrap_or(0) as u8,
        period: number(2)?.unwrap_or(0) as u64,
        algorithm,
    };
    let recovery_codes =
        parse_text_array(&text(&row[4])).ok_or_else(|| bad("recovery codes unreadable"))?;
    let counters = Counters {
        last_step: number(7)?.map(|s| s as u64),
        failures: number(8)?.unwrap_or(0) as u32,
        locked_until: number(9)?.unwrap_or(0),
        last_success: number(10)?.unwrap_or(0),
        last_failure: number(11)?.unwrap_or(0),
    };
    let record = UserRecord {
        secret,
        code,
        recovery_codes,
        enrolled_at: number(5)?.unwrap_or(0),
        short_secret,
        initial: Counters::default(),
    };
    Ok((record, counters))
}

fn one_row(rows: &Rows) -> Result<&[Value], StoreError> {
    match rows.rows.as_slice() {
        [row] => Ok(row),
        _ => Err(corrupt("query", "expected exactly one row")),
    }
}

fn text(value: &Value) -> String {
    value.clone().unwrap_or_default()
}

fn boolean(value: &Value) -> Result<bool, StoreError> {
    match value.as_deref() {
        Some("t") => Ok(true),
        Some("f") => Ok(false),
        _ => Err(corrupt("query", "expected a boolean")),
    }
}

fn integer(text: &str) -> Result<i64, StoreError> {
    text.parse()
        .map_err(|_| corrupt("query", "expected an integer"))
}

fn corrupt(what: &str, why: &str) -> StoreError {
    StoreError::Corrupt {
        path: format!("postgres: {what}"),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digit_replies_are_sent_as_codes() {
        assert_eq!(code_text(b" 123456\n").unwrap().as_str(), "123456");
        assert!(code_text(b"12345a").is_none());
        assert!(code_text(b"").is_none());
        assert!(code_text(b"12345678901").is_none());
    }

    #[test]
    fn recovery_replies_are_normalized_and_bounded() {
        assert_eq!(recovery_hex(b"12-3 a").unwrap().as_str(), "\\x31323341");
        assert!(recovery_hex(b" - ").is_none());
        assert!(recovery_hex(&[b'1'; 65]).is_none());
    }

    #[test]
    fn bytea_and_arrays_round_trip() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex_bytea(&bytea_hex(&bytes)).unwrap().as_slice(), bytes);
        assert!(unhex_bytea("\\x0").is_none());
        assert!(unhex_bytea("00").is_none());
        let hashes = vec!["sha256$00$11".to_string(), "sha256$22$33".to_string()];
        assert_eq!(text_array(&hashes), "{\"sha256$00$11\",\"sha256$22$33\"}");
        assert_eq!(
            parse_text_array("{sha256$00$11,sha256$22$33}"),
            Some(hashes)
        );
        assert_eq!(parse_text_array("{}"), Some(Vec::new()));
    }

    #[test]
    fn every_outcome_becomes_its_verdict() {
        let row =
            |o: &str, step: Option<&str>, f: &str, l: &str, left: Option<&str>| -> Vec<Value> {
                vec![
                    Some(o.to_string()),
                    step.map(str::to_string),
                    Some(f.to_string()),
                    Some(l.to_string()),
                    left.map(str::to_string),
                ]
            };
        let cases = [
            (row("not_enrolled", None, "0", "0", None), None),
            (
                row("code", Some("7"), "0", "0", None),
                Some(Verdict::Accepted(Proof::Code { step: 7 })),
            ),
            (
                row("recovery_code", None, "0", "0", Some("4")),
                Some(Verdict::Accepted(Proof::RecoveryCode { left: 4 })),
            ),
            (
                row("locked", None, "5", "99", None),
                Some(Verdict::Locked {
                    until: 99,
                    failures: 5,
                }),
            ),
            (
                row("replay", None, "2", "0", None),
                Some(Verdict::Rejected {
                    why: Rejection::Replay,
                    failures: 2,
                    locked_until: None,
                }),
            ),
            (
                row("wrong_code", None, "5", "1000", None),
                Some(Verdict::Rejected {
                    why: Rejection::WrongCode,
                    failures: 5,
                    locked_until: Some(1000),
                }),
            ),
        ];
        for (row, expected) in cases {
            assert_eq!(verdict_of(&row).unwrap(), expected, "{row:?}");
        }
        assert!(verdict_of(&row("granted", None, "0", "0", None)).is_err());
    }

    #[test]
    fn no_keyword_is_left_to_the_environment() {
        let settings = PostgresSettings {
            hosts: vec!["db1".into()],
            port: 5432,
            database: "otpgate".into(),
            user: "otpgate_server".into(),
            sslmode: SslMode::VerifyFull,
            ca_file: Some("/etc/otpgate/ca.pem".into()),
            cert_file: None,
            key_file: None,
            deadline_ms: 3000,
            host_name: Some("vm1".into()),
        };
        let store = PostgresStore::new(settings, Budget::PerLogin);
        let params = store.params("db1", Some("10.0.0.1"));
        for key in [
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "passfile",
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "options",
            "target_session_attrs",
            "client_encoding",
            "gssencmode",
            "application_name",
        ] {
            let value = params.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            assert!(
                value.is_some_and(|v| !v.is_empty()),
                "{key} missing or empty"
            );
        }
        assert_eq!(store.host_name(), "vm1");
    }
}
