//! The test-only panic hook stays out of release builds. The `test_panic`
//! module argument exists only with the `test-hooks` feature: the release
//! module (`make build`, which `make test` runs through `make deb`) holds
//! neither the argument nor its panic, refuses `test_panic` as an unknown
//! argument through the real Linux-PAM library, and no workspace member
//! turns the feature on for a release build through feature unification.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{now, totp_code, TestEnv};

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn stdout_of(command: &mut Command) -> String {
    let output = command.output().expect("running cargo");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The features of otpgate that a build of the whole workspace turns on.
fn workspace_features(extra: &[&str]) -> String {
    stdout_of(
        cargo()
            .args(["tree", "--offline", "--workspace", "--invert", "otpgate"])
            .args(["--edges", "normal,build,features"])
            .args(extra),
    )
}

#[test]
fn no_workspace_member_turns_the_hook_on_for_a_release_build() {
    let plain = workspace_features(&[]);
    let hooked = workspace_features(&["--features", "otpgate/test-hooks"]);

    assert!(plain.contains("otpgate feature \"default\""), "{plain}");
    assert!(!plain.contains("test-hooks"), "{plain}");
    assert!(
        hooked.contains("otpgate feature \"test-hooks\""),
        "{hooked}"
    );
}

/// `target/release/libotpgate.so`, built when missing or older than the
/// sources (under `make test`, `make deb` has just built it).
fn release_module() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let module = root.join("target/release/libotpgate.so");
    let sources = ["src", "build.rs", "Cargo.toml", "Cargo.lock"].map(|p| root.join(p));
    let newest_source = sources.iter().filter_map(|p| newest(p)).max();
    let built = fs::metadata(&module).and_then(|m| m.modified()).ok();
    if built.is_none() || newest_source > built {
        stdout_of(cargo().args(["build", "--release", "--lib", "-p", "otpgate"]));
    }
    module
}

fn newest(path: &Path) -> Option<SystemTime> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest(&e.ok()?.path()))
        .max()
}

#[test]
fn the_release_module_has_no_hook_and_refuses_the_argument() {
    let module = release_module();
    let bytes = fs::read(&module).unwrap();
    let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(holds(b"unknown module arguments"), "the search works");
    assert!(
        !holds(b"test_panic"),
        "{} holds test_panic",
        module.display()
    );

    let env = TestEnv::new("h-release");
    env.write_state("alice", &format!("secret = \"{SECRET}\"\n"));
    let line = format!(
        "auth required {} config={{config}} test_panic\n",
        module.display()
    );
    env.write_service("release", &line);
    env.write_service(
        "release-plain",
        &format!("auth required {} config={{config}}\n", module.display()),
    );

    let refused = env.login("alice").service("release").run();
    let code = totp_code(SECRET, 6, 30, "SHA1", now());
    let plain = env
        .login("alice")
        .service("release-plain")
        .answer(&code)
        .run();

    assert_eq!(refused.result(), "PAM_SERVICE_ERR", "{}", refused.stdout);
    assert!(refused.messages.is_empty());
    let lines = env.audit_lines();
    assert!(
        lines.iter().any(|l| l.ends_with(
            "result=error reason=bad_arguments user=alice \
             detail=unknown\\x20module\\x20arguments:\\x20test_panic"
        )),
        "{lines:?}"
    );
    assert_eq!(plain.result(), "PAM_SUCCESS", "the release module works");
}
