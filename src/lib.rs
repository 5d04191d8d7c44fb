//! otpgate: a TOTP second factor for Linux logins, gated by Unix group.
//!
//! `pam` is the only module that touches PAM; everything else is safe Rust
//! that tests drive with fakes: `login` decides, `verify` judges a reply,
//! `store` keeps state, `audit` writes the trail.

pub mod admin;
pub mod admin_db;
pub mod audit;
pub mod config;
pub mod enroll;
pub mod fsutil;
pub mod import;
pub mod login;
pub mod otpauth;
pub mod pam;
pub mod qr;
pub mod recovery;
pub mod secret;
pub mod store;
pub mod totp;
pub mod users;
pub mod verify;
