//! `otpgate status [USER] [--json]`: one row per user the store holds state
//! for and per member of the configured groups.
//!
//! The JSON form is a stable interface for scripts, version 1, documented in
//! man/otpgate.8.md and docs/admin-command.md: new keys may be added, none
//! is removed or changes meaning without a new `version`.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{members, Admin, AdminError, Membership};
use crate::users::UserName;
use crate::verify;

/// The `version` of the JSON document.
pub const JSON_VERSION: u32 = 1;

/// One user's state. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserStatus {
    pub user: String,
    /// The name service knows the account.
    pub account: bool,
    /// The account is in one of the configured groups.
    pub member: bool,
    pub enrolled: bool,
    pub enrolled_at: Option<i64>,
    /// Set only while a lock is in force.
    pub locked_until: Option<i64>,
    pub failures: u32,
    pub last_success: Option<i64>,
    pub last_failure: Option<i64>,
    /// `None` when not enrolled.
    pub recovery_codes_left: Option<u32>,
    /// The secret is under 128 bits (an old import): enroll the user again.
    pub short_secret: bool,
    /// An administrator allowed an enrollment at the next login.
    pub enrollment_allowed: bool,
    /// Why this user's state could not be read; the other fields are then
    /// as far as known.
    pub error: Option<String>,
}

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    users: &'a [UserStatus],
}

impl Admin<'_> {
    /// The rows for `only` (one user) or for everyone.
    pub fn status(&self, only: Option<&UserName>) -> Result<Vec<UserStatus>, AdminError> {
        let users = match only {
            Some(user) => vec![user.clone()],
            None => self.everyone()?,
        };
        let rows: Vec<UserStatus> = users.iter().map(|u| self.user_status(u)).collect();

        if let (Some(user), [row]) = (only, rows.as_slice()) {
            let nothing = !row.account && !row.enrolled && !row.enrollment_allowed;
            if nothing && row.error.is_none() {
                return Err(AdminError(format!("no such user: {user}")));
            }
        }
        Ok(rows)
    }

    /// Users with state and members of the configured groups, sorted.
    fn everyone(&self) -> Result<Vec<UserName>, AdminError> {
        let mut names = BTreeMap::new();
        for user in self.store.users()? {
            names.insert(user.as_str().to_string(), user);
        }
        for name in members::members_of(&self.config.groups)? {
            if let Ok(user) = UserName::parse(name.as_bytes()) {
                names.insert(name, user);
            }
        }
        Ok(names.into_values().collect())
    }

    fn user_status(&self, user: &UserName) -> UserStatus {
        let mut row = UserStatus::empty(user);

        // Account and membership.
        match self.membership(user) {
            Ok(m) => {
                row.account = m != Membership::Unknown;
                row.member = m == Membership::Member;
            }
            Err(e) => row.error = Some(e.to_string()),
        }

        // Allowance, record and counters.
        match self.store.is_allowed(user) {
            Ok(allowed) => row.enrollment_allowed = allowed,
            Err(e) => row.error = Some(e.to_string()),
        }
        match self.store.load(user) {
            Ok(Some((record, counters))) => {
                let now = self.clock.now();
                row.enrolled = true;
                row.enrolled_at = nonzero(record.enrolled_at);
                row.short_secret = record.short_secret;
                row.recovery_codes_left = Some(record.recovery_codes.len() as u32);
                row.locked_until = verify::locked_until(&counters, now);
                row.failures = if counters.locked_until != 0 && row.locked_until.is_none() {
                    0
                } else {
                    counters.failures
                };
                row.last_success = nonzero(counters.last_success);
                row.last_failure = nonzero(counters.last_failure);
            }
            Ok(None) => {}
            Err(e) => row.error = Some(e.to_string()),
        }
        row
    }
}

impl UserStatus {
    fn empty(user: &UserName) -> UserStatus {
        UserStatus {
            user: user.as_str().to_string(),
            account: false,
            member: false,
            enrolled: false,
            enrolled_at: None,
            locked_until: None,
            failures: 0,
            last_success: None,
            last_failure: None,
            recovery_codes_left: None,
            short_secret: false,
            enrollment_allowed: false,
            error: None,
        }
    }
}

fn nonzero(time: i64) -> Option<i64> {
    (time != 0).then_some(time)
}

/// `{"version": 1, "users": [...]}` on one line.
pub fn write_json(out: &mut dyn Write, rows: &[UserStatus]) -> std::io::Result<()> {
    let document = Document {
        version: JSON_VERSION,
        users: rows,
    };
    serde_json::to_writer(&mut *out, &document)?;
    writeln!(out)
}

/// A table for people, times in UTC.
pub fn write_table(out: &mut dyn Write, rows: &[UserStatus]) -> std::io::Result<()> {
    let header = [
        "USER",
        "MEMBER",
        "ENROLLED",
        "LOCKED UNTIL",
        "FAILURES",
        "LAST LOGIN",
        "RECOVERY",
        "NOTES",
    ];
    let lines: Vec<[String; 8]> = rows.iter().map(table_cells).collect();
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    write_row(out, &header.map(String::from), &widths)?;
    for line in &lines {
        write_row(out, line, &widths)?;
    }
    Ok(())
}

fn write_row(out: &mut dyn Write, cells: &[String; 8], widths: &[usize]) -> std::io::Result<()> {
    let mut text = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        text.push_str(&format!("{cell:<width$}  "));
    }
    writeln!(out, "{}", text.trim_end())
}

fn table_cells(row: &UserStatus) -> [String; 8] {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let time = |t: Option<i64>| t.map_or("-".to_string(), utc_time);
    [
        row.user.clone(),
        if row.account {
            yes_no(row.member)
        } else {
            "no account".to_string()
        },
        yes_no(row.enrolled),
        time(row.locked_until),
        row.failures.to_string(),
        time(row.last_success),
        row.recovery_codes_left
            .map_or("-".to_string(), |n| n.to_string()),
        notes(row),
    ]
}

fn notes(row: &UserStatus) -> String {
    let mut notes = Vec::new();
    if row.short_secret {
        notes.push("short_secret: enroll again".to_string());
    }
    if row.enrollment_allowed {
        notes.push("may enroll at next login".to_string());
    }
    if let Some(e) = &row.error {
        notes.push(format!("error: {e}"));
    }
    notes.join("; ")
}

/// `2023-11-14 22:13:20 UTC` for a Unix time.
pub fn utc_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by the
/// usual era arithmetic (eras of 400 years, March-based years).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_become_utc_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn the_json_document_has_the_documented_keys() {
        let user = UserName::parse(b"alice").unwrap();
        let mut row = UserStatus::empty(&user);
        row.enrolled = true;
        row.recovery_codes_left = Some(4);
        let mut out = Vec::new();

        write_json(&mut out, &[row]).unwrap();

        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"version\":1,\"users\":[{\"user\":\"alice\",\"account\":false,\"member\":false,\
             \"enrolled\":true,\"enrolled_at\":null,\"locked_until\":null,\"failures\":0,\
             \"last_success\":null,\"last_failure\":null,\"recovery_codes_left\":4,\
             \"short_secret\":false,\"enrollment_allowed\":false,\"error\":null}]}\n"
        );
    }
}
