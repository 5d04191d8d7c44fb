//! How long a login takes through the fleet store, beside the file store,
//! measured inside a PAM application: a child process (this test binary
//! started again with nss_wrapper preloaded) runs many logins through the
//! real libpam, one `pam_start_confdir`/`pam_authenticate`/`pam_end` each,
//! and reports the time of every one. The database keeps fsync on.
//!
//! The test checks what the issue promises (every login right, none longer
//! than the deadline; a non-member, whom the module ignores, ends with
//! PAM_PERM_DENIED from libpam as the only module decided nothing) and prints the medians that docs/fleet.md and
//! docs/performance.md quote; `OTPGATE_FLEET_LATENCY_OUT=PATH` also writes
//! them to a file. Kinds of login: a member with a valid code (each login
//! another user, so every code is fresh), a member with a wrong code, a
//! user outside the groups; then 16 children at once, over both hosts.

mod common;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/pg.rs"]
mod pg;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{now, nss_wrapper_path, totp_code, TestEnv, DEFAULT_CONFIG, DEFAULT_SERVICE};
use fleet::{Fleet, SECRET};
use pamclient::{ConvMode, MessageLog, ScriptedConversation, Session};

const USERS: usize = 120;
const PARALLEL: usize = 16;
const DEADLINE: Duration = Duration::from_secs(3);

const CHILD_VARS: [&str; 5] = [
    "FLEET_LATENCY_CONFDIR",
    "FLEET_LATENCY_USERS",
    "FLEET_LATENCY_ANSWER",
    "FLEET_LATENCY_REPORT",
    "FLEET_LATENCY_EXPECT",
];

/// The child: logs in each listed user once and writes `<micros> <result>`
/// per login. Returns at once in a normal test run.
#[test]
fn fleet_latency_child() {
    let Ok(confdir) = std::env::var(CHILD_VARS[0]) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let answer = var(CHILD_VARS[2]);
    let mut report = String::new();
    for user in var(CHILD_VARS[1]).split(',') {
        let conversation =
            ScriptedConversation::new(&[answer.as_str()], ConvMode::Normal, MessageLog::default())
                .unwrap();
        let started = Instant::now();
        let mut session = Session::start_confdir(
            DEFAULT_SERVICE,
            Some(user.as_bytes()),
            Path::new(&confdir),
            Box::new(conversation),
        )
        .unwrap();
        session.skip_fail_delay().unwrap();
        let status = session.authenticate(0);
        drop(session);
        let took = started.elapsed().as_micros();
        writeln!(report, "{took} {}", pamclient::result_name(status)).unwrap();
    }
    std::fs::write(var(CHILD_VARS[3]), report).unwrap();
}

/// Starts a child logging in `users` on `env` with `answer`.
fn start_child(
    env: &TestEnv,
    users: &[String],
    answer: &str,
    tag: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let report = env.dir().join(format!("latency-{tag}.report"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fleet_latency_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .env(CHILD_VARS[0], env.pam_dir())
        .env(CHILD_VARS[1], users.join(","))
        .env(CHILD_VARS[2], answer)
        .env(CHILD_VARS[3], &report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, report)
}

/// The times of a finished child's logins; every result must be `expect`.
fn finish_child(child: std::process::Child, report: &Path, expect: &str) -> Vec<Duration> {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(report).unwrap();
    text.lines()
        .map(|line| {
            let (micros, result) = line.split_once(' ').unwrap();
            assert_eq!(result, expect, "{text}");
            Duration::from_micros(micros.parse().unwrap())
        })
        .collect()
}

fn run_child(env: &TestEnv, users: &[String], answer: &str, expect: &str) -> Vec<Duration> {
    let (child, report) = start_child(env, users, answer, expect);
    finish_child(child, &report, expect)
}

/// `median p90 max` in milliseconds.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "n={:4}  median {:7.2} ms  p90 {:7.2} ms  max {:7.2} ms",
        times.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    )
}

/// Adds `count` members of vms-admins named u0.. to `env`.
fn add_members(env: &mut TestEnv, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("u{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        env.add_user(name, 5000 + i as u32, 3001);
    }
    names
}

fn wrong_code() -> String {
    let window: Vec<String> = (0..5)
        .map(|i| totp_code(SECRET, 6, 30, "SHA1", now() - 60 + i * 30))
        .collect();
    (0..)
        .map(|n| format!("{:06}", 100_000 + n))
        .find(|c| !window.contains(c))
        .unwrap()
}

fn check_deadline(name: &str, times: &[Duration]) {
    let longest = times.iter().max().unwrap();
    assert!(*longest < DEADLINE, "{name}: a login took {longest:?}");
}

#[test]
fn logins_through_the_database_stay_within_the_deadline() {
    let base = DEFAULT_CONFIG.replace("max_failures = 5", "max_failures = 100");
    let db = pg::Cluster::start_with("fleet-latency", true);
    let mut fleet = Fleet::with_cluster(db, "fleet-latency", &base);
    let users = add_members(&mut fleet.a, USERS);
    add_members(&mut fleet.b, USERS);
    let hex: String = otpgate::secret::Secret::from_base32(SECRET, 128)
        .unwrap()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fleet.sql(&format!(
        "INSERT INTO otpgate.users (name, secret, digits, period, algorithm) \
         SELECT 'u' || i, decode('{hex}', 'hex'), 6, 30, 'SHA1' FROM generate_series(0, {}) i",
        USERS - 1
    ));
    // The same users in a file store, for the comparison.
    let files = TestEnv::new("latency-files");
    let mut files = files;
    add_members(&mut files, USERS);
    for user in &users {
        files.write_state(user, &format!("secret = \"{SECRET}\"\n"));
    }
    let mut out = String::new();

    // Sequential: warm the caches with one round first.
    run_child(&fleet.a, &users[..4], "000000x", "PAM_AUTH_ERR");
    let code = totp_code(SECRET, 6, 30, "SHA1", now());
    let kinds: [(&str, &TestEnv, &str, &str); 6] = [
        (
            "database, valid code",
            &fleet.a,
            code.as_str(),
            "PAM_SUCCESS",
        ),
        ("database, wrong code", &fleet.a, "", "PAM_AUTH_ERR"),
        ("database, not a member", &fleet.a, "", "PAM_PERM_DENIED"),
        ("files, valid code", &files, code.as_str(), "PAM_SUCCESS"),
        ("files, wrong code", &files, "", "PAM_AUTH_ERR"),
        ("files, not a member", &files, "", "PAM_PERM_DENIED"),
    ];
    let wrong = wrong_code();
    for (name, env, answer, expect) in kinds {
        let who: Vec<String> = match expect {
            "PAM_PERM_DENIED" => vec!["carol".to_string(); 50],
            _ => users.clone(),
        };
        let answer = if answer.is_empty() {
            wrong.as_str()
        } else {
            answer
        };
        let mut times = run_child(env, &who, answer, expect);
        check_deadline(name, &times);
        writeln!(out, "{name:28} {}", summary(&mut times)).unwrap();
    }

    // 16 children at once, half on each host, each with its own users.
    fleet.sql("UPDATE otpgate.users SET last_step = NULL");
    let per_child = USERS / PARALLEL;
    let code = totp_code(SECRET, 6, 30, "SHA1", now());
    let started = Instant::now();
    let children: Vec<_> = (0..PARALLEL)
        .map(|i| {
            let env = if i % 2 == 0 { &fleet.a } else { &fleet.b };
            let mine = &users[i * per_child..(i + 1) * per_child];
            start_child(env, mine, &code, &format!("parallel-{i}"))
        })
        .collect();
    let mut times: Vec<Duration> = children
        .into_iter()
        .flat_map(|(child, report)| finish_child(child, &report, "PAM_SUCCESS"))
        .collect();
    let wall = started.elapsed();
    check_deadline("parallel", &times);
    writeln!(
        out,
        "{:28} {}  ({} logins in {:.2} s)",
        "database, 16 at once, 2 hosts",
        summary(&mut times),
        times.len(),
        wall.as_secs_f64()
    )
    .unwrap();

    eprintln!("{out}");
    if let Ok(path) = std::env::var("OTPGATE_FLEET_LATENCY_OUT") {
        std::fs::write(path, &out).unwrap();
    }
}
