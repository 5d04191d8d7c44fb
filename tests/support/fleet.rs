//! Two servers and an administrator sharing one throw-away PostgreSQL
//! (tests/support/pg.rs): host A (`vm-a`) and host B (`vm-b`) are test envs
//! of their own (tests/common) whose configs name the database with the
//! servers' role; the administrator's config names the admin role; the
//! schema is made by the built `otpgate db init`.
//!
//! Include it with `#[path = "support/fleet.rs"] mod fleet;` after
//! `mod common;` and `#[path = "support/pg.rs"] mod pg;`.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{nss_wrapper_path, TestEnv, DEFAULT_CONFIG};
use crate::pg::{Cluster, ADMIN_ROLE, SERVER_ROLE};

pub const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// The database, two servers and the administrator's config.
pub struct Fleet {
    pub a: TestEnv,
    pub b: TestEnv,
    pub base: String,
    // Dropped last: the envs' logins are over by then.
    pub db: Cluster,
}

/// What one run of `otpgate` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Fleet {
    /// A fleet whose every config is `base` (DEFAULT_CONFIG edited) plus its
    /// `[store]` section; the schema is initialized with `base`'s policy.
    pub fn new(name: &str, base: &str) -> Fleet {
        Fleet::with_cluster(Cluster::start(name), name, base)
    }

    /// The same around a cluster already started.
    pub fn with_cluster(db: Cluster, name: &str, base: &str) -> Fleet {
        let a = TestEnv::new(&format!("{name}-a"));
        let b = TestEnv::new(&format!("{name}-b"));
        let fleet = Fleet {
            a,
            b,
            base: base.to_string(),
            db,
        };
        fleet.use_server_config(&fleet.a, "127.0.0.1", "host_name = \"vm-a\"\n");
        fleet.use_server_config(&fleet.b, "localhost", "host_name = \"vm-b\"\n");
        fleet.write_extra_config("init.toml", &fleet.db.superuser_section());
        let admin = fleet
            .db
            .store_section(ADMIN_ROLE, "127.0.0.1", &fleet.db.ca_file(), "");
        fleet.write_extra_config("admin.toml", &admin);
        let init = fleet.otpgate_with("init.toml", &["db", "init"]);
        assert_eq!(init.code, 0, "db init failed: {init:?}");
        fleet
    }

    /// The default config edited, as most fleet tests use it.
    pub fn with_default_config(name: &str) -> Fleet {
        Fleet::new(name, DEFAULT_CONFIG)
    }

    /// Points `env` at the database with the servers' role over TLS to
    /// `host`, with `extra` lines in [store.postgres].
    pub fn use_server_config(&self, env: &TestEnv, host: &str, extra: &str) {
        let section = self
            .db
            .store_section(SERVER_ROLE, host, &self.db.ca_file(), extra);
        env.write_config(&format!("{}\n{section}", self.base));
    }

    /// A config beside A's (`<A>/etc/<name>`), root-owned and 0644.
    pub fn write_extra_config(&self, name: &str, store_section: &str) -> PathBuf {
        let text = format!("{}\n{store_section}", self.base)
            .replace("{state_dir}", &self.a.state_dir().to_string_lossy())
            .replace("{socket}", &self.a.socket_path().to_string_lossy());
        let path = self.a.dir().join("etc").join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// `otpgate --config <A>/etc/admin.toml ARGS...`.
    pub fn admin(&self, args: &[&str]) -> Run {
        self.otpgate_with("admin.toml", args)
    }

    /// `otpgate` with one of the configs beside A's, and A's users.
    pub fn otpgate_with(&self, config: &str, args: &[&str]) -> Run {
        let output = otpgate_command(&self.a, &self.a.dir().join("etc").join(config))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running otpgate");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Enrolls `user` with the known SECRET through the admin role.
    pub fn enroll(&self, user: &str) {
        let run = self.admin(&["enroll", user, "--secret", SECRET]);
        assert_eq!(run.code, 0, "enroll failed: {run:?}");
    }

    /// One value from the database, as the superuser.
    pub fn sql(&self, sql: &str) -> String {
        self.db.psql(sql)
    }
}

/// The built command with `config` and `env`'s name service.
pub fn otpgate_command(env: &TestEnv, config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .arg("--config")
        .arg(config);
    command
}
