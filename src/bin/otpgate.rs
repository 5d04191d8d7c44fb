//! `otpgate`, the administrator's command: parses the command line with
//! clap and hands each subcommand to `otpgate::admin`. Exit 0 on success,
//! 1 on failure with one line on stderr, 2 on bad usage (clap's own code).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

use otpgate::admin::{check, status, Admin, AdminError, Done, Operator};
use otpgate::admin_db::{self, Side};
use otpgate::audit::Syslog;
use otpgate::config::{Config, DEFAULT_CONFIG_PATH};
use otpgate::login::SystemClock;
use otpgate::otpauth;
use otpgate::store::postgres::schema::Roles;
use otpgate::store::postgres::Budget;
use otpgate::users::{SystemDirectory, UserName};

/// Administer otpgate, the TOTP second factor for members of Unix groups.
#[derive(Parser)]
#[command(name = "otpgate", version)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a user's secret and print the QR code, key, URI and recovery codes.
    Enroll {
        #[arg(value_parser = user_name)]
        user: UserName,
        /// Import this known secret (base32, at least 128 bits; `-` reads it from stdin).
        #[arg(long, value_name = "BASE32")]
        secret: Option<String>,
        /// Replace an existing secret.
        #[arg(long)]
        force: bool,
    },
    /// Remove a user's secret (kept as a backup); with after-reset, allow one enrollment.
    Reset {
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Allow a user to enroll at their next login, removing nothing.
    Allow {
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Clear a user's failure count and lock.
    Unlock {
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Issue a new set of recovery codes; the old ones stop working.
    RecoveryCodes {
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Show every user with state and every member of the configured groups.
    Status {
        #[arg(value_parser = user_name)]
        user: Option<UserName>,
        /// Print the stable JSON document (see otpgate(8)).
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and the state folder; print each problem with its fix.
    CheckConfig,
    /// Import a ~/.google_authenticator file, leaving it untouched.
    ImportGoogleAuthenticator {
        #[arg(value_parser = user_name)]
        user: UserName,
        file: PathBuf,
        /// Accept a secret of 80 to 127 bits, as older versions wrote.
        #[arg(long)]
        allow_short_secret: bool,
        /// Replace an existing secret.
        #[arg(long)]
        force: bool,
    },
    /// The PostgreSQL schema of a fleet store (docs/fleet.md).
    #[command(subcommand)]
    Db(DbCommand),
    /// Move users between the files and the database.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Create the roles, the schema and its functions; safe to run again.
    Init {
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Upgrade the schema to this version of otpgate.
    Migrate {
        #[command(flatten)]
        roles: RoleArgs,
    },
}

#[derive(clap::Args)]
struct RoleArgs {
    /// The role the servers log in as (EXECUTE on the login functions only).
    #[arg(long, default_value = "otpgate_server")]
    server_role: String,
    /// The role the administrators log in as.
    #[arg(long, default_value = "otpgate_admin")]
    admin_role: String,
}

impl RoleArgs {
    fn roles(self) -> Roles {
        Roles {
            server: self.server_role,
            admin: self.admin_role,
        }
    }
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every user (secret, recovery codes, counters, allowance).
    Copy {
        #[arg(long, value_enum)]
        from: SideArg,
        #[arg(long, value_enum)]
        to: SideArg,
        /// Show what would be copied and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Overwrite a different secret held by the target.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SideArg {
    Files,
    Postgres,
}

impl SideArg {
    fn side(self) -> Side {
        match self {
            SideArg::Files => Side::Files,
            SideArg::Postgres => Side::Postgres,
        }
    }
}

fn user_name(text: &str) -> Result<UserName, String> {
    UserName::parse(text.as_bytes()).map_err(|_| format!("{text:?} is not a valid user name"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();

    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpgate: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), AdminError> {
    require_root()?;
    if let Command::CheckConfig = cli.command {
        return check_config(&cli.config);
    }

    let config = Config::load(&cli.config).map_err(|e| AdminError(e.to_string()))?;
    let command = match store_command(&config, cli.command) {
        Ok(done) => return done,
        Err(command) => command,
    };
    let store = otpgate::store::open(&config, Budget::PerCall);
    let audit = Syslog::new(&config.audit.socket, "otpgate");
    let admin = Admin {
        config,
        store: store.as_ref(),
        directory: &SystemDirectory,
        clock: &SystemClock,
        audit: &audit,
        operator: operator(),
        host: otpauth::host_name(),
    };
    dispatch(&admin, command)
}

/// Runs `db` and `store` subcommands; hands any other back.
fn store_command(config: &Config, command: Command) -> Result<Result<(), AdminError>, Command> {
    let stdout = std::io::stdout();
    let out = &mut stdout.lock();
    match command {
        Command::Db(DbCommand::Init { roles }) => Ok(admin_db::init(config, &roles.roles(), out)),
        Command::Db(DbCommand::Migrate { roles }) => {
            Ok(admin_db::migrate(config, &roles.roles(), out))
        }
        Command::Store(StoreCommand::Copy {
            from,
            to,
            dry_run,
            replace,
        }) => Ok(admin_db::copy(
            config,
            from.side(),
            to.side(),
            dry_run,
            replace,
            out,
        )),
        other => Err(other),
    }
}

/// Runs one subcommand; changes are logged, successful or not.
fn dispatch(admin: &Admin, command: Command) -> Result<(), AdminError> {
    let stdout = std::io::stdout();
    let out = &mut stdout.lock();

    let (name, user, result) = match command {
        Command::Enroll {
            user,
            secret,
            force,
        } => {
            let secret = secret.map(read_secret).transpose()?;
            let result = admin.enroll(&user, secret.as_deref().map(|s| s.as_str()), force, out);
            ("enroll", user, result)
        }
        Command::Reset { user } => ("reset", user.clone(), admin.reset(&user, out)),
        Command::Allow { user } => ("allow", user.clone(), admin.allow(&user, out)),
        Command::Unlock { user } => ("unlock", user.clone(), admin.unlock(&user, out)),
        Command::RecoveryCodes { user } => (
            "recovery-codes",
            user.clone(),
            admin.recovery_codes(&user, out),
        ),
        Command::ImportGoogleAuthenticator {
            user,
            file,
            allow_short_secret,
            force,
        } => {
            let result =
                admin.import_google_authenticator(&user, &file, allow_short_secret, force, out);
            ("import-google-authenticator", user, result)
        }
        Command::Status { user, json } => return show_status(admin, user.as_ref(), json, out),
        Command::CheckConfig | Command::Db(_) | Command::Store(_) => return Ok(()),
    };

    admin.log(name, &user, &result);
    result.map(|_: Done| ())
}

fn show_status(
    admin: &Admin,
    user: Option<&UserName>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let rows = admin.status(user)?;
    let written = if json {
        status::write_json(out, &rows)
    } else {
        status::write_table(out, &rows)
    };
    written.map_err(|e| AdminError(format!("writing the status: {e}")))
}

fn check_config(path: &Path) -> Result<(), AdminError> {
    let findings = check::check(path, &SystemDirectory);
    for finding in &findings {
        println!("{finding}");
    }

    match findings.len() {
        0 => {
            println!("{}: no problems found", path.display());
            Ok(())
        }
        1 => Err(AdminError("1 problem found".to_string())),
        n => Err(AdminError(format!("{n} problems found"))),
    }
}

/// `--secret -` reads the secret from the first line of stdin, so it does
/// not show in the process list.
fn read_secret(given: String) -> Result<Zeroizing<String>, AdminError> {
    if given != "-" {
        return Ok(Zeroizing::new(given));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| AdminError(format!("reading the secret from stdin: {e}")))?;
    Ok(Zeroizing::new(line.trim().to_string()))
}

fn require_root() -> Result<(), AdminError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(AdminError("otpgate must be run as root".to_string()));
    }
    Ok(())
}

/// Who ran the command: SUDO_USER, the one value read from the
/// environment (it only labels the log line, escaped), and the real uid.
fn operator() -> Operator {
    use std::os::unix::ffi::OsStringExt;
    Operator {
        sudo_user: std::env::var_os("SUDO_USER").map(|v| v.into_vec()),
        // SAFETY: getuid has no preconditions and cannot fail.
        uid: unsafe { libc::getuid() },
    }
}
