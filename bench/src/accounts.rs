//! The benchmark's people: user names, the secret each one is enrolled with
//! and the codes their authenticator app would show. Secrets are derived from
//! the user name, so the parent, the workers and a later run all agree on
//! them without passing a secret around, and a large state folder built once
//! stays valid for the next run. They protect nothing: never reuse them.

use otpgate::secret::Secret;
use otpgate::totp::{self, CodeSettings};

/// Users who log in: `u0000` .. `u0999`, members of the configured group.
pub const MEMBERS: usize = 1_000;

/// Extra enrolled users of the 100,000-user state folder (`f00000`..), who
/// never log in.
pub const FILLER_PREFIX: &str = "f";

/// Extra members of the 10,000-member group (`m0000`..), without accounts.
pub const EXTRA_MEMBER_PREFIX: &str = "m";

/// A user outside every configured group.
pub const OUTSIDER: &str = "outsider";

/// The code settings every module is set up with: 6 digits, 30 s, SHA1.
pub fn settings() -> CodeSettings {
    CodeSettings::default()
}

/// The name of member number `index`.
pub fn member(index: usize) -> String {
    format!("u{index:04}")
}

/// The name of filler user number `index`.
pub fn filler(index: usize) -> String {
    format!("{FILLER_PREFIX}{index:05}")
}

/// The 20 secret bytes of `user`: a splitmix64 stream seeded by an FNV-1a
/// hash of the name.
pub fn secret_bytes(user: &str) -> Vec<u8> {
    let mut state = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut bytes = Vec::with_capacity(24);
    while bytes.len() < 20 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(20);
    bytes
}

/// The secret of `user` as otpgate's type.
pub fn secret(user: &str) -> Secret {
    // 160 bits always pass the 128-bit minimum.
    Secret::from_bytes(secret_bytes(user), 128).expect("a 160-bit secret")
}

/// The code `user`'s app shows at `unix_time`.
pub fn code(user: &str, unix_time: i64) -> String {
    totp::code_at(&secret(user), &settings(), unix_time)
}

/// A well-formed code that matches none of the steps a module with a window
/// of one step either side would try at `unix_time`.
pub fn wrong_code(user: &str, unix_time: i64) -> String {
    let settings = settings();
    let secret = secret(user);
    let step = settings.step_at(unix_time);
    let window: Vec<u32> = (step.saturating_sub(2)..=step + 2)
        .map(|s| totp::code_at_step(&secret, &settings, s))
        .collect();

    let mut candidate = (window[2] + 500_000) % 1_000_000;
    while window.contains(&candidate) {
        candidate = (candidate + 1) % 1_000_000;
    }
    format!("{candidate:06}")
}

/// The current Unix time in seconds.
pub fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_between_users_and_repeat_for_one() {
        assert_eq!(secret_bytes("u0001"), secret_bytes("u0001"));
        assert_ne!(secret_bytes("u0001"), secret_bytes("u0002"));
        assert_eq!(secret_bytes("u0001").len(), 20);
    }

    #[test]
    fn a_wrong_code_is_well_formed_and_outside_the_window() {
        let time = 1_700_000_000;
        for index in 0..50 {
            let user = member(index);
            let wrong = wrong_code(&user, time);
            assert_eq!(wrong.len(), 6);
            for offset in [-30, 0, 30] {
                assert_ne!(wrong, code(&user, time + offset));
            }
        }
    }
}
