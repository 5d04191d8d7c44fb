//! The database schema's versions and the two ways to apply them: `init`
//! (roles, extension, schema and every migration, then the grants and the
//! policy ceilings; safe to run again) and `migrate` (the migrations an
//! existing schema lacks). Both run in one transaction under an advisory
//! lock, so two administrators cannot interleave.

use crate::config::Config;
use crate::store::postgres::PostgresStore;
use crate::store::StoreError;

/// The migrations, in order; version N is `MIGRATIONS[N - 1]`.
pub const MIGRATIONS: &[&str] = &[include_str!("schema-v1.sql")];

/// The version this build writes and expects.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Any number will do as long as it is otpgate's alone.
const ADVISORY_LOCK: i64 = 0x6f74_7067_6174;

/// The roles `init` creates (when missing) and grants to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// The servers' role: EXECUTE on the login functions only.
    pub server: String,
    /// The administrators' role: the tables.
    pub admin: String,
}

impl Default for Roles {
    fn default() -> Roles {
        Roles {
            server: "otpgate_server".to_string(),
            admin: "otpgate_admin".to_string(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub from: i64,
    pub to: i64,
}

/// Is `name` usable as a role name without quoting surprises?
pub fn valid_role(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// `otpgate db init`: everything, idempotently. The policy ceilings are
/// set from `config` ([code] skew, [lockout]).
pub fn init(store: &PostgresStore, roles: &Roles, config: &Config) -> Result<Applied, StoreError> {
    check_roles(roles)?;
    store.script(&prelude(roles))?;
    let applied = apply(store, true)?;
    store.script(&grants(roles))?;
    store.query(
        "UPDATE otpgate.settings SET max_skew = $1, max_failures = $2, min_lock_seconds = $3",
        &[
            Some(&config.skew.to_string()),
            Some(&config.lockout.max_failures.to_string()),
            Some(&config.lockout.lock_seconds.to_string()),
        ],
    )?;
    store.script("COMMIT")?;
    Ok(applied)
}

/// `otpgate db migrate`: the missing migrations of an existing schema.
pub fn migrate(store: &PostgresStore, roles: &Roles) -> Result<Applied, StoreError> {
    check_roles(roles)?;
    store.script(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({ADVISORY_LOCK}); SET LOCAL ROLE otpgate_owner"
    ))?;
    let applied = apply(store, false)?;
    store.script(&grants(roles))?;
    store.script("COMMIT")?;
    Ok(applied)
}

/// The version of the schema in the database; 0 when there is none.
pub fn current_version(store: &PostgresStore) -> Result<i64, StoreError> {
    let rows = store.query(
        "SELECT CASE WHEN to_regclass('otpgate.schema_version') IS NULL THEN 0 \
                ELSE (SELECT coalesce(max(version), 0) FROM otpgate.schema_version) END",
        &[],
    )?;
    let text = rows
        .rows
        .first()
        .and_then(|row| row[0].clone())
        .unwrap_or_default();
    text.parse().map_err(|_| StoreError::Corrupt {
        path: "postgres: otpgate.schema_version".to_string(),
        why: "not a number".to_string(),
    })
}

fn check_roles(roles: &Roles) -> Result<(), StoreError> {
    for role in [&roles.server, &roles.admin] {
        if !valid_role(role) {
            return Err(StoreError::Unavailable(format!(
                "{role:?} is not a usable role name (lower-case letters, digits and _)"
            )));
        }
    }
    Ok(())
}

/// Roles, extension and the owner of everything, as the connecting role
/// (a superuser, or a role with CREATEROLE that owns the database).
fn prelude(roles: &Roles) -> String {
    let create_role = |name: &str, login: &str| {
        format!(
            "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN \
             CREATE ROLE {name} {login}; END IF;"
        )
    };
    format!(
        "BEGIN;
         SELECT pg_advisory_xact_lock({ADVISORY_LOCK});
         CREATE EXTENSION IF NOT EXISTS pgcrypto;
         DO $roles$ BEGIN {} {} {} END $roles$;
         DO $grant$ BEGIN
           EXECUTE format('GRANT CREATE ON DATABASE %I TO otpgate_owner', current_database());
         END $grant$;
         GRANT otpgate_owner TO CURRENT_USER;
         SET LOCAL ROLE otpgate_owner;
         CREATE SCHEMA IF NOT EXISTS otpgate;
         CREATE TABLE IF NOT EXISTS otpgate.schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());",
        create_role("otpgate_owner", "NOLOGIN"),
        create_role(&roles.server, "LOGIN"),
        create_role(&roles.admin, "LOGIN"),
    )
}

/// Applies the migrations after the current version, inside the open
/// transaction. Without `create`, a database without the schema is an
/// error (run `db init`).
fn apply(store: &PostgresStore, create: bool) -> Result<Applied, StoreError> {
    let from = current_version(store)?;
    if from == 0 && !create {
        return Err(StoreError::Unavailable(
            "the database has no otpgate schema: run otpgate db init".to_string(),
        ));
    }
    if from > LATEST {
        return Err(StoreError::Unavailable(format!(
            "the database's schema is version {from}, newer than this otpgate's {LATEST}: \
             upgrade otpgate"
        )));
    }
    let crypto = crypto_schema(store)?;
    for version in from + 1..=LATEST {
        let sql = MIGRATIONS[(version - 1) as usize].replace("@crypto@", &crypto);
        store.script(&sql)?;
        store.query(
            "INSERT INTO otpgate.schema_version (version) VALUES ($1)",
            &[Some(&version.to_string())],
        )?;
    }
    Ok(Applied { from, to: LATEST })
}

/// The schema pgcrypto lives in, quoted as needed.
fn crypto_schema(store: &PostgresStore) -> Result<String, StoreError> {
    let rows = store.query(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pgcrypto'",
        &[],
    )?;
    rows.rows
        .first()
        .and_then(|row| row[0].clone())
        .ok_or_else(|| StoreError::Unavailable("pgcrypto is not installed".to_string()))
}

/// The servers may call the login functions and nothing else; the
/// administrators get the tables. Run again after every migration.
fn grants(roles: &Roles) -> String {
    let (server, admin) = (&roles.server, &roles.admin);
    format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA otpgate FROM PUBLIC, {server};
         REVOKE ALL ON ALL FUNCTIONS IN SCHEMA otpgate FROM PUBLIC, {server};
         GRANT USAGE ON SCHEMA otpgate TO {server}, {admin};
         GRANT EXECUTE ON FUNCTION otpgate.peek, otpgate.is_allowed, otpgate.enroll,
               otpgate.verify TO {server}, {admin};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA otpgate TO {admin};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA otpgate TO {admin};"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        assert!(valid_role("otpgate_server"));
        assert!(!valid_role("Otpgate"));
        assert!(!valid_role("a;drop"));
        assert!(!valid_role("1a"));
        assert!(!valid_role(""));
    }

    #[test]
    fn the_migrations_are_numbered_from_one() {
        assert_eq!(LATEST, 1);
        assert!(MIGRATIONS[0].contains("CREATE FUNCTION otpgate.verify"));
        assert!(
            !grants(&Roles::default()).contains("GRANT SELECT ON otpgate.users TO otpgate_server")
        );
    }
}
