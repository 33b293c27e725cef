//! The manifest as a plain tree of positioned nodes, converted from saphyr's `MarkedYaml`.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::lenient::{self, Rewrite};
use super::limits::{self, ControlChar, LoadError, Refusal};

/// A 1-based position in the manifest source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
}

/// One YAML value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub(super) value: Value,
    pub(super) pos: Pos,
    /// Set once variables inside the node have been substituted, so that text coming from
    /// the environment is never scanned for variables a second time.
    pub(super) resolved: bool,
}

/// The value of a [`Node`]. Mapping keys are always plain strings in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// A value whose problem has already been reported; readers skip it silently.
    Invalid,
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) key_pos: Pos,
    pub(super) value: Node,
}

/// A problem found while loading: an error, or a warning about lenient reading.
pub(super) struct Problem {
    pub(super) pos: Pos,
    pub(super) key: String,
    pub(super) message: String,
}

/// A loaded document; `root` is `None` for an empty source.
pub(super) struct Loaded {
    pub(super) root: Option<Node>,
    pub(super) warnings: Vec<Problem>,
}

impl Node {
    pub(super) fn new(value: Value, pos: Pos) -> Node {
        Node {
            value,
            pos,
            resolved: false,
        }
    }

    /// The entry called `key`, if this node is a mapping that has it.
    pub(super) fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|entry| entry.key == key),
            _ => None,
        }
    }

    /// The value at one segment of a dotted path: a mapping's entry, or a sequence's item
    /// by index.
    pub(super) fn child(&self, segment: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|entry| entry.key == segment)
                .map(|entry| &entry.value),
            Value::Seq(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|item_idx| items.get(item_idx)),
            _ => None,
        }
    }

    /// A short description for "expected X, got Y" messages.
    pub(super) fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("number {i}"),
            Value::Float(f) => format!("number {f}"),
            Value::Str(s) => format!("string {s:?}"),
            Value::Seq(_) => "a sequence".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            Value::Invalid => "an invalid value".to_owned(),
        }
    }
}

/// Parses `source` as exactly one YAML document. A source that only fails because of
/// unquoted `{..}` inside flow collections is read leniently, with a warning per scalar.
///
/// Loading is bounded (`limits`): a source over a limit is refused with one problem, a
/// duplicate key or a control character is an error.
pub(super) fn load(source: &str) -> Result<Loaded, Vec<Problem>> {
    if source.len() > limits::MAX_MANIFEST_BYTES {
        return Err(vec![Problem {
            pos: Pos { line: 1, column: 1 },
            key: String::new(),
            message: format!(
                "the file is larger than {} bytes (1 MiB), the most nimbus reads; CloudFormation takes templates up to 1 MB",
                limits::MAX_MANIFEST_BYTES
            ),
        }]);
    }
    // A control character is reported against the value holding it, so the YAML is read
    // with each one replaced by a space, which keeps every position (saphyr counts
    // characters) where it was.
    let control = limits::first_control_char(source);
    let sanitized;
    let source = match control {
        Some(_) => {
            sanitized = source
                .chars()
                .map(|c| {
                    if limits::is_forbidden_control(c) {
                        ' '
                    } else {
                        c
                    }
                })
                .collect::<String>();
            sanitized.as_str()
        }
        None => source,
    };
    let mut duplicates = Vec::new();
    match limits::load_documents(source, &mut duplicates) {
        Ok(docs) => from_docs(docs, None, duplicates, control),
        Err(LoadError::Refused(refusal)) => Err(vec![Problem {
            pos: Pos {
                line: refusal.marker.line(),
                column: refusal.marker.col() + 1,
            },
            key: refusal.key,
            message: refusal.message,
        }]),
        Err(LoadError::Scan(e)) => {
            let marker = e.marker();
            let original = Problem {
                pos: Pos {
                    line: marker.line(),
                    column: marker.col() + 1,
                },
                key: String::new(),
                message: format!("invalid YAML: {}", e.info()),
            };
            let Some(rewrite) = lenient::quote_glued_braces(source) else {
                return Err(vec![original]);
            };
            let mut duplicates = Vec::new();
            match limits::load_documents(&rewrite.source, &mut duplicates) {
                // The rewrite moves text within lines only, so a control character keeps
                // its line; its value is found by line alone.
                Ok(docs) => from_docs(docs, Some(&rewrite), duplicates, None).and_then(|loaded| {
                    match control {
                        Some(control) => Err(vec![control_problem(&control)]),
                        None => Ok(loaded),
                    }
                }),
                Err(_) => Err(vec![original]),
            }
        }
    }
}

fn from_docs(
    docs: Vec<MarkedYaml<'_>>,
    rewrite: Option<&Rewrite>,
    duplicates: Vec<Refusal>,
    control: Option<ControlChar>,
) -> Result<Loaded, Vec<Problem>> {
    let mut converter = Converter {
        rewrite,
        quoted_left: rewrite
            .map(|rewrite| rewrite.quoted.clone())
            .unwrap_or_default(),
        control,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for duplicate in duplicates {
        let pos = converter.pos_of_marker(duplicate.marker);
        converter.errors.push(Problem {
            pos,
            key: duplicate.key,
            message: duplicate.message,
        });
    }
    let mut docs = docs.into_iter();
    let Some(first) = docs.next() else {
        return match control {
            Some(control) => Err(vec![control_problem(&control)]),
            None => Ok(Loaded {
                root: None,
                warnings: Vec::new(),
            }),
        };
    };
    if let Some(second) = docs.next() {
        return Err(vec![Problem {
            pos: converter.pos_of(&second),
            key: String::new(),
            message: "a manifest is a single YAML document; found a second one".to_owned(),
        }]);
    }
    let root = converter.convert(&first, "");
    // A control character outside every scalar (in a key or a comment) has no value to
    // name; it is still an error.
    if let Some(control) = converter.control.take() {
        converter.errors.push(control_problem(&control));
    }
    for (line, column) in std::mem::take(&mut converter.quoted_left) {
        converter.warnings.push(Problem {
            pos: Pos {
                line,
                column: column + 1,
            },
            key: String::new(),
            message: LENIENT_WARNING.to_owned(),
        });
    }
    if converter.errors.is_empty() {
        Ok(Loaded {
            root: Some(root),
            warnings: converter.warnings,
        })
    } else {
        Err(converter.errors)
    }
}

/// The error for a control character outside any value.
fn control_problem(control: &ControlChar) -> Problem {
    Problem {
        pos: control.pos,
        key: String::new(),
        message: control_message(control.c),
    }
}

fn control_message(c: char) -> String {
    format!(
        "control character U+{:04X} in the manifest; a manifest may hold tabs and line breaks but no other control characters (a NUL would end the YAML there)",
        u32::from(c)
    )
}

const LENIENT_WARNING: &str = "a `{` inside a flow mapping or list is not valid YAML and \
    other tools reject it; nimbus read the value as a string, but quote it";

/// Turns saphyr nodes into [`Node`]s, mapping positions back through a lenient rewrite.
struct Converter<'r> {
    rewrite: Option<&'r Rewrite>,
    /// Scalars quoted by the rewrite and not yet warned about.
    quoted_left: Vec<(usize, usize)>,
    /// A control character of the source not yet reported, reported against the scalar
    /// holding it.
    control: Option<ControlChar>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Converter<'_> {
    fn pos_of(&self, yaml: &MarkedYaml<'_>) -> Pos {
        self.pos_of_marker(yaml.span.start)
    }

    fn pos_of_marker(&self, marker: saphyr::Marker) -> Pos {
        let line = marker.line();
        let column = marker.col();
        let column = self
            .rewrite
            .map_or(column, |rewrite| rewrite.original_column(line, column));
        Pos {
            line,
            column: column + 1,
        }
    }

    fn convert(&mut self, yaml: &MarkedYaml<'_>, key: &str) -> Node {
        let pos = self.pos_of(yaml);
        let value = match &yaml.data {
            YamlData::Value(scalar) => {
                let quoted_idx = self
                    .quoted_left
                    .iter()
                    .position(|(line, column)| (*line, column + 1) == (pos.line, pos.column));
                if let Some(quoted_idx) = quoted_idx {
                    self.quoted_left.swap_remove(quoted_idx);
                    self.warnings.push(Problem {
                        pos,
                        key: key.to_owned(),
                        message: LENIENT_WARNING.to_owned(),
                    });
                }
                if let Some(control) = self.control.take_if(|control| {
                    (yaml.span.start.index()..yaml.span.end.index()).contains(&control.char_idx)
                }) {
                    self.errors.push(Problem {
                        pos,
                        key: key.to_owned(),
                        message: control_message(control.c),
                    });
                    Value::Invalid
                } else if let Scalar::String(s) = scalar
                    && let Some(c) = limits::control_char(s)
                {
                    // Written as an escape in a double-quoted string, such as "\0".
                    self.errors.push(Problem {
                        pos,
                        key: key.to_owned(),
                        message: control_message(c),
                    });
                    Value::Invalid
                } else {
                    convert_scalar(scalar)
                }
            }
            // CloudFormation's short forms (`!Ref X`, `!GetAtt X.Arn`, `!Sub ...`) become
            // their long forms (`{ Ref: X }`, `{ Fn::GetAtt: X.Arn }`), as CloudFormation
            // reads them. Any other tag is dropped and the tagged value kept.
            YamlData::Tagged(tag, inner) => {
                let inner = self.convert(inner, key);
                return match intrinsic_name(&tag.handle, &tag.suffix) {
                    Some(name) => Node::new(
                        Value::Map(vec![Entry {
                            key: name,
                            key_pos: pos,
                            value: inner,
                        }]),
                        pos,
                    ),
                    None => inner,
                };
            }
            YamlData::Sequence(items) => Value::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(item_idx, item)| self.convert(item, &format!("{key}[{item_idx}]")))
                    .collect(),
            ),
            YamlData::Mapping(mapping) => self.convert_mapping(mapping, key),
            YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
            YamlData::Alias(_) | YamlData::BadValue => {
                self.errors.push(Problem {
                    pos,
                    key: key.to_owned(),
                    message: "invalid YAML value (an unknown alias, or a value that does not match its tag)"
                        .to_owned(),
                });
                Value::Invalid
            }
        };
        Node::new(value, pos)
    }

    /// Converts a mapping, applying YAML merge keys (`<<: *defaults`): keys written in the
    /// mapping itself win over merged ones, and earlier merged mappings win over later ones.
    fn convert_mapping(
        &mut self,
        mapping: &saphyr::AnnotatedMapping<'_, MarkedYaml<'_>>,
        key: &str,
    ) -> Value {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merged: Vec<Entry> = Vec::new();
        for (yaml_key, yaml_value) in mapping {
            let key_pos = self.pos_of(yaml_key);
            let name = match &yaml_key.data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                YamlData::Value(Scalar::FloatingPoint(f)) => f.to_string(),
                YamlData::Value(Scalar::Null) => "null".to_owned(),
                _ => {
                    self.errors.push(Problem {
                        pos: key_pos,
                        key: key.to_owned(),
                        message: "mapping keys must be plain scalars".to_owned(),
                    });
                    continue;
                }
            };
            let child_key = if key.is_empty() {
                name.clone()
            } else {
                format!("{key}.{name}")
            };
            let value = self.convert(yaml_value, &child_key);
            if name != "<<" {
                entries.push(Entry {
                    key: name,
                    key_pos,
                    value,
                });
                continue;
            }
            let sources = match value.value {
                Value::Map(_) => vec![value],
                Value::Seq(items) => items,
                _ => vec![value],
            };
            for source in sources {
                match source.value {
                    Value::Map(source_entries) => merged.extend(source_entries),
                    Value::Invalid => {}
                    _ => self.errors.push(Problem {
                        pos: source.pos,
                        key: child_key.clone(),
                        message: "a merge key (`<<`) takes a mapping or a list of mappings"
                            .to_owned(),
                    }),
                }
            }
        }
        for entry in merged {
            if !entries.iter().any(|existing| existing.key == entry.key) {
                entries.push(entry);
            }
        }
        Value::Map(entries)
    }
}

/// The long-form key of a CloudFormation short-form tag: `Ref`, `Condition` or `Fn::<name>`.
fn intrinsic_name(handle: &str, suffix: &str) -> Option<String> {
    const FUNCTIONS: &[&str] = &[
        "And",
        "Base64",
        "Cidr",
        "Equals",
        "FindInMap",
        "GetAtt",
        "GetAZs",
        "If",
        "ImportValue",
        "Join",
        "Not",
        "Or",
        "Select",
        "Split",
        "Sub",
    ];
    if handle != "!" {
        return None;
    }
    match suffix {
        "Ref" | "Condition" => Some(suffix.to_owned()),
        _ if FUNCTIONS.contains(&suffix) => Some(format!("Fn::{suffix}")),
        _ => None,
    }
}

fn convert_scalar(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.0),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}
