//! Trace context: W3C `traceparent` at the edge, X-Ray `Root=...;Parent=...` toward
//! Lambda runtimes, and the ids both share.

use std::time::SystemTime;

/// Where an invocation sits in a trace: the trace and the span that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The span the next span is a child of (16 hex digits), if any.
    pub parent_span_id: Option<String>,
    /// Whether the caller asked for the trace to be recorded downstream.
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace. The first 8 hex digits are the epoch seconds, so the id is also a
    /// valid X-Ray root (`1-<8 hex time>-<24 hex>`).
    pub fn new_root() -> TraceContext {
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let random = uuid::Uuid::new_v4().simple().to_string();
        TraceContext {
            trace_id: format!("{:08x}{}", epoch as u32, &random[..24]),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// Parses a W3C `traceparent` header (version 00): `00-<trace>-<parent>-<flags>`.
    pub fn from_traceparent(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // W3C Trace Context §3.2: all-zero ids are invalid, as is version ff.
        if version.len() != 2 || version == "ff" || !is_hex(trace_id, 32) || !is_hex(parent, 16) {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
            return None;
        }
        let flags = u8::from_str_radix(flags.get(..2)?, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_ascii_lowercase(),
            parent_span_id: Some(parent.to_ascii_lowercase()),
            sampled: flags & 1 == 1,
        })
    }

    /// Parses an X-Ray header (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`).
    pub fn from_xray(header: &str) -> Option<TraceContext> {
        let mut root = None;
        let mut parent = None;
        let mut sampled = true;
        for field in header.split(';') {
            match field.trim().split_once('=') {
                Some(("Root", value)) => {
                    let mut parts = value.split('-');
                    let (one, time, rest) = (parts.next()?, parts.next()?, parts.next()?);
                    if one != "1" || !is_hex(time, 8) || !is_hex(rest, 24) {
                        return None;
                    }
                    root = Some(format!("{time}{rest}").to_ascii_lowercase());
                }
                Some(("Parent", value)) if is_hex(value, 16) => {
                    parent = Some(value.to_ascii_lowercase());
                }
                Some(("Sampled", value)) => sampled = value != "0",
                _ => {}
            }
        }
        Some(TraceContext {
            trace_id: root?,
            parent_span_id: parent,
            sampled,
        })
    }

    /// The X-Ray header for a child of `span_id`, as Lambda passes in `Lambda-Runtime-Trace-Id`.
    pub fn xray_header(&self, span_id: &str) -> String {
        format!(
            "Root=1-{}-{};Parent={span_id};Sampled={}",
            &self.trace_id[..8],
            &self.trace_id[8..],
            u8::from(self.sampled)
        )
    }

    /// The X-Ray header that carries this context as it is, for a message that crosses a
    /// queue: whatever is caused by the message becomes a child of the span that sent it.
    pub fn propagation_header(&self) -> String {
        match &self.parent_span_id {
            Some(parent) => self.xray_header(parent),
            None => self.xray_header(&new_span_id()),
        }
    }

    /// The W3C header for a child of `span_id`.
    pub fn traceparent(&self, span_id: &str) -> String {
        format!("00-{}-{span_id}-0{}", self.trace_id, u8::from(self.sampled))
    }

    /// The same trace, one level down: `span_id` becomes the parent.
    pub fn child_of(&self, span_id: &str) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id.clone(),
            parent_span_id: Some(span_id.to_owned()),
            sampled: self.sampled,
        }
    }
}

/// A new request id (`context.awsRequestId`): a UUID, version 7, so ids sort by creation time
/// and the store's index on them grows at one end instead of dirtying a random page per
/// invocation.
pub(crate) fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A new random span id, 16 hex digits.
pub(crate) fn new_span_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    random[..16].to_owned()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn traceparent_and_xray_carry_the_same_trace() {
        let ctx = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .expect("valid traceparent");
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        let xray = ctx.xray_header("53995c3f42cd8ad8");
        assert_eq!(
            xray,
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        let back = TraceContext::from_xray(&xray).expect("valid x-ray header");
        assert_eq!(back.trace_id, ctx.trace_id);
        assert_eq!(back.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for bad in [
            "",
            "00-abc-def-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad:?}");
        }
        assert_eq!(TraceContext::from_xray("Root=2-x-y"), None);
    }

    #[test]
    fn new_roots_are_valid_xray_roots() {
        let ctx = TraceContext::new_root();
        let xray = ctx.xray_header("0123456789abcdef");
        assert_eq!(
            TraceContext::from_xray(&xray).map(|c| c.trace_id),
            Some(ctx.trace_id)
        );
    }
}
