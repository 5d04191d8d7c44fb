//! Link flags for pam_otpgate.so (the cdylib) only; the rlib, the otpgate
//! command and the tests are linked as cargo does by default.
//!
//! `-z nodelete`: the module stays mapped after the application's pam_end
//! unloads it, so a long-lived process (a server that calls PAM for its own
//! users) loads it, libgcc_s and their relocations once, not at every
//! login. docs/performance.md measures the saving (about 0.2 ms per login
//! in a C process) and weighs what it costs: the module's statics live as
//! long as the process, so they may only hold process-wide facts (CPU
//! features, the libpq function table), never anything of one login; and a
//! long-lived process keeps the version it loaded first until it restarts.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
