//! Console messages through `tracing`: plain lines on stderr, warnings
//! and errors prefixed, the level set by `-q` / `-v`. Results (tables,
//! samples) go to stdout with `println!` and are never filtered.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Sends messages at `level` and above to stderr.
pub fn init(level: Level) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .event_format(Plain)
        .try_init();
}

/// `message`, `warning: message`, `error: message`, `debug: message`.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // burn's collective and websocket crates narrate every connection
        // at info level; only their warnings and errors are the user's.
        // (Their `log` records arrive through tracing-log, target "log";
        // the normalized metadata has the crate's.)
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = *meta.level();
        if level > Level::WARN && meta.target().starts_with("burn_") {
            return Ok(());
        }
        match level {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::INFO => {}
            Level::DEBUG | Level::TRACE => write!(writer, "debug: ")?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
