//! pam-drive: runs logins through the real Linux-PAM library against a
//! service file in a folder of the caller's choosing, and prints what the
//! modules said and returned, one line per event, for tests to read.
//!
//! Output lines:
//! - `msg <style> <text>` for each conversation message, style being
//!   `prompt-echo-off`, `prompt-echo-on`, `error`, `info` or `other-<n>`,
//!   the text escaped by [`pamclient::escape_text`] (one line, valid UTF-8);
//! - `delay <usec>` for each fail delay libpam asked for (only with
//!   `--skip-fail-delay`);
//! - `result <code> <NAME>` once per login, after `pam_end`;
//! - `process fds=.. uid=.. gid=.. groups=.. cloexec_leaks=..` before and
//!   after all logins (only with `--report-process`). Before the first one,
//!   root's user and group are looked up once, so descriptors the name
//!   service keeps open for good (nss_wrapper's passwd and group files) are
//!   already counted; `fds` then differs only when something leaked.
//!
//! Exit code: 0 when the logins ran (their results are in the output), 1 when
//! PAM could not be started or an item could not be set, 2 on bad usage.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

use pamclient::{
    escape_text, result_name, warm_name_service, ConvMode, Conversation, Item, Message, MessageLog,
    ProcessReport, Reply, ScriptedConversation, Session, PAM_SILENT,
};

const USAGE: &str = "\
usage: pam-drive --confdir DIR --service NAME [--user USER | --user-hex HEX]
                 [--rhost R | --rhost-hex HEX] [--tty T | --tty-hex HEX]
                 [--ruser U | --ruser-hex HEX] [--answer TEXT | --answer-hex HEX]...
                 [--conv normal|error|null-array|null-response] [--repeat N]
                 [--report-process] [--skip-fail-delay] [--silent]

Without a user, PAM_USER is left unset and a module has to ask for it.
Answers are given to prompts in order; once they run out, prompts get an
empty answer. --repeat N runs N logins, each with the answers from the start.";

/// Everything one run is told to do.
#[derive(Debug, Default, PartialEq)]
struct Options {
    confdir: PathBuf,
    service: String,
    user: Option<Vec<u8>>,
    items: Vec<(Item, Vec<u8>)>,
    answers: Vec<Vec<u8>>,
    mode: ConvMode,
    repeat: u32,
    report_process: bool,
    skip_fail_delay: bool,
    silent: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Drive(Options),
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(problem) => {
            eprintln!("pam-drive: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    match command {
        Command::Help => println!("{USAGE}"),
        Command::Drive(options) => {
            if let Err(problem) = drive(&options) {
                eprintln!("pam-drive: {problem}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Parses the arguments (without the program name).
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut options = Options {
        repeat: 1,
        ..Options::default()
    };
    let mut confdir = None;
    let mut service = None;

    while let Some(flag) = args.next() {
        let flag = flag
            .into_string()
            .map_err(|flag| format!("unknown argument {flag:?}"))?;
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--report-process" => options.report_process = true,
            "--skip-fail-delay" => options.skip_fail_delay = true,
            "--silent" => options.silent = true,
            "--confdir" => confdir = Some(PathBuf::from(next_value(&mut args, &flag)?)),
            "--service" => service = Some(text_value(next_value(&mut args, &flag)?, &flag)?),
            _ => apply_byte_flag(&mut options, &flag, next_value(&mut args, &flag)?)?,
        }
    }

    options.confdir = confdir.ok_or("--confdir is required")?;
    options.service = service.ok_or("--service is required")?;
    Ok(Command::Drive(options))
}

/// Applies a flag whose value is a byte string (plain or hex) or a setting.
fn apply_byte_flag(options: &mut Options, flag: &str, value: OsString) -> Result<(), String> {
    let (name, bytes) = match flag.strip_suffix("-hex") {
        Some(name) => (name, decode_hex(&value.into_vec(), flag)?),
        None => (flag, value.into_vec()),
    };
    if bytes.contains(&0) {
        return Err(format!("{flag}: a NUL byte cannot pass through a C string"));
    }

    match name {
        "--user" => options.user = Some(bytes),
        "--rhost" => options.items.push((Item::Rhost, bytes)),
        "--tty" => options.items.push((Item::Tty, bytes)),
        "--ruser" => options.items.push((Item::Ruser, bytes)),
        "--answer" => options.answers.push(bytes),
        "--conv" if flag == name => options.mode = parse_mode(&bytes)?,
        "--repeat" if flag == name => options.repeat = parse_repeat(&bytes)?,
        _ => return Err(format!("unknown flag {flag}")),
    }
    Ok(())
}

fn next_value(args: &mut impl Iterator<Item = OsString>, flag: &str) -> Result<OsString, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn text_value(value: OsString, flag: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|_| format!("{flag} must be UTF-8"))
}

fn decode_hex(hex: &[u8], flag: &str) -> Result<Vec<u8>, String> {
    let digit = |byte: u8| char::from(byte).to_digit(16);
    let pairs = hex.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(format!("{flag}: odd number of hex digits"));
    }

    pairs
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => Ok((high << 4 | low) as u8),
            _ => Err(format!(
                "{flag}: not a hex digit pair: {:?}",
                String::from_utf8_lossy(pair)
            )),
        })
        .collect()
}

fn parse_mode(value: &[u8]) -> Result<ConvMode, String> {
    match value {
        b"normal" => Ok(ConvMode::Normal),
        b"error" => Ok(ConvMode::Error),
        b"null-array" => Ok(ConvMode::NullArray),
        b"null-response" => Ok(ConvMode::NullResponse),
        other => Err(format!(
            "--conv: unknown mode {:?}",
            String::from_utf8_lossy(other)
        )),
    }
}

fn parse_repeat(value: &[u8]) -> Result<u32, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|&count| count >= 1)
        .ok_or_else(|| "--repeat needs a whole number of at least 1".to_string())
}

/// Runs every login, with the process reports around them when asked.
fn drive(options: &Options) -> Result<(), String> {
    let baseline = options.report_process.then(report_baseline).transpose()?;

    for _ in 0..options.repeat {
        login_once(options)?;
    }

    if let Some(baseline) = baseline {
        let report = ProcessReport::take(&baseline).map_err(|error| error.to_string())?;
        println!("process {report}");
    }
    Ok(())
}

/// Prints the first process report and returns its descriptors.
fn report_baseline() -> Result<BTreeSet<i32>, String> {
    warm_name_service();

    let report = ProcessReport::take_baseline().map_err(|error| error.to_string())?;
    println!("process {report}");
    Ok(report.fds)
}

/// One transaction: start, set items, authenticate, end, print the result.
fn login_once(options: &Options) -> Result<(), String> {
    let mut session = start_session(options)?;

    for (item, value) in &options.items {
        session.set_item_str(*item, value).map_err(|code| {
            format!("pam_set_item {item:?} failed: {code} {}", result_name(code))
        })?;
    }
    if options.skip_fail_delay {
        session.skip_fail_delay().map_err(|code| {
            format!(
                "pam_set_item PAM_FAIL_DELAY failed: {code} {}",
                result_name(code)
            )
        })?;
    }

    let flags = if options.silent { PAM_SILENT } else { 0 };
    let status = session.authenticate(flags);

    session
        .fail_delays()
        .iter()
        .for_each(|usec| println!("delay {usec}"));
    drop(session);
    println!("result {status} {}", result_name(status));
    Ok(())
}

fn start_session(options: &Options) -> Result<Session, String> {
    let scripted = ScriptedConversation::new(&options.answers, options.mode, MessageLog::default())
        .map_err(|error| error.to_string())?;
    let conversation = Box::new(PrintingConversation { inner: scripted });

    Session::start_confdir(
        &options.service,
        options.user.as_deref(),
        &options.confdir,
        conversation,
    )
    .map_err(|code| format!("pam_start_confdir failed: {code} {}", result_name(code)))
}

/// Prints each message as it arrives (so a crash still shows what came
/// before it), then lets the scripted conversation answer.
struct PrintingConversation {
    inner: ScriptedConversation,
}

impl Conversation for PrintingConversation {
    fn converse(&mut self, messages: &[Message]) -> Reply {
        for message in messages {
            println!("msg {} {}", message.style, escape_text(&message.text));
        }
        self.inner.converse(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn options(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Command::Drive(options)) => options,
            other => panic!("expected options, got {other:?}"),
        }
    }

    const BASE: [&str; 4] = ["--confdir", "/tmp/pam.d", "--service", "svc"];

    #[test]
    fn the_minimum_is_a_folder_and_a_service() {
        let parsed = options(&BASE);

        assert_eq!(parsed.confdir, PathBuf::from("/tmp/pam.d"));
        assert_eq!(parsed.service, "svc");
        assert_eq!(
            (parsed.user, parsed.repeat, parsed.mode),
            (None, 1, ConvMode::Normal)
        );
    }

    #[test]
    fn plain_and_hex_values_mix_in_order() {
        let args = [
            &BASE[..],
            &[
                "--user-hex",
                "61FF",
                "--answer",
                "one",
                "--answer-hex",
                "0a0d",
                "--tty",
                "pts/1",
            ],
            &[
                "--rhost-hex",
                "",
                "--conv",
                "null-array",
                "--repeat",
                "3",
                "--report-process",
            ],
        ]
        .concat();

        let parsed = options(&args);

        assert_eq!(parsed.user, Some(b"a\xff".to_vec()));
        assert_eq!(parsed.answers, vec![b"one".to_vec(), b"\n\r".to_vec()]);
        assert_eq!(
            parsed.items,
            vec![(Item::Tty, b"pts/1".to_vec()), (Item::Rhost, Vec::new())]
        );
        assert_eq!(
            (parsed.mode, parsed.repeat, parsed.report_process),
            (ConvMode::NullArray, 3, true)
        );
    }

    #[test]
    fn bad_usage_is_refused() {
        let cases: [&[&str]; 8] = [
            &["--service", "svc"],
            &["--confdir", "/x"],
            &[&BASE[..], &["--user"]].concat(),
            &[&BASE[..], &["--user-hex", "6"]].concat(),
            &[&BASE[..], &["--answer-hex", "6100"]].concat(),
            &[&BASE[..], &["--conv", "rude"]].concat(),
            &[&BASE[..], &["--repeat", "0"]].concat(),
            &[&BASE[..], &["--conv-hex", "6572726f72"]].concat(),
        ];

        for case in cases {
            assert!(parse(case).is_err(), "accepted {case:?}");
        }
    }

    #[test]
    fn help_is_recognised() {
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }
}
