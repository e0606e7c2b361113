//! [`Logging`]: `--log-format` and the tracing subscriber a program installs with it.
//!
//! Logs always go to stderr: stdout stays free for a program's output (the demo client's
//! summary and JSON lines) or for whatever wraps the process. `RUST_LOG` overrides the level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The logging flag of every program.
#[derive(clap::Args, Debug)]
pub struct Logging {
    /// Log lines as text or as JSON objects (one per line, for log collectors); either way with
    /// `trace_id` on routed and handled calls at debug level (`RUST_LOG=debug`).
    #[arg(
        long,
        global = true,
        env = "DIST_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// The filter directives that silence tarpc's ERROR line for each expired deadline.
pub(super) const QUIET_TARPC: &str =
    "tarpc::client::in_flight_requests=off,tarpc::server::in_flight_requests=off";

impl Logging {
    /// Installs the global subscriber: stderr, `RUST_LOG` or else `default_level` (`info`,
    /// `warn`), text (colored on a terminal) or JSON.
    pub fn init(&self, default_level: &str) {
        // tarpc logs every expired deadline at ERROR from these two modules; for a library of
        // long computations with deadlines that is routine, so the default quiets them.
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},{QUIET_TARPC}")));
        let logs = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter);
        match self.log_format {
            LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
            LogFormat::Json => logs.json().with_current_span(false).init(),
        }
    }
}
