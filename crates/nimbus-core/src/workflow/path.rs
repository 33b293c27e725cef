//! The restricted JSONPath of the Amazon States Language: `$`, `$.a.b`, `$['a']`, `$.a[0]`, `$.a[*].b`, `$$.Execution.Id`.
//!
//! ASL's Paths are JSONPath as Jayway implements it, restricted in Reference Paths (ResultPath, a
//! Choice's `Variable`) to single nodes: no wildcards, slices or deep scans.
//! Filters (`[?(...)]`) are not supported and are refused when the definition is parsed.

use std::fmt;

use serde_json::Value;

/// A parsed Path: its root (the state's input or the context object) and its segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// Whether the path starts at the context object (`$$`) rather than the input (`$`).
    pub context: bool,
    /// The steps after the root.
    pub segments: Vec<Segment>,
    text: String,
}

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `.name` or `['name']`.
    Field(String),
    /// `[3]`, or `[-1]` counting from the end.
    Index(i64),
    /// `[*]` or `.*`: every element or member value.
    Wildcard,
    /// `[start:end]`, either side optional, Python-like.
    Slice(Option<i64>, Option<i64>),
    /// `..name` (or `..*` with `None`): every descendant with that name.
    Descendant(Option<String>),
}

/// Why a Path could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSONPath '{text}': {message}")]
pub struct PathError {
    /// The path as written.
    pub text: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why a value could not be written at a Reference Path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unable to apply ReferencePath {path} to input {input}")]
pub struct SetError {
    /// The path as written.
    pub path: String,
    /// The input, as JSON text.
    pub input: String,
}

impl Path {
    /// Parses `text`, which must start with `$`.
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let err = |message: &str| PathError {
            text: text.to_owned(),
            message: message.to_owned(),
        };
        let chars: Vec<char> = text.chars().collect();
        let (context, mut idx) = match chars.as_slice() {
            ['$', '$', ..] => (true, 2),
            ['$', ..] => (false, 1),
            _ => return Err(err("a path starts with $")),
        };
        let mut segments = Vec::new();
        while idx < chars.len() {
            match chars[idx] {
                '.' if chars.get(idx + 1) == Some(&'.') => {
                    idx += 2;
                    let (name, next) = read_name(&chars, idx);
                    if name.is_empty() {
                        return Err(err("'..' must be followed by a name"));
                    }
                    segments.push(Segment::Descendant((name != "*").then_some(name)));
                    idx = next;
                }
                '.' => {
                    let (name, next) = read_name(&chars, idx + 1);
                    if name.is_empty() {
                        return Err(err("'.' must be followed by a name"));
                    }
                    segments.push(if name == "*" {
                        Segment::Wildcard
                    } else {
                        Segment::Field(name)
                    });
                    idx = next;
                }
                '[' => {
                    let close = find_bracket_end(&chars, idx + 1)
                        .ok_or_else(|| err("'[' is not closed"))?;
                    let inner: String = chars[idx + 1..close].iter().collect();
                    segments.push(parse_bracket(inner.trim()).map_err(|m| err(&m))?);
                    idx = close + 1;
                }
                c => return Err(err(&format!("unexpected '{c}' at offset {idx}"))),
            }
        }
        Ok(Path {
            context,
            segments,
            text: text.to_owned(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path selects at most one node (a Reference Path).
    pub fn is_definite(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Field(_) | Segment::Index(_)))
    }

    /// The value the path selects in `input` (or `context` for `$$` paths): a single node for
    /// a definite path, an array of every match otherwise. `None` when a definite path
    /// selects nothing.
    pub fn select(&self, input: &Value, context: &Value) -> Option<Value> {
        let root = if self.context { context } else { input };
        if self.is_definite() {
            let mut node = root;
            for segment in &self.segments {
                node = match segment {
                    Segment::Field(name) => node.as_object()?.get(name)?,
                    Segment::Index(i) => {
                        let array = node.as_array()?;
                        array.get(resolve_index(*i, array.len())?)?
                    }
                    _ => return None,
                };
            }
            return Some(node.clone());
        }
        let mut nodes = vec![root];
        for segment in &self.segments {
            let mut next = Vec::new();
            for node in nodes {
                step(node, segment, &mut next);
            }
            nodes = next;
        }
        Some(Value::Array(nodes.into_iter().cloned().collect()))
    }

    /// `target` with `value` written at this (definite) path, creating objects on the way.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, SetError> {
        if self.context || !self.is_definite() || !self.settable(&target) {
            return Err(SetError {
                path: self.text.clone(),
                input: target.to_string(),
            });
        }
        let mut target = target;
        let mut node = &mut target;
        for segment in &self.segments {
            node = match (segment, node) {
                (Segment::Field(name), node) => {
                    if !node.is_object() {
                        *node = Value::Object(serde_json::Map::new());
                    }
                    match node {
                        Value::Object(object) => object.entry(name.clone()).or_insert(Value::Null),
                        _ => unreachable!("made an object above"),
                    }
                }
                (Segment::Index(i), Value::Array(array)) => {
                    let len = array.len();
                    match resolve_index(*i, len).and_then(|i| array.get_mut(i)) {
                        Some(slot) => slot,
                        None => unreachable!("settable checked the index"),
                    }
                }
                _ => unreachable!("settable checked the segments"),
            };
        }
        *node = value;
        Ok(target)
    }

    /// Whether [`Path::set`] can write into `target`: every field is under an object (or a
    /// missing or null member, which becomes one) and every index is inside an array.
    fn settable(&self, target: &Value) -> bool {
        let mut node = Some(target);
        for segment in &self.segments {
            node = match (segment, node) {
                (Segment::Field(name), Some(Value::Object(object))) => object.get(name),
                (Segment::Field(_), None | Some(Value::Null)) => None,
                (Segment::Index(i), Some(Value::Array(array))) => {
                    match resolve_index(*i, array.len()) {
                        Some(i) => array.get(i),
                        None => return false,
                    }
                }
                _ => return false,
            };
        }
        true
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn read_name(chars: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
        end += 1;
    }
    (chars[start..end].iter().collect(), end)
}

/// The index of the `]` closing a bracket opened before `start`, skipping quoted text.
fn find_bracket_end(chars: &[char], start: usize) -> Option<usize> {
    let mut quote = None;
    let mut idx = start;
    while idx < chars.len() {
        let c = chars[idx];
        match quote {
            Some(_) if c == '\\' => idx += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ']' => return Some(idx),
            None => {}
        }
        idx += 1;
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Segment, String> {
    if inner == "*" {
        return Ok(Segment::Wildcard);
    }
    if inner.starts_with('?') || inner.starts_with('(') {
        return Err("filters and script expressions are not supported".to_owned());
    }
    if let Some(quoted) = inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
    {
        if quoted.contains("','") || quoted.contains("', '") {
            return Err("unions of names are not supported".to_owned());
        }
        return Ok(Segment::Field(
            quoted.replace("\\'", "'").replace("\\\"", "\""),
        ));
    }
    if let Some((start, end)) = inner.split_once(':') {
        let bound = |s: &str| -> Result<Option<i64>, String> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|_| format!("'{s}' is not a slice bound"))
        };
        if end.contains(':') {
            return Err("slice steps are not supported".to_owned());
        }
        return Ok(Segment::Slice(bound(start)?, bound(end)?));
    }
    if inner.contains(',') {
        return Err("unions of indexes are not supported".to_owned());
    }
    inner
        .parse()
        .map(Segment::Index)
        .map_err(|_| format!("'[{inner}]' is neither an index, a quoted name nor *"))
}

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { len + i } else { i };
    if (0..len).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

fn step<'a>(node: &'a Value, segment: &Segment, out: &mut Vec<&'a Value>) {
    match segment {
        Segment::Field(name) => {
            if let Some(v) = node.as_object().and_then(|o| o.get(name)) {
                out.push(v);
            }
        }
        Segment::Index(i) => {
            if let Some(array) = node.as_array()
                && let Some(v) = resolve_index(*i, array.len()).and_then(|i| array.get(i))
            {
                out.push(v);
            }
        }
        Segment::Wildcard => match node {
            Value::Array(array) => out.extend(array.iter()),
            Value::Object(object) => out.extend(object.values()),
            _ => {}
        },
        Segment::Slice(start, end) => {
            if let Some(array) = node.as_array() {
                let len = i64::try_from(array.len()).unwrap_or(i64::MAX);
                let clamp = |b: i64| if b < 0 { (len + b).max(0) } else { b.min(len) };
                let from = start.map_or(0, clamp);
                let to = end.map_or(len, clamp);
                for i in from..to {
                    if let Some(v) = usize::try_from(i).ok().and_then(|i| array.get(i)) {
                        out.push(v);
                    }
                }
            }
        }
        Segment::Descendant(name) => descend(node, name.as_deref(), out),
    }
}

fn descend<'a>(node: &'a Value, name: Option<&str>, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(object) => {
            for (key, v) in object {
                if name.is_none_or(|n| n == key) {
                    out.push(v);
                }
                descend(v, name, out);
            }
        }
        Value::Array(array) => {
            for v in array {
                if name.is_none() {
                    out.push(v);
                }
                descend(v, name, out);
            }
        }
        _ => {}
    }
}
