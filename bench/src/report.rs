//! The figures of a run: a section per part, each a table for people and a JSON value for
//! tools, plus the targets it checked. Written under `--out` and printed.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// One part's results.
#[derive(Debug, Serialize)]
pub struct Section {
    /// The part's name (`overhead`, `capacity`, ...), also its JSON file name.
    pub name: String,
    /// Column names of the table.
    pub columns: Vec<String>,
    /// Rows of the table, already formatted.
    pub rows: Vec<Vec<String>>,
    /// The raw figures, for tools (and the plot).
    pub figures: serde_json::Value,
    /// The targets of the issue, each with what was measured.
    pub targets: Vec<Target>,
}

/// A target from the issue and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    /// What the target says, e.g. "routed >= 0.9 x raw throughput at concurrency 16".
    pub target: String,
    /// What was measured, e.g. "0.97 x".
    pub measured: String,
    /// Whether it held.
    pub holds: bool,
}

impl Section {
    /// A section with a table of `columns` and no rows yet.
    pub fn new(name: &str, columns: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            figures: serde_json::Value::Null,
            targets: Vec::new(),
        }
    }

    /// Adds a table row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Records a target, with what was measured and whether it held.
    pub fn target(&mut self, target: impl Into<String>, measured: impl Into<String>, holds: bool) {
        self.targets.push(Target {
            target: target.into(),
            measured: measured.into(),
            holds,
        });
    }

    /// The table as Markdown (what BENCHMARKS.md quotes).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("| {} |\n", self.columns.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(self.columns.len())));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// Prints what machine this is (cores, CPU model, kernel), for the record.
pub fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("machine: {cores} cores, {cpu}");
}

/// Writes each section to `<out>/<name>.json` and all of them to `<out>/bench.json`, and prints
/// each table.
pub fn write_all(out: &Path, sections: &[Section]) -> anyhow::Result<()> {
    for section in sections {
        println!("\n## {}\n\n{}", section.name, section.markdown());
        let path = out.join(format!("{}.json", section.name));
        std::fs::write(&path, serde_json::to_vec_pretty(section)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let path = out.join("bench.json");
    std::fs::write(&path, serde_json::to_vec_pretty(sections)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("\nfigures written to {}", out.display());
    Ok(())
}

/// Prints every target with its measurement and whether it held.
pub fn print_targets(sections: &[Section]) {
    println!("\n## targets\n");
    for section in sections {
        for t in &section.targets {
            let mark = if t.holds { "holds" } else { "MISSED" };
            println!("- [{mark}] {}: {} ({})", section.name, t.target, t.measured);
        }
    }
}
