//! A login through the real libpam whose conversation reacts to what the
//! module says, as a person at a terminal would: it reads the otpauth URI
//! from the enrollment messages and answers each prompt with the code
//! `oathtool` computes for that URI at that moment. pam-drive answers from
//! a list fixed before the login starts, so it cannot finish an
//! enrollment, whose secret only exists once the login runs.
//!
//! nss_wrapper must be preloaded when a process starts, so the login runs
//! in a child: this test binary itself, started again with
//! `--exact live_login_child` and the variables below. The child writes
//! every message and the result to a report file the parent reads.
//!
//! Include it with `#[path = "support/live_login.rs"] mod live_login;`
//! after `mod common;`, and add the child test to the file:
//!
//! ```ignore
//! #[test]
//! fn live_login_child() {
//!     live_login::child_main();
//! }
//! ```

#![allow(dead_code)]

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pamclient::{Conversation, Message, Reply, Session};

use crate::common::{now, nss_wrapper_path, totp_code, TestEnv, DEFAULT_SERVICE};

const PLAN_VAR: &str = "OTPGATE_LIVE_PLAN";
const CONFDIR_VAR: &str = "OTPGATE_LIVE_CONFDIR";
const USER_VAR: &str = "OTPGATE_LIVE_USER";
const REPORT_VAR: &str = "OTPGATE_LIVE_REPORT";
const BARRIER_VAR: &str = "OTPGATE_LIVE_BARRIER";

/// How long a child waits for the others at a barrier.
const BARRIER_WAIT: Duration = Duration::from_secs(20);

/// What one live login saw and returned.
#[derive(Debug, Clone, Default)]
pub struct LiveLogin {
    /// `(style, text)`: style `prompt-echo-off`, `info`, `error`...
    pub messages: Vec<(String, String)>,
    /// The answers given, in order.
    pub answers: Vec<String>,
    /// The name of pam_authenticate's result, e.g. `PAM_SUCCESS`.
    pub result: String,
}

impl LiveLogin {
    pub fn infos(&self) -> Vec<&str> {
        self.texts("info")
    }

    pub fn errors(&self) -> Vec<&str> {
        self.texts("error")
    }

    pub fn prompts(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(style, _)| style.starts_with("prompt"))
            .map(|(_, text)| text.as_str())
            .collect()
    }

    fn texts(&self, wanted: &str) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(style, _)| style == wanted)
            .map(|(_, text)| text.as_str())
            .collect()
    }

    /// The text of the info message that starts with `prefix`, without it.
    pub fn info_after(&self, prefix: &str) -> String {
        self.infos()
            .iter()
            .find_map(|text| text.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no info {prefix:?} in {:?}", self.messages))
            .to_string()
    }
}

/// A live login being run by a child process.
pub struct Running {
    child: Child,
    report: PathBuf,
}

/// Starts a live login of `user` through the env's `otpgate-test` service.
/// With `barrier`, the child waits at the first prompt until `parties`
/// children reached it, so their answers arrive together.
pub fn start(env: &TestEnv, user: &str, barrier: Option<(&Path, usize)>) -> Running {
    let report = env.dir().join(format!("live-{user}-{}.report", unique()));
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "--exact",
            "live_login_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .env(PLAN_VAR, "answer-codes")
        .env(CONFDIR_VAR, env.pam_dir())
        .env(USER_VAR, user)
        .env(REPORT_VAR, &report);
    if let Some((dir, parties)) = barrier {
        command.env(BARRIER_VAR, format!("{}:{parties}", dir.display()));
    }

    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the live login child");
    Running { child, report }
}

/// Runs a live login and waits for it.
pub fn run(env: &TestEnv, user: &str) -> LiveLogin {
    start(env, user, None).wait()
}

fn unique() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst).to_string()
}

impl Running {
    /// Waits for the child and reads its report.
    pub fn wait(self) -> LiveLogin {
        let output = self
            .child
            .wait_with_output()
            .expect("waiting for the child");
        let report = fs::read_to_string(&self.report).unwrap_or_default();
        assert!(
            output.status.success() && report.contains("result "),
            "the live login child failed ({}):\n{report}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        parse_report(&report)
    }
}

fn parse_report(report: &str) -> LiveLogin {
    let mut login = LiveLogin::default();
    for line in report.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("msg"), Some(style), text) => login
                .messages
                .push((style.to_string(), unhex(text.unwrap_or_default()))),
            (Some("answer"), Some(text), _) => login.answers.push(unhex(text)),
            (Some("answer"), None, _) => login.answers.push(String::new()),
            (Some("result"), Some(name), _) => login.result = name.to_string(),
            _ => panic!("bad report line {line:?}"),
        }
    }
    login
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> String {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect();
    String::from_utf8(bytes).expect("UTF-8 message")
}

// ---------------------------------------------------------------------------
// The child

/// The child's whole work; returns at once in a normal test run.
pub fn child_main() {
    let Ok(plan) = std::env::var(PLAN_VAR) else {
        return;
    };
    assert_eq!(plan, "answer-codes");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let report = fs::File::create(var(REPORT_VAR)).expect("creating the report");
    let barrier = std::env::var(BARRIER_VAR).ok().map(|text| {
        let (dir, parties) = text.rsplit_once(':').expect("DIR:PARTIES");
        (
            PathBuf::from(dir),
            parties.parse().expect("a number of parties"),
        )
    });

    let conversation = Box::new(Live {
        report,
        uri: None,
        barrier,
    });
    let user = var(USER_VAR);
    let confdir = PathBuf::from(var(CONFDIR_VAR));
    let mut session = Session::start_confdir(
        DEFAULT_SERVICE,
        Some(user.as_bytes()),
        &confdir,
        conversation,
    )
    .unwrap_or_else(|code| panic!("pam_start_confdir failed: {code}"));

    let status = session.authenticate(0);
    drop(session);
    let mut report = fs::OpenOptions::new()
        .append(true)
        .open(var(REPORT_VAR))
        .expect("reopening the report");
    writeln!(report, "result {}", pamclient::result_name(status)).expect("writing the report");
}

/// The conversation of the child: records, and answers with codes.
struct Live {
    report: fs::File,
    /// The last otpauth URI the module showed.
    uri: Option<String>,
    barrier: Option<(PathBuf, usize)>,
}

impl Conversation for Live {
    fn converse(&mut self, messages: &[Message]) -> Reply {
        let mut answers = Vec::new();
        for message in messages {
            let style = message.style.to_string();
            writeln!(self.report, "msg {style} {}", hex(&message.text)).expect("report");
            let text = String::from_utf8_lossy(&message.text);
            if let Some(uri) = text.strip_prefix("URI: ") {
                self.uri = Some(uri.to_string());
            }

            let answer = message.style.is_prompt().then(|| self.answer());
            if let Some(answer) = &answer {
                writeln!(self.report, "answer {}", hex(answer.as_bytes())).expect("report");
            }
            answers.push(answer.map(|a| CString::new(a).expect("no NUL")));
        }
        Reply::Answers(answers)
    }
}

impl Live {
    /// The code for the URI seen, computed by oathtool, after the barrier.
    fn answer(&mut self) -> String {
        if let Some((dir, parties)) = self.barrier.take() {
            wait_at_barrier(&dir, parties);
        }
        let Some(uri) = &self.uri else {
            return String::new();
        };
        let settings = UriSettings::parse(uri);
        totp_code(
            &settings.secret,
            settings.digits,
            settings.period,
            &settings.algorithm,
            now(),
        )
    }
}

/// Marks this child as arrived and waits until `parties` have.
fn wait_at_barrier(dir: &Path, parties: usize) {
    fs::write(dir.join(format!("arrived-{}", std::process::id())), "").expect("barrier");
    let deadline = Instant::now() + BARRIER_WAIT;
    while Instant::now() < deadline {
        let arrived = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        if arrived >= parties {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("only some children reached the barrier");
}

/// The settings an app takes from an otpauth URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriSettings {
    pub secret: String,
    pub issuer: String,
    pub label: String,
    pub algorithm: String,
    pub digits: u32,
    pub period: u64,
}

impl UriSettings {
    /// Reads `otpauth://totp/LABEL?k=v&...` (the label stays encoded).
    pub fn parse(uri: &str) -> UriSettings {
        let rest = uri
            .strip_prefix("otpauth://totp/")
            .expect("an otpauth TOTP URI");
        let (label, query) = rest.split_once('?').expect("a query");
        let value = |key: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in {uri}"))
                .to_string()
        };
        UriSettings {
            secret: value("secret"),
            issuer: value("issuer"),
            label: label.to_string(),
            algorithm: value("algorithm"),
            digits: value("digits").parse().expect("digits"),
            period: value("period").parse().expect("period"),
        }
    }
}
