//! The cases of the issue, each a row of the table, and the loop that runs
//! them all once per run: every run resets the state and adds one sample per
//! module to each row. Within a row the modules take turns a block of
//! logins at a time (a worker per module), and the order rotates from run
//! to run, so whatever else the machine is doing slows every module alike.

use std::path::{Path, PathBuf};

use crate::accounts::{self, MEMBERS, OUTSIDER};
use crate::report::{Against, Check, Module, Row};
use crate::runner::{self, FreshLogin, NssEnv};
use crate::worker::{Answer, Done, Job};
use crate::world::{Enrolled, World};

/// Libpam's answer when every module of the stack ignored the user.
const PAM_PERM_DENIED: i32 = 6;
const PAM_SUCCESS: i32 = 0;

/// Fresh processes per module and run.
const FRESH_LOGINS: usize = 100;

/// Logins per turn when modules take turns: long enough that each module
/// has the disk to itself, short enough that drift hits all alike.
const BLOCK: usize = 100;
const SCALE_BLOCK: usize = 10;
const FRESH_BLOCK: usize = 10;

/// Processes of the parallel rows.
const PARALLEL: usize = 16;

/// dlopen + dlclose pairs per module and round, and rounds per run.
const LOADS: u32 = 200;
const LOAD_ROUNDS: u32 = 5;

/// Everything the rows need.
pub struct Bench {
    pub world: World,
    pub small_group: NssEnv,
    pub big_group: NssEnv,
    pub fresh: FreshLogin,
    pub security_dir: PathBuf,
    pub rows: Vec<Row>,
}

/// The rows, in table order. Ids are the numbers.
pub fn rows() -> Vec<Row> {
    let versus = |module, limit| Check {
        against: Against::Module(module),
        limit,
    };
    let ga = Module::GoogleAuthenticator;
    vec![
        Row::new(
            "1",
            "success, 1,000 enrolled users, each logging in once",
            vec![versus(ga, Some(0.5)), versus(Module::Oath, Some(0.25))],
        ),
        Row::new(
            "2",
            "wrong code, 1,000 users once each",
            vec![versus(ga, Some(0.5)), versus(Module::Oath, None)],
        ),
        Row::new(
            "3",
            "user outside the configured groups",
            vec![versus(Module::Permit, Some(1.1))],
        ),
        Row::new(
            "4a",
            "one login per fresh process: user outside the groups",
            vec![versus(Module::Permit, None)],
        ),
        Row::new(
            "4b",
            "one login per fresh process: success",
            vec![versus(ga, None), versus(Module::Oath, None)],
        ),
        Row::new("5a", "scale: 100 enrolled users", vec![]),
        Row::new(
            "5b",
            "scale: 100,000 enrolled users (the same 100 log in, in turn with 5a)",
            vec![Check {
                against: Against::Row("5a"),
                limit: Some(1.1),
            }],
        ),
        Row::new(
            "5c",
            "scale: configured group of 10,000 members",
            vec![Check {
                against: Against::Row("1"),
                limit: None,
            }],
        ),
        Row::new(
            "6a",
            "16 processes in parallel, different users (wall time ÷ logins)",
            vec![versus(ga, None), versus(Module::Oath, None)],
        ),
        Row::new(
            "6b",
            "16 processes, one user, one code: exactly one may succeed",
            vec![],
        )
        .with_unit("µs/burst"),
        Row::new(
            "7",
            "load + unload of the module in a C process (dlopen/dlclose)",
            vec![versus(Module::Permit, None)],
        )
        .with_unit("µs/load"),
    ]
}

impl Bench {
    /// One run of every selected row.
    pub fn run_once(&mut self, run: usize, selected: &dyn Fn(&str) -> bool) -> Result<(), String> {
        let steps: [(&[&str], StepFn); 10] = [
            (&["1"], Bench::success),
            (&["2"], Bench::wrong_code),
            (&["3"], Bench::outsider),
            (&["4a"], Bench::fresh_outsider),
            (&["4b"], Bench::fresh_success),
            (&["5a", "5b"], Bench::scale),
            (&["5c"], Bench::big_group),
            (&["6a"], Bench::parallel_users),
            (&["6b"], Bench::race),
            (&["7"], Bench::load_unload),
        ];
        for (ids, step) in steps {
            if ids.iter().any(|id| selected(id)) {
                eprintln!("  row {}", ids.join(" and "));
                step(self, run)?;
            }
        }
        Ok(())
    }

    fn row(&mut self, id: &str) -> &mut Row {
        self.rows
            .iter_mut()
            .find(|row| row.id == id)
            .expect("every step has its row")
    }

    fn reset(&self) -> Result<(), String> {
        self.world
            .reset()
            .map_err(|e| format!("resetting state: {e}"))
    }

    fn success(&mut self, run: usize) -> Result<(), String> {
        self.reset()?;
        let modules = [Module::Otpgate, Module::GoogleAuthenticator, Module::Oath];
        let reports = self.take_turns(&rotate(&modules, run), members(MEMBERS), Answer::Current)?;
        for (module, done) in reports {
            self.row("1")
                .record(module, per_login(&done), expect_all(&done, PAM_SUCCESS));
        }
        Ok(())
    }

    fn wrong_code(&mut self, run: usize) -> Result<(), String> {
        self.reset()?;
        let modules = [Module::Otpgate, Module::GoogleAuthenticator, Module::Oath];
        let reports = self.take_turns(&rotate(&modules, run), members(MEMBERS), Answer::Wrong)?;
        for (module, done) in reports {
            self.row("2")
                .record(module, per_login(&done), expect_no_success(&done));
        }
        Ok(())
    }

    fn outsider(&mut self, run: usize) -> Result<(), String> {
        let modules = rotate(&[Module::Otpgate, Module::Permit], run);
        let users = vec![OUTSIDER.to_string(); MEMBERS];
        let answer = Answer::Fixed("000000".to_string());
        for (module, done) in self.take_turns(&modules, users, answer)? {
            let expected = outsider_result(module);
            self.row("3")
                .record(module, per_login(&done), expect_all(&done, expected));
        }
        Ok(())
    }

    /// One worker per module, taking turns a block of logins at a time.
    fn take_turns(
        &self,
        modules: &[Module],
        users: Vec<String>,
        answer: Answer,
    ) -> Result<Vec<(Module, Done)>, String> {
        let jobs: Vec<Job> = modules
            .iter()
            .map(|module| self.job(*module, users.clone(), answer.clone()))
            .collect();
        let reports = runner::alternate(&self.small_group, &jobs, BLOCK)?;
        Ok(modules.iter().copied().zip(reports).collect())
    }

    fn fresh_outsider(&mut self, run: usize) -> Result<(), String> {
        let modules = rotate(&[Module::Otpgate, Module::Permit], run);
        let users = vec![OUTSIDER.to_string(); FRESH_LOGINS];
        for (module, done) in self.fresh_series(&modules, &users)? {
            let expected = outsider_result(module);
            self.row("4a")
                .record(module, per_login(&done), expect_all(&done, expected));
        }
        Ok(())
    }

    fn fresh_success(&mut self, run: usize) -> Result<(), String> {
        self.reset()?;
        let modules = [Module::Otpgate, Module::GoogleAuthenticator, Module::Oath];
        let modules = rotate(&modules, run);
        for (module, done) in self.fresh_series(&modules, &members(FRESH_LOGINS))? {
            self.row("4b")
                .record(module, per_login(&done), expect_all(&done, PAM_SUCCESS));
        }
        Ok(())
    }

    /// One fresh process per user and module, the modules taking turns a
    /// block of users at a time.
    fn fresh_series(
        &self,
        modules: &[Module],
        users: &[String],
    ) -> Result<Vec<(Module, Done)>, String> {
        let mut reports = vec![Done::default(); modules.len()];
        for block in users.chunks(FRESH_BLOCK) {
            for (module, report) in modules.iter().zip(&mut reports) {
                let service = service(*module, Enrolled::Thousand);
                for user in block {
                    let code = if user == OUTSIDER {
                        "000000".to_string()
                    } else {
                        accounts::code(user, accounts::now())
                    };
                    let (took, status) =
                        self.fresh.once(&self.small_group, &service, user, &code)?;
                    report.add(took, status);
                }
            }
        }
        Ok(modules.iter().copied().zip(reports).collect())
    }

    /// 100 and 100,000 enrolled users, the same 100 users logging in to
    /// both stores, the stores taking turns.
    fn scale(&mut self, run: usize) -> Result<(), String> {
        self.reset()?;
        let stores = rotate(&[Enrolled::Hundred, Enrolled::HundredThousand], run);
        let jobs: Vec<Job> = stores
            .iter()
            .map(|store| Job {
                confdir: self.world.pam_dir(),
                service: World::otpgate_service(*store),
                users: members(Enrolled::Hundred.count()),
                answer: Answer::Current,
            })
            .collect();
        let reports = runner::alternate(&self.small_group, &jobs, SCALE_BLOCK)?;
        for (store, done) in stores.into_iter().zip(reports) {
            let id = match store {
                Enrolled::HundredThousand => "5b",
                _ => "5a",
            };
            self.row(id).record(
                Module::Otpgate,
                per_login(&done),
                expect_all(&done, PAM_SUCCESS),
            );
        }
        Ok(())
    }

    /// Row 1's logins for otpgate, with the configured group grown to
    /// 10,000 members.
    fn big_group(&mut self, _run: usize) -> Result<(), String> {
        self.reset()?;
        let job = self.job(Module::Otpgate, members(MEMBERS), Answer::Current);
        let done = runner::alternate(&self.big_group, &[job], BLOCK)?.remove(0);
        self.row("5c").record(
            Module::Otpgate,
            per_login(&done),
            expect_all(&done, PAM_SUCCESS),
        );
        Ok(())
    }

    fn parallel_users(&mut self, run: usize) -> Result<(), String> {
        self.reset()?;
        let modules = [Module::Otpgate, Module::GoogleAuthenticator, Module::Oath];
        for module in rotate(&modules, run) {
            let jobs: Vec<Job> = (0..PARALLEL)
                .map(|worker| {
                    let users = (worker..MEMBERS)
                        .step_by(PARALLEL)
                        .map(accounts::member)
                        .collect();
                    self.job(module, users, Answer::Current)
                })
                .collect();
            let (wall, reports) = runner::parallel(&self.small_group, &jobs)?;
            let total = merge(&reports);
            let sample = wall.as_secs_f64() * 1e6 / MEMBERS as f64;
            self.row("6a")
                .record(module, sample, expect_all(&total, PAM_SUCCESS));
        }
        Ok(())
    }

    fn race(&mut self, run: usize) -> Result<(), String> {
        self.reset()?;
        let user = accounts::member(0);
        let modules = [Module::Otpgate, Module::GoogleAuthenticator, Module::Oath];
        for module in rotate(&modules, run) {
            let code = accounts::code(&user, accounts::now());
            let job = self.job(module, vec![user.clone()], Answer::Fixed(code));
            let jobs = vec![job; PARALLEL];
            let (wall, reports) = runner::parallel(&self.small_group, &jobs)?;
            let total = merge(&reports);

            let successes = total.results.get(&PAM_SUCCESS).copied().unwrap_or(0);
            let problem = (successes != 1).then(|| {
                format!(
                    "{successes} of {PARALLEL} logins with one code succeeded ({})",
                    describe(&total)
                )
            });
            let row = self.row("6b");
            row.record(module, wall.as_secs_f64() * 1e6, problem);
            row.counts.entry(module).or_default().push(successes);
        }
        Ok(())
    }

    /// The load loop of each module in rounds, the modules taking turns.
    fn load_unload(&mut self, run: usize) -> Result<(), String> {
        let modules = rotate(&Module::ALL, run);
        let mut totals = vec![0.0; modules.len()];
        for _ in 0..LOAD_ROUNDS {
            for (total, module) in totals.iter_mut().zip(&modules) {
                *total += self.fresh.load_cost(&self.module_file(*module), LOADS)?;
            }
        }
        for (module, total) in modules.into_iter().zip(totals) {
            self.row("7")
                .record(module, total / f64::from(LOAD_ROUNDS), None);
        }
        Ok(())
    }

    fn module_file(&self, module: Module) -> PathBuf {
        match module {
            Module::Otpgate => self.world.module.clone(),
            Module::Permit => self.security_dir.join("pam_permit.so"),
            Module::GoogleAuthenticator => self.security_dir.join("pam_google_authenticator.so"),
            Module::Oath => self.security_dir.join("pam_oath.so"),
        }
    }

    /// A job for `module` (otpgate on the 1,000-user store).
    fn job(&self, module: Module, users: Vec<String>, answer: Answer) -> Job {
        Job {
            confdir: self.world.pam_dir(),
            service: service(module, Enrolled::Thousand),
            users,
            answer,
        }
    }
}

type StepFn = fn(&mut Bench, usize) -> Result<(), String>;

/// The PAM service (file in the world's pam.d) that runs `module`.
fn service(module: Module, enrolled: Enrolled) -> String {
    match module {
        Module::Otpgate => World::otpgate_service(enrolled),
        Module::Permit => "permit".to_string(),
        Module::GoogleAuthenticator => "google-authenticator".to_string(),
        Module::Oath => "oath".to_string(),
    }
}

/// The libpam result for a user outside the groups: otpgate ignores the
/// user, so its one-line stack ends in PAM_PERM_DENIED; pam_permit admits.
fn outsider_result(module: Module) -> i32 {
    match module {
        Module::Otpgate => PAM_PERM_DENIED,
        _ => PAM_SUCCESS,
    }
}

/// The first `count` members.
fn members(count: usize) -> Vec<String> {
    (0..count).map(accounts::member).collect()
}

/// `items` starting at position `run`, wrapping around.
fn rotate<T: Copy>(items: &[T], run: usize) -> Vec<T> {
    let start = run % items.len();
    items[start..]
        .iter()
        .chain(&items[..start])
        .copied()
        .collect()
}

fn per_login(done: &Done) -> f64 {
    done.micros as f64 / done.logins.max(1) as f64
}

fn merge(reports: &[Done]) -> Done {
    let mut total = Done::default();
    for report in reports {
        total.merge(report);
    }
    total
}

/// `0x998,7x2`: what libpam answered, and how often.
fn describe(done: &Done) -> String {
    let parts: Vec<String> = done
        .results
        .iter()
        .map(|(code, count)| format!("{}×{count}", pamclient::result_name(*code)))
        .collect();
    parts.join(", ")
}

fn expect_all(done: &Done, expected: i32) -> Option<String> {
    let matching = done.results.get(&expected).copied().unwrap_or(0);
    (matching != done.logins).then(|| {
        format!(
            "expected {} for every login, got {}",
            pamclient::result_name(expected),
            describe(done)
        )
    })
}

fn expect_no_success(done: &Done) -> Option<String> {
    done.results
        .contains_key(&PAM_SUCCESS)
        .then(|| format!("a wrong code was accepted: {}", describe(done)))
}

/// The folder of the system's PAM modules.
pub fn security_dir() -> Result<PathBuf, String> {
    let candidates = [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/security",
        "/usr/lib/security",
        "/lib64/security",
    ];
    candidates
        .iter()
        .map(Path::new)
        .find(|dir| dir.join("pam_permit.so").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| "pam_permit.so not found: install libpam-modules".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn rotation_starts_at_the_run() {
        assert_eq!(rotate(&[1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(rotate(&[1, 2, 3], 1), [2, 3, 1]);
        assert_eq!(rotate(&[1, 2, 3], 5), [3, 1, 2]);
    }

    #[test]
    fn expectations_name_what_libpam_said() {
        let done = Done {
            micros: 10,
            logins: 3,
            results: BTreeMap::from([(0, 2), (7, 1)]),
        };
        let problem = expect_all(&done, PAM_SUCCESS).unwrap();
        assert!(problem.contains("PAM_AUTH_ERR×1"), "{problem}");
        assert!(expect_no_success(&done).is_some());

        let clean = Done {
            results: BTreeMap::from([(7, 3)]),
            ..done
        };
        assert_eq!(expect_all(&clean, 7), None);
        assert_eq!(expect_no_success(&clean), None);
    }

    #[test]
    fn every_row_has_a_step_and_ids_are_unique() {
        let ids: Vec<&str> = rows().iter().map(|row| row.id).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids, unique);
        assert_eq!(ids.len(), 11);
    }
}
