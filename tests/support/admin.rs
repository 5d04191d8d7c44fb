//! Runs the built `otpgate` command against a test env, the way the
//! harness runs pam-drive: an empty environment but for PATH and
//! nss_wrapper, so the command sees the env's users and groups.
//!
//! Include it with `#[path = "support/admin.rs"] mod admin;` after
//! `mod common;`.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{nss_wrapper_path, TestEnv};

/// What one run of the command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The text after `Key: `, without the spaces between groups.
    pub fn key(&self) -> String {
        self.line_after("Key: ").replace(' ', "")
    }

    /// The text after `URI: `.
    pub fn uri(&self) -> String {
        self.line_after("URI: ")
    }

    /// The indented lines under the recovery codes heading.
    pub fn recovery_codes(&self) -> Vec<String> {
        self.stdout
            .lines()
            .skip_while(|line| !line.starts_with("Recovery codes"))
            .skip(1)
            .take_while(|line| line.starts_with("  "))
            .map(|line| line.trim().to_string())
            .collect()
    }

    fn line_after(&self, prefix: &str) -> String {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.stdout))
            .to_string()
    }
}

/// The command with the env's config and name service.
pub fn command(env: &TestEnv) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .arg("--config")
        .arg(env.config_path());
    command
}

/// Runs `otpgate --config CONFIG ARGS...` with nothing on stdin.
pub fn otpgate(env: &TestEnv, args: &[&str]) -> Run {
    run(command(env).args(args), None)
}

/// Runs a prepared command, writing `input` to its stdin when given.
pub fn run(command: &mut Command, input: Option<&str>) -> Run {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting otpgate");
    if let Some(text) = input {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("writing stdin");
    }

    let output = child.wait_with_output().expect("waiting for otpgate");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The env's default config with another enrollment mode.
pub fn use_mode(env: &TestEnv, mode: &str) {
    let text = crate::common::DEFAULT_CONFIG
        .replace("mode = \"admin-only\"", &format!("mode = \"{mode}\""));
    env.write_config(&text);
}
