//! Enrollment at login: a member of a configured group who has no secret
//! yet sets one up inside the login itself, when `[enrollment] mode` lets
//! them.
//!
//! The secret is made in memory and shown through the conversation (an
//! instruction, the QR code, the key and the URI, each as PAM_TEXT_INFO).
//! Nothing touches the store until the user typed a code that matches it;
//! then the secret is saved with that code's step marked as used, and the
//! new recovery codes are shown once. An abandoned or failed setup leaves
//! nothing behind. When two first logins of one user race, the store keeps
//! the first secret saved and the other login is refused without changing
//! anything.

use zeroize::Zeroizing;

use crate::config::{Config, EnrollmentMode};
use crate::login::{Conversation, ConversationError, Denial, Environment, Failure, Outcome};
use crate::otpauth;
use crate::qr;
use crate::recovery;
use crate::secret::Secret;
use crate::store::record::UserRecord;
use crate::store::{Store, StoreError};
use crate::totp;
use crate::users::UserName;

/// The prompt for the code that proves the app was set up.
pub const SETUP_PROMPT: &str = "Code from your app to finish setup: ";

/// Codes a user may try in one setup before it is abandoned.
pub const SETUP_TRIES: u32 = 3;

/// What a member without a secret is told when they may not enroll here.
pub const ASK_ADMINISTRATOR: &str =
    "You have no verification code set up yet. Ask your administrator to set one up for you.";

/// Everything the user needs to set up their app, made in memory.
pub struct Setup {
    pub secret: Secret,
    pub uri: Zeroizing<String>,
    pub key: Zeroizing<String>,
    /// The QR drawing of the URI; `None` if the URI did not fit a QR code.
    pub qr: Option<Zeroizing<String>>,
}

impl Setup {
    /// A setup for `secret` with the config's issuer, account and code
    /// settings; `host` fills `{host}` in the account.
    pub fn new(secret: Secret, config: &Config, user: &UserName, host: &str) -> Setup {
        let enrollment = &config.enrollment;
        let account = otpauth::account_name(&enrollment.account, user.as_str(), host);
        let uri = otpauth::uri(&enrollment.issuer, &account, &secret, &config.code);
        let qr = qr::render(&uri).ok().map(Zeroizing::new);
        let key = otpauth::grouped_key(&secret);
        Setup {
            secret,
            uri,
            key,
            qr,
        }
    }
}

/// Handles a member without a secret: enrolls them when the mode allows
/// it, refuses them otherwise. `host` is this machine's name for the label.
pub fn at_login(
    config: &Config,
    user: &UserName,
    host: &str,
    env: &Environment,
    store: &dyn Store,
) -> Outcome {
    match may_enroll(config.enrollment.mode, user, store) {
        Err(e) => Outcome::Failed(Failure::Store(e)),
        Ok(false) => refuse(env.conversation),
        Ok(true) => enroll(config, user, host, env, store),
    }
}

/// `at-login`: everyone; `after-reset`: those an administrator allowed;
/// `admin-only`: nobody.
fn may_enroll(
    mode: EnrollmentMode,
    user: &UserName,
    store: &dyn Store,
) -> Result<bool, StoreError> {
    match mode {
        EnrollmentMode::AtLogin => Ok(true),
        EnrollmentMode::AfterReset => store.is_allowed(user),
        EnrollmentMode::AdminOnly => Ok(false),
    }
}

fn refuse(conversation: &dyn Conversation) -> Outcome {
    let _ = conversation.error(ASK_ADMINISTRATOR);
    Outcome::Denied(Denial::NotEnrolled)
}

/// The whole setup: show, ask, save, show the recovery codes.
fn enroll(
    config: &Config,
    user: &UserName,
    host: &str,
    env: &Environment,
    store: &dyn Store,
) -> Outcome {
    let conversation = env.conversation;
    let Ok(secret) = Secret::generate() else {
        return give_up(
            conversation,
            "Setup is not possible right now: no random source.",
        );
    };
    let setup = Setup::new(secret, config, user, host);

    // Show what to put into the app.
    if show_setup(conversation, &setup).is_err() {
        return Outcome::Failed(Failure::Conversation);
    }

    // Ask until a code matches; nothing is stored before that.
    let step = match ask_for_code(config, &setup.secret, env) {
        Ok(Some(step)) => step,
        Ok(None) => return Outcome::Denied(Denial::EnrollmentFailed),
        Err(ConversationError) => return Outcome::Failed(Failure::Conversation),
    };

    // Save, unless another login of this user saved a secret first.
    let Ok((codes, hashes)) = recovery::generate(config.enrollment.recovery_codes) else {
        return give_up(
            conversation,
            "Setup is not possible right now: no random source.",
        );
    };
    let mut record = UserRecord::new(setup.secret, config.code, env.clock.now());
    record.recovery_codes = hashes;
    match store.enroll(user, &record, Some(step), false) {
        Ok(()) => {}
        Err(StoreError::Exists) => return give_up(conversation, LOST_RACE),
        Err(e) => return Outcome::Failed(Failure::Store(e)),
    }

    // The secret is saved: the login succeeds even if the last messages
    // do not reach the user (an administrator can issue new codes). sshd
    // shows messages only together with a question, so one question closes
    // the setup; without it an SSH user would never see the codes.
    let _ = conversation.info("Setup finished: from now on, log in with a code from your app.");
    let _ = show_recovery_codes(conversation, &codes);
    let _ = conversation.ask_hidden(closing_prompt(&codes));
    Outcome::Enrolled
}

/// The question that makes the last messages reach the user.
fn closing_prompt(codes: &[Zeroizing<String>]) -> &'static str {
    if codes.is_empty() {
        CONTINUE_PROMPT
    } else {
        SAVED_CODES_PROMPT
    }
}

pub const SAVED_CODES_PROMPT: &str = "Press Enter once you have saved your recovery codes: ";
pub const CONTINUE_PROMPT: &str = "Press Enter to continue: ";

const LOST_RACE: &str = "Another login of your account finished setup first, so the key shown \
    here was not saved. Log in again with the app set up in that other login, or ask your \
    administrator to reset your verification code.";

fn give_up(conversation: &dyn Conversation, text: &str) -> Outcome {
    let _ = conversation.error(text);
    Outcome::Denied(Denial::EnrollmentFailed)
}

/// The instruction, the QR code, the key and the URI, as four messages.
pub fn show_setup(conversation: &dyn Conversation, setup: &Setup) -> Result<(), ConversationError> {
    conversation.info(
        "Set up your verification code: install an authenticator app on your phone \
         (Google Authenticator, Microsoft Authenticator, Authy...), then scan this QR code \
         or type the key below into it.",
    )?;
    match &setup.qr {
        Some(drawing) => conversation.info(drawing)?,
        None => conversation.info("(The QR code cannot be drawn here; type the key instead.)")?,
    }
    conversation.info(&format!("Key: {}", setup.key.as_str()))?;
    conversation.info(&format!("URI: {}", setup.uri.as_str()))
}

/// Up to [`SETUP_TRIES`] codes. `Ok(Some(step))`: the step of the code that
/// matched. `Ok(None)`: the user gave up (an empty answer) or every try
/// failed. `Err`: the conversation broke, the login is abandoned.
fn ask_for_code(
    config: &Config,
    secret: &Secret,
    env: &Environment,
) -> Result<Option<u64>, ConversationError> {
    let conversation = env.conversation;
    for try_number in 1..=SETUP_TRIES {
        let reply = conversation.ask_hidden(SETUP_PROMPT)?;
        if reply.trim_ascii().is_empty() {
            conversation.error("Setup cancelled; nothing was saved.")?;
            return Ok(None);
        }

        if let Some(step) = matching_step(config, secret, &reply, env.clock.now()) {
            return Ok(Some(step));
        }
        conversation.error(&wrong_code_text(SETUP_TRIES - try_number))?;
    }
    Ok(None)
}

/// The step whose code `reply` is, within the configured skew.
fn matching_step(config: &Config, secret: &Secret, reply: &[u8], now: i64) -> Option<u64> {
    let code = totp::parse_reply(reply, config.code.digits).ok()?;
    totp::matching_step(secret, &config.code, code, now, config.skew)
}

fn wrong_code_text(tries_left: u32) -> String {
    match tries_left {
        0 => "That code does not match either. Nothing was saved: check that your phone's \
              clock is right, then log in again to start over."
            .to_string(),
        1 => "That code does not match. 1 try left.".to_string(),
        n => format!("That code does not match. {n} tries left."),
    }
}

/// The recovery codes, once, in one message; nothing when there are none.
pub fn show_recovery_codes(
    conversation: &dyn Conversation,
    codes: &[Zeroizing<String>],
) -> Result<(), ConversationError> {
    if codes.is_empty() {
        return Ok(());
    }
    let mut text = Zeroizing::new(String::from(
        "Your recovery codes. Each one works once, in place of a code, if you lose your \
         phone. They are shown only now: keep them somewhere safe.",
    ));
    for code in codes {
        text.push_str("\n  ");
        text.push_str(code);
    }
    conversation.info(&text)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::path::Path;

    use super::*;
    use crate::login::Clock;
    use crate::store::files::FileStore;
    use crate::users::{Account, Directory, LookupError};

    const NOW: i64 = 1_700_000_000;

    /// Answers from a queue; `None` in the queue breaks the conversation.
    struct Script {
        answers: RefCell<VecDeque<Option<AnswerFrom>>>,
        seen: RefCell<Vec<(String, String)>>,
    }

    /// An answer given as it is, or the code for the key seen so far.
    #[derive(Clone)]
    enum AnswerFrom {
        Text(&'static str),
        CodeAt(i64),
    }

    impl Script {
        fn new(answers: &[Option<AnswerFrom>]) -> Script {
            Script {
                answers: RefCell::new(answers.iter().cloned().collect()),
                seen: RefCell::new(Vec::new()),
            }
        }

        fn texts(&self, style: &str) -> Vec<String> {
            let seen = self.seen.borrow();
            seen.iter()
                .filter(|(s, _)| s == style)
                .map(|(_, t)| t.clone())
                .collect()
        }

        fn key(&self) -> Option<Secret> {
            let infos = self.texts("info");
            let line = infos.iter().find_map(|t| t.strip_prefix("Key: "))?;
            Secret::from_base32(line, 128).ok()
        }
    }

    impl Conversation for Script {
        fn ask_hidden(&self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            self.seen
                .borrow_mut()
                .push(("prompt".into(), prompt.into()));
            let next = self.answers.borrow_mut().pop_front().flatten();
            match next {
                None => Err(ConversationError),
                Some(AnswerFrom::Text(text)) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
                Some(AnswerFrom::CodeAt(at)) => {
                    let secret = self.key().expect("a key was shown");
                    let code = totp::code_at(&secret, &Default::default(), at);
                    Ok(Zeroizing::new(code.into_bytes()))
                }
            }
        }

        fn info(&self, text: &str) -> Result<(), ConversationError> {
            self.seen.borrow_mut().push(("info".into(), text.into()));
            Ok(())
        }

        fn error(&self, text: &str) -> Result<(), ConversationError> {
            self.seen.borrow_mut().push(("error".into(), text.into()));
            Ok(())
        }
    }

    struct Fixed;

    impl Clock for Fixed {
        fn now(&self) -> i64 {
            NOW
        }
    }

    struct NoDirectory;

    impl Directory for NoDirectory {
        fn account(&self, _: &UserName) -> Result<Option<Account>, LookupError> {
            Ok(None)
        }
        fn group_ids(&self, _: &UserName, _: u32) -> Result<Vec<u32>, LookupError> {
            Ok(Vec::new())
        }
        fn group_id(&self, _: &str) -> Result<Option<u32>, LookupError> {
            Ok(None)
        }
    }

    fn config(mode: &str) -> Config {
        let text = format!("groups = [\"g\"]\n[enrollment]\nmode = \"{mode}\"\nissuer = \"ACME\"");
        Config::parse(&text, "test").unwrap()
    }

    fn alice() -> UserName {
        UserName::parse(b"alice").unwrap()
    }

    fn run(mode: &str, script: &Script, dir: &Path) -> Outcome {
        let env = Environment {
            conversation: script,
            clock: &Fixed,
            directory: &NoDirectory,
            store: None,
        };
        let store = FileStore::new(dir);
        at_login(&config(mode), &alice(), "vm1", &env, &store)
    }

    fn saved(dir: &Path) -> Option<UserRecord> {
        FileStore::new(dir).load(&alice()).unwrap().map(|(r, _)| r)
    }

    fn file_names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_matching_code_saves_the_secret_and_marks_its_step_used() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::new(&[Some(AnswerFrom::CodeAt(NOW))]);

        let outcome = run("at-login", &script, dir.path());

        assert_eq!(outcome, Outcome::Enrolled);
        let record = saved(dir.path()).unwrap();
        assert_eq!(Some(record.secret.clone()), script.key());
        assert_eq!(record.recovery_codes.len(), 5);
        assert_eq!(record.enrolled_at, NOW);
        let (_, counters) = FileStore::new(dir.path()).load(&alice()).unwrap().unwrap();
        assert_eq!(counters.last_step, Some(NOW as u64 / 30));
    }

    #[test]
    fn the_user_sees_the_qr_code_key_uri_and_recovery_codes() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::new(&[Some(AnswerFrom::CodeAt(NOW))]);

        run("at-login", &script, dir.path());

        let infos = script.texts("info");
        assert!(infos[0].contains("authenticator app"), "{infos:?}");
        assert!(infos[1].contains('█') && infos[1].lines().count() > 10);
        let key = infos[2].strip_prefix("Key: ").unwrap();
        assert!(key.split(' ').all(|group| group.len() == 4), "{key}");
        let uri = infos[3].strip_prefix("URI: ").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/ACME:alice%40vm1?secret="),
            "{uri}"
        );
        assert!(uri.contains(&key.replace(' ', "")));
        let codes = infos.last().unwrap();
        assert_eq!(codes.lines().count(), 6, "{codes}");
        // The codes are followed by a question, so sshd passes them on.
        assert_eq!(script.texts("prompt"), [SETUP_PROMPT, SAVED_CODES_PROMPT]);
    }

    #[test]
    fn three_wrong_codes_save_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wrong = Some(AnswerFrom::Text("000000x"));
        let script = Script::new(&[wrong.clone(), wrong.clone(), wrong]);

        let outcome = run("at-login", &script, dir.path());

        assert_eq!(outcome, Outcome::Denied(Denial::EnrollmentFailed));
        assert_eq!(script.texts("prompt").len(), 3);
        assert!(script.texts("error")[0].contains("2 tries left"));
        assert!(file_names(dir.path()).is_empty());
    }

    #[test]
    fn a_wrong_code_then_a_right_one_enrolls() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::new(&[
            Some(AnswerFrom::Text("12345")),
            Some(AnswerFrom::CodeAt(NOW - 30)),
        ]);

        assert_eq!(run("at-login", &script, dir.path()), Outcome::Enrolled);
    }

    #[test]
    fn a_code_outside_the_skew_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let far = Some(AnswerFrom::CodeAt(NOW + 90));
        let script = Script::new(&[far.clone(), far.clone(), far]);

        let outcome = run("at-login", &script, dir.path());

        assert_eq!(outcome, Outcome::Denied(Denial::EnrollmentFailed));
        assert!(saved(dir.path()).is_none());
    }

    #[test]
    fn an_abandoned_setup_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let broken = Script::new(&[None]);
        let empty = Script::new(&[Some(AnswerFrom::Text(""))]);

        let broken_outcome = run("at-login", &broken, dir.path());
        let empty_outcome = run("at-login", &empty, dir.path());

        assert_eq!(broken_outcome, Outcome::Failed(Failure::Conversation));
        assert_eq!(empty_outcome, Outcome::Denied(Denial::EnrollmentFailed));
        assert!(file_names(dir.path()).is_empty());
    }

    #[test]
    fn the_loser_of_a_race_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let first = Script::new(&[Some(AnswerFrom::CodeAt(NOW))]);
        let second = Script::new(&[Some(AnswerFrom::CodeAt(NOW))]);
        assert_eq!(run("at-login", &first, dir.path()), Outcome::Enrolled);

        // The second login verified its own key, then found the first's.
        let outcome = run("at-login", &second, dir.path());

        assert_eq!(outcome, Outcome::Denied(Denial::EnrollmentFailed));
        assert!(second.texts("error")[0].contains("finished setup first"));
        assert_eq!(Some(saved(dir.path()).unwrap().secret), first.key());
    }

    #[test]
    fn admin_only_refuses_and_after_reset_needs_an_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let code = || Some(AnswerFrom::CodeAt(NOW));

        let admin_only = Script::new(&[code()]);
        let not_allowed = Script::new(&[code()]);
        assert_eq!(
            run("admin-only", &admin_only, dir.path()),
            Outcome::Denied(Denial::NotEnrolled)
        );
        assert_eq!(
            run("after-reset", &not_allowed, dir.path()),
            Outcome::Denied(Denial::NotEnrolled)
        );
        assert_eq!(admin_only.texts("error"), [ASK_ADMINISTRATOR]);
        assert!(admin_only.texts("prompt").is_empty());

        FileStore::new(dir.path()).allow(&alice()).unwrap();
        let allowed = Script::new(&[code()]);
        assert_eq!(run("after-reset", &allowed, dir.path()), Outcome::Enrolled);
        assert!(!FileStore::new(dir.path()).is_allowed(&alice()).unwrap());
    }

    #[test]
    fn no_recovery_codes_when_the_config_says_zero() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::new(&[Some(AnswerFrom::CodeAt(NOW))]);
        let mut config = config("at-login");
        config.enrollment.recovery_codes = 0;
        let env = Environment {
            conversation: &script,
            clock: &Fixed,
            directory: &NoDirectory,
            store: None,
        };

        let outcome = at_login(&config, &alice(), "vm1", &env, &FileStore::new(dir.path()));

        assert_eq!(outcome, Outcome::Enrolled);
        assert!(saved(dir.path()).unwrap().recovery_codes.is_empty());
        assert!(!script.texts("info").last().unwrap().contains("recovery"));
    }
}
