//! The parent's side of every measurement: starting workers with
//! nss_wrapper preloaded and a clean environment, releasing them together,
//! timing fresh processes, and running the C program's load loop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::worker::{Done, Job};

/// What a child process's environment holds: nss_wrapper and its files.
#[derive(Clone, Debug)]
pub struct NssEnv {
    pub nss_wrapper: PathBuf,
    pub passwd: PathBuf,
    pub group: PathBuf,
}

impl NssEnv {
    /// A command with an otherwise empty environment, as the tests use.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LD_PRELOAD", &self.nss_wrapper)
            .env("NSS_WRAPPER_PASSWD", &self.passwd)
            .env("NSS_WRAPPER_GROUP", &self.group);
        command
    }
}

/// libnss_wrapper.so, from its usual place or from dpkg's file list.
pub fn find_nss_wrapper() -> Result<PathBuf, String> {
    let usual = Path::new("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so");
    if usual.is_file() {
        return Ok(usual.to_path_buf());
    }
    let listed = Command::new("dpkg")
        .args(["-L", "libnss-wrapper"])
        .output()
        .map_err(|e| format!("dpkg -L libnss-wrapper: {e}"))?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find(|line| line.ends_with("/libnss_wrapper.so"))
        .map(PathBuf::from)
        .ok_or_else(|| "libnss_wrapper.so not found: install libnss-wrapper".to_string())
}

/// A started worker, stopped at `ready`.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    services: usize,
}

impl Worker {
    fn start(env: &NssEnv, job: &Job) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = env
            .command(&exe)
            .args(job.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting a worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("worker stdout")?);
        let mut worker = Worker {
            child,
            stdin,
            stdout,
            services: job.services.len(),
        };

        let line = worker.read_line()?;
        if line.trim() != "ready" {
            return Err(format!("worker for {:?} said {line:?}", job.services));
        }
        Ok(worker)
    }

    fn go(&mut self) -> Result<(), String> {
        self.stdin
            .write_all(b"go\n")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("releasing a worker: {e}"))
    }

    /// The reports, one per service in the job's order.
    fn reports(&mut self) -> Result<Vec<Done>, String> {
        (0..self.services)
            .map(|_| Done::parse(&self.read_line()?))
            .collect()
    }

    fn wait(mut self) -> Result<(), String> {
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("worker failed: {status}"));
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if read == 0 {
            let status = self.child.wait().map_err(|e| e.to_string())?;
            return Err(format!("worker ended early: {status}"));
        }
        Ok(line)
    }
}

/// One worker, alone: the times are what its own clock summed over the PAM
/// transactions of each service.
pub fn serial(env: &NssEnv, job: &Job) -> Result<Vec<Done>, String> {
    let mut worker = Worker::start(env, job)?;
    worker.go()?;
    let reports = worker.reports()?;
    worker.wait()?;
    Ok(reports)
}

/// Several workers released together; the time is the wall time from the
/// release of the first to the report of the last.
pub fn parallel(env: &NssEnv, jobs: &[Job]) -> Result<(Duration, Vec<Vec<Done>>), String> {
    let mut workers = jobs
        .iter()
        .map(|job| Worker::start(env, job))
        .collect::<Result<Vec<_>, _>>()?;

    let started = Instant::now();
    for worker in &mut workers {
        worker.go()?;
    }
    let reports = workers
        .iter_mut()
        .map(Worker::reports)
        .collect::<Result<Vec<_>, _>>()?;
    let took = started.elapsed();

    for worker in workers {
        worker.wait()?;
    }
    Ok((took, reports))
}

/// The C program that logs in once per process (see fresh-login.c).
pub struct FreshLogin {
    pub program: PathBuf,
    pub confdir: PathBuf,
}

impl FreshLogin {
    /// Starts the program for one login and waits for it: the time covers
    /// exec, loading libpam and the module, the login and the exit.
    pub fn once(
        &self,
        env: &NssEnv,
        service: &str,
        user: &str,
        code: &str,
    ) -> Result<(Duration, i32), String> {
        let mut command = env.command(&self.program);
        command
            .arg(&self.confdir)
            .args([service, user, code])
            .stdin(Stdio::null())
            .stdout(Stdio::null());

        let started = Instant::now();
        let status = command
            .status()
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        let took = started.elapsed();

        let code = status
            .code()
            .ok_or_else(|| format!("fresh-login was killed: {status}"))?;
        Ok((took, code))
    }

    /// Microseconds per dlopen + dlclose of `module` in a C process that
    /// links libpam, as a PAM application does.
    pub fn load_cost(&self, module: &Path, count: u32) -> Result<f64, String> {
        let output = Command::new(&self.program)
            .arg("--load")
            .arg(module)
            .arg(count.to_string())
            .output()
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        if !output.status.success() {
            return Err(format!(
                "load loop of {} failed: {}",
                module.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| "load loop printed no number".to_string())
    }
}
