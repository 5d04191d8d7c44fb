//! The PostgreSQL fleet store through the real libpam: two servers (test
//! envs presenting the host names vm-a and vm-b) share one throw-away
//! database with TLS and client certificates. Enrollment, replay protection
//! and lockout hold across both; the servers' role cannot read a secret;
//! an unreachable, silent, untrusted or lost database refuses members within
//! the deadline and leaves everyone else alone; `store copy` moves users
//! both ways; and the database applies the same rules as the files.

mod common;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/live_login.rs"]
mod live_login;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/proxy.rs"]
mod proxy;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{now, totp_code, TestEnv, DEFAULT_CONFIG};
use fleet::{Fleet, SECRET};
use otpgate::config::{Config, Lockout};
use otpgate::secret::Secret;
use otpgate::store::files::FileStore;
use otpgate::store::postgres::Budget;
use otpgate::store::record::UserRecord;
use otpgate::store::{Store, StoreError};
use otpgate::totp::CodeSettings;
use otpgate::users::UserName;
use otpgate::verify::{Policy, Proof, Verdict};

/// The child process of every live login (see tests/support/live_login.rs).
#[test]
fn live_login_child() {
    live_login::child_main();
}

fn code_at(offset_steps: i64) -> String {
    totp_code(
        SECRET,
        6,
        30,
        "SHA1",
        (now() as i64 + offset_steps * 30) as u64,
    )
}

/// A well-formed code that matches no step in the accepted window.
fn wrong_code() -> String {
    let window: Vec<String> = (-2..=2).map(code_at).collect();
    (0..)
        .map(|n| format!("{:06}", 100_000 + n))
        .find(|c| !window.contains(c))
        .unwrap()
}

fn decisions(env: &TestEnv) -> Vec<String> {
    env.audit_lines()
        .into_iter()
        .filter(|line| line.contains("result="))
        .collect()
}

fn last_decision(env: &TestEnv) -> String {
    decisions(env).pop().expect("a decision line")
}

fn base_with(max_failures: u32) -> String {
    DEFAULT_CONFIG.replace(
        "max_failures = 5",
        &format!("max_failures = {max_failures}"),
    )
}

fn user(name: &str) -> UserName {
    UserName::parse(name.as_bytes()).unwrap()
}

// ---------------------------------------------------------------------------
// One enrollment, one use of each code, one lockout

#[test]
fn enrolled_at_login_on_a_then_a_code_works_on_one_host_only() {
    let fleet = Fleet::new(
        "fleet-once",
        &DEFAULT_CONFIG.replace("mode = \"admin-only\"", "mode = \"at-login\""),
    );

    // Enrollment at login on A: the secret goes to the database.
    let first = live_login::run(&fleet.a, "alice");
    assert_eq!(first.result, "PAM_SUCCESS", "{first:?}");
    let secret = live_login::UriSettings::parse(&first.info_after("URI: ")).secret;
    assert!(
        fleet.a.state_dir().read_dir().unwrap().next().is_none(),
        "no file written"
    );
    let enrolled_on = fleet.sql("SELECT enrolled_on FROM otpgate.users WHERE name = 'alice'");
    assert_eq!(enrolled_on, "vm-a");

    // The next code is accepted on B once, and refused on A after that.
    let step: u64 = fleet
        .sql("SELECT last_step FROM otpgate.users WHERE name = 'alice'")
        .parse()
        .unwrap();
    let next = totp_code(&secret, 6, 30, "SHA1", (step + 1) * 30);
    let on_b = fleet.b.login("alice").answer(&next).run();
    let on_a = fleet.a.login("alice").answer(&next).run();

    assert_eq!(on_b.result(), "PAM_SUCCESS", "{:?}", decisions(&fleet.b));
    assert_eq!(on_a.result(), "PAM_AUTH_ERR");
    assert!(last_decision(&fleet.a).contains("result=denied reason=replay user=alice"));
    let trail = fleet.sql(
        "SELECT string_agg(host || ':' || event || ':' || detail, ' ' ORDER BY id) \
         FROM otpgate.audit WHERE name = 'alice'",
    );
    assert_eq!(trail, "vm-a:enrolled: vm-b:success:code vm-a:denied:replay");
}

#[test]
fn two_first_logins_on_two_hosts_save_one_secret() {
    let fleet = Fleet::new(
        "fleet-race",
        &DEFAULT_CONFIG.replace("mode = \"admin-only\"", "mode = \"at-login\""),
    );
    let barrier = fleet.a.dir().join("barrier");
    std::fs::create_dir(&barrier).unwrap();

    let on_a = live_login::start(&fleet.a, "dave", Some((&barrier, 2)));
    let on_b = live_login::start(&fleet.b, "dave", Some((&barrier, 2)));
    let (on_a, on_b) = (on_a.wait(), on_b.wait());

    let results = [on_a.result.as_str(), on_b.result.as_str()];
    assert_eq!(
        results.iter().filter(|r| **r == "PAM_SUCCESS").count(),
        1,
        "{on_a:?} {on_b:?}"
    );
    let winner = if on_a.result == "PAM_SUCCESS" {
        &on_a
    } else {
        &on_b
    };
    let loser = if on_a.result == "PAM_SUCCESS" {
        &on_b
    } else {
        &on_a
    };
    assert!(loser
        .errors()
        .iter()
        .any(|e| e.contains("finished setup first")));
    let saved = fleet.sql("SELECT encode(secret, 'hex') FROM otpgate.users WHERE name = 'dave'");
    let shown = live_login::UriSettings::parse(&winner.info_after("URI: ")).secret;
    let shown = Secret::from_base32(&shown, 128).unwrap();
    let hex: String = shown
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(saved, hex);
}

#[test]
fn sixteen_parallel_logins_over_two_hosts_with_one_code_give_one_success() {
    let fleet = Fleet::new("fleet-16", &base_with(100));
    fleet.enroll("alice");
    let code = code_at(0);

    let running: Vec<_> = (0..16)
        .map(|i| {
            let env = if i % 2 == 0 { &fleet.a } else { &fleet.b };
            env.login("alice").answer(&code).spawn()
        })
        .collect();
    let results: Vec<String> = running
        .into_iter()
        .map(|login| login.wait().result().to_string())
        .collect();

    let successes = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
    assert_eq!(successes, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"));
    let mut lines = decisions(&fleet.a);
    lines.extend(decisions(&fleet.b));
    let replays = lines.iter().filter(|l| l.contains("reason=replay")).count();
    assert_eq!(replays, 15, "{lines:?}");
}

#[test]
fn failures_on_both_hosts_add_up_to_one_lockout_that_unlock_clears() {
    let fleet = Fleet::new("fleet-lock", &base_with(3));
    fleet.enroll("alice");
    let wrong = wrong_code();

    let first = fleet.a.login("alice").answer(&wrong).run();
    let second = fleet.b.login("alice").answer(&wrong).run();
    let third = fleet.a.login("alice").answer(&wrong).run();
    let valid_on_b = fleet.b.login("alice").answer(&code_at(0)).run();

    assert_eq!(first.result(), "PAM_AUTH_ERR");
    assert!(
        decisions(&fleet.b)[0].ends_with("failures=2/3"),
        "{:?}",
        decisions(&fleet.b)
    );
    assert_eq!(third.result(), "PAM_AUTH_ERR");
    assert!(last_decision(&fleet.a).ends_with("failures=3/3"));
    assert_eq!(second.result(), "PAM_AUTH_ERR");
    assert_eq!(valid_on_b.result(), "PAM_MAXTRIES");
    assert!(last_decision(&fleet.b).contains("result=locked reason=locked_out user=alice"));

    // One unlock clears it for every host.
    let unlock = fleet.admin(&["unlock", "alice"]);
    assert_eq!(unlock.code, 0, "{unlock:?}");
    assert_eq!(
        fleet.b.login("alice").answer(&code_at(0)).run().result(),
        "PAM_SUCCESS"
    );
    assert_eq!(
        fleet.a.login("alice").answer(&code_at(1)).run().result(),
        "PAM_SUCCESS"
    );
}

// ---------------------------------------------------------------------------
// Roles

#[test]
fn the_servers_role_cannot_read_secrets_and_the_admin_role_resets_and_unlocks() {
    let fleet = Fleet::with_default_config("fleet-roles");
    fleet.enroll("alice");

    // db init again and db migrate change nothing and keep the data.
    let again = fleet.otpgate_with("init.toml", &["db", "init"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("version 1 (was 1)"), "{again:?}");
    let migrate = fleet.otpgate_with("init.toml", &["db", "migrate"]);
    assert!(
        migrate.stdout.contains("already at version 1"),
        "{migrate:?}"
    );
    assert_eq!(fleet.sql("SELECT count(*) FROM otpgate.users"), "1");

    for sql in [
        "SELECT secret FROM otpgate.users",
        "SELECT count(*) FROM otpgate.audit",
        "UPDATE otpgate.users SET failures = 0",
        "SELECT otpgate.code_at_step('\\x00'::bytea, 'SHA1', 6, 1)",
    ] {
        let output = fleet.db.psql_tls(pg::SERVER_ROLE, sql);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{sql} worked for the servers' role"
        );
        assert!(stderr.contains("permission denied"), "{sql}: {stderr}");
    }
    let peek = fleet.db.psql_tls(
        pg::SERVER_ROLE,
        "SELECT enrolled FROM otpgate.peek('alice')",
    );
    assert_eq!(String::from_utf8_lossy(&peek.stdout).trim(), "t");
    let admin = fleet
        .db
        .psql_tls(pg::ADMIN_ROLE, "SELECT length(secret) FROM otpgate.users");
    assert_eq!(String::from_utf8_lossy(&admin.stdout).trim(), "20");

    // check-config makes a login's call with the servers' config.
    let server_config = fleet.a.config_path();
    let check = fleet::otpgate_command(&fleet.a, &server_config)
        .arg("check-config")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(said.contains("no problems found"), "{said}");

    // The servers' config cannot administer; the admin's can.
    let refused = fleet::otpgate_command(&fleet.a, &server_config)
        .args(["unlock", "alice"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("permission denied"));
    assert_eq!(fleet.admin(&["unlock", "alice"]).code, 0);
    let status = fleet.admin(&["status", "alice"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("alice"), "{status:?}");
    // New recovery codes through the admin role; one logs in on B, once.
    let issued = fleet.admin(&["recovery-codes", "alice"]);
    assert_eq!(issued.code, 0, "{issued:?}");
    let recovery = issued
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 11 && l.as_bytes()[5] == b'-')
        .unwrap_or_else(|| panic!("no recovery code in {issued:?}"))
        .to_string();
    let with_recovery = fleet.b.login("alice").answer(&recovery).run();
    assert_eq!(
        with_recovery.result(),
        "PAM_SUCCESS",
        "{:?}",
        decisions(&fleet.b)
    );
    assert!(last_decision(&fleet.b).contains("reason=recovery_code"));
    assert_eq!(
        fleet.a.login("alice").answer(&recovery).run().result(),
        "PAM_AUTH_ERR"
    );
    let allow = fleet.admin(&["allow", "dave"]);
    assert_eq!(allow.code, 0, "{allow:?}");
    assert_eq!(fleet.sql("SELECT name FROM otpgate.allowances"), "dave");

    let reset = fleet.admin(&["reset", "alice"]);
    assert_eq!(reset.code, 0, "{reset:?}");
    assert!(reset.stdout.contains("otpgate.removed_users"), "{reset:?}");

    let after = fleet.b.login("alice").answer(&code_at(0)).run();
    assert_eq!(after.result(), "PAM_AUTH_ERR");
    assert!(last_decision(&fleet.b).contains("reason=not_enrolled"));
    assert_eq!(fleet.sql("SELECT count(*) FROM otpgate.removed_users"), "1");
}

// ---------------------------------------------------------------------------
// Failure is closed

/// carol, in no configured group, logs in through a stack that goes on to
/// pam_permit, without waiting for the store: the module never asks it.
fn assert_outsider_unaffected(env: &TestEnv, deadline: Duration, what: &str) {
    env.write_service(
        "with-permit",
        "auth required {module} config={config}\nauth required pam_permit.so\n",
    );
    let started = Instant::now();
    let carol = env.login("carol").service("with-permit").run();
    let took = started.elapsed();

    assert_eq!(carol.result(), "PAM_SUCCESS", "{what}: {}", carol.stdout);
    assert!(took < deadline, "{what}: carol waited {took:?}");
}

/// Runs a login of alice and of carol (not a member) on `env`; alice must
/// be refused with store_unavailable within the deadline plus one second.
fn assert_refused_in_time(env: &TestEnv, deadline: Duration, what: &str) -> String {
    let started = Instant::now();
    let login = env.login("alice").answer(&code_at(0)).run();
    let took = started.elapsed();

    assert_eq!(
        login.result(),
        "PAM_AUTHINFO_UNAVAIL",
        "{what}: {}",
        login.stdout
    );
    assert!(
        took < deadline + Duration::from_secs(1),
        "{what}: took {took:?}"
    );
    let line = last_decision(env);
    assert!(
        line.contains("result=error reason=store_unavailable user=alice"),
        "{what}: {line}"
    );
    assert_outsider_unaffected(env, deadline, what);
    line
}

#[test]
fn a_stopped_database_refuses_members_only_and_logins_resume_after() {
    let fleet = Fleet::with_default_config("fleet-down");
    fleet.enroll("alice");
    fleet.db.stop();

    assert_refused_in_time(&fleet.a, Duration::from_secs(3), "stopped");
    assert_refused_in_time(&fleet.b, Duration::from_secs(3), "stopped");

    // Back up: logins work again, and logins do not pile up descriptors
    // (the name lookup of host B's "localhost" included): at most one may
    // stay for the life of the process, from loading libpq and OpenSSL
    // for good, never one per login, and none without close-on-exec.
    fleet.db.restart();
    let login = fleet.a.login("alice").answer(&code_at(0)).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{:?}", decisions(&fleet.a));
    let repeated = fleet
        .b
        .login("alice")
        .answer(&code_at(1))
        .repeat(4)
        .report_process()
        .run();
    let results: Vec<&str> = repeated.results.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(results[0], "PAM_SUCCESS");
    assert!(
        results[1..].iter().all(|r| *r == "PAM_AUTH_ERR"),
        "{results:?}"
    );
    let reports = repeated.process_reports();
    assert!(
        reports[1].fds <= reports[0].fds + 1,
        "{:?}",
        repeated.process
    );
    assert_eq!(reports[1].cloexec_leaks, 0, "{:?}", repeated.process);
}

#[test]
fn a_slow_database_and_one_stopped_during_a_login_refuse_it() {
    let fleet = Fleet::with_default_config("fleet-during");
    fleet.enroll("alice");

    // An administrator's transaction holds alice's row: the login waits
    // in verify until the database goes away under it.
    let holder = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'BEGIN; SELECT 1 FROM otpgate.users WHERE name = %s FOR UPDATE; SELECT pg_sleep(20);' \"'alice'\" \
             | psql -X -q -h {} -p {} -U postgres -d otpgate >/dev/null 2>&1",
            fleet.db.socket_dir().display(),
            fleet.db.port
        ))
        .spawn()
        .unwrap();
    wait_for_lock_holder(&fleet);

    // Slow past the deadline: B, with 1 s, gives up on the locked row.
    fleet.use_server_config(&fleet.b, "localhost", "deadline_ms = 1000\n");
    let line = assert_refused_in_time(&fleet.b, Duration::from_secs(1), "slow");
    // The database's own lock_timeout (the deadline too) may answer first.
    let gave_up = line.contains("deadline\\x20passed") || line.contains("lock\\x20timeout");
    assert!(gave_up, "{line}");

    // Stopped under a waiting login.
    let started = Instant::now();
    let login = fleet.a.login("alice").answer(&code_at(0)).spawn();
    std::thread::sleep(Duration::from_millis(700));
    fleet.db.stop();
    let login = login.wait();
    let took = started.elapsed();
    let mut holder = holder;
    let _ = holder.wait();

    assert_eq!(login.result(), "PAM_AUTHINFO_UNAVAIL", "{}", login.stdout);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(last_decision(&fleet.a).contains("reason=store_unavailable"));
    assert_outsider_unaffected(&fleet.a, Duration::from_secs(3), "during");
}

fn wait_for_lock_holder(fleet: &Fleet) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let waiting = fleet.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' \
             AND pid <> pg_backend_pid()",
        );
        if waiting == "1" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the lock holder never started");
}

#[test]
fn a_silent_listener_a_wrong_ca_and_a_slow_first_host_are_handled_in_time() {
    let fleet = Fleet::with_default_config("fleet-silent");
    fleet.enroll("alice");
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let deadline = Duration::from_millis(1500);

    // A listener that accepts (the kernel does) and never answers.
    let section = fleet
        .db
        .store_section(
            pg::SERVER_ROLE,
            "127.0.0.1",
            &fleet.db.ca_file(),
            "deadline_ms = 1500\n",
        )
        .replace(
            &format!("port = {}", fleet.db.port),
            &format!("port = {silent_port}"),
        );
    fleet
        .a
        .write_config(&format!("{DEFAULT_CONFIG}\n{section}"));
    let line = assert_refused_in_time(&fleet.a, deadline, "silent listener");
    assert!(line.contains("deadline\\x20passed"), "{line}");

    // A server certificate from another CA.
    let wrong_ca = fleet.db.wrong_ca_file();
    fleet.use_server_config(&fleet.a, "127.0.0.1", "deadline_ms = 1500\n");
    let section = fleet.db.store_section(
        pg::SERVER_ROLE,
        "127.0.0.1",
        &wrong_ca,
        "deadline_ms = 1500\n",
    );
    fleet
        .a
        .write_config(&format!("{DEFAULT_CONFIG}\n{section}"));
    let line = assert_refused_in_time(&fleet.a, deadline, "wrong CA");
    assert!(line.contains("certificate"), "{line}");
    let check = fleet::otpgate_command(&fleet.a, &fleet.a.config_path())
        .arg("check-config")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains("the database store does not answer"),
        "{said}"
    );
    assert!(said.contains("certificate verify failed"), "{said}");

    // Two hosts: the silent one first gets half the deadline, then the
    // database answers.
    let section = fleet
        .db
        .store_section(
            pg::SERVER_ROLE,
            "127.0.0.1",
            &fleet.db.ca_file(),
            "deadline_ms = 3000\n",
        )
        .replace(
            "hosts = [\"127.0.0.1\"]",
            "hosts = [\"127.0.0.2\", \"127.0.0.1\"]",
        );
    let silent_too = TcpListener::bind(("127.0.0.2", fleet.db.port));
    fleet
        .a
        .write_config(&format!("{DEFAULT_CONFIG}\n{section}"));
    let login = fleet.a.login("alice").answer(&code_at(0)).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{:?}", decisions(&fleet.a));
    drop((silent, silent_too));
}

#[test]
fn an_ambiguous_commit_is_refused_and_the_next_login_is_consistent() {
    let fleet = Fleet::with_default_config("fleet-ambiguous");
    fleet.enroll("alice");
    let proxy = proxy::Proxy::start(fleet.db.port);
    let section = fleet
        .db
        .store_section(pg::SERVER_ROLE, "127.0.0.1", &fleet.db.ca_file(), "")
        .replace(
            &format!("port = {}", fleet.db.port),
            &format!("port = {}", proxy.port),
        );
    fleet
        .a
        .write_config(&format!("{DEFAULT_CONFIG}\n{section}"));
    let config = Config::load(&fleet.a.config_path()).unwrap();
    let store = otpgate::store::open(&config, Budget::PerLogin);
    let alice = user("alice");
    let code = code_at(0);

    // The connection is made by peek; the reply to verify is lost.
    assert!(matches!(
        store.peek(&alice, 0),
        Ok(otpgate::store::Peek::Enrolled { .. })
    ));
    proxy.arm();
    let lost = store.verify(&alice, code.as_bytes(), 0, &policy(5));

    assert!(proxy.has_cut());
    assert!(matches!(lost, Err(StoreError::Unavailable(_))), "{lost:?}");
    // The database did take the step: the same code is now a replay on
    // every host, and the next code logs in.
    let again = fleet.b.login("alice").answer(&code).run();
    assert_eq!(again.result(), "PAM_AUTH_ERR");
    assert!(last_decision(&fleet.b).contains("reason=replay"));
    assert_eq!(
        fleet.b.login("alice").answer(&code_at(1)).run().result(),
        "PAM_SUCCESS"
    );
}

// ---------------------------------------------------------------------------
// store copy

#[test]
fn store_copy_moves_users_with_state_both_ways() {
    let fleet = Fleet::with_default_config("fleet-copy");
    // A files server with state: alice logged in once, dave may enroll.
    let files_server = TestEnv::new("fleet-copy-files");
    files_server.write_state("alice", &format!("secret = \"{SECRET}\"\n"));
    let used = code_at(-1);
    assert_eq!(
        files_server.login("alice").answer(&used).run().result(),
        "PAM_SUCCESS"
    );
    FileStore::new(&files_server.state_dir())
        .allow(&user("dave"))
        .unwrap();
    copy_state(&files_server.state_dir(), &fleet.a.state_dir());

    let dry = fleet.admin(&[
        "store",
        "copy",
        "--from",
        "files",
        "--to",
        "postgres",
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("alice: copied") && dry.stdout.contains("would be copied"));
    assert_eq!(fleet.sql("SELECT count(*) FROM otpgate.users"), "0");

    let copied = fleet.admin(&["store", "copy", "--from", "files", "--to", "postgres"]);
    let again = fleet.admin(&["store", "copy", "--from", "files", "--to", "postgres"]);
    assert_eq!(copied.code, 0, "{copied:?}");
    assert!(
        copied
            .stdout
            .contains("alice: copied\ndave: allowance copied\n"),
        "{copied:?}"
    );
    assert!(
        again.stdout.contains("alice: unchanged\ndave: unchanged\n"),
        "{again:?}"
    );

    // The used code stays used on the database; the next one logs in.
    assert_eq!(
        fleet.b.login("alice").answer(&used).run().result(),
        "PAM_AUTH_ERR"
    );
    assert_eq!(
        fleet.b.login("alice").answer(&code_at(0)).run().result(),
        "PAM_SUCCESS"
    );

    // And back to files: an empty state folder gets the database's state.
    for entry in std::fs::read_dir(fleet.a.state_dir()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let back = fleet.admin(&["store", "copy", "--from", "postgres", "--to", "files"]);
    let back_again = fleet.admin(&["store", "copy", "--from", "postgres", "--to", "files"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(back.stdout.contains("alice: copied"), "{back:?}");
    assert!(
        back_again.stdout.contains("alice: unchanged"),
        "{back_again:?}"
    );
    let files_config =
        DEFAULT_CONFIG.replace("{state_dir}", &fleet.a.state_dir().to_string_lossy());
    files_server.write_config(&files_config);
    assert_eq!(
        files_server
            .login("alice")
            .answer(&code_at(0))
            .run()
            .result(),
        "PAM_AUTH_ERR"
    );
    assert_eq!(
        files_server
            .login("alice")
            .answer(&code_at(1))
            .run()
            .result(),
        "PAM_SUCCESS"
    );
    assert!(FileStore::new(&fleet.a.state_dir())
        .is_allowed(&user("dave"))
        .unwrap());
}

fn copy_state(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ---------------------------------------------------------------------------
// The same rules in both stores

fn policy(max_failures: u32) -> Policy {
    Policy {
        skew: 1,
        lockout: Lockout {
            max_failures,
            lock_seconds: 300,
        },
    }
}

/// A verdict without its lock time (the two stores read two clocks).
fn shape(verdict: Option<Verdict>) -> String {
    match verdict {
        Some(Verdict::Rejected {
            why,
            failures,
            locked_until,
        }) => format!(
            "rejected {why:?} {failures} locked={}",
            locked_until.is_some()
        ),
        Some(Verdict::Locked { failures, .. }) => format!("locked {failures}"),
        Some(Verdict::Accepted(Proof::Code { .. })) => "code".to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_database_judges_every_case_as_the_files_do() {
    let fleet = Fleet::with_default_config("fleet-rules");
    let files_dir = tempfile_dir(&fleet);
    let files = FileStore::new(&files_dir);
    let admin = otpgate::store::open(
        &Config::load(&fleet.a.dir().join("etc/admin.toml")).unwrap(),
        Budget::PerCall,
    );
    let server = otpgate::store::open(
        &Config::load(&fleet.a.config_path()).unwrap(),
        Budget::PerCall,
    );
    let recovery = "12345-67890";
    let mut record = UserRecord::new(
        Secret::from_base32(SECRET, 128).unwrap(),
        CodeSettings::default(),
        1,
    );
    record.recovery_codes = vec![
        otpgate::recovery::hash(recovery).unwrap(),
        otpgate::recovery::hash("55555-55555").unwrap(),
    ];
    let alice = user("alice");
    files.enroll(&alice, &record, None, false).unwrap();
    admin.enroll(&alice, &record, None, false).unwrap();

    let unlock = "unlock";
    let cases: Vec<(&str, String)> = vec![
        ("a valid code", code_at(0)),
        ("the same code again", code_at(0)),
        ("an older code", code_at(-1)),
        ("a code for the next step", code_at(1)),
        ("too short", "12345".to_string()),
        ("letters", "abcdef".to_string()),
        ("a wrong code", wrong_code()),
        ("the used code again", code_at(1)),
        ("anything while locked", code_at(0)),
        (unlock, String::new()),
        ("a recovery code", " 12345 67890 ".to_string()),
        ("the same recovery code", recovery.to_string()),
        ("empty", String::new()),
        ("the other recovery code", "5555555555".to_string()),
        ("no such user", String::new()),
    ];
    let mut seen = Vec::new();
    for (what, reply) in &cases {
        if *what == unlock {
            assert!(files.unlock(&alice).unwrap() && admin.unlock(&alice).unwrap());
            continue;
        }
        let who = if *what == "no such user" {
            user("nobody")
        } else {
            alice.clone()
        };
        let now = now() as i64;
        let on_files = files
            .verify(&who, reply.as_bytes(), now, &policy(4))
            .unwrap();
        let on_database = server
            .verify(&who, reply.as_bytes(), now, &policy(4))
            .unwrap();
        assert_eq!(shape(on_files), shape(on_database), "{what}");
        seen.push(format!("{what}: {}", shape(on_database)));
    }
    let expected = [
        "a valid code: code",
        "the same code again: rejected Replay 1 locked=false",
        "an older code: rejected Replay 2 locked=false",
        "a code for the next step: code",
        "too short: rejected Malformed 1 locked=false",
        "letters: rejected Malformed 2 locked=false",
        "a wrong code: rejected WrongCode 3 locked=false",
        "the used code again: rejected Replay 4 locked=true",
        "anything while locked: locked 4",
        "a recovery code: Some(Accepted(RecoveryCode { left: 1 }))",
        "the same recovery code: rejected Malformed 1 locked=false",
        "empty: rejected Malformed 2 locked=false",
        "the other recovery code: Some(Accepted(RecoveryCode { left: 0 }))",
        "no such user: None",
    ];
    assert_eq!(seen, expected);
    let (_, counters) = admin.load(&alice).unwrap().unwrap();
    let (_, file_counters) = files.load(&alice).unwrap().unwrap();
    assert_eq!(counters.failures, file_counters.failures);
    assert_eq!(counters.last_step, file_counters.last_step);
}

/// A root-owned 0700 folder for a second file store, inside A's env.
fn tempfile_dir(fleet: &Fleet) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = fleet.a.dir().join("other-state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}
