//! Turning the bytes of a PAM message into one printable line.

use std::fmt::Write;

/// The text with every byte that could break a line-per-message format
/// written as `\xNN`: the backslash itself, control characters (C0, DEL and
/// the C1 range, each UTF-8 byte escaped) and bytes that are not valid
/// UTF-8. Everything else stays as it is, so the result is valid UTF-8 with
/// no line break in it.
pub fn escape_text(bytes: &[u8]) -> String {
    let mut line = String::with_capacity(bytes.len());

    for chunk in bytes.utf8_chunks() {
        chunk.valid().chars().for_each(|c| push_char(&mut line, c));
        push_hex(&mut line, chunk.invalid());
    }
    line
}

/// Appends one character, escaped when it is a backslash or a control.
fn push_char(line: &mut String, c: char) {
    if c == '\\' || c.is_control() {
        let mut buffer = [0; 4];
        push_hex(line, c.encode_utf8(&mut buffer).as_bytes());
    } else {
        line.push(c);
    }
}

/// Appends each byte as `\xNN` (lowercase hex).
fn push_hex(line: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(line, "\\x{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_stays() {
        assert_eq!(escape_text(b"Verification code: "), "Verification code: ");
        assert_eq!(escape_text("Code für Jörg".as_bytes()), "Code für Jörg");
    }

    #[test]
    fn line_breaking_and_control_bytes_are_escaped() {
        assert_eq!(
            escape_text(b"a\nb\rc\\d\te\x1b[0m\x7f"),
            "a\\x0ab\\x0dc\\x5cd\\x09e\\x1b[0m\\x7f"
        );
    }

    #[test]
    fn c1_controls_and_invalid_utf8_are_escaped() {
        assert_eq!(escape_text("x\u{85}y".as_bytes()), "x\\xc2\\x85y");
        assert_eq!(escape_text(b"\xff\xc3z"), "\\xff\\xc3z");
    }
}
