//! Bounds on what loading a manifest may cost, so a hostile or careless one is refused fast.
//!
//! The same loader runs in `nimbus validate`, `nimbus up`, every `nimbus dev` reload and the
//! server side of `nimbus deploy`, so one bundle must not be able to take a server down.
//! A YAML "billion laughs" (anchors aliasing anchors) or a `${self:..}` chain that doubles a
//! value at each step grows exponentially; each limit here is checked while the manifest is
//! read, before the memory it guards is spent, and a manifest over one is refused with one
//! error naming the key and the limit.
//!
//! The YAML guard sits between saphyr's event parser and its loader ([`load_documents`]):
//! saphyr's loader copies an anchor's value for every alias and its mappings keep the last
//! of two equal keys, so alias expansion, nesting and duplicate keys are checked on the
//! events, before the loader builds anything.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr::{MarkedYaml, YamlLoader};

use super::tree::Pos;
use saphyr_parser::{BufferedInput, Event, Marker, Parser, ScanError, Span, SpannedEventReceiver};

/// The largest manifest nimbus reads, in bytes; also the largest `${file(..)}` file.
/// CloudFormation, which a Serverless manifest becomes on AWS, takes templates up to 1 MB.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// The most YAML nodes (scalars, mappings and sequences, keys included) one document may
/// hold once its aliases are expanded; the largest real manifests have a few thousand.
pub(super) const MAX_NODES: usize = 100_000;

/// The deepest nesting of mappings and sequences, aliases expanded; real manifests stay
/// under 20 (CloudFormation resources are the deepest part).
pub(super) const MAX_DEPTH: usize = 64;

/// The deepest chain of variables resolving through each other
/// (`${self:a}` → `${self:b}` → ...); the Framework's own resolver stops at a similar depth.
pub(super) const MAX_VARIABLE_DEPTH: usize = 32;

/// The largest value one variable may resolve to: as large as a manifest could write it.
pub(super) const MAX_VALUE_BYTES: usize = MAX_MANIFEST_BYTES;

/// The most that all the variables of one manifest may resolve to together, counted as
/// [`MAX_VALUE_BYTES`] is; a value used many times counts each time.
pub(super) const MAX_RESOLVED_BYTES: usize = 16 * MAX_MANIFEST_BYTES;

/// The cost of one node in [`MAX_VALUE_BYTES`] and [`MAX_RESOLVED_BYTES`], besides its text:
/// about what a node of the manifest tree takes in memory.
pub(super) const NODE_BYTES: usize = 64;

/// Why loading stopped: malformed YAML, or a limit (already a complete diagnostic).
pub(super) enum LoadError {
    Scan(ScanError),
    Refused(Refusal),
}

/// A problem the guard found, with its position in the source it was given.
pub(super) struct Refusal {
    pub(super) marker: Marker,
    pub(super) key: String,
    pub(super) message: String,
}

/// The documents in `source`, loaded by saphyr behind the guard; duplicate keys go to
/// `duplicates` and do not stop the load.
pub(super) fn load_documents<'input>(
    source: &'input str,
    duplicates: &mut Vec<Refusal>,
) -> Result<Vec<MarkedYaml<'input>>, LoadError> {
    let mut parser = Parser::new(BufferedInput::new(source.chars()));
    let mut loader = YamlLoader::<MarkedYaml<'input>>::default();
    let mut guard = Guard::default();
    while let Some(res) = parser.next_event() {
        let (event, span) = match res {
            Ok(next) => next,
            Err(e) => return Err(LoadError::Scan(e)),
        };
        if let Err(refusal) = guard.check(&event, span) {
            return Err(LoadError::Refused(refusal));
        }
        loader.on_event(event, span);
    }
    duplicates.append(&mut guard.duplicates);
    Ok(loader.into_documents())
}

/// A character YAML does not allow in a document, and where it is.
#[derive(Clone, Copy)]
pub(super) struct ControlChar {
    pub(super) c: char,
    /// Its index in characters, as saphyr's markers count.
    pub(super) char_idx: usize,
    pub(super) pos: Pos,
}

/// The first character YAML does not allow in a document (YAML 1.2 §5.1: C0 controls other
/// than tab and line breaks, DEL, and C1 controls other than NEL).
/// saphyr reads a NUL as the end of the input, so without this check the rest of the
/// manifest would be dropped without a word.
pub(super) fn first_control_char(source: &str) -> Option<ControlChar> {
    if !may_hold_control(source) {
        return None;
    }
    let (mut line, mut column) = (1, 1);
    for (char_idx, c) in source.chars().enumerate() {
        if is_forbidden_control(c) {
            return Some(ControlChar {
                c,
                char_idx,
                pos: Pos { line, column },
            });
        }
        if c == '\n' {
            (line, column) = (line + 1, 1);
        } else {
            column += 1;
        }
    }
    None
}

/// The first control character of `text` that a manifest value may not hold.
pub(super) fn control_char(text: &str) -> Option<char> {
    if !may_hold_control(text) {
        return None;
    }
    text.chars().find(|c| is_forbidden_control(*c))
}

/// A fast check on bytes: `false` when `text` surely holds no forbidden control character
/// (C1 controls are encoded as 0xC2 followed by 0x80 to 0x9F).
fn may_hold_control(text: &str) -> bool {
    text.bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f || b == 0xc2)
}

/// Whether `c` is a control character a manifest value may not hold: all but tab, line
/// feed and carriage return (which YAML writes as they are, or as `\t`, `\n`, `\r`).
pub(super) fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}')
}

/// Counts nodes and nesting as events arrive, the way the loader will expand them.
#[derive(Default)]
struct Guard<'input> {
    /// Nodes so far, aliases counted at their expanded size.
    n_nodes: usize,
    /// The open mappings and sequences, outermost first.
    frames: Vec<Frame<'input>>,
    /// The expanded size of each anchor seen, by saphyr's anchor id.
    anchors: HashMap<usize, Size>,
    duplicates: Vec<Refusal>,
}

/// The size of a node once expanded: its node count and its depth (0 for a scalar).
#[derive(Clone, Copy)]
struct Size {
    n_nodes: usize,
    depth: usize,
}

struct Frame<'input> {
    kind: FrameKind<'input>,
    anchor_id: usize,
    /// `Guard::n_nodes` when the collection opened (itself included).
    start_nodes: usize,
    /// The deepest child so far.
    child_depth: usize,
}

enum FrameKind<'input> {
    Map {
        /// Whether the next node is a key (else it is the value of `key`).
        next_is_key: bool,
        /// The latest key, for error messages; `None` for a key that is not a scalar.
        key: Option<Cow<'input, str>>,
        /// Each scalar key and the line it is on.
        keys: KeySet<'input>,
    },
    Seq {
        n_items: usize,
    },
}

/// The keys of one mapping: a list while short (most mappings have a handful of keys), a
/// hash map once long, so a mapping of many keys costs linear time.
enum KeySet<'input> {
    Few(Vec<(Cow<'input, str>, usize)>),
    Many(HashMap<Cow<'input, str>, usize>),
}

impl<'input> KeySet<'input> {
    const MAX_FEW: usize = 16;

    /// Adds `key` on `line`; if it is there already, leaves it and returns its line.
    #[expect(
        clippy::ptr_arg,
        reason = "the key is kept as the `Cow` it came in, which borrows the source where saphyr could"
    )]
    fn insert(&mut self, key: &Cow<'input, str>, line: usize) -> Option<usize> {
        match self {
            KeySet::Few(keys) => {
                if let Some((_, first_line)) = keys.iter().find(|(k, _)| k == key) {
                    return Some(*first_line);
                }
                if keys.len() < Self::MAX_FEW {
                    keys.push((key.clone(), line));
                } else {
                    let mut many: HashMap<_, _> = keys.drain(..).collect();
                    many.insert(key.clone(), line);
                    *self = KeySet::Many(many);
                }
                None
            }
            KeySet::Many(keys) => match keys.get(key) {
                Some(first_line) => Some(*first_line),
                None => {
                    keys.insert(key.clone(), line);
                    None
                }
            },
        }
    }
}

impl<'input> Guard<'input> {
    fn check(&mut self, event: &Event<'input>, span: Span) -> Result<(), Refusal> {
        match event {
            Event::Scalar(text, _, anchor_id, _) => {
                self.enter_node(Some(text), span);
                self.add_nodes(1, span)?;
                if *anchor_id > 0 {
                    let size = Size {
                        n_nodes: 1,
                        depth: 0,
                    };
                    self.anchors.insert(*anchor_id, size);
                }
            }
            Event::Alias(anchor_id) => {
                self.enter_node(None, span);
                let size = self.anchors.get(anchor_id).copied().unwrap_or(Size {
                    n_nodes: 1,
                    depth: 0,
                });
                self.add_nodes(size.n_nodes, span)?;
                self.add_depth(size.depth, span)?;
            }
            Event::MappingStart(anchor_id, _) | Event::SequenceStart(anchor_id, _) => {
                self.enter_node(None, span);
                self.add_nodes(1, span)?;
                let kind = match event {
                    Event::MappingStart(..) => FrameKind::Map {
                        next_is_key: true,
                        key: None,
                        keys: KeySet::Few(Vec::new()),
                    },
                    _ => FrameKind::Seq { n_items: 0 },
                };
                self.frames.push(Frame {
                    kind,
                    anchor_id: *anchor_id,
                    start_nodes: self.n_nodes,
                    child_depth: 0,
                });
                if self.frames.len() > MAX_DEPTH {
                    return Err(self.refuse(
                        span,
                        format!(
                            "mappings and lists nest more than {MAX_DEPTH} levels deep; a manifest may nest at most {MAX_DEPTH}"
                        ),
                    ));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(frame) = self.frames.pop() {
                    let size = Size {
                        n_nodes: self.n_nodes - frame.start_nodes + 1,
                        depth: frame.child_depth + 1,
                    };
                    if frame.anchor_id > 0 {
                        self.anchors.insert(frame.anchor_id, size);
                    }
                    if let Some(parent) = self.frames.last_mut() {
                        parent.child_depth = parent.child_depth.max(size.depth);
                    }
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// Moves the innermost collection on to its next key, value or item; a scalar key is
    /// checked against the mapping's earlier keys.
    fn enter_node(&mut self, scalar: Option<&Cow<'input, str>>, span: Span) {
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        let duplicate_message = match &mut frame.kind {
            FrameKind::Seq { n_items } => {
                *n_items += 1;
                None
            }
            FrameKind::Map {
                next_is_key,
                key,
                keys,
            } => {
                if !*next_is_key {
                    *next_is_key = true;
                    return;
                }
                *next_is_key = false;
                *key = scalar.cloned();
                let Some(name) = scalar else {
                    return;
                };
                match keys.insert(name, span.start.line()) {
                    Some(first_line) if name.as_ref() == "<<" => Some(format!(
                        "duplicate merge key `<<` (also on line {first_line}); merge several mappings with one key: `<<: [*a, *b]`"
                    )),
                    Some(first_line) => Some(format!(
                        "duplicate key `{name}` (also on line {first_line}); a key may appear once in a mapping, and YAML loaders disagree on which one wins"
                    )),
                    None => None,
                }
            }
        };
        if let Some(message) = duplicate_message {
            let refusal = self.refuse(span, message);
            self.duplicates.push(refusal);
        }
    }

    fn add_nodes(&mut self, n_nodes: usize, span: Span) -> Result<(), Refusal> {
        self.n_nodes = self.n_nodes.saturating_add(n_nodes);
        if self.n_nodes > MAX_NODES {
            return Err(self.refuse(
                span,
                format!(
                    "the manifest has more than {MAX_NODES} YAML nodes here, with aliases (`*name`) expanded each time they are used; a manifest may have at most {MAX_NODES}"
                ),
            ));
        }
        Ok(())
    }

    /// Accounts for an alias of a collection `depth` deep inserted here.
    fn add_depth(&mut self, depth: usize, span: Span) -> Result<(), Refusal> {
        if self.frames.len() + depth > MAX_DEPTH {
            return Err(self.refuse(
                span,
                format!(
                    "this alias nests mappings and lists more than {MAX_DEPTH} levels deep; a manifest may nest at most {MAX_DEPTH}"
                ),
            ));
        }
        if let Some(parent) = self.frames.last_mut() {
            parent.child_depth = parent.child_depth.max(depth);
        }
        Ok(())
    }

    fn refuse(&self, span: Span, message: String) -> Refusal {
        Refusal {
            marker: span.start,
            key: self.key_path(),
            message,
        }
    }

    /// The dotted key of the node being read, as `Diagnostic::key` writes it.
    fn key_path(&self) -> String {
        let mut path = String::new();
        for frame in &self.frames {
            match &frame.kind {
                FrameKind::Map { key: Some(key), .. } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                FrameKind::Map { key: None, .. } => {}
                FrameKind::Seq { n_items } => {
                    path.push_str(&format!("[{}]", n_items.saturating_sub(1)));
                }
            }
        }
        path
    }
}
