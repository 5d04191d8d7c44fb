//! What a user copies into an authenticator app at enrollment: the
//! `otpauth://totp/...` URI (the de facto "Key URI" format that Google
//! Authenticator introduced and the other apps read), the account label in
//! it, and the secret written as a key in groups of four characters.
//!
//! The host in the default label comes from gethostname(2), never from the
//! environment, which under sudo or su belongs to the caller.

use std::fmt::Write;

use zeroize::Zeroizing;

use crate::secret::Secret;
use crate::totp::CodeSettings;

/// The label's account part when the config does not say otherwise.
pub const DEFAULT_ACCOUNT: &str = "{user}@{host}";

/// Longest host name we put in a label (the kernel allows 64 bytes).
const MAX_HOST: usize = 64;

/// The account shown in the app: `template` with `{user}` and `{host}`
/// filled in.
pub fn account_name(template: &str, user: &str, host: &str) -> String {
    template.replace("{user}", user).replace("{host}", host)
}

/// `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=...&digits=...&period=...`
///
/// Issuer and account are percent-encoded, so a space or a `&` in them
/// cannot break the URI. The result holds the secret: it is wiped on drop.
pub fn uri(issuer: &str, account: &str, secret: &Secret, code: &CodeSettings) -> Zeroizing<String> {
    let issuer = percent_encode(issuer);
    let mut text = Zeroizing::new(String::with_capacity(160));

    let _ = write!(
        text,
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}",
        percent_encode(account),
        secret.to_base32().as_str(),
    );
    let _ = write!(
        text,
        "&algorithm={}&digits={}&period={}",
        code.algorithm, code.digits, code.period
    );
    text
}

/// The secret as people type it: base32 in groups of four, `ABCD EFGH ...`.
pub fn grouped_key(secret: &Secret) -> Zeroizing<String> {
    let plain = secret.to_base32();
    let mut grouped = Zeroizing::new(String::with_capacity(plain.len() * 5 / 4 + 1));

    for (index, c) in plain.chars().enumerate() {
        if index > 0 && index % 4 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    grouped
}

/// RFC 3986 percent-encoding of everything but the unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`), so the text is safe in a path
/// segment and in a query value alike. A space becomes `%20`, never `+`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());

    for byte in text.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// This machine's name from gethostname(2); `localhost` if it cannot be
/// had or is not printable ASCII.
pub fn host_name() -> String {
    let mut buffer = [0u8; MAX_HOST + 1];

    // SAFETY: the buffer is writable for its whole length, and we pass one
    // byte less so the result always keeps a terminating NUL.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), MAX_HOST) };
    if rc != 0 {
        return "localhost".to_string();
    }

    let length = buffer.iter().position(|&b| b == 0).unwrap_or(MAX_HOST);
    let name = &buffer[..length];
    let printable = !name.is_empty() && name.iter().all(u8::is_ascii_graphic);
    match std::str::from_utf8(name) {
        Ok(text) if printable => text.to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::Algorithm;

    fn secret() -> Secret {
        Secret::from_bytes(b"12345678901234567890".to_vec(), 128).unwrap()
    }

    #[test]
    fn the_uri_carries_every_setting() {
        let code = CodeSettings {
            digits: 8,
            period: 60,
            algorithm: Algorithm::SHA256,
        };

        let text = uri("otpgate", "alice@vm1", &secret(), &code);

        assert_eq!(
            text.as_str(),
            "otpauth://totp/otpgate:alice%40vm1?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=otpgate&algorithm=SHA256&digits=8&period=60"
        );
    }

    #[test]
    fn issuer_and_account_are_percent_encoded() {
        let text = uri(
            "ACME VMs & Co",
            "bob@h",
            &secret(),
            &CodeSettings::default(),
        );

        assert!(text.starts_with("otpauth://totp/ACME%20VMs%20%26%20Co:bob%40h?"));
        assert!(text.contains("&issuer=ACME%20VMs%20%26%20Co&"));
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(percent_encode("a b:c/d?e=f#"), "a%20b%3Ac%2Fd%3Fe%3Df%23");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn the_key_is_shown_in_groups_of_four() {
        assert_eq!(
            grouped_key(&secret()).as_str(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
    }

    #[test]
    fn the_account_template_is_filled_in() {
        assert_eq!(account_name(DEFAULT_ACCOUNT, "alice", "vm1"), "alice@vm1");
        assert_eq!(account_name("{user}", "alice", "vm1"), "alice");
    }

    #[test]
    fn the_host_name_is_printable() {
        let host = host_name();
        assert!(!host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()));
    }
}
