//! `nimbus trace`: the spans of one trace as a tree.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use nimbus_store::SpanRecord;

/// Print a trace (gateway → function → ...) as a tree of spans with their timings.
#[derive(clap::Args)]
pub(crate) struct TraceCommand {
    /// The trace id (32 hex digits), as in the `x-nimbus-trace-id` response header or
    /// `nimbus invocations`.
    trace_id: String,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

impl TraceCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let trace_id = self.trace_id.trim().to_ascii_lowercase();
        if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!(
                "{:?} is not a trace id: expected 32 hex digits",
                self.trace_id
            );
        }
        let store = super::open_store(&self.dir)?;
        let spans = store.spans(&trace_id)?;
        if spans.is_empty() {
            anyhow::bail!("no spans recorded for trace {trace_id}");
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "trace {trace_id}")?;
        let known: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        // Roots are spans whose parent is not in this trace's record (the caller's span).
        for root in spans.iter().filter(|s| {
            s.parent_span_id
                .as_deref()
                .is_none_or(|parent| !known.contains(&parent))
        }) {
            print_tree(&mut out, &spans, root, 1)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_tree(
    out: &mut impl std::io::Write,
    spans: &[SpanRecord],
    span: &SpanRecord,
    depth: usize,
) -> anyhow::Result<()> {
    let duration = span
        .end
        .duration_since(span.start)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0;
    let attributes: Vec<String> = span
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    writeln!(
        out,
        "{}{} [{}] {duration:.2} ms {} span={} {}",
        "  ".repeat(depth),
        span.name,
        span.kind,
        span.status,
        span.span_id,
        attributes.join(" ")
    )?;
    for child in spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == Some(span.span_id.as_str()))
    {
        print_tree(out, spans, child, depth + 1)?;
    }
    Ok(())
}
