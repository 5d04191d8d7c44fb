//! The Linux-PAM return codes and message styles this client deals in, and
//! the C macro name of each return code (for readable test output).

/// The module or library call succeeded.
pub const PAM_SUCCESS: i32 = 0;
/// dlopen() of a module failed.
pub const PAM_OPEN_ERR: i32 = 1;
/// A module lacks a symbol.
pub const PAM_SYMBOL_ERR: i32 = 2;
/// Error in a service module.
pub const PAM_SERVICE_ERR: i32 = 3;
/// System error.
pub const PAM_SYSTEM_ERR: i32 = 4;
/// Memory buffer error.
pub const PAM_BUF_ERR: i32 = 5;
/// Permission denied.
pub const PAM_PERM_DENIED: i32 = 6;
/// Authentication failure.
pub const PAM_AUTH_ERR: i32 = 7;
/// The application may not access the authentication data.
pub const PAM_CRED_INSUFFICIENT: i32 = 8;
/// The authentication service cannot retrieve authentication information.
pub const PAM_AUTHINFO_UNAVAIL: i32 = 9;
/// The user is not known to the authentication service.
pub const PAM_USER_UNKNOWN: i32 = 10;
/// The maximum number of retries was reached.
pub const PAM_MAXTRIES: i32 = 11;
/// Conversation error.
pub const PAM_CONV_ERR: i32 = 19;
/// Authentication token manipulation error.
pub const PAM_AUTHTOK_ERR: i32 = 20;
/// A bad item was passed to pam_set_item or pam_get_item.
pub const PAM_BAD_ITEM: i32 = 29;
/// The module asks to be ignored.
pub const PAM_IGNORE: i32 = 25;
/// Critical error: the module wants the stack to stop at once.
pub const PAM_ABORT: i32 = 26;

/// Message style: a prompt whose answer is not echoed.
pub const PAM_PROMPT_ECHO_OFF: i32 = 1;
/// Message style: a prompt whose answer is echoed.
pub const PAM_PROMPT_ECHO_ON: i32 = 2;
/// Message style: an error message to show the user.
pub const PAM_ERROR_MSG: i32 = 3;
/// Message style: an informational message to show the user.
pub const PAM_TEXT_INFO: i32 = 4;

/// Flag for pam_authenticate: the module should send no informational
/// messages.
pub const PAM_SILENT: i32 = 0x8000;

/// The most messages Linux-PAM puts in one conversation call.
pub const PAM_MAX_NUM_MSG: i32 = 32;

/// Every return code of Linux-PAM 1.5 with its C macro name, in code order.
const NAMES: [&str; 32] = [
    "PAM_SUCCESS",
    "PAM_OPEN_ERR",
    "PAM_SYMBOL_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR",
    "PAM_BUF_ERR",
    "PAM_PERM_DENIED",
    "PAM_AUTH_ERR",
    "PAM_CRED_INSUFFICIENT",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_USER_UNKNOWN",
    "PAM_MAXTRIES",
    "PAM_NEW_AUTHTOK_REQD",
    "PAM_ACCT_EXPIRED",
    "PAM_SESSION_ERR",
    "PAM_CRED_UNAVAIL",
    "PAM_CRED_EXPIRED",
    "PAM_CRED_ERR",
    "PAM_NO_MODULE_DATA",
    "PAM_CONV_ERR",
    "PAM_AUTHTOK_ERR",
    "PAM_AUTHTOK_RECOVERY_ERR",
    "PAM_AUTHTOK_LOCK_BUSY",
    "PAM_AUTHTOK_DISABLE_AGING",
    "PAM_TRY_AGAIN",
    "PAM_IGNORE",
    "PAM_ABORT",
    "PAM_AUTHTOK_EXPIRED",
    "PAM_MODULE_UNKNOWN",
    "PAM_BAD_ITEM",
    "PAM_CONV_AGAIN",
    "PAM_INCOMPLETE",
];

/// The C macro name of a PAM return code, such as `"PAM_AUTH_ERR"` for 7.
///
/// A code Linux-PAM does not define gives `"PAM_UNKNOWN_CODE"`.
pub fn result_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|index| NAMES.get(index))
        .copied()
        .unwrap_or("PAM_UNKNOWN_CODE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_constants() {
        let pairs = [
            (PAM_SUCCESS, "PAM_SUCCESS"),
            (PAM_SERVICE_ERR, "PAM_SERVICE_ERR"),
            (PAM_SYSTEM_ERR, "PAM_SYSTEM_ERR"),
            (PAM_BUF_ERR, "PAM_BUF_ERR"),
            (PAM_PERM_DENIED, "PAM_PERM_DENIED"),
            (PAM_AUTH_ERR, "PAM_AUTH_ERR"),
            (PAM_CRED_INSUFFICIENT, "PAM_CRED_INSUFFICIENT"),
            (PAM_AUTHINFO_UNAVAIL, "PAM_AUTHINFO_UNAVAIL"),
            (PAM_USER_UNKNOWN, "PAM_USER_UNKNOWN"),
            (PAM_MAXTRIES, "PAM_MAXTRIES"),
            (PAM_CONV_ERR, "PAM_CONV_ERR"),
            (PAM_AUTHTOK_ERR, "PAM_AUTHTOK_ERR"),
            (PAM_IGNORE, "PAM_IGNORE"),
            (PAM_ABORT, "PAM_ABORT"),
            (PAM_BAD_ITEM, "PAM_BAD_ITEM"),
        ];
        for (code, name) in pairs {
            assert_eq!(result_name(code), name);
        }
    }

    #[test]
    fn unknown_codes_have_a_placeholder_name() {
        assert_eq!(result_name(-1), "PAM_UNKNOWN_CODE");
        assert_eq!(result_name(32), "PAM_UNKNOWN_CODE");
    }
}
