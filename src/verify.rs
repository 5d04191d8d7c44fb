//! The verdict on one reply, given a user's record and counters: lockout,
//! code or recovery code, replay protection and failure counting. Pure, so
//! every store applies the same rules and tests need no files.

use crate::config::Lockout;
use crate::store::counters::Counters;
use crate::store::record::UserRecord;
use crate::totp;

/// The server's policy for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub skew: u32,
    pub lockout: Lockout,
}

/// Why a reply was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not `digits` digits, nor a recovery code's shape.
    Malformed,
    /// Well formed but matches no step in the window (nor a recovery code).
    WrongCode,
    /// Matches a step at or before the last accepted one.
    Replay,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::WrongCode => "wrong_code",
            Rejection::Replay => "replay",
        }
    }
}

/// How an accepted reply proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Code { step: u64 },
    RecoveryCode { left: u32 },
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Proof),
    Rejected {
        why: Rejection,
        failures: u32,
        locked_until: Option<i64>,
    },
    Locked {
        until: i64,
        failures: u32,
    },
}

/// A verdict with the state to save before the verdict may be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub counters: Counters,
    /// The index of the recovery code that was used up, if one was.
    pub used_recovery_code: Option<usize>,
}

/// Is the user locked at `now`?
pub fn locked_until(counters: &Counters, now: i64) -> Option<i64> {
    (counters.locked_until > now).then_some(counters.locked_until)
}

/// Judges `reply` at `now`. The returned counters must be made durable
/// before the verdict is acted on, so a failure is always counted.
pub fn judge(
    record: &UserRecord,
    counters: Counters,
    reply: &[u8],
    now: i64,
    policy: &Policy,
) -> Judgement {
    if let Some(until) = locked_until(&counters, now) {
        let verdict = Verdict::Locked {
            until,
            failures: counters.failures,
        };
        return Judgement {
            verdict,
            counters,
            used_recovery_code: None,
        };
    }
    let counters = expire_lock(counters);

    // A recovery code is tried only when the reply is no valid code, so an
    // 8-digit imported recovery code still works with 8-digit codes.
    match check_code(record, &counters, reply, now, policy.skew) {
        Ok(step) => accept_code(counters, step, now),
        Err(Rejection::Replay) => reject(counters, Rejection::Replay, now, policy),
        Err(why) => match crate::recovery::find(&record.recovery_codes, reply) {
            Some(index) => accept_recovery(record, counters, index, now),
            None => reject(counters, why, now, policy),
        },
    }
}

fn expire_lock(mut counters: Counters) -> Counters {
    if counters.locked_until != 0 {
        counters.locked_until = 0;
        counters.failures = 0;
    }
    counters
}

fn check_code(
    record: &UserRecord,
    counters: &Counters,
    reply: &[u8],
    now: i64,
    skew: u32,
) -> Result<u64, Rejection> {
    let code = totp::parse_reply(reply, record.code.digits).map_err(|_| Rejection::Malformed)?;
    let step = totp::matching_step(&record.secret, &record.code, code, now, skew)
        .ok_or(Rejection::WrongCode)?;
    if counters.last_step.is_some_and(|last| step <= last) {
        return Err(Rejection::Replay);
    }
    Ok(step)
}

fn accept_code(mut counters: Counters, step: u64, now: i64) -> Judgement {
    counters.last_step = Some(step);
    counters.failures = 0;
    counters.last_success = now;
    Judgement {
        verdict: Verdict::Accepted(Proof::Code { step }),
        counters,
        used_recovery_code: None,
    }
}

fn accept_recovery(
    record: &UserRecord,
    mut counters: Counters,
    index: usize,
    now: i64,
) -> Judgement {
    counters.failures = 0;
    counters.last_success = now;
    let left = record.recovery_codes.len().saturating_sub(1) as u32;
    Judgement {
        verdict: Verdict::Accepted(Proof::RecoveryCode { left }),
        counters,
        used_recovery_code: Some(index),
    }
}

fn reject(mut counters: Counters, why: Rejection, now: i64, policy: &Policy) -> Judgement {
    counters.failures = counters.failures.saturating_add(1);
    counters.last_failure = now;
    let mut locked = None;
    if counters.failures >= policy.lockout.max_failures {
        let until = now.saturating_add(policy.lockout.lock_seconds as i64);
        counters.locked_until = until;
        locked = Some(until);
    }
    let verdict = Verdict::Rejected {
        why,
        failures: counters.failures,
        locked_until: locked,
    };
    Judgement {
        verdict,
        counters,
        used_recovery_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::totp::{code_at, CodeSettings};

    const NOW: i64 = 1_700_000_000;

    fn policy() -> Policy {
        Policy {
            skew: 1,
            lockout: Lockout {
                max_failures: 3,
                lock_seconds: 300,
            },
        }
    }

    fn record() -> UserRecord {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec(), 128).unwrap();
        UserRecord::new(secret, CodeSettings::default(), NOW - 1000)
    }

    fn code(record: &UserRecord, at: i64) -> String {
        code_at(&record.secret, &record.code, at)
    }

    #[test]
    fn a_valid_code_is_accepted_once() {
        let record = record();
        let reply = code(&record, NOW);
        let first = judge(
            &record,
            Counters::default(),
            reply.as_bytes(),
            NOW,
            &policy(),
        );
        let step = record.code.step_at(NOW);
        assert_eq!(first.verdict, Verdict::Accepted(Proof::Code { step }));
        assert_eq!(first.counters.last_step, Some(step));

        let second = judge(
            &record,
            first.counters,
            reply.as_bytes(),
            NOW + 1,
            &policy(),
        );
        assert!(matches!(
            second.verdict,
            Verdict::Rejected {
                why: Rejection::Replay,
                failures: 1,
                ..
            }
        ));
    }

    #[test]
    fn an_older_code_after_a_newer_one_is_a_replay() {
        let record = record();
        let newer = judge(
            &record,
            Counters::default(),
            code(&record, NOW + 30).as_bytes(),
            NOW,
            &policy(),
        );
        assert!(matches!(newer.verdict, Verdict::Accepted(_)));
        let older = judge(
            &record,
            newer.counters,
            code(&record, NOW).as_bytes(),
            NOW,
            &policy(),
        );
        assert!(matches!(
            older.verdict,
            Verdict::Rejected {
                why: Rejection::Replay,
                ..
            }
        ));
    }

    #[test]
    fn failures_lead_to_a_lock_that_expires() {
        let record = record();
        let mut counters = Counters::default();
        for n in 1..=3 {
            let j = judge(&record, counters, b"000000x", NOW, &policy());
            counters = j.counters;
            let expect_lock = (n == 3).then_some(NOW + 300);
            assert_eq!(
                j.verdict,
                Verdict::Rejected {
                    why: Rejection::Malformed,
                    failures: n,
                    locked_until: expect_lock
                }
            );
        }
        let during = judge(
            &record,
            counters,
            code(&record, NOW).as_bytes(),
            NOW + 10,
            &policy(),
        );
        assert_eq!(
            during.verdict,
            Verdict::Locked {
                until: NOW + 300,
                failures: 3
            }
        );
        assert_eq!(during.counters, counters);

        let after = NOW + 301;
        let released = judge(
            &record,
            counters,
            code(&record, after).as_bytes(),
            after,
            &policy(),
        );
        assert!(matches!(released.verdict, Verdict::Accepted(_)));
        assert_eq!(released.counters.failures, 0);
        assert_eq!(released.counters.locked_until, 0);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let record = record();
        let failed = judge(&record, Counters::default(), b"123", NOW, &policy());
        assert_eq!(failed.counters.failures, 1);
        let ok = judge(
            &record,
            failed.counters,
            code(&record, NOW).as_bytes(),
            NOW,
            &policy(),
        );
        assert_eq!(ok.counters.failures, 0);
    }
}
