//! The `otpgate` subcommands of the fleet store: `db init` and `db migrate`
//! (the schema, see store::postgres::schema) and `store copy` (users,
//! counters and allowances from one store to the other, idempotently, with
//! a dry run). Secrets are copied between the stores, never printed.

use std::io::Write;

use crate::admin::AdminError;
use crate::config::{Config, PostgresSettings, StoreKind};
use crate::store::files::FileStore;
use crate::store::postgres::schema::{self, Roles};
use crate::store::postgres::{Budget, PostgresStore};
use crate::store::record::UserRecord;
use crate::store::Store;
use crate::users::UserName;

/// Schema changes may take longer than a login's store calls.
const SCHEMA_DEADLINE_MS: u32 = 30_000;

/// One side of `store copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Files,
    Postgres,
}

/// What `store copy` did (or would do) for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Secret, recovery codes and counters written to the target.
    Copied,
    /// Same secret in the target, other counters or codes: brought up to
    /// date from the source.
    Updated,
    Unchanged,
    /// An allowance to enroll copied.
    AllowanceCopied,
    /// The target holds another secret; left alone (see `--replace`).
    Conflict,
}

impl Action {
    fn text(&self) -> &'static str {
        match self {
            Action::Copied => "copied",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::AllowanceCopied => "allowance copied",
            Action::Conflict => {
                "skipped: the target holds another secret (--replace overwrites it)"
            }
        }
    }
}

/// The database settings of a config whose store is PostgreSQL.
pub fn postgres_settings(config: &Config) -> Result<&PostgresSettings, AdminError> {
    match &config.store {
        StoreKind::Postgres(settings) => Ok(settings),
        StoreKind::Files => Err(AdminError(
            "this config's store is files: give a config with [store] kind = \"postgres\" \
             (otpgate --config PATH ...)"
                .to_string(),
        )),
    }
}

fn schema_store(config: &Config) -> Result<PostgresStore, AdminError> {
    let mut settings = postgres_settings(config)?.clone();
    settings.deadline_ms = settings.deadline_ms.max(SCHEMA_DEADLINE_MS);
    Ok(PostgresStore::new(settings, Budget::PerCall))
}

/// `otpgate db init [--server-role R] [--admin-role R]`.
pub fn init(config: &Config, roles: &Roles, out: &mut dyn Write) -> Result<(), AdminError> {
    let store = schema_store(config)?;
    let applied = schema::init(&store, roles, config)?;
    let _ = writeln!(
        out,
        "otpgate schema at version {} (was {}); roles {} (servers) and {} (administrators); \
         policy ceilings: skew {}, max_failures {}, lock_seconds {}",
        applied.to,
        applied.from,
        roles.server,
        roles.admin,
        config.skew,
        config.lockout.max_failures,
        config.lockout.lock_seconds
    );
    Ok(())
}

/// `otpgate db migrate`.
pub fn migrate(config: &Config, roles: &Roles, out: &mut dyn Write) -> Result<(), AdminError> {
    let store = schema_store(config)?;
    let applied = schema::migrate(&store, roles)?;
    let _ = match applied.from == applied.to {
        true => writeln!(out, "otpgate schema already at version {}", applied.to),
        false => writeln!(
            out,
            "otpgate schema migrated from version {} to {}",
            applied.from, applied.to
        ),
    };
    Ok(())
}

/// `otpgate check-config` with the database store: one call as a login
/// makes it (TLS files, name lookup, connect, the role's right to call
/// `otpgate.peek`), within the deadline. `(problem, fix)` pairs.
pub fn check_database(settings: &PostgresSettings) -> Vec<(String, String)> {
    let store = PostgresStore::new(settings.clone(), Budget::PerCall);
    let Err(e) = store.query("SELECT enrolled FROM otpgate.peek('root')", &[]) else {
        return Vec::new();
    };
    let problem = format!("the database store does not answer: {e}");
    let text = e.to_string();
    let fix = if text.contains("otpgate.peek") || text.contains("schema \"otpgate\"") {
        "run otpgate db init against the database (docs/fleet.md)".to_string()
    } else if text.contains("permission denied") {
        format!(
            "grant the role {} EXECUTE on otpgate.peek: run otpgate db init",
            settings.user
        )
    } else if text.contains("TLS file") {
        "make the CA and certificate root-owned 0644 and the key root-owned 0600, in root-owned \
         folders"
            .to_string()
    } else {
        "check [store.postgres] hosts, port, the certificates and the database's pg_hba.conf \
         (docs/fleet.md)"
            .to_string()
    };
    vec![(problem, fix)]
}

/// `otpgate store copy --from A --to B [--dry-run] [--replace]`: the files
/// side is the config's state_dir, the database side its [store.postgres].
pub fn copy(
    config: &Config,
    from: Side,
    to: Side,
    dry_run: bool,
    replace: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    if from == to {
        return Err(AdminError(
            "--from and --to name the same store".to_string(),
        ));
    }
    let files = FileStore::new(&config.state_dir);
    let database = PostgresStore::new(postgres_settings(config)?.clone(), Budget::PerCall);
    let (source, target): (&dyn Store, &dyn Store) = match from {
        Side::Files => (&files, &database),
        Side::Postgres => (&database, &files),
    };

    let mut conflicts = 0;
    let users = source.users()?;
    for user in &users {
        let action = copy_user(source, target, user, dry_run, replace)?;
        conflicts += usize::from(action == Action::Conflict);
        let _ = writeln!(out, "{user}: {}", action.text());
    }

    let verb = if dry_run { "would be copied" } else { "copied" };
    let _ = writeln!(out, "{} users {verb}; {conflicts} conflicts", users.len());
    match conflicts {
        0 => Ok(()),
        n => Err(AdminError(format!("{n} users were not copied"))),
    }
}

/// Decides and (unless `dry_run`) does the copy of one user.
fn copy_user(
    source: &dyn Store,
    target: &dyn Store,
    user: &UserName,
    dry_run: bool,
    replace: bool,
) -> Result<Action, AdminError> {
    let Some((record, counters)) = source.load(user)? else {
        // Only an allowance to enroll.
        if target.is_allowed(user)? || target.load(user)?.is_some() {
            return Ok(Action::Unchanged);
        }
        if !dry_run {
            target.allow(user)?;
        }
        return Ok(Action::AllowanceCopied);
    };

    let action = match target.load(user)? {
        None => Action::Copied,
        Some((there, there_counters)) if there.secret == record.secret => {
            match same_enrollment(&there, &record) && there_counters == counters {
                true => Action::Unchanged,
                false => Action::Updated,
            }
        }
        Some(_) if replace => Action::Copied,
        Some(_) => Action::Conflict,
    };
    if dry_run || matches!(action, Action::Unchanged | Action::Conflict) {
        return Ok(action);
    }

    let mut moved = record.clone();
    moved.initial = counters;
    target.enroll(
        user,
        &moved,
        counters.last_step,
        action != Action::Copied || replace,
    )?;
    Ok(action)
}

/// The same enrollment, whatever starting counters each store keeps.
fn same_enrollment(a: &UserRecord, b: &UserRecord) -> bool {
    a.secret == b.secret
        && a.code == b.code
        && a.recovery_codes == b.recovery_codes
        && a.enrolled_at == b.enrolled_at
        && a.short_secret == b.short_secret
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::store::counters::Counters;
    use crate::totp::CodeSettings;

    fn user(name: &str) -> UserName {
        UserName::parse(name.as_bytes()).unwrap()
    }

    fn record() -> UserRecord {
        let mut record = UserRecord::new(Secret::generate().unwrap(), CodeSettings::default(), 7);
        record.recovery_codes = vec![crate::recovery::hash("12345-67890").unwrap()];
        record
    }

    #[test]
    fn copying_between_two_file_stores_is_idempotent() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (FileStore::new(a.path()), FileStore::new(b.path()));
        source
            .enroll(&user("alice"), &record(), Some(100), false)
            .unwrap();
        source.allow(&user("bob")).unwrap();

        let first = copy_user(&source, &target, &user("alice"), false, false).unwrap();
        let again = copy_user(&source, &target, &user("alice"), false, false).unwrap();
        let allowance = copy_user(&source, &target, &user("bob"), false, false).unwrap();

        assert_eq!((first, again), (Action::Copied, Action::Unchanged));
        assert_eq!(allowance, Action::AllowanceCopied);
        assert!(target.is_allowed(&user("bob")).unwrap());
        let (_, counters) = target.load(&user("alice")).unwrap().unwrap();
        assert_eq!(counters.last_step, Some(100));
    }

    #[test]
    fn a_dry_run_writes_nothing_and_conflicts_are_kept() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (FileStore::new(a.path()), FileStore::new(b.path()));
        source
            .enroll(&user("alice"), &record(), None, false)
            .unwrap();
        source
            .enroll(&user("dave"), &record(), None, false)
            .unwrap();
        let other = record();
        target.enroll(&user("dave"), &other, None, false).unwrap();

        let dry = copy_user(&source, &target, &user("alice"), true, false).unwrap();
        let conflict = copy_user(&source, &target, &user("dave"), false, false).unwrap();

        assert_eq!((dry, conflict), (Action::Copied, Action::Conflict));
        assert_eq!(target.load(&user("alice")).unwrap(), None);
        assert_eq!(
            target.load(&user("dave")).unwrap().unwrap().0.secret,
            other.secret
        );
    }

    #[test]
    fn newer_counters_update_a_copy() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (FileStore::new(a.path()), FileStore::new(b.path()));
        let enrolled = record();
        source
            .enroll(&user("alice"), &enrolled, Some(5), false)
            .unwrap();
        copy_user(&source, &target, &user("alice"), false, false).unwrap();
        let mut later = enrolled.clone();
        later.initial = Counters {
            last_step: Some(9),
            failures: 2,
            ..Counters::default()
        };
        source
            .enroll(&user("alice"), &later, Some(9), true)
            .unwrap();

        let action = copy_user(&source, &target, &user("alice"), false, false).unwrap();

        assert_eq!(action, Action::Updated);
        let (_, counters) = target.load(&user("alice")).unwrap().unwrap();
        assert_eq!((counters.last_step, counters.failures), (Some(9), 2));
    }
}
