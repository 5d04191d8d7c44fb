//! otpgate-bench: pam_otpgate beside pam_google_authenticator, pam_oath and
//! pam_permit, through the real Linux-PAM library, on this machine.
//!
//! `make bench` builds it and runs it through bench/run.sh. It lays out a
//! world under a work folder on the real disk (nss_wrapper users, PAM
//! service files, each module's state), runs every case of the issue a
//! number of times, and prints one Markdown table of medians and ratios,
//! the machine it ran on, and every sample. It is a measurement, not a
//! test: it fails only when it cannot measure.
//!
//! The same binary is also the worker the parent starts (`worker ...`, see
//! `worker.rs`).

mod accounts;
mod machine;
mod report;
mod runner;
mod scenarios;
mod syslog;
mod worker;
mod world;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use runner::{FreshLogin, NssEnv};
use scenarios::Bench;
use world::World;

const USAGE: &str = "\
usage: otpgate-bench [--work DIR] [--module PATH] [--fresh-login PATH]
                     [--runs N] [--rows ID,ID,...]
       otpgate-bench reset [--work DIR]
       otpgate-bench worker CONFDIR SERVICE current|wrong|fixed:CODE USER[,USER...]

  --work DIR          where the world lives; must be on a real disk
                      (default /var/tmp/otpgate-bench)
  --module PATH       the otpgate module (default: libotpgate.so beside
                      this program)
  --fresh-login PATH  the C program of bench/fresh-login.c
                      (default: DIR/fresh-login)
  --runs N            runs whose medians are reported (default 11)
  --rows IDS          only these rows, e.g. 1,3,5b (default: all)

`reset` puts every module's state of an existing world back to \"last login
an hour ago\"; `worker` is what the runs start (it logs the next N users
in for each `go N` line on its input): with both, one module can be
profiled alone (see docs/performance.md). Run as root: every module
insists on root-owned state.";

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    work: PathBuf,
    module: PathBuf,
    fresh_login: Option<PathBuf>,
    runs: usize,
    rows: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("worker") => worker::Job::from_args(&args[1..]).and_then(|job| worker::run(&job)),
        Some("reset") => parse_options(&args[1..]).and_then(|options| reset(&options)),
        Some("--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => parse_options(&args).and_then(|options| measure(&options)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("otpgate-bench: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = exe.parent().unwrap_or(Path::new("."));
    let mut options = Options {
        work: PathBuf::from("/var/tmp/otpgate-bench"),
        module: beside.join("libotpgate.so"),
        fresh_login: None,
        runs: 11,
        rows: None,
    };

    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--work" => options.work = PathBuf::from(value()?),
            "--module" => options.module = PathBuf::from(value()?),
            "--fresh-login" => options.fresh_login = Some(PathBuf::from(value()?)),
            "--runs" => options.runs = parse_runs(&value()?)?,
            "--rows" => options.rows = Some(value()?.split(',').map(str::to_string).collect()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn parse_runs(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("--runs needs a whole number of at least 1, not {text:?}"))
}

/// Prepares the world, runs every row `runs` times and prints the report.
fn measure(options: &Options) -> Result<(), String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root (the modules insist on root-owned state)".to_string());
    }
    let module = absolute(&options.module)?;
    let world = World::new(&options.work, &module);
    let selected = |id: &str| {
        options
            .rows
            .as_ref()
            .map_or(true, |r| r.iter().any(|x| x == id))
    };

    let started = Instant::now();
    let bench = prepare(options, world, &selected)?;
    let listener = syslog::Listener::ensure(Path::new("/dev/log"))
        .map_err(|e| format!("listening on /dev/log: {e}"))?;
    let load_before = machine::load_average();

    let mut bench = bench;
    for run in 0..options.runs {
        eprintln!("run {} of {}", run + 1, options.runs);
        bench.run_once(run, &selected)?;
    }

    let rows: Vec<report::Row> = bench
        .rows
        .into_iter()
        .filter(|row| !row.series.is_empty())
        .collect();
    print_report(options, &bench.world, &rows, &listener, &load_before);
    eprintln!("took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Resets the state of a world laid out by an earlier run.
fn reset(options: &Options) -> Result<(), String> {
    let world = World::new(&options.work, &options.module);
    if !world.pam_dir().is_dir() {
        return Err(format!(
            "{} holds no world yet: run the benchmark once",
            options.work.display()
        ));
    }
    world
        .reset()
        .map_err(|e| format!("resetting {}: {e}", options.work.display()))
}

/// Lays out the world, checks the codes against oathtool, builds the large
/// state folder when needed, and finds the programs.
fn prepare(
    options: &Options,
    world: World,
    selected: &dyn Fn(&str) -> bool,
) -> Result<Bench, String> {
    if !world.module.is_file() {
        return Err(format!(
            "{} does not exist: run cargo build --release first",
            world.module.display()
        ));
    }
    world
        .prepare()
        .map_err(|e| format!("preparing {}: {e}", world.root.display()))?;
    machine::filesystem(&world.root)?;
    cross_check_codes()?;

    if selected("5a") || selected("5b") {
        let started = Instant::now();
        let built = world
            .ensure_large_store()
            .map_err(|e| format!("building the 100,000-user state: {e}"))?;
        if built {
            eprintln!(
                "built the 100,000-user state folder in {:.0} s (kept for later runs)",
                started.elapsed().as_secs_f64()
            );
        }
    }

    let nss_wrapper = runner::find_nss_wrapper()?;
    let env = |big| NssEnv {
        nss_wrapper: nss_wrapper.clone(),
        passwd: world.passwd(),
        group: world.group(big),
    };
    let fresh = FreshLogin {
        program: options
            .fresh_login
            .clone()
            .unwrap_or_else(|| world.root.join("fresh-login")),
        confdir: world.pam_dir(),
    };
    if !fresh.program.is_file() {
        return Err(format!(
            "{} is missing: bench/run.sh builds it from bench/fresh-login.c",
            fresh.program.display()
        ));
    }

    Ok(Bench {
        small_group: env(false),
        big_group: env(true),
        fresh,
        security_dir: scenarios::security_dir()?,
        rows: scenarios::rows(),
        world,
    })
}

/// The codes this program computes with otpgate's TOTP code must be the
/// ones oathtool computes, or every measurement would be of failures.
fn cross_check_codes() -> Result<(), String> {
    let times = [1_111_111_109_i64, 1_700_000_000, accounts::now()];
    for (index, time) in [0, 500, 999].into_iter().zip(times) {
        let user = accounts::member(index);
        let secret = otpgate::secret::base32_encode(&accounts::secret_bytes(&user));
        let output = Command::new("oathtool")
            .args(["--totp", "--base32"])
            .arg(format!("--now=@{time}"))
            .arg(secret.as_str())
            .output()
            .map_err(|e| format!("running oathtool (install the package oathtool): {e}"))?;
        let theirs = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let ours = accounts::code(&user, time);
        if theirs != ours {
            return Err(format!(
                "otpgate and oathtool disagree on {user}'s code at {time}"
            ));
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    path.canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn print_report(
    options: &Options,
    world: &World,
    rows: &[report::Row],
    listener: &syslog::Listener,
    load_before: &str,
) {
    let filesystem = machine::filesystem(&world.root).unwrap_or_else(|e| e);
    println!("## Results\n");
    println!(
        "Medians of {} runs; every run logs each user in once.\n",
        options.runs
    );
    print!("{}", report::table(rows));
    println!();
    println!("- machine: {}", machine::processor());
    println!("- kernel: {}", machine::kernel());
    println!("- state folders: {} ({filesystem})", world.root.display());
    println!(
        "- packages: {}",
        machine::package_versions(&[
            "libpam0g",
            "libpam-google-authenticator",
            "libpam-oath",
            "libnss-wrapper"
        ])
    );
    println!(
        "- otpgate: {} ({})",
        machine::source_commit(),
        world.module.display()
    );
    println!("- syslog: {}", listener.describe());
    println!(
        "- load average (1 min): {load_before} before, {} after",
        machine::load_average()
    );
    println!("\n### Every sample\n");
    print!("{}", report::details(rows));
}
