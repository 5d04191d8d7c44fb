//! The Debian package, installed on this machine with dpkg: the files land
//! where docs/deployment.md says, the shipped config parses and names a
//! group that does not exist, `otpgate check-config` passes once the config
//! names a real group, pamtester logs in through the installed module (with
//! the shipped `application` example, and with the pam-auth-update profile
//! turned on), and `dpkg --purge` leaves nothing behind: no file of the
//! package, no /etc/otpgate, no /var/lib/otpgate, and /etc/pam.d as it was.
//!
//! The package is target/debian/otpgate_*.deb, built by `make deb` (which
//! `make test` runs first); when it is missing or older than the sources,
//! this test builds it with packaging/build-deb.sh. OTPGATE_DEB names
//! another package to test.
//!
//! The test installs a system package, so it holds a lock file for its whole
//! run (two `cargo test` runs on one machine take turns), refuses to run
//! when otpgate is already installed (it would purge the administrator's
//! copy), and purges, removes its PAM service files and its accounts even
//! when it fails. Other tests never touch the installed package.
//!
//! Beside it, and under the same lock (they build into target/release too):
//! the RPM spec is built into a binary package with rpmbuild (Debian's rpm,
//! `--build-in-place --nodeps`, so the build requirements are not checked)
//! and its file list compared with the Debian layout; `make install` and
//! `make uninstall` run into a DESTDIR with another PREFIX.

mod common;
#[path = "support/ssh_accounts.rs"]
mod ssh_accounts;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use common::{now, totp_code, TestEnv};
use ssh_accounts::{run, Accounts};

const PACKAGE: &str = "otpgate";
const LOCK: &str = "/run/lock/otpgate-deb-test.lock";
const SECRET: &str = "ONSWG4TFORZWK5DTMVRXEZLUONSWG4TF";
const CONFIG: &str = "/etc/otpgate/otpgate.toml";
const STATE_DIR: &str = "/var/lib/otpgate";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn multiarch() -> String {
    let output = run(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------
// Taking turns

/// An exclusive flock(2) on [`LOCK`], released when the file it holds is
/// closed, on drop.
struct TurnLock {
    _file: fs::File,
}

impl TurnLock {
    fn take() -> TurnLock {
        fs::create_dir_all("/run/lock").expect("creating /run/lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .expect("opening the package test's lock file");
        // SAFETY: the descriptor belongs to `file`, which lives as long as
        // the returned guard; flock only reads the number.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "flock {LOCK} failed");
        TurnLock { _file: file }
    }
}

// ---------------------------------------------------------------------------
// The package file

/// The .deb to test: OTPGATE_DEB, or target/debian/otpgate_*.deb, built
/// first when missing or older than the sources it is made from.
fn package_file() -> PathBuf {
    if let Some(path) = std::env::var_os("OTPGATE_DEB") {
        return PathBuf::from(path);
    }
    let built = newest_deb();
    let fresh = match (
        built.as_ref().and_then(|deb| modified(deb)),
        newest_source(),
    ) {
        (Some(built_at), Some(changed_at)) => changed_at <= built_at,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if fresh {
        return built.unwrap();
    }

    let status = Command::new("sh")
        .arg(repo().join("packaging/build-deb.sh"))
        .current_dir(repo())
        .status()
        .expect("running packaging/build-deb.sh");
    assert!(status.success(), "packaging/build-deb.sh failed: {status}");
    newest_deb().expect("build-deb.sh made no target/debian/otpgate_*.deb")
}

fn newest_deb() -> Option<PathBuf> {
    let entries = fs::read_dir(repo().join("target/debian")).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("otpgate_") && name.ends_with(".deb")
        })
        .max_by_key(|path| modified(path))
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).ok()?.modified().ok()
}

/// The latest change to anything the package is made from.
fn newest_source() -> Option<SystemTime> {
    let sources = [
        "src",
        "packaging",
        "pam.d-examples",
        "docs",
        "man",
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
    ];
    sources
        .iter()
        .filter_map(|source| newest_under(&repo().join(source)))
        .max()
}

fn newest_under(path: &Path) -> Option<SystemTime> {
    if !path.is_dir() {
        return modified(path);
    }
    fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest_under(&entry.path()))
        .max()
}

// ---------------------------------------------------------------------------
// Installing and purging

/// dpkg's status of the package, e.g. `install ok installed`; empty when
/// dpkg has never heard of it. Never panics (it runs in `drop` too).
fn package_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

fn is_installed() -> bool {
    package_status().contains("install ok installed")
}

/// Anything of the package on the system: installed, half installed or
/// removed with its config files left.
fn is_known() -> bool {
    let status = package_status();
    !status.is_empty() && !status.ends_with("not-installed")
}

/// The installed package, purged on drop with the PAM service files the
/// test added and the profile it turned on.
struct Installed {
    services: Vec<PathBuf>,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        let installed = Installed {
            services: Vec::new(),
        };
        run(Command::new("dpkg").arg("--install").arg(deb));
        installed
    }

    /// Writes /etc/pam.d/<name>, removed on drop.
    fn add_service(&mut self, name: &str, text: &str) {
        let path = Path::new("/etc/pam.d").join(name);
        self.services.push(path.clone());
        fs::write(&path, text).expect("writing a PAM service file");
    }

    fn remove_services(&mut self) {
        for path in self.services.drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.remove_services();
        if is_known() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).status();
        }
    }
}

/// The contents of every file in /etc/pam.d, by name.
fn pam_d_snapshot() -> BTreeMap<String, Vec<u8>> {
    fs::read_dir("/etc/pam.d")
        .expect("reading /etc/pam.d")
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, fs::read(entry.path()).unwrap_or_default())
        })
        .collect()
}

/// Every file `dpkg -L` lists, leaving out folders (and links to folders,
/// such as /lib on a merged-/usr system), which other packages share.
fn package_files() -> Vec<PathBuf> {
    let output = run(Command::new("dpkg").args(["-L", PACKAGE]));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|path| path.symlink_metadata().is_ok() && !path.is_dir())
        .collect()
}

// ---------------------------------------------------------------------------
// Checks

fn otpgate(args: &[&str]) -> Output {
    Command::new("/usr/sbin/otpgate")
        .args(args)
        .output()
        .expect("running /usr/sbin/otpgate")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// `pamtester SERVICE USER authenticate`, answering the prompts in order
/// from its standard input.
fn pamtester(service: &str, user: &str, answers: &[&str]) -> Output {
    let mut child = Command::new("pamtester")
        .args([service, user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running pamtester (install the Debian package pamtester)");
    let mut stdin = child.stdin.take().expect("pamtester's input");
    for answer in answers {
        writeln!(stdin, "{answer}").expect("answering pamtester");
    }
    drop(stdin);
    child.wait_with_output().expect("waiting for pamtester")
}

fn code_at(offset: i64) -> String {
    totp_code(SECRET, 6, 30, "SHA1", now().saturating_add_signed(offset))
}

/// A code of the right shape that matches no step accepted now.
fn wrong_code() -> String {
    let accepted: Vec<String> = (-3..=3).map(|step| code_at(step * 30)).collect();
    ["000000", "999999", "123123"]
        .into_iter()
        .find(|code| !accepted.iter().any(|a| a == code))
        .unwrap()
        .to_string()
}

fn assert_layout() {
    let module = PathBuf::from(format!("/lib/{}/security/pam_otpgate.so", multiarch()));
    let expected = [
        module.as_path(),
        Path::new("/usr/sbin/otpgate"),
        Path::new(CONFIG),
        Path::new("/usr/share/pam-configs/otpgate"),
        Path::new("/usr/share/doc/otpgate/examples/sshd"),
        Path::new("/usr/share/doc/otpgate/examples/sshd-publickey"),
        Path::new("/usr/share/doc/otpgate/examples/application"),
        Path::new("/usr/share/man/man8/otpgate.8.gz"),
        Path::new("/usr/share/man/man8/pam_otpgate.8.gz"),
    ];
    for path in expected {
        assert!(path.is_file(), "{} is not installed", path.display());
    }

    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains(CONFIG));

    let state = fs::metadata(STATE_DIR).expect("the state folder");
    assert!(state.is_dir());
    assert_eq!((state.uid(), state.gid()), (0, 0));
    assert_eq!(state.permissions().mode() & 0o7777, 0o700);

    let profile = fs::read_to_string("/usr/share/pam-configs/otpgate").unwrap();
    assert!(profile.contains("Default: no"), "{profile}");
}

/// The shipped config parses; its only problems are the placeholder group
/// and, where no system logger runs, the audit socket.
fn assert_shipped_config() {
    let output = otpgate(&["check-config"]);
    let said = text(&output);
    assert!(
        said.contains("group otpgate-users does not exist"),
        "{said}"
    );
    let problems: Vec<&str> = said
        .lines()
        .filter(|line| line.starts_with("problem:"))
        .collect();
    let expected = if Path::new("/dev/log").exists() { 1 } else { 2 };
    assert_eq!(problems.len(), expected, "{said}");
}

fn write_config(group: &str, socket: &Path) {
    let shipped = fs::read_to_string(CONFIG).expect("the installed config");
    let config = shipped
        .replace("[\"otpgate-users\"]", &format!("[\"{group}\"]"))
        .replace("\"/dev/log\"", &format!("\"{}\"", socket.display()))
        .replace("mode = \"after-reset\"", "mode = \"admin-only\"");
    assert!(config.contains(group) && config.contains("admin-only"));
    fs::write(CONFIG, config).expect("writing the config");
}

fn assert_purged(files: &[PathBuf], before: &BTreeMap<String, Vec<u8>>) {
    assert!(
        !is_known(),
        "dpkg still knows the package: {}",
        package_status()
    );
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|path| path.symlink_metadata().is_ok())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    for folder in ["/etc/otpgate", STATE_DIR, "/usr/share/doc/otpgate"] {
        assert!(!Path::new(folder).exists(), "{folder} is left after purge");
    }
    assert!(
        pam_d_snapshot() == *before,
        "/etc/pam.d differs from before the install"
    );
}

// ---------------------------------------------------------------------------
// The test

#[test]
fn the_deb_installs_logs_in_with_pamtester_and_purges_clean() {
    let _turn = TurnLock::take();
    assert!(
        !is_installed(),
        "the otpgate package is installed on this machine; this test would purge it"
    );
    let deb = package_file();
    let pam_d_before = pam_d_snapshot();
    let env = TestEnv::new("deb");
    let mut accounts = Accounts::new();
    let group = accounts.add_group();
    let (member, password) = accounts.add_user(&[&group]);
    let (outsider, outsider_password) = accounts.add_user(&[]);
    let service = format!("otpgate-pkgtest-{}", std::process::id());
    let profile_service = format!("{service}-common");

    // Install, and look at what landed.
    let mut installed = Installed::install(&deb);
    assert_layout();
    assert!(
        pam_d_snapshot() == pam_d_before,
        "installing changed /etc/pam.d"
    );
    assert_shipped_config();

    // Name the throw-away group; check-config is then content.
    write_config(&group, &env.socket_path());
    let checked = otpgate(&["check-config"]);
    assert!(checked.status.success(), "{}", text(&checked));
    let mut enroll = Command::new("/usr/sbin/otpgate")
        .args(["enroll", &member, "--secret", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("running otpgate enroll");
    writeln!(enroll.stdin.take().unwrap(), "{SECRET}").unwrap();
    assert!(enroll.wait().unwrap().success(), "otpgate enroll failed");

    // The shipped example for an application, through the installed module.
    let example = fs::read_to_string("/usr/share/doc/otpgate/examples/application").unwrap();
    installed.add_service(&service, &example);
    let good = pamtester(&service, &member, &[&password, &code_at(0)]);
    assert!(good.status.success(), "{}", text(&good));
    let wrong = pamtester(&service, &member, &[&password, &wrong_code()]);
    assert!(!wrong.status.success(), "{}", text(&wrong));
    let outsider_login = pamtester(&service, &outsider, &[&outsider_password]);
    assert!(outsider_login.status.success(), "{}", text(&outsider_login));
    let audit = env.audit_lines();
    let expected = format!("pam_otpgate({service}:auth): result=success reason=code user={member}");
    assert!(
        audit.iter().any(|line| line.starts_with(&expected)),
        "{audit:?}"
    );

    // The pam-auth-update profile, turned on: common-auth asks members.
    run(Command::new("pam-auth-update").args(["--enable", "otpgate"]));
    let common_auth = fs::read_to_string("/etc/pam.d/common-auth").unwrap();
    assert!(common_auth.contains("pam_otpgate.so"), "{common_auth}");
    installed.add_service(&profile_service, "@include common-auth\n");
    let through_profile = pamtester(&profile_service, &member, &[&password, &code_at(30)]);
    assert!(
        through_profile.status.success(),
        "{}",
        text(&through_profile)
    );
    let outsider_profile = pamtester(&profile_service, &outsider, &[&outsider_password]);
    assert!(
        outsider_profile.status.success(),
        "{}",
        text(&outsider_profile)
    );

    // Purge: the profile leaves common-auth, and nothing else is left.
    installed.remove_services();
    let files = package_files();
    run(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert_purged(&files, &pam_d_before);
}

// ---------------------------------------------------------------------------
// The RPM spec and make install

/// The files and folders of an RPM, with their modes (`rpm -qlpv`).
fn rpm_listing(rpm: &Path) -> Vec<(String, String)> {
    let output = run(Command::new("rpm").args(["-qlpv"]).arg(rpm));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mode = line.split_whitespace().next()?.to_string();
            let path = line.split_whitespace().last()?.to_string();
            Some((path, mode))
        })
        .collect()
}

#[test]
fn the_rpm_spec_builds_a_package_with_the_same_layout() {
    let _turn = TurnLock::take();
    let top = TestEnv::new("rpm").dir().join("rpmbuild");
    fs::create_dir_all(&top).expect("creating the rpmbuild folder");

    run(Command::new("rpmspec")
        .args(["--parse"])
        .arg(repo().join("packaging/rpm/otpgate.spec"))
        .stdout(Stdio::null()));
    run(Command::new("rpmbuild")
        .args(["-bb", "--build-in-place", "--nodeps", "--quiet"])
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(repo().join("packaging/rpm/otpgate.spec"))
        .current_dir(repo()));

    let arch = std::env::consts::ARCH;
    let rpm = top.join(format!("RPMS/{arch}/otpgate-0.1.0-1.{arch}.rpm"));
    let listing = rpm_listing(&rpm);
    let mode_of = |wanted: &str| {
        listing
            .iter()
            .find(|(path, _)| path == wanted)
            .map(|(_, mode)| mode.as_str())
            .unwrap_or_else(|| panic!("{wanted} is not in the RPM: {listing:?}"))
    };
    assert!(mode_of("/usr/lib64/security/pam_otpgate.so").starts_with('-'));
    assert_eq!(mode_of("/usr/sbin/otpgate"), "-rwxr-xr-x");
    assert_eq!(mode_of(CONFIG), "-rw-r--r--");
    assert_eq!(mode_of(STATE_DIR), "drwx------");
    for page in ["otpgate.8", "pam_otpgate.8"] {
        mode_of(&format!("/usr/share/man/man8/{page}"));
    }
    for example in [
        "sshd",
        "sshd-publickey",
        "login",
        "sudo",
        "su",
        "application",
    ] {
        mode_of(&format!("/usr/share/doc/otpgate/examples/{example}"));
    }
    mode_of("/usr/share/doc/otpgate/deployment.md");

    let config_files = run(Command::new("rpm").args(["-qp", "--configfiles"]).arg(&rpm));
    assert_eq!(String::from_utf8_lossy(&config_files.stdout).trim(), CONFIG);
}

#[test]
fn make_install_and_uninstall_honour_destdir_and_prefix() {
    let _turn = TurnLock::take();
    package_file();
    let env = TestEnv::new("install");
    let destdir = env.dir().join("root");
    let make = |target: &str| {
        run(Command::new("make")
            .args(["-s", target, "PREFIX=/usr/local"])
            .arg(format!("DESTDIR={}", destdir.display()))
            .current_dir(repo()))
    };
    let module = destdir.join(format!("lib/{}/security/pam_otpgate.so", multiarch()));
    let installed = [
        module.clone(),
        destdir.join("usr/local/sbin/otpgate"),
        destdir.join("usr/local/share/man/man8/otpgate.8"),
        destdir.join("usr/local/share/man/man8/pam_otpgate.8"),
    ];
    let config = destdir.join("etc/otpgate/otpgate.toml");
    let state = destdir.join("var/lib/otpgate");

    make("install");
    for path in installed.iter().chain([&config]) {
        assert!(path.is_file(), "{} is not installed", path.display());
    }
    let mode = fs::metadata(&state)
        .expect("the state folder")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // A second install keeps the administrator's config.
    fs::write(&config, "groups = [\"edited\"]\n").unwrap();
    make("install");
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "groups = [\"edited\"]\n"
    );

    // Uninstall removes the programs and keeps config and secrets.
    make("uninstall");
    for path in &installed {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert!(config.is_file() && state.is_dir());
}
