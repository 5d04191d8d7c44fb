//! The PostgreSQL fleet store through the real libpam: two servers (test
//! envs presenting the host names vm-a and vm-b) share one throw-away
//! database; enrollment, replay protection and lockout hold across both.

mod common;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/pg.rs"]
mod pg;

use common::{now, totp_code};
use fleet::{Fleet, SECRET};

fn code_at(offset_steps: i64) -> String {
    totp_code(
        SECRET,
        6,
        30,
        "SHA1",
        (now() as i64 + offset_steps * 30) as u64,
    )
}

#[test]
fn enrolled_once_a_code_works_on_one_host_only() {
    let fleet = Fleet::with_default_config("fleet-once");
    fleet.enroll("alice");
    let code = code_at(0);

    let on_a = fleet.a.login("alice").answer(&code).run();
    let on_b = fleet.b.login("alice").answer(&code).run();

    assert_eq!(on_a.result(), "PAM_SUCCESS", "{:?}", fleet.a.audit_lines());
    assert_eq!(on_b.result(), "PAM_AUTH_ERR", "{}", on_b.stdout);
    eprintln!("{:?}", fleet.b.audit_lines());
}
