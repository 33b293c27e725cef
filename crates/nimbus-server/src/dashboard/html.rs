//! Building the dashboard's HTML: escaping, the page frame, numbers and the SVG charts.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

/// The sections of the navigation bar: path below the prefix, and label.
const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/logs", "Live logs"),
    ("/cost", "Cost"),
    ("/queues", "Queues"),
    ("/topics", "Topics"),
    ("/buckets", "Buckets"),
    ("/kv", "KV"),
    ("/schedules", "Schedules"),
    ("/tables", "Tables"),
    ("/streams", "Streams"),
    ("/workflows", "Workflows"),
    ("/durable-objects", "Durable Objects"),
];

/// Text made safe for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A path segment percent-encoded for a link.
pub(crate) fn seg(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A whole page: the frame (title, navigation with `active` marked) around `body`.
pub(crate) fn page(prefix: &str, active: &str, title: &str, body: &str) -> Response {
    page_with_status(StatusCode::OK, prefix, active, title, body)
}

/// `page` with another status (404 pages).
pub(crate) fn page_with_status(
    status: StatusCode,
    prefix: &str,
    active: &str,
    title: &str,
    body: &str,
) -> Response {
    let mut nav = String::new();
    for (path, label) in NAV {
        let current = if *path == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        let href = if *path == "/" {
            format!("{prefix}/")
        } else {
            format!("{prefix}{path}")
        };
        let _ = write!(nav, "<a href=\"{href}\"{current}>{label}</a>");
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{title} · nimbus</title>\
<link rel=\"stylesheet\" href=\"{prefix}/assets/style.css\">\
<script src=\"{prefix}/assets/dashboard.js\" defer></script></head>\
<body><header><a class=\"brand\" href=\"{prefix}/\">nimbus</a><nav>{nav}</nav>\
<form method=\"post\" action=\"{prefix}/logout\"><button>Sign out</button></form></header>\
<main><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
    );
    (
        status,
        [(http::header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

/// A page without the app's navigation (`nimbus server`'s list of apps).
pub(crate) fn plain_page(prefix: &str, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{title} · nimbus</title>\
<link rel=\"stylesheet\" href=\"{prefix}/assets/style.css\"></head>\
<body><header><a class=\"brand\" href=\"{prefix}/\">nimbus server</a><nav></nav>\
<form method=\"post\" action=\"{prefix}/logout\"><button>Sign out</button></form></header>\
<main><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
    );
    (
        StatusCode::OK,
        [(http::header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

/// The 404 page: says what was not found and where to go instead.
pub(crate) fn not_found(prefix: &str, what: &str) -> Response {
    let body = format!(
        "<p class=\"notice\" role=\"alert\">{}</p><p><a href=\"{prefix}/\">Back to the overview</a></p>",
        esc(what)
    );
    page_with_status(StatusCode::NOT_FOUND, prefix, "", "Not found", &body)
}

/// A table of rows, the shape every listing page has: headers, one row per thing, and a
/// note in its place when there is nothing to list.
pub(crate) struct Table {
    html: String,
    n_rows: usize,
}

/// One cell of a `Table` row, as HTML already escaped.
pub(crate) enum Cell {
    /// The row's header (`<th scope="row">`), naming the thing the row is about.
    Head(String),
    /// A plain cell.
    Data(String),
    /// A cell with a class (which tests and styles find it by).
    Classed(&'static str, String),
}

impl Table {
    /// A table with the class `class` (none when empty) and these column headers.
    pub(crate) fn new(class: &str, headers: &[&str]) -> Table {
        let mut html = if class.is_empty() {
            String::from("<table><thead><tr>")
        } else {
            format!("<table class=\"{class}\"><thead><tr>")
        };
        for header in headers {
            let _ = write!(html, "<th>{header}</th>");
        }
        html.push_str("</tr></thead><tbody>");
        Table { html, n_rows: 0 }
    }

    /// Adds a row; `attrs` (attributes of the `<tr>`, escaped, or empty) mark it for tests
    /// and styles.
    pub(crate) fn row(&mut self, attrs: &str, cells: impl IntoIterator<Item = Cell>) {
        self.n_rows += 1;
        if attrs.is_empty() {
            self.html.push_str("<tr>");
        } else {
            let _ = write!(self.html, "<tr {attrs}>");
        }
        for cell in cells {
            let _ = match cell {
                Cell::Head(html) => write!(self.html, "<th scope=\"row\">{html}</th>"),
                Cell::Data(html) => write!(self.html, "<td>{html}</td>"),
                Cell::Classed(class, html) => {
                    write!(self.html, "<td class=\"{class}\">{html}</td>")
                }
            };
        }
        self.html.push_str("</tr>");
    }

    /// The table's HTML, followed by `empty` (a sentence) when it has no rows.
    pub(crate) fn finish(mut self, empty: &str) -> String {
        self.html.push_str("</tbody></table>");
        if self.n_rows == 0 {
            let _ = write!(self.html, "<p class=\"empty\">{}</p>", esc(empty));
        }
        self.html
    }
}

/// A list of names or a dash when there are none.
pub(crate) fn list_or_dash(items: &[String], separator: &str) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(separator)
    }
}

/// Milliseconds with two decimals.
pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// A point in time, RFC 3339 in UTC with milliseconds, in a `<time>` element.
pub(crate) fn time(at: SystemTime) -> String {
    let text = nimbus_core::time::rfc3339_millis(at);
    format!("<time datetime=\"{text}\">{text}</time>")
}

/// An age as a short text: `12 s`, `4 min`, `3 h`, `2 d`.
pub(crate) fn age(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// One series of a chart: a label, a CSS class (which also sets its dash or hatching, so
/// the chart reads without colour) and a value per slot (`None`: no data).
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) class: &'a str,
    pub(crate) values: Vec<Option<f64>>,
}

/// Which way a chart draws its series.
#[derive(Clone, Copy)]
pub(crate) enum ChartKind {
    /// Bars from zero, later series drawn over earlier ones (errors over invocations).
    Bars,
    /// Lines through the points (latencies).
    Lines,
}

const CHART_WIDTH: f64 = 600.0;
const CHART_HEIGHT: f64 = 140.0;
const CHART_LEFT: f64 = 44.0;
const CHART_BOTTOM: f64 = 18.0;

/// An inline SVG chart of per-minute `series` over the last `n_slots` minutes, with a
/// legend in text and the numbers in a table for screen readers and copy-paste.
pub(crate) fn chart(title: &str, unit: &str, kind: ChartKind, series: &[Series<'_>]) -> String {
    let n_slots = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let plot_width = CHART_WIDTH - CHART_LEFT - 4.0;
    let plot_height = CHART_HEIGHT - CHART_BOTTOM - 8.0;
    let slot_width = plot_width / n_slots as f64;
    let y = |v: f64| 8.0 + plot_height * (1.0 - v / top);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" role=\"img\" aria-label=\"{}\">\
<defs><pattern id=\"hatch\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
<rect width=\"2\" height=\"4\" class=\"hatch\"/></pattern></defs>",
        esc(title)
    );
    for (value, y_pos) in [(top, y(top)), (top / 2.0, y(top / 2.0)), (0.0, y(0.0))] {
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{CHART_LEFT}\" x2=\"{}\" y1=\"{y_pos:.1}\" y2=\"{y_pos:.1}\"/>\
<text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            CHART_WIDTH - 4.0,
            CHART_LEFT - 4.0,
            y_pos + 4.0,
            short_number(value)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{CHART_LEFT}\" y=\"{}\">-{n_slots} min</text>\
<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">now</text>",
        CHART_HEIGHT - 4.0,
        CHART_WIDTH - 4.0,
        CHART_HEIGHT - 4.0
    );
    for s in series {
        match kind {
            ChartKind::Bars => {
                for (idx, value) in s.values.iter().enumerate() {
                    let Some(value) = value.filter(|v| *v > 0.0) else {
                        continue;
                    };
                    let x = CHART_LEFT + idx as f64 * slot_width + 1.0;
                    let _ = write!(
                        svg,
                        "<rect class=\"{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>",
                        s.class,
                        y(value),
                        (slot_width - 2.0).max(1.0),
                        y(0.0) - y(value),
                        esc(s.label),
                        short_number(value)
                    );
                }
            }
            ChartKind::Lines => {
                let mut path = String::new();
                for (idx, value) in s.values.iter().enumerate() {
                    let Some(value) = value else { continue };
                    let x = CHART_LEFT + (idx as f64 + 0.5) * slot_width;
                    let command = if path.is_empty() { 'M' } else { 'L' };
                    let _ = write!(path, "{command}{x:.1},{:.1} ", y(*value));
                    let _ = write!(
                        svg,
                        "<circle class=\"{}\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"2\"><title>{}: {}</title></circle>",
                        s.class,
                        y(*value),
                        esc(s.label),
                        short_number(*value)
                    );
                }
                if !path.is_empty() {
                    let _ = write!(
                        svg,
                        "<path class=\"{}\" d=\"{}\" fill=\"none\"/>",
                        s.class,
                        path.trim_end()
                    );
                }
            }
        }
    }
    svg.push_str("</svg>");
    let mut legend = String::new();
    for s in series {
        let _ = write!(
            legend,
            "<span class=\"key {}\"><svg width=\"18\" height=\"10\" aria-hidden=\"true\"><rect width=\"18\" height=\"10\" class=\"{}\"/></svg> {}</span>",
            s.class,
            s.class,
            esc(s.label)
        );
    }
    let mut table = String::from("<table><thead><tr><th>minute</th>");
    for s in series {
        let _ = write!(table, "<th>{} ({unit})</th>", esc(s.label));
    }
    table.push_str("</tr></thead><tbody>");
    for idx in 0..n_slots {
        if series.iter().all(|s| {
            s.values
                .get(idx)
                .copied()
                .flatten()
                .is_none_or(|v| v == 0.0)
        }) {
            continue;
        }
        let _ = write!(table, "<tr><td>-{}</td>", n_slots - idx);
        for s in series {
            let cell = s
                .values
                .get(idx)
                .copied()
                .flatten()
                .map_or("-".to_owned(), short_number);
            let _ = write!(table, "<td>{cell}</td>");
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    format!(
        "<figure class=\"chart-box\"><figcaption>{} <span class=\"unit\">({unit} per minute)</span></figcaption>{svg}\
<div class=\"legend\">{legend}</div><details><summary>Numbers</summary>{table}</details></figure>",
        esc(title)
    )
}

/// The smallest of 1, 2, 5 × 10^n at or above `value` (at least 1), for an axis top.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= value {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A number with at most two decimals and no trailing zeros.
pub(crate) fn short_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn axis_tops_are_round() {
        let tops: Vec<f64> = [0.0, 1.0, 3.0, 7.0, 20.0, 21.0, 999.0]
            .into_iter()
            .map(nice_ceiling)
            .collect();
        assert_eq!(tops, [1.0, 1.0, 5.0, 10.0, 20.0, 50.0, 1000.0]);
    }
}
