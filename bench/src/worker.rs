//! The worker: a long-lived process that logs users in through the real
//! libpam, one transaction after another, the way a server application that
//! authenticates its own users does. The parent starts it with nss_wrapper
//! preloaded and hands it users a block at a time, so that the workers of
//! the modules compared can take turns: whatever else the machine is doing
//! then slows every module alike, while each module still has the disk to
//! itself during its block (logins of different modules interleaved one by
//! one would make each wait for the others' journal commits).
//!
//! Protocol (one line each): worker → `ready`; then, as often as the parent
//! likes, parent → `go <n>`, worker logs the next n users in and answers
//! `done us=<total microseconds> logins=<n> results=<code>x<count>,...`;
//! the worker ends when its input does.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pamclient::{Conversation, Message, Reply, Session};

use crate::accounts;

/// What each login answers to the prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The code the user's app shows now.
    Current,
    /// A well-formed code that is wrong.
    Wrong,
    /// The same given code for every login.
    Fixed(String),
}

/// One worker's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub confdir: PathBuf,
    /// The PAM service (a file in `confdir`).
    pub service: String,
    pub users: Vec<String>,
    pub answer: Answer,
}

impl Job {
    /// The command-line arguments that give this job to a worker.
    pub fn to_args(&self) -> Vec<String> {
        let answer = match &self.answer {
            Answer::Current => "current".to_string(),
            Answer::Wrong => "wrong".to_string(),
            Answer::Fixed(code) => format!("fixed:{code}"),
        };
        vec![
            "worker".to_string(),
            self.confdir.display().to_string(),
            self.service.clone(),
            answer,
            self.users.join(","),
        ]
    }

    /// The job from [`Job::to_args`] (without the leading `worker`).
    pub fn from_args(args: &[String]) -> Result<Job, String> {
        let [confdir, service, answer, users] = args else {
            return Err("worker: CONFDIR SERVICE ANSWER USERS".to_string());
        };
        let answer = match answer.as_str() {
            "current" => Answer::Current,
            "wrong" => Answer::Wrong,
            other => match other.strip_prefix("fixed:") {
                Some(code) => Answer::Fixed(code.to_string()),
                None => return Err(format!("worker: unknown answer {other}")),
            },
        };
        Ok(Job {
            confdir: PathBuf::from(confdir),
            service: service.clone(),
            users: users.split(',').map(str::to_string).collect(),
            answer,
        })
    }
}

/// Answers every prompt with one code and ignores other messages.
struct CodeReply {
    code: CString,
}

impl Conversation for CodeReply {
    fn converse(&mut self, messages: &[Message]) -> Reply {
        let answers = messages
            .iter()
            .map(|m| m.style.is_prompt().then(|| self.code.clone()))
            .collect();
        Reply::Answers(answers)
    }
}

/// Runs a job under the protocol above.
pub fn run(job: &Job) -> Result<(), String> {
    // One login of a user outside the group, untimed: libpam, nss_wrapper's
    // caches and a module that stays loaded are warm, as in a server that
    // has been up for a while.
    login(job, accounts::OUTSIDER, "000000")?;
    let stdout = io::stdout();
    writeln!(stdout.lock(), "ready").map_err(|e| e.to_string())?;

    let mut users = job.users.iter();
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let count = parse_go(&line)?;
        let block: Vec<&String> = users.by_ref().take(count).collect();
        let done = run_logins(job, &block)?;
        writeln!(stdout.lock(), "{}", done.to_line()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The count of a `go <n>` line.
fn parse_go(line: &str) -> Result<usize, String> {
    line.trim()
        .strip_prefix("go ")
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| format!("worker: expected go <count>, got {line:?}"))
}

/// Logs each user of a block in once; times only the PAM transactions.
fn run_logins(job: &Job, users: &[&String]) -> Result<Done, String> {
    let mut done = Done::default();
    for user in users {
        let now = accounts::now();
        let code = match &job.answer {
            Answer::Current => accounts::code(user, now),
            Answer::Wrong => accounts::wrong_code(user, now),
            Answer::Fixed(code) => code.clone(),
        };

        let started = Instant::now();
        let status = login(job, user, &code)?;
        done.add(started.elapsed(), status);
    }
    Ok(done)
}

/// One PAM transaction: start, authenticate, end. Fail delays are recorded
/// instead of slept, for every module alike.
fn login(job: &Job, user: &str, code: &str) -> Result<i32, String> {
    let code = CString::new(code).map_err(|e| e.to_string())?;
    let mut session = Session::start_confdir(
        &job.service,
        Some(user.as_bytes()),
        &job.confdir,
        Box::new(CodeReply { code }),
    )
    .map_err(|status| format!("pam_start_confdir: {status}"))?;
    session
        .skip_fail_delay()
        .map_err(|status| format!("PAM_FAIL_DELAY: {status}"))?;

    let status = session.authenticate(0);
    drop(session);
    Ok(status)
}

/// What a worker reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub micros: u64,
    pub logins: usize,
    pub results: BTreeMap<i32, usize>,
}

impl Done {
    /// Adds another report of the same worker.
    pub fn merge(&mut self, other: &Done) {
        self.micros += other.micros;
        self.logins += other.logins;
        for (code, count) in &other.results {
            *self.results.entry(*code).or_insert(0) += count;
        }
    }

    /// Counts one login that took `took` and ended with `status`.
    pub fn add(&mut self, took: Duration, status: i32) {
        self.micros += took.as_micros() as u64;
        self.logins += 1;
        *self.results.entry(status).or_insert(0) += 1;
    }

    /// The `done` line for this report.
    pub fn to_line(&self) -> String {
        let results: Vec<String> = self
            .results
            .iter()
            .map(|(code, count)| format!("{code}x{count}"))
            .collect();
        format!(
            "done us={} logins={} results={}",
            self.micros,
            self.logins,
            results.join(",")
        )
    }

    /// Parses a `done` line.
    pub fn parse(line: &str) -> Result<Done, String> {
        let mut done = Done::default();
        let rest = line
            .trim()
            .strip_prefix("done ")
            .ok_or_else(|| format!("not a done line: {line:?}"))?;
        for field in rest.split(' ') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("bad field {field:?}"))?;
            match key {
                "us" => done.micros = number(value)?,
                "logins" => done.logins = number(value)?,
                "results" => done.results = parse_results(value)?,
                _ => return Err(format!("unknown field {key}")),
            }
        }
        Ok(done)
    }
}

fn parse_results(text: &str) -> Result<BTreeMap<i32, usize>, String> {
    let mut results = BTreeMap::new();
    for entry in text.split(',').filter(|e| !e.is_empty()) {
        let (code, count) = entry
            .split_once('x')
            .ok_or_else(|| format!("bad result {entry:?}"))?;
        results.insert(number(code)?, number(count)?);
    }
    Ok(results)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_the_command_line() {
        for answer in [
            Answer::Current,
            Answer::Wrong,
            Answer::Fixed("123456".into()),
        ] {
            let job = Job {
                confdir: PathBuf::from("/x/pam.d"),
                service: "oath".into(),
                users: vec!["u0001".into(), "u0002".into()],
                answer,
            };
            let args = job.to_args();
            assert_eq!(args[0], "worker");
            assert_eq!(Job::from_args(&args[1..]), Ok(job));
        }
    }

    #[test]
    fn go_lines_carry_a_count() {
        assert_eq!(parse_go("go 100\n"), Ok(100));
        assert!(parse_go("go").is_err());
        assert!(parse_go("stop").is_err());
    }

    #[test]
    fn reports_of_blocks_add_up() {
        let mut total = Done::parse("done us=10 logins=2 results=0x2").unwrap();
        total.merge(&Done::parse("done us=5 logins=1 results=7x1").unwrap());
        assert_eq!(total.to_line(), "done us=15 logins=3 results=0x2,7x1");
    }

    #[test]
    fn done_lines_parse() {
        let done = Done::parse("done us=1234 logins=3 results=0x2,7x1\n").unwrap();
        assert_eq!(done.micros, 1234);
        assert_eq!(done.logins, 3);
        assert_eq!(done.results, BTreeMap::from([(0, 2), (7, 1)]));
        assert_eq!(Done::parse(&done.to_line()), Ok(done));
        assert!(Done::parse("ready").is_err());
        assert!(Done::parse("done us=x").is_err());
    }
}
