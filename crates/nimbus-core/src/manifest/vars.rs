//! `${source:address, fallback}` variables, substituted in string values as they are read.
//!
//! The sources follow the Serverless Framework v3: `env`, `opt`, `self`, `sls:stage` and
//! `sls:instanceId`, `param` (stage parameters under `params:`), `file(path)` (YAML or
//! JSON inside the app folder), `aws:region` and `aws:accountId`, and `cf:stack.Output`
//! where the output names a resource the app declares. As in the Framework,
//! `provider.stage` (`dev`) and `provider.region` (`us-east-1`) have their defaults before
//! anything is resolved, so `${self:provider.stage}` resolves without a `provider.stage`.
//! nimbus adds `secret`, the app's own secrets (`nimbus secret set`), where Serverless would
//! use `ssm`; it is allowed only in `environment` values (see `Cx::secret_scope`).
//! Any other source (`ssm`, `s3`, ...) needs a fallback, because nimbus has no AWS
//! account to ask. A text such as CloudFormation's `${AWS::Region}` or `${MyBucket}` is
//! not a variable and is kept as written.

use super::limits::{MAX_RESOLVED_BYTES, MAX_VALUE_BYTES, MAX_VARIABLE_DEPTH, NODE_BYTES};
use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// The result of looking a variable up.
pub(super) enum Lookup {
    Found(Node),
    /// Not available from this source; a fallback may still provide a value.
    Missing(String),
    /// An error was reported already.
    Failed,
}

/// A piece of a string value: text as written, or the body of a `${..}` variable.
enum Segment {
    Text(String),
    Var(String),
}

impl Cx<'_> {
    /// `node` with the variables in its own scalar substituted. Mappings and sequences
    /// come back as written, except those produced by `${self:..}`, which are complete;
    /// read their children with `read` as well.
    pub(super) fn read(&mut self, node: &Node, key: &str) -> Node {
        match &node.value {
            Value::Str(text) if !node.resolved && text.contains("${") => {
                self.interpolate(text, node.pos, key)
            }
            _ => node.clone(),
        }
    }

    /// `node` with variables substituted everywhere inside it.
    pub(super) fn read_deep(&mut self, node: &Node, key: &str) -> Node {
        let mut node = self.read(node, key);
        if node.resolved {
            return node;
        }
        node.value = match node.value {
            Value::Seq(items) => Value::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(item_idx, item)| self.read_deep(item, &format!("{key}[{item_idx}]")))
                    .collect(),
            ),
            Value::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|entry| Entry {
                        value: self.read_deep(&entry.value, &join_key(key, &entry.key)),
                        ..entry
                    })
                    .collect(),
            ),
            other => other,
        };
        node.resolved = true;
        node
    }

    /// `--stage`, else `provider.stage`, else `dev`: the value of `${sls:stage}`.
    /// `None` when `provider.stage` is broken; that is reported where it is read.
    pub(super) fn stage(&mut self, pos: Pos, key: &str) -> Option<String> {
        if let Some(stage) = self.vars.options.get("stage") {
            return Some(stage.clone());
        }
        match self.lookup_self("provider.stage", pos, key) {
            Lookup::Found(node) => match node.value {
                Value::Str(stage) => Some(stage),
                Value::Int(i) => Some(i.to_string()),
                Value::Null => Some("dev".to_owned()),
                _ => None,
            },
            Lookup::Missing(_) => Some("dev".to_owned()),
            Lookup::Failed => None,
        }
    }

    /// `--region`, else `provider.region`, else `us-east-1`: the value of `${aws:region}`.
    fn region(&mut self, pos: Pos, key: &str) -> Option<String> {
        if let Some(region) = self.vars.options.get("region") {
            return Some(region.clone());
        }
        match self.lookup_self("provider.region", pos, key) {
            Lookup::Found(node) => match node.value {
                Value::Str(region) => Some(region),
                Value::Null => Some(DEFAULT_REGION.to_owned()),
                _ => None,
            },
            Lookup::Missing(_) => Some(DEFAULT_REGION.to_owned()),
            Lookup::Failed => None,
        }
    }

    /// Substitutes every variable in `text`. A text that is exactly one variable takes
    /// the type of the value it refers to, so `memorySize: ${self:custom.mem}` stays a number.
    fn interpolate(&mut self, text: &str, pos: Pos, key: &str) -> Node {
        let invalid = Node {
            value: Value::Invalid,
            pos,
            resolved: true,
        };
        let segments = match split_template(text) {
            Ok(segments) => segments,
            Err(message) => {
                self.error(pos, key, message);
                return invalid;
            }
        };
        if let [Segment::Var(body)] = segments.as_slice() {
            return match self.lookup(body, pos, key) {
                Lookup::Found(node) if !self.charge(weight(&node), text, pos, key) => invalid,
                Lookup::Found(mut node) => {
                    // Problems with the value belong to the key that used the variable.
                    node.pos = pos;
                    node.resolved = true;
                    node
                }
                Lookup::Missing(why) => {
                    self.error(pos, key, format!("cannot resolve `${{{body}}}`: {why}"));
                    invalid
                }
                Lookup::Failed => invalid,
            };
        }
        let mut out = String::new();
        let mut failed = false;
        for segment in segments {
            match segment {
                Segment::Text(text) => out.push_str(&text),
                Segment::Var(body) => match self.lookup(&body, pos, key) {
                    Lookup::Found(node) => match &node.value {
                        Value::Str(s) if out.len() + s.len() > MAX_VALUE_BYTES => {
                            self.refuse_value(text, pos, key);
                            return invalid;
                        }
                        Value::Str(s) => out.push_str(s),
                        Value::Int(i) => out.push_str(&i.to_string()),
                        Value::Float(f) => out.push_str(&f.to_string()),
                        Value::Bool(b) => out.push_str(&b.to_string()),
                        Value::Invalid => failed = true,
                        Value::Null | Value::Seq(_) | Value::Map(_) => {
                            let message = format!(
                                "`${{{body}}}` is {} and cannot be part of a string",
                                node.describe()
                            );
                            self.error(pos, key, message);
                            failed = true;
                        }
                    },
                    Lookup::Missing(why) => {
                        self.error(pos, key, format!("cannot resolve `${{{body}}}`: {why}"));
                        failed = true;
                    }
                    Lookup::Failed => failed = true,
                },
            }
        }
        if failed || !self.charge(out.len(), text, pos, key) {
            invalid
        } else {
            Node {
                value: Value::Str(out),
                pos,
                resolved: true,
            }
        }
    }

    /// Counts `bytes` of resolved value against the limits; `false` (reported) when the
    /// value of `template` is too large or all variables together are.
    fn charge(&mut self, bytes: usize, template: &str, pos: Pos, key: &str) -> bool {
        if bytes > MAX_VALUE_BYTES {
            self.refuse_value(template, pos, key);
            return false;
        }
        self.resolved_bytes = self.resolved_bytes.saturating_add(bytes);
        if self.resolved_bytes <= MAX_RESOLVED_BYTES {
            return true;
        }
        let message = format!(
            "the manifest's variables resolve to more than {MAX_RESOLVED_BYTES} bytes (16 MiB) in all, counting each use of a value and {NODE_BYTES} bytes per mapping entry or list item; that is the limit"
        );
        self.error(pos, key, message);
        self.variable_limit_hit = true;
        false
    }

    fn refuse_value(&mut self, template: &str, pos: Pos, key: &str) {
        let message = format!(
            "`{}` resolves to more than {MAX_VALUE_BYTES} bytes (1 MiB, counting {NODE_BYTES} bytes per mapping entry or list item); a variable's value may be at most that",
            shorten(template)
        );
        self.error(pos, key, message);
        self.variable_limit_hit = true;
    }

    /// Looks up `address, fallback, fallback...`, the body of one `${..}`, at most
    /// `MAX_VARIABLE_DEPTH` variables deep.
    fn lookup(&mut self, body: &str, pos: Pos, key: &str) -> Lookup {
        // After one limit is reported, every variable fails without a word, so a hostile
        // manifest gets one error rather than one per use.
        if self.variable_limit_hit {
            return Lookup::Failed;
        }
        if self.variable_depth >= MAX_VARIABLE_DEPTH {
            let message = format!(
                "variables here resolve through each other more than {MAX_VARIABLE_DEPTH} deep (at `${{{}}}`); a chain of variables may be at most {MAX_VARIABLE_DEPTH} long",
                shorten(body),
            );
            self.error(pos, key, message);
            self.variable_limit_hit = true;
            return Lookup::Failed;
        }
        self.variable_depth += 1;
        let res = self.lookup_at_depth(body, pos, key);
        self.variable_depth -= 1;
        res
    }

    fn lookup_at_depth(&mut self, body: &str, pos: Pos, key: &str) -> Lookup {
        let parts = split_commas(body);
        let Some((address, fallbacks)) = parts.split_first() else {
            return Lookup::Missing("empty variable".to_owned());
        };
        let why = match self.lookup_address(address.trim(), pos, key) {
            Lookup::Missing(why) => why,
            found_or_failed => return found_or_failed,
        };
        for fallback in fallbacks {
            match self.fallback(fallback.trim(), pos, key) {
                Lookup::Missing(_) => continue,
                found_or_failed => return found_or_failed,
            }
        }
        if fallbacks.is_empty() {
            Lookup::Missing(why)
        } else {
            Lookup::Missing(format!("{why}, and no fallback resolved"))
        }
    }

    fn lookup_address(&mut self, address: &str, pos: Pos, key: &str) -> Lookup {
        // The address may itself hold variables: `${env:${opt:stage}_DATABASE_URL}`.
        let address = if address.contains("${") {
            let node = self.interpolate(address, pos, key);
            match node.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Invalid => return Lookup::Failed,
                _ => {
                    let message =
                        format!("a variable address must be text, got {}", node.describe());
                    self.error(pos, key, message);
                    return Lookup::Failed;
                }
            }
        } else {
            address.to_owned()
        };
        if let Some(rest) = address.strip_prefix("file(") {
            return self.lookup_file(rest, pos, key);
        }
        if let Some(rest) = address.strip_prefix("strToBool(") {
            let value = match rest.strip_suffix(')').map(str::trim) {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    let message = format!(
                        "`strToBool` takes `true` or `false`, got `{}`",
                        rest.trim_end_matches(')')
                    );
                    self.error(pos, key, message);
                    return Lookup::Failed;
                }
            };
            return Lookup::Found(Node {
                value: Value::Bool(value),
                pos,
                resolved: true,
            });
        }
        let Some((source, name)) = address.split_once(':') else {
            return Lookup::Missing(format!(
                "`{address}` names no source such as `env:` or `self:`"
            ));
        };
        let (source, name) = (source.trim(), name.trim());
        if source == "cf" || source.starts_with("cf(") {
            return match self.cf_value(name) {
                Some(value) => found_text(&value, pos),
                None => Lookup::Missing(format!(
                    "nimbus has no CloudFormation stacks; `cf:{name}` resolves only when the output (or the stack) names a queue, topic or bucket this app declares"
                )),
            };
        }
        match source {
            "env" => match self.vars.env.get(name) {
                Some(value) => found_text(value, pos),
                None => Lookup::Missing(format!(
                    "environment variable `{name}` is not set; set it or give a default: `${{env:{name}, 'value'}}`"
                )),
            },
            "opt" => match self.vars.options.get(name) {
                Some(value) => found_text(value, pos),
                None => Lookup::Missing(format!(
                    "option `--{name}` was not given; pass it or give a default: `${{opt:{name}, 'value'}}`"
                )),
            },
            "sls" if name == "stage" => match self.stage(pos, key) {
                Some(stage) => found_text(&stage, pos),
                None => Lookup::Failed,
            },
            "sls" if name == "instanceId" => match &self.vars.instance_id {
                Some(id) => found_text(id, pos),
                None => Lookup::Missing("no instance id was given".to_owned()),
            },
            "sls" => Lookup::Missing(format!(
                "the `sls` source has `stage` and `instanceId`, not `{name}`"
            )),
            "aws" if name == "region" => match self.region(pos, key) {
                Some(region) => found_text(&region, pos),
                None => Lookup::Failed,
            },
            "aws" if name == "accountId" => found_text(crate::ACCOUNT_ID, pos),
            "aws" => Lookup::Missing(format!(
                "the `aws` source has `region` and `accountId`, not `{name}`"
            )),
            "param" => self.lookup_param(name, pos, key),
            "construct" => self.lookup_construct(name, pos, key),
            "self" => self.lookup_self(name, pos, key),
            "secret" => self.lookup_secret(name, pos, key),
            "ssm" => Lookup::Missing(format!(
                "nimbus cannot resolve `ssm` variables; keep the value as a nimbus secret (`nimbus secret set NAME`, then `${{secret:NAME}}`) or give a default: `${{{address}, 'value'}}`"
            )),
            _ => Lookup::Missing(format!(
                "nimbus cannot resolve `{source}` variables; give a default: `${{{address}, 'value'}}`"
            )),
        }
    }

    /// One fallback: a quoted text, a number, a boolean, `null`, or another variable.
    fn fallback(&mut self, text: &str, pos: Pos, key: &str) -> Lookup {
        let quoted = text.len() >= 2
            && ((text.starts_with('\'') && text.ends_with('\''))
                || (text.starts_with('"') && text.ends_with('"')));
        if quoted {
            return found_text(&text[1..text.len() - 1], pos);
        }
        if let Some(body) = text
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            return self.lookup(body, pos, key);
        }
        let value = if let Ok(i) = text.parse::<i64>() {
            Value::Int(i)
        } else if let Some(f) = text.parse::<f64>().ok().filter(|f| f.is_finite()) {
            Value::Float(f)
        } else if text == "true" || text == "false" {
            Value::Bool(text == "true")
        } else if text == "null" {
            Value::Null
        } else if is_variable(text) {
            // Serverless v3 also accepts a bare `self:provider.stage` as a fallback.
            return self.lookup(text, pos, key);
        } else {
            let message =
                format!("cannot read the default `{text}`; quote text defaults, as in 'value'");
            self.error(pos, key, message);
            return Lookup::Failed;
        };
        Lookup::Found(Node {
            value,
            pos,
            resolved: true,
        })
    }

    /// `${param:NAME}`: the stage parameter under `params.<stage>`, else `params.default`.
    fn lookup_param(&mut self, name: &str, pos: Pos, key: &str) -> Lookup {
        if name.is_empty() {
            return Lookup::Missing("`param:` needs a name, as in `${param:domain}`".to_owned());
        }
        let Some(stage) = self.stage(pos, key) else {
            return Lookup::Failed;
        };
        for scope in [stage.as_str(), "default"] {
            match self.lookup_self(&format!("params.{scope}.{name}"), pos, key) {
                Lookup::Missing(_) => continue,
                found_or_failed => return found_or_failed,
            }
        }
        Lookup::Missing(format!(
            "parameter `{name}` is set neither under `params.{stage}` nor under `params.default`"
        ))
    }

    /// `${file(path)}` or `${file(path):a.b}`: a YAML or JSON file inside the app folder,
    /// whole or the value at a path in it. Variables in the file resolve as the manifest's
    /// own do; a missing file is a missing value, so a fallback applies.
    fn lookup_file(&mut self, rest: &str, pos: Pos, key: &str) -> Lookup {
        let Some(close) = rest.find(')') else {
            self.error(
                pos,
                key,
                "`file(` is not closed; write `${file(./config.yml):key}`",
            );
            return Lookup::Failed;
        };
        let path = rest[..close].trim().trim_matches(|c| c == '\'' || c == '"');
        let address = match rest[close + 1..].trim() {
            "" => None,
            after => match after.strip_prefix(':') {
                Some(address) => Some(address.trim()),
                None => {
                    let message = format!(
                        "unexpected `{after}` after `file({path})`; write `${{file({path}):key}}`"
                    );
                    self.error(pos, key, message);
                    return Lookup::Failed;
                }
            },
        };
        if [".js", ".cjs", ".mjs", ".ts"]
            .iter()
            .any(|ext| path.ends_with(ext))
        {
            let message = format!(
                "nimbus does not run JavaScript variable files such as `{path}`; write the values as YAML or JSON and point `file(..)` at that"
            );
            self.error(pos, key, message);
            return Lookup::Failed;
        }
        let text = match self.vars.files.as_ref().map(|files| files.read(path)) {
            Some(Ok(Some(text))) => text,
            Some(Ok(None)) => return Lookup::Missing(format!("file `{path}` does not exist")),
            Some(Err(message)) => {
                self.error(pos, key, format!("cannot read `{path}`: {message}"));
                return Lookup::Failed;
            }
            None => return Lookup::Missing("no files can be read here".to_owned()),
        };
        // Each use reads and parses the file again, so each counts.
        if !self.charge(text.len(), &format!("${{file({rest}}}"), pos, key) {
            return Lookup::Failed;
        }
        let root = match super::tree::load(&text) {
            Ok(loaded) => loaded.root,
            Err(errors) => {
                let first = errors.first().map_or_else(String::new, |e| {
                    format!(" at {}:{}: {}", e.pos.line, e.pos.column, e.message)
                });
                self.error(
                    pos,
                    key,
                    format!("`{path}` is not valid YAML or JSON{first}"),
                );
                return Lookup::Failed;
            }
        };
        let mut node = root.unwrap_or_else(|| Node::new(Value::Null, pos));
        for segment in address.into_iter().flat_map(|a| a.split('.')) {
            let Some(next) = node.child(segment).cloned() else {
                return Lookup::Missing(format!(
                    "`{}` is not in `{path}`",
                    address.unwrap_or_default()
                ));
            };
            node = next;
        }
        // Problems inside the file's values belong to the key that used the variable.
        reposition(&mut node, pos);
        let node = self.read_deep(&node, key);
        match node.value {
            Value::Invalid => Lookup::Failed,
            _ => Lookup::Found(node),
        }
    }

    /// `${secret:NAME}`: the secret's value, only inside an `environment` value.
    /// No message here ever holds the value.
    fn lookup_secret(&mut self, name: &str, pos: Pos, key: &str) -> Lookup {
        if self.secret_scope.is_none() {
            let message = format!(
                "`${{secret:{name}}}` can only be used in an `environment` value, written there directly (not through `${{self:..}}`), so that a secret's value reaches only its functions"
            );
            self.error(pos, key, message);
            return Lookup::Failed;
        }
        if name.is_empty() {
            return Lookup::Missing(
                "`secret:` needs a name, as in `${secret:DB_PASSWORD}`".to_owned(),
            );
        }
        let res = match &self.vars.secrets {
            Some(resolver) => resolver.resolve(name),
            None => Ok(None),
        };
        match res {
            Ok(Some(value)) => {
                if let Some(used) = &mut self.secret_scope {
                    used.push(name.to_owned());
                }
                found_text(&value, pos)
            }
            Ok(None) => Lookup::Missing(format!(
                "secret `{name}` is not set; `nimbus secret set {name}` creates it (the value is read from stdin)"
            )),
            Err(message) => {
                self.error(pos, key, format!("cannot read secret `{name}`: {message}"));
                Lookup::Failed
            }
        }
    }

    /// `${self:a.b.c}`: the value at that path of this document, itself resolved.
    pub(super) fn lookup_self(&mut self, path: &str, pos: Pos, key: &str) -> Lookup {
        if path.is_empty() {
            return Lookup::Missing("`self:` needs a path such as `custom.name`".to_owned());
        }
        if let Some(memo) = self.self_memo.get(path) {
            return memo.clone().map_or(Lookup::Failed, Lookup::Found);
        }
        if let Some(start) = self.self_stack.iter().position(|seen| seen == path) {
            let mut cycle = self.self_stack[start..].to_vec();
            cycle.push(path.to_owned());
            self.error(pos, key, format!("variable cycle: {}", cycle.join(" -> ")));
            return Lookup::Failed;
        }
        self.self_stack.push(path.to_owned());
        // What `${self:..}` refers to is read outside any `environment` value, so it resolves
        // the same wherever it is used and its result can be cached.
        let secret_scope = self.secret_scope.take();
        let res = self.walk_self(path);
        self.secret_scope = secret_scope;
        self.self_stack.pop();
        match &res {
            Lookup::Found(node) => {
                self.self_memo.insert(path.to_owned(), Some(node.clone()));
            }
            Lookup::Failed => {
                self.self_memo.insert(path.to_owned(), None);
            }
            Lookup::Missing(_) => {}
        }
        res
    }

    fn walk_self(&mut self, path: &str) -> Lookup {
        let mut node = self.root.clone();
        let mut node_key = String::new();
        for segment in path.split('.') {
            let current = self.read(&node, &node_key);
            if current.value == Value::Invalid {
                return Lookup::Failed;
            }
            let next = current.child(segment).cloned();
            let Some(next) = next else {
                // The Framework fills these in before it resolves anything.
                return match path {
                    "provider.stage" => found_text(
                        self.vars.options.get("stage").map_or("dev", String::as_str),
                        self.root.pos,
                    ),
                    "provider.region" => found_text(
                        self.vars
                            .options
                            .get("region")
                            .map_or(DEFAULT_REGION, String::as_str),
                        self.root.pos,
                    ),
                    _ => Lookup::Missing(format!("`{path}` is not in the manifest")),
                };
            };
            node_key = match current.value {
                Value::Seq(_) => format!("{node_key}[{segment}]"),
                _ => join_key(&node_key, segment),
            };
            node = next;
        }
        let mut node = self.read_deep(&node, &node_key);
        // `${self:service}` is the name even when written as `service: {name: ..}`.
        if path == "service"
            && let Some(name) = node.get("name")
        {
            node = name.value.clone();
        }
        match node.value {
            Value::Invalid => Lookup::Failed,
            _ => Lookup::Found(node),
        }
    }
}

/// `provider.region` when neither `--region` nor the manifest sets it, as in the Framework.
const DEFAULT_REGION: &str = "us-east-1";

/// What `node` counts for against the variable limits: its text, and `NODE_BYTES` for
/// each node. Stops counting past `MAX_VALUE_BYTES`.
fn weight(node: &Node) -> usize {
    let own = match &node.value {
        Value::Str(s) => s.len(),
        _ => 0,
    };
    let mut total = NODE_BYTES + own;
    match &node.value {
        Value::Seq(items) => {
            for item in items {
                total = total.saturating_add(weight(item));
                if total > MAX_VALUE_BYTES {
                    break;
                }
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                total = total.saturating_add(entry.key.len() + weight(&entry.value));
                if total > MAX_VALUE_BYTES {
                    break;
                }
            }
        }
        _ => {}
    }
    total
}

/// `text` cut to 60 characters, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((byte_idx, _)) => format!("{}...", &text[..byte_idx]),
        None => text.to_owned(),
    }
}

/// Moves `node` and everything inside it to `pos`.
fn reposition(node: &mut Node, pos: Pos) {
    node.pos = pos;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| reposition(item, pos)),
        Value::Map(entries) => entries.iter_mut().for_each(|entry| {
            entry.key_pos = pos;
            reposition(&mut entry.value, pos);
        }),
        _ => {}
    }
}

fn found_text(text: &str, pos: Pos) -> Lookup {
    Lookup::Found(Node {
        value: Value::Str(text.to_owned()),
        pos,
        resolved: true,
    })
}

/// Whether `body` (the text between `${` and `}`) is a variable: `source:address` where
/// the source is a word or `word(..)`. `AWS::Region` and plain names are not.
fn is_variable(body: &str) -> bool {
    let body = body.trim();
    // `file(./config.yml)` and `strToBool(..)` need no `:address`, and a file's path may
    // hold variables of its own.
    if let Some(open) = body.find('(')
        && body[..open].chars().all(|c| c.is_ascii_alphanumeric())
        && body.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return true;
    }
    let Some((source, address)) = body.split_once(':') else {
        return false;
    };
    let word_end = source.find('(').unwrap_or(source.len());
    let word = &source[..word_end];
    !address.starts_with(':')
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric())
        && (word_end == source.len() || source.ends_with(')'))
}

/// Splits a string value into text and `${..}` variables.
fn split_template(text: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = closing_brace(after) else {
            return Err(format!("unclosed `${{` in {text:?}"));
        };
        let body = &after[..end];
        if is_variable(body) {
            if !plain.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut plain)));
            }
            segments.push(Segment::Var(body.to_owned()));
        } else {
            plain.push_str("${");
            plain.push_str(body);
            plain.push('}');
        }
        rest = &after[end + 1..];
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        segments.push(Segment::Text(plain));
    }
    Ok(segments)
}

/// The byte index of the `}` that closes a variable body, skipping nested braces and
/// quoted fallbacks.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote = None;
    for (idx, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{') => depth += 1,
            (None, '}') if depth == 0 => return Some(idx),
            (None, '}') => depth -= 1,
            (None, _) => {}
        }
    }
    None
}

/// Splits a variable body at the commas that separate its address from fallbacks.
fn split_commas(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote = None;
    let mut start = 0;
    for (idx, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{') => depth += 1,
            (None, '}') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(&body[start..idx]);
                start = idx + 1;
            }
            (None, _) => {}
        }
    }
    parts.push(&body[start..]);
    parts
}
