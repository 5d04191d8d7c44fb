//! The results: per-run samples for each module in each row, their medians,
//! the ratios against the references with the targets, and the
//! Markdown table the benchmark prints (and docs/performance.md quotes).

use std::collections::BTreeMap;
use std::fmt::Write;

/// The modules the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Module {
    Otpgate,
    Permit,
    GoogleAuthenticator,
    Oath,
}

impl Module {
    pub const ALL: [Module; 4] = [
        Module::Otpgate,
        Module::Permit,
        Module::GoogleAuthenticator,
        Module::Oath,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Module::Otpgate => "pam_otpgate",
            Module::Permit => "pam_permit",
            Module::GoogleAuthenticator => "pam_google_authenticator",
            Module::Oath => "pam_oath",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Module::Otpgate => "otpgate",
            Module::Permit => "permit",
            Module::GoogleAuthenticator => "google-auth",
            Module::Oath => "oath",
        }
    }
}

/// One module's samples in one row, one per run, and what went wrong.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub samples: Vec<f64>,
    pub problems: Vec<String>,
}

impl Series {
    pub fn median(&self) -> Option<f64> {
        median(&self.samples)
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// What otpgate's median in a row is divided by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against {
    /// Another module in the same row.
    Module(Module),
    /// otpgate in another row (by id).
    Row(&'static str),
}

/// A ratio to show, with the target when there is one.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub against: Against,
    pub limit: Option<f64>,
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: &'static str,
    pub case: &'static str,
    pub unit: &'static str,
    pub series: BTreeMap<Module, Series>,
    pub checks: Vec<Check>,
    /// Counts shown under the table (the race's successes).
    pub counts: BTreeMap<Module, Vec<usize>>,
}

impl Row {
    pub fn new(id: &'static str, case: &'static str, checks: Vec<Check>) -> Row {
        Row {
            id,
            case,
            unit: "µs/login",
            series: BTreeMap::new(),
            checks,
            counts: BTreeMap::new(),
        }
    }

    pub fn with_unit(mut self, unit: &'static str) -> Row {
        self.unit = unit;
        self
    }

    pub fn record(&mut self, module: Module, sample: f64, problem: Option<String>) {
        let series = self.series.entry(module).or_default();
        series.samples.push(sample);
        series.problems.extend(problem);
    }

    fn median(&self, module: Module) -> Option<f64> {
        self.series.get(&module).and_then(Series::median)
    }
}

/// The ratio of otpgate's median in `row` to the reference of `check`.
pub fn ratio(rows: &[Row], row: &Row, check: &Check) -> Option<f64> {
    let ours = row.median(Module::Otpgate)?;
    let theirs = match check.against {
        Against::Module(module) => row.median(module)?,
        Against::Row(id) => rows.iter().find(|r| r.id == id)?.median(Module::Otpgate)?,
    };
    (theirs > 0.0).then(|| ours / theirs)
}

/// The Markdown table of medians and ratios.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| # | case | unit |");
    for module in Module::ALL {
        let _ = write!(out, " {} |", module.title());
    }
    out.push_str(" otpgate ÷ reference (target) |\n|---|---|---|");
    out.push_str(&"---:|".repeat(Module::ALL.len()));
    out.push_str("---|\n");

    for row in rows {
        let _ = write!(out, "| {} | {} | {} |", row.id, row.case, row.unit);
        for module in Module::ALL {
            let _ = write!(out, " {} |", cell(row, module));
        }
        let _ = writeln!(out, " {} |", ratios(rows, row));
    }
    out
}

fn cell(row: &Row, module: Module) -> String {
    let Some(series) = row.series.get(&module) else {
        return "–".to_string();
    };
    let mark = if series.problems.is_empty() {
        ""
    } else {
        " †"
    };
    match series.median() {
        Some(value) => format!("{}{mark}", format_number(value)),
        None => format!("–{mark}"),
    }
}

fn ratios(rows: &[Row], row: &Row) -> String {
    let parts: Vec<String> = row
        .checks
        .iter()
        .filter_map(|check| {
            let value = ratio(rows, row, check)?;
            let name = match check.against {
                Against::Module(module) => module.short().to_string(),
                Against::Row(id) => format!("row {id}"),
            };
            Some(match check.limit {
                Some(limit) => format!(
                    "{value:.2}× {name} (≤ {limit}: {})",
                    if value <= limit { "met" } else { "MISSED" }
                ),
                None => format!("{value:.2}× {name}"),
            })
        })
        .collect();
    if parts.is_empty() {
        "–".to_string()
    } else {
        parts.join("; ")
    }
}

/// Every sample and problem, for the record under the table.
pub fn details(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for (module, series) in &row.series {
            let samples: Vec<String> = series.samples.iter().map(|v| format_number(*v)).collect();
            let _ = writeln!(
                out,
                "- {} {} ({}): {}",
                row.id,
                module.short(),
                row.unit,
                samples.join(", ")
            );
            for problem in dedup(&series.problems) {
                let _ = writeln!(out, "  - † {problem}");
            }
        }
        for (module, counts) in &row.counts {
            let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
            let _ = writeln!(
                out,
                "- {} {} successes per run: {}",
                row.id,
                module.short(),
                counts.join(", ")
            );
        }
    }
    out
}

fn dedup(problems: &[String]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for problem in problems {
        *seen.entry(problem).or_insert(0) += 1;
    }
    seen.into_iter()
        .map(|(problem, times)| match times {
            1 => problem.to_string(),
            n => format!("{problem} (in {n} runs)"),
        })
        .collect()
}

/// Whole numbers from 10 up, one decimal below.
fn format_number(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    fn row_with(id: &'static str, values: &[(Module, f64)], checks: Vec<Check>) -> Row {
        let mut row = Row::new(id, "case", checks);
        for (module, value) in values {
            row.record(*module, *value, None);
        }
        row
    }

    #[test]
    fn ratios_compare_against_modules_and_rows() {
        let limit = Check {
            against: Against::Module(Module::GoogleAuthenticator),
            limit: Some(0.5),
        };
        let first = row_with(
            "1",
            &[
                (Module::Otpgate, 200.0),
                (Module::GoogleAuthenticator, 600.0),
            ],
            vec![limit],
        );
        let second = row_with(
            "2",
            &[(Module::Otpgate, 300.0)],
            vec![Check {
                against: Against::Row("1"),
                limit: Some(1.1),
            }],
        );
        let rows = vec![first, second];

        let to_ga = ratio(&rows, &rows[0], &rows[0].checks[0]).unwrap();
        let to_row = ratio(&rows, &rows[1], &rows[1].checks[0]).unwrap();
        assert!((to_ga - 1.0 / 3.0).abs() < 1e-9);
        assert!((to_row - 1.5).abs() < 1e-9);

        let text = table(&rows);
        assert!(text.contains("0.33× google-auth (≤ 0.5: met)"), "{text}");
        assert!(text.contains("1.50× row 1 (≤ 1.1: MISSED)"), "{text}");
    }

    #[test]
    fn problems_are_marked_and_listed_once() {
        let mut row = Row::new("3", "case", vec![]);
        row.record(Module::Oath, 100.0, Some("7x1000".into()));
        row.record(Module::Oath, 110.0, Some("7x1000".into()));
        let rows = vec![row];

        assert!(table(&rows).contains("105 †"));
        assert!(details(&rows).contains("7x1000 (in 2 runs)"));
    }
}
