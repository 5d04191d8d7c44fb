//! The audit trail: one `key=value` line per decision, sent to syslog with
//! facility AUTHPRIV. Values that users control are escaped so a line stays
//! one line; codes, secrets and recovery codes are never part of a line.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use syslog::{Facility, Formatter3164};

/// How serious a line is, as syslog levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Error,
}

/// The most bytes of one value an audit line keeps; longer values (only a
/// hostile user name, host or tty is ever that long) are cut.
pub const MAX_VALUE: usize = 256;

/// The most bytes of a `detail` value: error messages name paths.
pub const MAX_DETAIL: usize = 1024;

/// An audit line under construction: `result=... reason=... user=...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    text: String,
}

impl Line {
    pub fn new() -> Line {
        Line::default()
    }

    /// Adds `key=value` with the value escaped (see [`escape`]) and cut to
    /// [`MAX_VALUE`] bytes.
    pub fn field(self, key: &str, value: impl AsRef<[u8]>) -> Line {
        self.field_up_to(key, value, MAX_VALUE)
    }

    /// Adds `key=value` with the value escaped and cut to `max` bytes: the
    /// kept bytes, then `...[N-bytes]` giving the whole length. Escaping can
    /// make a value four times longer, so without a cap a hostile user name
    /// or host could make a line too long for a syslog datagram, and the
    /// line would be lost.
    pub fn field_up_to(mut self, key: &str, value: impl AsRef<[u8]>, max: usize) -> Line {
        let value = value.as_ref();
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(key);
        self.text.push('=');
        self.text.push_str(&escape(&value[..value.len().min(max)]));
        if value.len() > max {
            self.text.push_str(&format!("...[{}-bytes]", value.len()));
        }
        self
    }

    /// Adds `key=value` only when there is a value.
    pub fn optional(self, key: &str, value: Option<impl AsRef<[u8]>>) -> Line {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Escapes a value for a `key=value` line: printable ASCII other than space,
/// `"`, `=` and `\` stays; everything else becomes `\xNN`. An empty value is
/// written as `""`.
pub fn escape(value: &[u8]) -> String {
    if value.is_empty() {
        return "\"\"".to_string();
    }
    let mut out = String::with_capacity(value.len());
    for &b in value {
        let plain = b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\');
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Where audit lines go.
pub trait Sink {
    /// Sends one line; `prefix` is `pam_otpgate(service:auth)` or the
    /// command's name.
    fn send(&self, level: Level, prefix: &str, line: &Line);
}

/// The system log, through the socket named in the config.
pub struct Syslog {
    socket: PathBuf,
    ident: String,
}

impl Syslog {
    /// `ident` is the program name syslog shows (the PAM service for the
    /// module, `otpgate` for the command).
    pub fn new(socket: &Path, ident: &str) -> Syslog {
        Syslog {
            socket: socket.to_path_buf(),
            ident: escape(ident.as_bytes()),
        }
    }
}

impl Sink for Syslog {
    fn send(&self, level: Level, prefix: &str, line: &Line) {
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: self.ident.clone(),
            pid: std::process::id(),
        };
        // A missing syslog socket loses the line, as syslog(3) would; it
        // never changes the decision.
        let Ok(mut logger) = syslog::unix_custom(formatter, &self.socket) else {
            return;
        };
        let message = format!("{prefix}: {}", line.as_str());
        let _ = match level {
            Level::Info => logger.info(message),
            Level::Notice => logger.notice(message),
            Level::Warning => logger.warning(message),
            Level::Error => logger.err(message),
        };
    }
}

/// Keeps lines in memory, for tests.
#[derive(Default)]
pub struct Recorder {
    pub lines: RefCell<Vec<(Level, String)>>,
}

impl Sink for Recorder {
    fn send(&self, level: Level, prefix: &str, line: &Line) {
        self.lines
            .borrow_mut()
            .push((level, format!("{prefix}: {}", line.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_key_value_pairs() {
        let line = Line::new()
            .field("result", "denied")
            .field("reason", "replay")
            .field("user", "alice");
        assert_eq!(line.as_str(), "result=denied reason=replay user=alice");
    }

    #[test]
    fn hostile_values_stay_on_one_line() {
        let line = Line::new().field("rhost", b"evil\nresult=success \x1b[2J\"\\");
        assert_eq!(
            line.as_str(),
            "rhost=evil\\x0aresult\\x3dsuccess\\x20\\x1b[2J\\x22\\x5c"
        );
        assert!(!line.as_str().contains('\n'));
    }

    #[test]
    fn empty_and_missing_values() {
        let line = Line::new().field("tty", "").optional("rhost", None::<&str>);
        assert_eq!(line.as_str(), "tty=\"\"");
    }

    #[test]
    fn long_values_are_cut_and_say_how_long_they_were() {
        let huge = vec![0x01u8; 60_000];
        let line = Line::new().field("user", &huge).field("tty", "pts/1");

        let expected = format!(
            "user={}...[60000-bytes] tty=pts/1",
            "\\x01".repeat(MAX_VALUE)
        );
        assert_eq!(line.as_str(), expected);
        let exact = Line::new().field("user", vec![b'a'; MAX_VALUE]);
        assert_eq!(exact.as_str(), format!("user={}", "a".repeat(MAX_VALUE)));
        let detail = Line::new().field_up_to("detail", vec![b'b'; 2000], MAX_DETAIL);
        assert!(detail.as_str().ends_with("b...[2000-bytes]"));
    }

    #[test]
    fn non_ascii_is_escaped() {
        assert_eq!(escape("é".as_bytes()), "\\xc3\\xa9");
    }
}
