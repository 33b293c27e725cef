//! A second try for manifests with `{..}` glued into plain scalars inside flow collections.
//!
//! YAML 1.2 (and js-yaml, which the Serverless Framework uses) ends a plain scalar at a
//! flow indicator inside `{ .. }` or `[ .. ]`, so `{ method: GET, path: /items/{id} }`
//! and `{ stage: ${env:STAGE} }` are syntax errors. People write them anyway, so when a
//! manifest fails to load, nimbus quotes such scalars and tries once more. The rewrite only
//! touches text that cannot be valid YAML, and each quoted scalar becomes a warning.

use std::collections::HashMap;

/// The source with glued scalars quoted, and how to map positions back to the original.
pub(super) struct Rewrite {
    pub(super) source: String,
    /// Per line, the 0-based columns (in the rewritten text) of each inserted character.
    inserted: HashMap<usize, Vec<usize>>,
    /// Where each quoted scalar starts in the original: 1-based line, 0-based column.
    pub(super) quoted: Vec<(usize, usize)>,
}

impl Rewrite {
    /// The 0-based column in the original source of a 0-based column in the rewrite.
    pub(super) fn original_column(&self, line: usize, column: usize) -> usize {
        let shift = self.inserted.get(&line).map_or(0, |columns| {
            columns
                .iter()
                .filter(|inserted| **inserted < column)
                .count()
        });
        column - shift
    }
}

/// Quotes every plain scalar inside a flow collection that has a `{` glued to it, as in
/// `/items/{id}` or `${env:X}`. `None` when there is nothing to quote.
pub(super) fn quote_glued_braces(source: &str) -> Option<Rewrite> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Writer {
        source: String::with_capacity(source.len() + 16),
        line: 1,
        column: 0,
        inserted: HashMap::new(),
    };
    let mut quoted = Vec::new();
    // How many flow collections enclose the current position.
    let mut depth = 0usize;
    // Whether a node (scalar or collection) may start here.
    let mut node_start = true;
    let mut idx = 0;
    while let Some(&c) = chars.get(idx) {
        let prev = idx
            .checked_sub(1)
            .and_then(|prev_idx| chars.get(prev_idx))
            .copied();
        let next = chars.get(idx + 1).copied();
        let after_space = prev.is_none_or(|p| p == ' ' || p == '\t' || p == '\n');
        match c {
            '\n' => {
                out.push(c);
                if depth == 0 {
                    node_start = true;
                }
                idx += 1;
            }
            '#' if after_space => {
                while let Some(&c) = chars.get(idx).filter(|c| **c != '\n') {
                    out.push(c);
                    idx += 1;
                }
            }
            '\'' | '"' if node_start => {
                out.push(c);
                idx += 1;
                while let Some(&inner) = chars.get(idx) {
                    out.push(inner);
                    idx += 1;
                    if inner == '\\' && c == '"' {
                        if let Some(&escaped) = chars.get(idx) {
                            out.push(escaped);
                            idx += 1;
                        }
                    } else if inner == c {
                        // `''` inside single quotes is an escaped quote.
                        if c == '\'' && chars.get(idx) == Some(&'\'') {
                            out.push('\'');
                            idx += 1;
                        } else {
                            break;
                        }
                    }
                }
                node_start = false;
            }
            '|' | '>' if node_start && depth == 0 => {
                // A block scalar: copy its lines, which are indented deeper than the line
                // that introduces it, untouched.
                let line_start = chars[..idx]
                    .iter()
                    .rposition(|c| *c == '\n')
                    .map_or(0, |p| p + 1);
                let parent_indent = chars[line_start..]
                    .iter()
                    .take_while(|c| **c == ' ')
                    .count();
                while let Some(&c) = chars.get(idx).filter(|c| **c != '\n') {
                    out.push(c);
                    idx += 1;
                }
                loop {
                    let rest = &chars[idx..];
                    let Some(line_len) =
                        rest.iter().skip(1).position(|c| *c == '\n').map(|p| p + 1)
                    else {
                        break;
                    };
                    let line = &rest[1..line_len];
                    let indent = line.iter().take_while(|c| **c == ' ').count();
                    let blank = line.iter().all(|c| c.is_whitespace());
                    if !blank && indent <= parent_indent {
                        break;
                    }
                    for &c in &rest[..line_len] {
                        out.push(c);
                    }
                    idx += line_len;
                }
                node_start = false;
            }
            '{' | '[' if node_start => {
                depth += 1;
                out.push(c);
                idx += 1;
            }
            '}' | ']' if depth > 0 => {
                depth -= 1;
                out.push(c);
                node_start = false;
                idx += 1;
            }
            ',' if depth > 0 => {
                out.push(c);
                node_start = true;
                idx += 1;
            }
            ':' => {
                out.push(c);
                let ends_key = next.is_none_or(|n| {
                    n.is_whitespace() || (depth > 0 && matches!(n, ',' | '[' | ']' | '{' | '}'))
                });
                if ends_key {
                    node_start = true;
                }
                idx += 1;
            }
            '-' | '?' if node_start && depth == 0 && next.is_none_or(char::is_whitespace) => {
                out.push(c);
                idx += 1;
            }
            ' ' | '\t' | '\r' => {
                out.push(c);
                idx += 1;
            }
            _ if node_start && depth > 0 => {
                let (end, glued) = plain_scalar_end(&chars, idx);
                let scalar = &chars[idx..end];
                if glued {
                    quoted.push((out.line, idx - line_start_of(&chars, idx)));
                    out.insert('"');
                    for &c in scalar {
                        if c == '"' || c == '\\' {
                            out.insert('\\');
                        }
                        out.push(c);
                    }
                    out.insert('"');
                } else {
                    for &c in scalar {
                        out.push(c);
                    }
                }
                idx = end;
                node_start = false;
            }
            _ => {
                out.push(c);
                node_start = false;
                idx += 1;
            }
        }
    }
    if quoted.is_empty() {
        return None;
    }
    Some(Rewrite {
        source: out.source,
        inserted: out.inserted,
        quoted,
    })
}

/// Where the plain scalar starting at `start` (inside a flow collection) ends, trailing
/// spaces excluded, and whether it has a `{..}` glued into it.
fn plain_scalar_end(chars: &[char], start: usize) -> (usize, bool) {
    let mut glued_depth = 0usize;
    let mut glued = false;
    let mut idx = start;
    while let Some(&c) = chars.get(idx) {
        let next = chars.get(idx + 1).copied();
        let prev = idx
            .checked_sub(1)
            .and_then(|prev_idx| chars.get(prev_idx))
            .copied();
        match c {
            '\n' => break,
            '{' if idx > start && prev.is_some_and(|p| !p.is_whitespace()) => {
                glued = true;
                glued_depth += 1;
            }
            '}' if glued_depth > 0 => glued_depth -= 1,
            ',' | '[' | ']' | '{' | '}' if glued_depth == 0 => break,
            ':' if glued_depth == 0
                && next.is_none_or(|n| {
                    n.is_whitespace() || matches!(n, ',' | '[' | ']' | '{' | '}')
                }) =>
            {
                break;
            }
            '#' if prev.is_some_and(char::is_whitespace) => break,
            _ => {}
        }
        idx += 1;
    }
    while idx > start && chars.get(idx - 1).is_some_and(|c| c.is_whitespace()) {
        idx -= 1;
    }
    (idx, glued)
}

fn line_start_of(chars: &[char], idx: usize) -> usize {
    chars[..idx]
        .iter()
        .rposition(|c| *c == '\n')
        .map_or(0, |p| p + 1)
}

/// The rewritten text, with the line and column reached so far.
struct Writer {
    source: String,
    line: usize,
    column: usize,
    inserted: HashMap<usize, Vec<usize>>,
}

impl Writer {
    fn push(&mut self, c: char) {
        self.source.push(c);
        if c == '\n' {
            self.line += 1;
            self.column = 0;
        } else {
            self.column += 1;
        }
    }

    /// Pushes a character that is not in the original source.
    fn insert(&mut self, c: char) {
        self.inserted
            .entry(self.line)
            .or_default()
            .push(self.column);
        self.push(c);
    }
}
