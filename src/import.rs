//! Reads a `~/.google_authenticator` file, the per-user state file of
//! google-authenticator-libpam (as written by its release 1.08, Debian's
//! `libpam-google-authenticator`), so that an administrator can move users
//! to otpgate without enrolling them again.
//!
//! The format, line by line:
//!
//! 1. the secret, in base32;
//! 2. options, each on a line starting with `"`, e.g. `" WINDOW_SIZE 3`,
//!    `" RATE_LIMIT 3 30 1701234567`, `" DISALLOW_REUSE 56707341`,
//!    `" STEP_SIZE 60`, `" TOTP_AUTH`, `" HOTP_COUNTER 1`;
//! 3. scratch codes, one 8-digit code a line.
//!
//! Values are checked against the ranges the reference module itself
//! accepts (window 1 to 100 steps, step 1 to 60 seconds, rate limit 1 to
//! 100 attempts in 1 to 3600 seconds), so a file it would refuse is refused
//! here too. Options otpgate has no use for (`TIME_SKEW`,
//! `RESETTING_TIME_SKEW`, and any unknown name) are skipped, as the
//! reference module skips names it does not know.
//!
//! Nothing here ever puts the secret or a scratch code into an error
//! message or a `Debug` output: errors name a line number only, since any
//! line of such a file may hold a secret.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use zeroize::Zeroizing;

use crate::secret::base32_decode;

/// Largest file accepted, in bytes; a real one is a few hundred bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Shortest secret accepted, in bits. RFC 4226 asks for at least 128 and
/// google-authenticator writes 128; a secret under 80 bits, which only a
/// hand-made file could hold, is refused rather than carried over.
pub const MIN_SECRET_BITS: usize = 80;

/// Step length when the file has no `STEP_SIZE` option.
const DEFAULT_STEP_SECONDS: u64 = 30;

/// Window when the file has no `WINDOW_SIZE` option: the current step and
/// one on each side.
const DEFAULT_WINDOW_SIZE: u32 = 3;

/// Digits in a scratch code.
const SCRATCH_CODE_DIGITS: usize = 8;

/// `WINDOW_SIZE` values the reference module accepts, in steps.
const WINDOW_SIZES: RangeInclusive<u32> = 1..=100;

/// `STEP_SIZE` values the reference module accepts, in seconds.
const STEP_SECONDS: RangeInclusive<u64> = 1..=60;

/// `RATE_LIMIT` attempt counts the reference module accepts.
const RATE_LIMIT_ATTEMPTS: RangeInclusive<u32> = 1..=100;

/// `RATE_LIMIT` intervals the reference module accepts, in seconds.
const RATE_LIMIT_SECONDS: RangeInclusive<u32> = 1..=3600;

/// What a google-authenticator file holds that otpgate can carry over.
pub struct GoogleAuthenticatorFile {
    /// The shared secret, decoded from base32.
    pub secret: Zeroizing<Vec<u8>>,
    /// Seconds per time step (`STEP_SIZE`, 30 when absent).
    pub step_seconds: u64,
    /// Number of steps accepted, the current one included (`WINDOW_SIZE`,
    /// 3 when absent); see [`GoogleAuthenticatorFile::skew`].
    pub window_size: u32,
    /// Time steps already used to log in (the values of `DISALLOW_REUSE`),
    /// each a unix time divided by `step_seconds`.
    pub used_steps: Vec<u64>,
    /// `(attempts, seconds)`: at most that many logins in that many seconds
    /// (`RATE_LIMIT`); the times of past attempts that follow are not kept.
    pub rate_limit: Option<(u32, u32)>,
    /// Unused scratch codes, 8 digits each.
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// Whether a code may serve only once (a `DISALLOW_REUSE` line).
    pub disallow_reuse: bool,
}

impl GoogleAuthenticatorFile {
    /// Steps accepted on each side of the current one: a window of 3 means
    /// the current step ±1, a window of 17 the current step ±8.
    pub fn skew(&self) -> u32 {
        self.window_size / 2
    }

    /// Length of the secret in bits.
    pub fn secret_bits(&self) -> usize {
        self.secret.len() * 8
    }

    /// A file with `secret` and every other field at its default.
    fn with_secret(secret: Zeroizing<Vec<u8>>) -> GoogleAuthenticatorFile {
        GoogleAuthenticatorFile {
            secret,
            step_seconds: DEFAULT_STEP_SECONDS,
            window_size: DEFAULT_WINDOW_SIZE,
            used_steps: Vec::new(),
            rate_limit: None,
            scratch_codes: Vec::new(),
            disallow_reuse: false,
        }
    }
}

impl fmt::Debug for GoogleAuthenticatorFile {
    /// Shows the settings; the secret and scratch codes only by size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.secret_bits();
        let codes = self.scratch_codes.len();

        f.debug_struct("GoogleAuthenticatorFile")
            .field("secret", &format_args!("<{bits} bits, redacted>"))
            .field("step_seconds", &self.step_seconds)
            .field("window_size", &self.window_size)
            .field("used_steps", &self.used_steps)
            .field("rate_limit", &self.rate_limit)
            .field("scratch_codes", &format_args!("<{codes} codes, redacted>"))
            .field("disallow_reuse", &self.disallow_reuse)
            .finish()
    }
}

/// Why a google-authenticator file could not be imported. No variant holds
/// any of the file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge {
        /// Size of the file in bytes.
        bytes: usize,
    },
    /// Not valid UTF-8.
    NotUtf8,
    /// Nothing but white space.
    Empty,
    /// The first line is not a base32 secret.
    BadSecret,
    /// The secret is shorter than [`MIN_SECRET_BITS`].
    SecretTooShort {
        /// Length of the secret in bits.
        bits: usize,
    },
    /// A counter-based (HOTP) file, which otpgate does not support.
    Hotp,
    /// An option line whose value is missing, out of range or repeated.
    MalformedOption {
        /// Line number, counting from 1.
        line: usize,
    },
    /// A line that should be a scratch code and is not 8 digits.
    BadScratchCode {
        /// Line number, counting from 1.
        line: usize,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::TooLarge { bytes } => write!(
                f,
                "the google-authenticator file is {bytes} bytes long, more than the \
                 {MAX_FILE_BYTES} bytes a secret file can be"
            ),
            ImportError::NotUtf8 => write!(f, "the google-authenticator file is not UTF-8 text"),
            ImportError::Empty => write!(f, "the google-authenticator file is empty"),
            ImportError::BadSecret => write!(
                f,
                "the first line of the google-authenticator file is not a base32 secret"
            ),
            ImportError::SecretTooShort { bits } => write!(
                f,
                "the secret in the google-authenticator file has {bits} bits, fewer than the \
                 {MIN_SECRET_BITS} required; enroll the user again"
            ),
            ImportError::Hotp => write!(
                f,
                "HOTP (counter-based) secrets are not supported; re-enroll the user with TOTP"
            ),
            ImportError::MalformedOption { line } => write!(
                f,
                "line {line} of the google-authenticator file is an option with a missing, \
                 out-of-range or repeated value"
            ),
            ImportError::BadScratchCode { line } => write!(
                f,
                "line {line} of the google-authenticator file is not an 8-digit scratch code"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// Reads the contents of a `~/.google_authenticator` file.
///
/// Lines may end in `\n` or `\r\n`. A file without `" TOTP_AUTH` is taken
/// as time-based (older releases did not write the line); a file with a
/// `HOTP_COUNTER` line is refused with [`ImportError::Hotp`].
pub fn parse(text: &[u8]) -> Result<GoogleAuthenticatorFile, ImportError> {
    // Refuse anything too large to be a secret file before looking inside.
    if text.len() > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge { bytes: text.len() });
    }

    // Read it as text with at least one non-blank character.
    let text = std::str::from_utf8(text).map_err(|_| ImportError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(ImportError::Empty);
    }

    // The first line is the secret.
    let mut lines = numbered_lines(text);
    let (_, secret_line) = lines.next().ok_or(ImportError::Empty)?;
    let mut file = GoogleAuthenticatorFile::with_secret(decode_secret(secret_line)?);

    // Every further line is an option, a scratch code or blank.
    let mut seen = SeenOptions::default();
    for (number, line) in lines {
        read_line(&mut file, &mut seen, number, line)?;
    }
    Ok(file)
}

/// The lines of `text` without their `\r\n` or `\n`, numbered from 1.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

/// Decodes the base32 secret on the first line.
///
/// Upper and lower case are both accepted, spaces are ignored and `=`
/// padding is optional.
fn decode_secret(line: &str) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    // Bring the text to the form the decoder takes.
    let base32 = canonical_base32(line);
    if base32.is_empty() || !is_whole_base32_length(base32.len()) {
        return Err(ImportError::BadSecret);
    }

    // Decode it with the crate's one base32 decoder, which returns wiped
    // memory. It also skips dashes, which this format never holds.
    if base32.contains('-') {
        return Err(ImportError::BadSecret);
    }
    let secret = base32_decode(&base32).ok_or(ImportError::BadSecret)?;

    // Refuse secrets too short to be safe.
    let bits = secret.len() * 8;
    if bits < MIN_SECRET_BITS {
        return Err(ImportError::SecretTooShort { bits });
    }
    Ok(secret)
}

/// `line` in upper case, without spaces, tabs or trailing `=` padding.
fn canonical_base32(line: &str) -> Zeroizing<String> {
    let mut base32 = Zeroizing::new(String::with_capacity(line.len()));

    base32.extend(
        line.chars()
            .filter(|c| *c != ' ' && *c != '\t')
            .map(|c| c.to_ascii_uppercase()),
    );

    let unpadded = base32.trim_end_matches('=').len();
    base32.truncate(unpadded);
    base32
}

/// Whether `length` base32 characters can end on a whole byte: a group of
/// 8 characters may stop after 2, 4, 5 or 7 of them, never after 1, 3 or 6.
fn is_whole_base32_length(length: usize) -> bool {
    !matches!(length % 8, 1 | 3 | 6)
}

/// Which single-use options were already met, to refuse repeats.
#[derive(Default)]
struct SeenOptions {
    rate_limit: bool,
    window_size: bool,
    step_size: bool,
    disallow_reuse: bool,
    totp_auth: bool,
}

/// Reads one line after the secret into `file`.
fn read_line(
    file: &mut GoogleAuthenticatorFile,
    seen: &mut SeenOptions,
    number: usize,
    line: &str,
) -> Result<(), ImportError> {
    // Options start with a double quote.
    if let Some(option) = line.strip_prefix('"') {
        return read_option(file, seen, option).map_err(|error| error.at_line(number));
    }

    // Blank lines carry nothing.
    let code = line.trim();
    if code.is_empty() {
        return Ok(());
    }

    // Anything else must be a scratch code.
    if !is_scratch_code(code) {
        return Err(ImportError::BadScratchCode { line: number });
    }
    file.scratch_codes.push(Zeroizing::new(code.to_owned()));
    Ok(())
}

/// Whether `code` is exactly 8 ASCII digits.
fn is_scratch_code(code: &str) -> bool {
    code.len() == SCRATCH_CODE_DIGITS && code.bytes().all(|byte| byte.is_ascii_digit())
}

/// What was wrong with an option, before its line number is known.
enum OptionError {
    /// A counter-based file.
    Hotp,
    /// A value missing, out of range or repeated.
    Malformed,
}

impl OptionError {
    /// The import error for this option error on line `number`.
    fn at_line(self, number: usize) -> ImportError {
        match self {
            OptionError::Hotp => ImportError::Hotp,
            OptionError::Malformed => ImportError::MalformedOption { line: number },
        }
    }
}

/// Reads one option (the text after the leading `"`) into `file`.
fn read_option(
    file: &mut GoogleAuthenticatorFile,
    seen: &mut SeenOptions,
    option: &str,
) -> Result<(), OptionError> {
    let mut words = option.split_ascii_whitespace();
    let name = words.next().unwrap_or_default();
    let values: Vec<&str> = words.collect();

    match name {
        "HOTP_COUNTER" => Err(OptionError::Hotp),
        "TOTP_AUTH" => read_totp_auth(&mut seen.totp_auth, &values),
        "WINDOW_SIZE" => read_window_size(file, &mut seen.window_size, &values),
        "STEP_SIZE" => read_step_size(file, &mut seen.step_size, &values),
        "RATE_LIMIT" => read_rate_limit(file, &mut seen.rate_limit, &values),
        "DISALLOW_REUSE" => read_disallow_reuse(file, &mut seen.disallow_reuse, &values),
        _ => Ok(()),
    }
}

/// `" TOTP_AUTH`: marks a time-based file; takes no value.
fn read_totp_auth(seen: &mut bool, values: &[&str]) -> Result<(), OptionError> {
    first_time(seen)?;

    if !values.is_empty() {
        return Err(OptionError::Malformed);
    }
    Ok(())
}

/// `" WINDOW_SIZE 17`: steps accepted, the current one included.
fn read_window_size(
    file: &mut GoogleAuthenticatorFile,
    seen: &mut bool,
    values: &[&str],
) -> Result<(), OptionError> {
    first_time(seen)?;

    file.window_size = single_value_in(values, &WINDOW_SIZES)?;
    Ok(())
}

/// `" STEP_SIZE 60`: seconds per step.
fn read_step_size(
    file: &mut GoogleAuthenticatorFile,
    seen: &mut bool,
    values: &[&str],
) -> Result<(), OptionError> {
    first_time(seen)?;

    file.step_seconds = single_value_in(values, &STEP_SECONDS)?;
    Ok(())
}

/// `" RATE_LIMIT 3 30 [time...]`: attempts, seconds, then the unix times
/// of recent attempts, which are checked but not kept.
fn read_rate_limit(
    file: &mut GoogleAuthenticatorFile,
    seen: &mut bool,
    values: &[&str],
) -> Result<(), OptionError> {
    first_time(seen)?;

    // The limit itself.
    let (attempts, seconds, times) = match values {
        [attempts, seconds, times @ ..] => (attempts, seconds, times),
        _ => return Err(OptionError::Malformed),
    };
    let attempts = value_in(attempts, &RATE_LIMIT_ATTEMPTS)?;
    let seconds = value_in(seconds, &RATE_LIMIT_SECONDS)?;

    // The times of recent attempts must at least be numbers.
    for time in times {
        number::<u64>(time)?;
    }

    file.rate_limit = Some((attempts, seconds));
    Ok(())
}

/// `" DISALLOW_REUSE [step...]`: codes serve once; the steps already used.
fn read_disallow_reuse(
    file: &mut GoogleAuthenticatorFile,
    seen: &mut bool,
    values: &[&str],
) -> Result<(), OptionError> {
    first_time(seen)?;

    let used_steps = values
        .iter()
        .map(|step| number::<u64>(step))
        .collect::<Result<Vec<u64>, OptionError>>()?;

    file.disallow_reuse = true;
    file.used_steps = used_steps;
    Ok(())
}

/// Marks an option as met, or fails if it was met before.
fn first_time(seen: &mut bool) -> Result<(), OptionError> {
    if *seen {
        return Err(OptionError::Malformed);
    }
    *seen = true;
    Ok(())
}

/// The one value of an option, which must lie in `range`.
fn single_value_in<T>(values: &[&str], range: &RangeInclusive<T>) -> Result<T, OptionError>
where
    T: FromStr + PartialOrd,
{
    match values {
        [value] => value_in(value, range),
        _ => Err(OptionError::Malformed),
    }
}

/// `word` as a number that lies in `range`.
fn value_in<T>(word: &str, range: &RangeInclusive<T>) -> Result<T, OptionError>
where
    T: FromStr + PartialOrd,
{
    let value = number(word)?;

    if !range.contains(&value) {
        return Err(OptionError::Malformed);
    }
    Ok(value)
}

/// `word` as an unsigned decimal number: digits only, no sign.
fn number<T: FromStr>(word: &str) -> Result<T, OptionError> {
    if word.is_empty() || !word.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(OptionError::Malformed);
    }
    word.parse().map_err(|_| OptionError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOTP_DEFAULT: &[u8] = include_bytes!("../tests/data/google-authenticator/totp-default");
    const TOTP_NO_EXTRAS: &[u8] =
        include_bytes!("../tests/data/google-authenticator/totp-no-extras");
    const TOTP_STEP60_WINDOW17: &[u8] =
        include_bytes!("../tests/data/google-authenticator/totp-step60-window17");
    const TOTP_AFTER_LOGIN: &[u8] =
        include_bytes!("../tests/data/google-authenticator/totp-after-login");
    const TOTP_AFTER_SCRATCH_CODE: &[u8] =
        include_bytes!("../tests/data/google-authenticator/totp-after-scratch-code");
    const HOTP_COUNTER: &[u8] = include_bytes!("../tests/data/google-authenticator/hotp-counter");

    /// The secret `KT54XCITFNNRTGVZOD475KJLOE` of the totp-default family.
    const DEFAULT_SECRET: [u8; 16] = [
        0x54, 0xfb, 0xcb, 0x89, 0x13, 0x2b, 0x5b, 0x19, 0x9a, 0xb9, 0x70, 0xf9, 0xfe, 0xa9, 0x2b,
        0x71,
    ];

    /// The scratch codes of totp-default, in file order.
    const DEFAULT_SCRATCH_CODES: [&str; 5] =
        ["69321920", "46610551", "88415341", "38709251", "38058532"];

    fn parsed(text: &[u8]) -> GoogleAuthenticatorFile {
        match parse(text) {
            Ok(file) => file,
            Err(error) => panic!("expected a valid file, got: {error}"),
        }
    }

    fn codes(file: &GoogleAuthenticatorFile) -> Vec<&str> {
        file.scratch_codes
            .iter()
            .map(|code| code.as_str())
            .collect()
    }

    // The fixtures, field by field.

    #[test]
    fn totp_default_is_read_field_by_field() {
        let file = parsed(TOTP_DEFAULT);

        assert_eq!(file.secret.as_slice(), DEFAULT_SECRET);
        assert_eq!(file.secret_bits(), 128);
        assert_eq!(file.step_seconds, 30);
        assert_eq!(file.window_size, 3);
        assert_eq!(file.skew(), 1);
        assert!(file.disallow_reuse);
        assert!(file.used_steps.is_empty());
        assert_eq!(file.rate_limit, Some((3, 30)));
        assert_eq!(codes(&file), DEFAULT_SCRATCH_CODES);
    }

    #[test]
    fn totp_no_extras_is_read_field_by_field() {
        let file = parsed(TOTP_NO_EXTRAS);

        assert_eq!(
            file.secret.as_slice(),
            [
                0x80, 0x61, 0xb4, 0x90, 0x7c, 0x09, 0x0d, 0xfc, 0x37, 0x79, 0x85, 0x4d, 0xa6, 0xad,
                0x70, 0x9a
            ]
        );
        assert_eq!(file.step_seconds, 30);
        assert_eq!(file.window_size, 3);
        assert!(!file.disallow_reuse);
        assert!(file.used_steps.is_empty());
        assert_eq!(file.rate_limit, None);
        assert!(file.scratch_codes.is_empty());
    }

    #[test]
    fn totp_step60_window17_is_read_field_by_field() {
        let file = parsed(TOTP_STEP60_WINDOW17);

        assert_eq!(
            file.secret.as_slice(),
            [
                0xc6, 0x29, 0x49, 0x6f, 0x97, 0xd2, 0x16, 0xf2, 0x8b, 0x1b, 0x26, 0xfa, 0xec, 0x57,
                0x95, 0x61
            ]
        );
        assert_eq!(file.step_seconds, 60);
        assert_eq!(file.window_size, 17);
        assert_eq!(file.skew(), 8);
        assert!(file.disallow_reuse);
        assert!(file.used_steps.is_empty());
        assert_eq!(file.rate_limit, Some((5, 60)));
        assert_eq!(
            codes(&file),
            [
                "14453506", "27637435", "45524759", "56938325", "59642709", "42492095", "75355123",
                "75276822", "37724650", "98959499"
            ]
        );
    }

    #[test]
    fn totp_after_login_keeps_the_used_step() {
        let file = parsed(TOTP_AFTER_LOGIN);

        assert_eq!(file.secret.as_slice(), DEFAULT_SECRET);
        assert!(file.disallow_reuse);
        assert_eq!(file.used_steps, [59_877_131]);
        assert_eq!(file.rate_limit, Some((3, 30)));
        assert_eq!(codes(&file), DEFAULT_SCRATCH_CODES);
    }

    #[test]
    fn totp_after_scratch_code_lacks_the_used_code() {
        let file = parsed(TOTP_AFTER_SCRATCH_CODE);

        assert_eq!(file.secret.as_slice(), DEFAULT_SECRET);
        assert_eq!(file.used_steps, [59_877_131]);
        assert_eq!(file.rate_limit, Some((3, 30)));
        assert_eq!(
            codes(&file),
            ["69321920", "88415341", "38709251", "38058532"]
        );
    }

    #[test]
    fn hotp_is_refused_with_advice() {
        let error = parse(HOTP_COUNTER).expect_err("HOTP is not supported");

        assert_eq!(error, ImportError::Hotp);
        assert_eq!(
            error.to_string(),
            "HOTP (counter-based) secrets are not supported; re-enroll the user with TOTP"
        );
    }

    #[test]
    fn hotp_is_refused_even_beside_totp_auth() {
        let text = b"KT54XCITFNNRTGVZOD475KJLOE\n\" TOTP_AUTH\n\" HOTP_COUNTER 4\n";

        assert_eq!(parse(text).err(), Some(ImportError::Hotp));
    }

    // Secrets and scratch codes stay out of every output.

    #[test]
    fn debug_shows_neither_secret_nor_scratch_codes() {
        let shown = format!("{:?}", parsed(TOTP_DEFAULT));

        assert!(shown.contains("128 bits, redacted"));
        assert!(shown.contains("5 codes, redacted"));
        assert!(!shown.contains("KT54"));
        assert!(!shown.contains(&format!("{:?}", &DEFAULT_SECRET[..4]).replace(']', "")));
        for code in DEFAULT_SCRATCH_CODES {
            assert!(!shown.contains(code));
        }
    }

    #[test]
    fn errors_name_the_line_but_not_its_content() {
        let text = b"KT54XCITFNNRTGVZOD475KJLOE\n\" WINDOW_SIZE 3\n6932192\n";

        let error = parse(text).expect_err("7 digits are no scratch code");

        assert_eq!(error, ImportError::BadScratchCode { line: 3 });
        assert!(error.to_string().contains("line 3"));
        assert!(!error.to_string().contains("6932192"));
    }

    // Line endings, case, spaces and padding.

    #[test]
    fn crlf_line_endings_are_accepted() {
        let text = String::from_utf8_lossy(TOTP_DEFAULT).replace('\n', "\r\n");

        let file = parsed(text.as_bytes());

        assert_eq!(file.secret.as_slice(), DEFAULT_SECRET);
        assert_eq!(codes(&file), DEFAULT_SCRATCH_CODES);
    }

    #[test]
    fn lower_case_spaced_and_padded_secrets_are_accepted() {
        for secret in [
            "kt54xcitfnnrtgvzod475kjloe",
            "KT54 XCIT FNNR TGVZ OD47 5KJL OE",
            "KT54XCITFNNRTGVZOD475KJLOE======",
        ] {
            let file = parsed(format!("{secret}\n\" TOTP_AUTH\n").as_bytes());

            assert_eq!(file.secret.as_slice(), DEFAULT_SECRET, "secret {secret:?}");
        }
    }

    #[test]
    fn a_file_without_totp_auth_or_trailing_newline_is_time_based() {
        let file = parsed(b"KT54XCITFNNRTGVZOD475KJLOE");

        assert_eq!(file.secret.as_slice(), DEFAULT_SECRET);
        assert_eq!(file.window_size, 3);
    }

    #[test]
    fn unknown_and_skew_options_are_skipped() {
        let text = b"KT54XCITFNNRTGVZOD475KJLOE\n\" TIME_SKEW -2\n\" RESETTING_TIME_SKEW 1+2\n\
                     \" SOMETHING_NEW x\n\"\n\" TOTP_AUTH\n";

        assert!(parse(text).is_ok());
    }

    // Hand-made bad files.

    #[test]
    fn bad_files_are_refused_with_the_right_error() {
        let cases: &[(&[u8], ImportError)] = &[
            (b"", ImportError::Empty),
            (b" \r\n\n\t\n", ImportError::Empty),
            (
                b"\xff\xfe KT54XCITFNNRTGVZOD475KJLOE\n",
                ImportError::NotUtf8,
            ),
            (b"!not base32 at all!\n", ImportError::BadSecret),
            (b"KT54XCITFNNRTGVZOD475KJLO1\n", ImportError::BadSecret),
            (b"KT54XCITFNNRTGVZOD475KJLO\n", ImportError::BadSecret),
            (b"KT54=CITFNNRTGVZOD475KJLOE\n", ImportError::BadSecret),
            (b"KT54-XCITFNNRTGVZOD475KJLOE\n", ImportError::BadSecret),
            (b"\n KT54XCITFNNRTGVZOD475KJLOE\n", ImportError::BadSecret),
            (b"\" TOTP_AUTH\n", ImportError::BadSecret),
            (
                b"JBSWY3DPEHPK3PX\n",
                ImportError::SecretTooShort { bits: 72 },
            ),
            (
                b"KT54XCITFNNRTGVZOD475KJLOE\nhello\n",
                ImportError::BadScratchCode { line: 2 },
            ),
            (
                b"KT54XCITFNNRTGVZOD475KJLOE\n123456789\n",
                ImportError::BadScratchCode { line: 2 },
            ),
        ];

        for (text, expected) in cases {
            assert_eq!(parse(text).err().as_ref(), Some(expected), "input {text:?}");
        }
    }

    #[test]
    fn bad_option_values_name_their_line() {
        let options = [
            "\" WINDOW_SIZE",
            "\" WINDOW_SIZE 0",
            "\" WINDOW_SIZE 101",
            "\" WINDOW_SIZE +3",
            "\" WINDOW_SIZE 3 4",
            "\" WINDOW_SIZE three",
            "\" STEP_SIZE 61",
            "\" STEP_SIZE 0",
            "\" STEP_SIZE 99999999999999999999999",
            "\" RATE_LIMIT 3",
            "\" RATE_LIMIT 0 30",
            "\" RATE_LIMIT 3 3601",
            "\" RATE_LIMIT 3 30 yesterday",
            "\" DISALLOW_REUSE 12 -13",
            "\" TOTP_AUTH yes",
        ];

        for option in options {
            let text = format!("KT54XCITFNNRTGVZOD475KJLOE\n\" TOTP_AUTH\n{option}\n");

            assert_eq!(
                parse(text.as_bytes()).err(),
                Some(ImportError::MalformedOption { line: 3 }),
                "option {option:?}"
            );
        }
    }

    #[test]
    fn a_repeated_option_is_malformed() {
        let text = b"KT54XCITFNNRTGVZOD475KJLOE\n\" WINDOW_SIZE 3\n\" WINDOW_SIZE 5\n";

        assert_eq!(
            parse(text).err(),
            Some(ImportError::MalformedOption { line: 3 })
        );
    }

    #[test]
    fn an_overlong_file_is_refused_before_it_is_read() {
        let mut text = TOTP_DEFAULT.to_vec();
        text.resize(MAX_FILE_BYTES + 1, b'\n');

        assert_eq!(
            parse(&text).err(),
            Some(ImportError::TooLarge {
                bytes: MAX_FILE_BYTES + 1
            })
        );

        text.truncate(MAX_FILE_BYTES);
        assert!(parse(&text).is_ok());
    }

    // Properties.

    /// The fields a generated file is written from.
    #[derive(Debug, Clone)]
    struct Fields {
        secret: Vec<u8>,
        step_seconds: Option<u64>,
        window_size: Option<u32>,
        rate_limit: Option<(u32, u32, Vec<u64>)>,
        used_steps: Option<Vec<u64>>,
        totp_auth: bool,
        scratch_codes: Vec<u32>,
        crlf: bool,
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            proptest::collection::vec(any::<u8>(), 10..=64),
            proptest::option::of(STEP_SECONDS),
            proptest::option::of(WINDOW_SIZES),
            proptest::option::of((
                RATE_LIMIT_ATTEMPTS,
                RATE_LIMIT_SECONDS,
                proptest::collection::vec(any::<u64>(), 0..5),
            )),
            proptest::option::of(proptest::collection::vec(any::<u64>(), 0..5)),
            any::<bool>(),
            proptest::collection::vec(10_000_000u32..=99_999_999, 0..12),
            any::<bool>(),
        )
            .prop_map(
                |(secret, step, window, rate, reuse, totp_auth, scratch, crlf)| Fields {
                    secret,
                    step_seconds: step,
                    window_size: window,
                    rate_limit: rate,
                    used_steps: reuse,
                    totp_auth,
                    scratch_codes: scratch,
                    crlf,
                },
            )
    }

    /// Writes `fields` the way google-authenticator lays out its file.
    fn render(fields: &Fields) -> String {
        let mut lines = vec![crate::secret::base32_encode(&fields.secret).to_string()];

        if let Some((attempts, seconds, times)) = &fields.rate_limit {
            lines.push(format!(
                "\" RATE_LIMIT {attempts} {seconds}{}",
                spaced(times)
            ));
        }
        if let Some(window) = fields.window_size {
            lines.push(format!("\" WINDOW_SIZE {window}"));
        }
        if let Some(step) = fields.step_seconds {
            lines.push(format!("\" STEP_SIZE {step}"));
        }
        if let Some(steps) = &fields.used_steps {
            lines.push(format!("\" DISALLOW_REUSE{}", spaced(steps)));
        }
        if fields.totp_auth {
            lines.push("\" TOTP_AUTH".to_owned());
        }
        lines.extend(fields.scratch_codes.iter().map(|code| code.to_string()));

        let end = if fields.crlf { "\r\n" } else { "\n" };
        lines.join(end) + end
    }

    fn spaced(numbers: &[u64]) -> String {
        numbers.iter().map(|number| format!(" {number}")).collect()
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_bytes(text in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_near_valid_lines(
            lines in proptest::collection::vec(
                "(\" ?(RATE_LIMIT|WINDOW_SIZE|STEP_SIZE|DISALLOW_REUSE|TOTP_AUTH|HOTP_COUNTER)\
                 ( [0-9+-]{0,22}){0,4}|[A-Za-z2-7= ]{0,40}|[0-9]{0,10})\r?",
                0..16,
            )
        ) {
            let _ = parse(lines.join("\n").as_bytes());
        }

        #[test]
        fn a_rendered_file_reads_back_to_its_fields(fields in fields()) {
            let file = parse(render(&fields).as_bytes())
                .map_err(|error| TestCaseError::fail(error.to_string()))?;

            prop_assert_eq!(file.secret.as_slice(), fields.secret.as_slice());
            prop_assert_eq!(file.step_seconds, fields.step_seconds.unwrap_or(30));
            prop_assert_eq!(file.window_size, fields.window_size.unwrap_or(3));
            prop_assert_eq!(
                file.rate_limit,
                fields.rate_limit.as_ref().map(|(attempts, seconds, _)| (*attempts, *seconds))
            );
            prop_assert_eq!(file.disallow_reuse, fields.used_steps.is_some());
            prop_assert_eq!(&file.used_steps, &fields.used_steps.clone().unwrap_or_default());
            let expected_codes: Vec<String> =
                fields.scratch_codes.iter().map(|code| code.to_string()).collect();
            prop_assert_eq!(codes(&file), expected_codes);
        }
    }
}
