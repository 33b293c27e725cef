//! DynamoDB's expressions: a recursive-descent parser for condition, filter, key condition,
//! update and projection expressions, and their evaluation on items.
//!
//! `#name` and `:value` placeholders are resolved while parsing, against the request's
//! ExpressionAttributeNames and ExpressionAttributeValues; `Placeholders::check_unused`
//! then refuses any left unused, as DynamoDB does. Errors carry DynamoDB's messages
//! (`Invalid ConditionExpression: Syntax error; token: "=", near: "a = = b"`), which the
//! SDKs show as a ValidationException.

mod reserved;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use nimbus_core::tables::{AttributeValue, Item, Number, ValueType};

/// An error in an expression or its evaluation: DynamoDB's ValidationException message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExprError(pub(crate) String);

type Res<T> = Result<T, ExprError>;

/// Which expression is parsed, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExprKind {
    Condition,
    Filter,
    KeyCondition,
    Update,
    Projection,
}

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Attr(String),
    Index(usize),
}

/// A document path such as `a.b[1].c`: the first step is always an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(pub(crate) Vec<Step>);

/// A value in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operand {
    Path(Path),
    Value(AttributeValue),
    Size(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition (ConditionExpression, FilterExpression, KeyConditionExpression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    Compare(Operand, Comparator, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Exists(Path),
    NotExists(Path),
    Type(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
}

/// The right-hand side of a SET action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetValue {
    Operand(Operand),
    Plus(Box<SetValue>, Box<SetValue>),
    Minus(Box<SetValue>, Box<SetValue>),
    IfNotExists(Path, Box<SetValue>),
    ListAppend(Box<SetValue>, Box<SetValue>),
}

/// An UpdateExpression's actions, by clause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) set: Vec<(Path, SetValue)>,
    pub(crate) remove: Vec<Path>,
    pub(crate) add: Vec<(Path, AttributeValue)>,
    pub(crate) delete: Vec<(Path, AttributeValue)>,
}

/// A request's ExpressionAttributeNames and ExpressionAttributeValues, and which were used.
#[derive(Debug, Default)]
pub(crate) struct Placeholders {
    names: BTreeMap<String, String>,
    values: BTreeMap<String, AttributeValue>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Placeholders {
    pub(crate) fn new(
        names: BTreeMap<String, String>,
        values: BTreeMap<String, AttributeValue>,
    ) -> Placeholders {
        Placeholders {
            names,
            values,
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
        }
    }

    /// Refuses names or values no expression used.
    pub(crate) fn check_unused(&self) -> Res<()> {
        let unused = |all: Vec<&String>, used: &BTreeSet<String>| -> Vec<String> {
            all.into_iter()
                .filter(|key| !used.contains(*key))
                .cloned()
                .collect()
        };
        let names = unused(self.names.keys().collect(), &self.used_names);
        if !names.is_empty() {
            return Err(ExprError(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            )));
        }
        let values = unused(self.values.keys().collect(), &self.used_values);
        if !values.is_empty() {
            return Err(ExprError(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            )));
        }
        Ok(())
    }
}

impl ExprKind {
    fn name(self) -> &'static str {
        match self {
            ExprKind::Condition => "ConditionExpression",
            ExprKind::Filter => "FilterExpression",
            ExprKind::KeyCondition => "KeyConditionExpression",
            ExprKind::Update => "UpdateExpression",
            ExprKind::Projection => "ProjectionExpression",
        }
    }
}

/// Parses a condition, filter or key condition expression.
pub(crate) fn parse_condition(
    text: &str,
    kind: ExprKind,
    placeholders: &mut Placeholders,
) -> Res<Condition> {
    let mut parser = Parser::new(text, kind, placeholders)?;
    let condition = parser.condition()?;
    parser.finish()?;
    Ok(condition)
}

/// Parses an update expression.
pub(crate) fn parse_update(text: &str, placeholders: &mut Placeholders) -> Res<Update> {
    let mut parser = Parser::new(text, ExprKind::Update, placeholders)?;
    let update = parser.update()?;
    parser.finish()?;
    let mut paths: Vec<&Path> = update.set.iter().map(|(p, _)| p).collect();
    paths.extend(&update.remove);
    paths.extend(update.add.iter().map(|(p, _)| p));
    paths.extend(update.delete.iter().map(|(p, _)| p));
    check_overlap(&paths, ExprKind::Update)?;
    Ok(update)
}

/// Refuses two paths of which one is the other or inside it.
fn check_overlap(paths: &[&Path], kind: ExprKind) -> Res<()> {
    for (idx, a) in paths.iter().enumerate() {
        for b in &paths[..idx] {
            let n = a.0.len().min(b.0.len());
            if a.0[..n] == b.0[..n] {
                return Err(ExprError(format!(
                    "Invalid {}: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [{}], path two: [{}]",
                    kind.name(),
                    b.describe(),
                    a.describe()
                )));
            }
        }
    }
    Ok(())
}

/// Parses a projection expression: paths separated by commas.
pub(crate) fn parse_projection(text: &str, placeholders: &mut Placeholders) -> Res<Vec<Path>> {
    let mut parser = Parser::new(text, ExprKind::Projection, placeholders)?;
    let mut paths = vec![parser.path()?];
    while parser.eat(&Tok::Comma) {
        paths.push(parser.path()?);
    }
    parser.finish()?;
    check_overlap(&paths.iter().collect::<Vec<_>>(), ExprKind::Projection)?;
    Ok(paths)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Name(String),
    Value(String),
    Int(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Eof,
}

struct Token {
    tok: Tok,
    text: String,
}

struct Parser<'p> {
    kind: ExprKind,
    tokens: Vec<Token>,
    at: usize,
    placeholders: &'p mut Placeholders,
    /// The first reserved word used as a name, refused once the syntax is known good.
    reserved: Option<String>,
    /// How many parentheses, NOTs and update functions the parser is inside.
    depth: usize,
}

/// DynamoDB's limit on an expression's length: "The maximum length of any expression
/// string is 4 KB."
const MAX_EXPRESSION_BYTES: usize = 4 * 1024;

/// The deepest nesting of parentheses, NOTs and update functions taken. DynamoDB states no
/// limit, but 4 KB of `(` would nest 4,096 deep, and the parser (like evaluation and
/// dropping the tree) recurses once per level: 4,096 levels overflowed a 2 MiB stack.
const MAX_DEPTH: usize = 64;

fn tokenize(text: &str, kind: ExprKind) -> Res<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut idx = 0;
    let word = |start: usize, chars: &[char]| {
        let mut end = start;
        while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        end
    };
    while idx < chars.len() {
        let c = chars[idx];
        if c.is_whitespace() {
            idx += 1;
            continue;
        }
        let (tok, end) = match c {
            '#' | ':' => {
                let end = word(idx + 1, &chars);
                if end == idx + 1 {
                    return Err(syntax(kind, &c.to_string(), text));
                }
                let text: String = chars[idx..end].iter().collect();
                (
                    if c == '#' {
                        Tok::Name(text)
                    } else {
                        Tok::Value(text)
                    },
                    end,
                )
            }
            c if c.is_ascii_digit() => {
                let mut end = idx;
                while end < chars.len() && chars[end].is_ascii_digit() {
                    end += 1;
                }
                (Tok::Int(chars[idx..end].iter().collect()), end)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let end = word(idx, &chars);
                (Tok::Ident(chars[idx..end].iter().collect()), end)
            }
            '(' => (Tok::LParen, idx + 1),
            ')' => (Tok::RParen, idx + 1),
            '[' => (Tok::LBracket, idx + 1),
            ']' => (Tok::RBracket, idx + 1),
            ',' => (Tok::Comma, idx + 1),
            '.' => (Tok::Dot, idx + 1),
            '=' => (Tok::Eq, idx + 1),
            '+' => (Tok::Plus, idx + 1),
            '-' => (Tok::Minus, idx + 1),
            '<' => match chars.get(idx + 1) {
                Some('>') => (Tok::Ne, idx + 2),
                Some('=') => (Tok::Le, idx + 2),
                _ => (Tok::Lt, idx + 1),
            },
            '>' => match chars.get(idx + 1) {
                Some('=') => (Tok::Ge, idx + 2),
                _ => (Tok::Gt, idx + 1),
            },
            other => {
                return Err(ExprError(format!(
                    "Invalid {}: Syntax error; token: \"{other}\", near: \"{}\"",
                    kind.name(),
                    near(&chars, idx)
                )));
            }
        };
        tokens.push(Token {
            tok,
            text: chars[idx..end].iter().collect(),
        });
        idx = end;
    }
    tokens.push(Token {
        tok: Tok::Eof,
        text: "<EOF>".to_owned(),
    });
    Ok(tokens)
}

/// The text around a position, as DynamoDB quotes it after `near:`.
fn near(chars: &[char], idx: usize) -> String {
    let start = idx.saturating_sub(10);
    let end = (idx + 10).min(chars.len());
    chars[start..end]
        .iter()
        .collect::<String>()
        .trim()
        .to_owned()
}

fn syntax(kind: ExprKind, token: &str, near: &str) -> ExprError {
    ExprError(format!(
        "Invalid {}: Syntax error; token: \"{token}\", near: \"{near}\"",
        kind.name()
    ))
}

impl<'p> Parser<'p> {
    fn new(text: &str, kind: ExprKind, placeholders: &'p mut Placeholders) -> Res<Parser<'p>> {
        if text.trim().is_empty() {
            return Err(ExprError(format!(
                "Invalid {}: The expression can not be empty;",
                kind.name()
            )));
        }
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(ExprError(format!(
                "Invalid {}: Expression size has exceeded the maximum allowed size; expression size: {}",
                kind.name(),
                text.len()
            )));
        }
        Ok(Parser {
            kind,
            tokens: tokenize(text, kind)?,
            at: 0,
            placeholders,
            reserved: None,
            depth: 0,
        })
    }

    fn peek(&self) -> &Tok {
        &self.tokens[self.at.min(self.tokens.len() - 1)].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].tok
    }

    fn next(&mut self) -> &Token {
        let idx = self.at.min(self.tokens.len() - 1);
        self.at += 1;
        &self.tokens[idx]
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.keyword(word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// A syntax error at the current token.
    fn error(&self) -> ExprError {
        let idx = self.at.min(self.tokens.len() - 1);
        let token = &self.tokens[idx];
        // The near text: this token with its neighbours.
        let from = idx.saturating_sub(1);
        let to = (idx + 2).min(self.tokens.len());
        let near: Vec<&str> = self.tokens[from..to]
            .iter()
            .filter(|t| t.tok != Tok::Eof)
            .map(|t| t.text.as_str())
            .collect();
        syntax(self.kind, &token.text, &near.join(" "))
    }

    fn expect(&mut self, tok: &Tok) -> Res<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn end(&self) -> Res<()> {
        match self.peek() {
            Tok::Eof => Ok(()),
            _ => Err(self.error()),
        }
    }

    /// The end of the expression, then the reserved words: DynamoDB reports a syntax error
    /// before a reserved word, whichever comes first in the text.
    fn finish(&self) -> Res<()> {
        self.end()?;
        match &self.reserved {
            Some(word) => Err(self.invalid(format!(
                "Attribute name is a reserved keyword; reserved keyword: {word}"
            ))),
            None => Ok(()),
        }
    }

    fn invalid(&self, message: impl std::fmt::Display) -> ExprError {
        ExprError(format!("Invalid {}: {message}", self.kind.name()))
    }

    /// Parses with `parse` one level deeper, refusing past [`MAX_DEPTH`].
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.invalid(format!(
                "The expression is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        let res = parse(self);
        self.depth -= 1;
        res
    }

    fn condition(&mut self) -> Res<Condition> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Res<Condition> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            let right = self.not()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Res<Condition> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.nested(Self::not)?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Res<Condition> {
        if self.eat(&Tok::LParen) {
            let condition = self.nested(Self::condition)?;
            self.expect(&Tok::RParen)?;
            return Ok(condition);
        }
        if let (Tok::Ident(name), Tok::LParen) = (self.peek().clone(), self.peek_at(1))
            && !name.eq_ignore_ascii_case("size")
        {
            return self.function(&name);
        }
        let left = self.operand()?;
        if self.eat_keyword("BETWEEN") {
            let low = self.operand()?;
            if !self.eat_keyword("AND") {
                return Err(self.error());
            }
            let high = self.operand()?;
            for operand in [&left, &low, &high] {
                self.check_ordered(operand, "BETWEEN")?;
            }
            if let (Operand::Value(low), Operand::Value(high)) = (&low, &high)
                && compare(low, high) == Some(Ordering::Greater)
            {
                return Err(self.invalid(format!(
                    "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {}, upper bound operand: AttributeValue: {}",
                    low.to_json(),
                    high.to_json()
                )));
            }
            return Ok(Condition::Between(left, low, high));
        }
        if self.eat_keyword("IN") {
            self.expect(&Tok::LParen)?;
            let mut list = vec![self.operand()?];
            while self.eat(&Tok::Comma) {
                list.push(self.operand()?);
            }
            self.expect(&Tok::RParen)?;
            if list.len() > 100 {
                return Err(self.invalid(
                    "The IN operator is provided with too many operands; number of operands: "
                        .to_owned()
                        + &list.len().to_string(),
                ));
            }
            return Ok(Condition::In(left, list));
        }
        let comparator = match self.peek() {
            Tok::Eq => Comparator::Eq,
            Tok::Ne => Comparator::Ne,
            Tok::Lt => Comparator::Lt,
            Tok::Le => Comparator::Le,
            Tok::Gt => Comparator::Gt,
            Tok::Ge => Comparator::Ge,
            _ => return Err(self.error()),
        };
        let symbol = self.next().text.clone();
        let right = self.operand()?;
        if !matches!(comparator, Comparator::Eq | Comparator::Ne) {
            self.check_ordered(&left, &symbol)?;
            self.check_ordered(&right, &symbol)?;
        }
        Ok(Condition::Compare(left, comparator, right))
    }

    /// Refuses a value that cannot be ordered as an operand of `operator`.
    fn check_ordered(&self, operand: &Operand, operator: &str) -> Res<()> {
        if let Operand::Value(value) = operand
            && !matches!(
                value,
                AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::B(_)
            )
        {
            // DynamoDB calls BETWEEN a function here, the comparisons operators.
            let kind = if operator == "BETWEEN" {
                "operator or function"
            } else {
                "operator"
            };
            return Err(self.invalid(format!(
                "Incorrect operand type for operator or function; {kind}: {operator}, operand type: {}",
                type_word(value.value_type())
            )));
        }
        Ok(())
    }

    fn function(&mut self, name: &str) -> Res<Condition> {
        self.next();
        self.next();
        let condition = match name {
            "attribute_exists" => Condition::Exists(self.path()?),
            "attribute_not_exists" => Condition::NotExists(self.path()?),
            "attribute_type" => {
                let path = self.path()?;
                self.expect(&Tok::Comma)?;
                let kind = self.operand()?;
                match &kind {
                    Operand::Value(AttributeValue::S(name))
                        if ValueType::from_name(name).is_none() =>
                    {
                        return Err(self.invalid(format!(
                            "Invalid attribute type name found in type condition: {name}"
                        )));
                    }
                    Operand::Value(AttributeValue::S(_)) => {}
                    Operand::Value(other) => {
                        return Err(self.invalid(format!(
                            "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: {}",
                            type_word(other.value_type())
                        )));
                    }
                    _ => {}
                }
                Condition::Type(path, kind)
            }
            "begins_with" => {
                let left = self.operand()?;
                self.expect(&Tok::Comma)?;
                let right = self.operand()?;
                for operand in [&left, &right] {
                    if let Operand::Value(value) = operand
                        && !matches!(value, AttributeValue::S(_) | AttributeValue::B(_))
                    {
                        return Err(self.invalid(format!(
                            "Incorrect operand type for operator or function; operator or function: begins_with, operand type: {}",
                            type_word(value.value_type())
                        )));
                    }
                }
                Condition::BeginsWith(left, right)
            }
            "contains" => {
                let left = self.operand()?;
                self.expect(&Tok::Comma)?;
                Condition::Contains(left, self.operand()?)
            }
            other => {
                return Err(self.invalid(format!("Invalid function name; function: {other}")));
            }
        };
        self.expect(&Tok::RParen)?;
        Ok(condition)
    }

    fn operand(&mut self) -> Res<Operand> {
        match self.peek().clone() {
            Tok::Value(name) => {
                self.next();
                Ok(Operand::Value(self.value(&name)?))
            }
            Tok::Ident(word)
                if word.eq_ignore_ascii_case("size") && *self.peek_at(1) == Tok::LParen =>
            {
                self.next();
                self.next();
                let path = self.path()?;
                self.expect(&Tok::RParen)?;
                Ok(Operand::Size(path))
            }
            Tok::Ident(word) if *self.peek_at(1) == Tok::LParen => Err(self.invalid(format!(
                "The function is not allowed to be used this way in an expression; function: {word}"
            ))),
            _ => Ok(Operand::Path(self.path()?)),
        }
    }

    fn value(&mut self, name: &str) -> Res<AttributeValue> {
        match self.placeholders.values.get(name) {
            Some(value) => {
                let value = value.clone();
                self.placeholders.used_values.insert(name.to_owned());
                Ok(value)
            }
            None => Err(self.invalid(format!(
                "An expression attribute value used in expression is not defined; attribute value: {name}"
            ))),
        }
    }

    fn path(&mut self) -> Res<Path> {
        let mut steps = vec![Step::Attr(self.name()?)];
        loop {
            if self.eat(&Tok::Dot) {
                steps.push(Step::Attr(self.name()?));
            } else if self.eat(&Tok::LBracket) {
                let index = match self.peek().clone() {
                    Tok::Int(digits) => {
                        self.next();
                        digits.parse::<usize>().map_err(|_| self.error())?
                    }
                    _ => return Err(self.error()),
                };
                self.expect(&Tok::RBracket)?;
                steps.push(Step::Index(index));
            } else {
                return Ok(Path(steps));
            }
        }
    }

    fn name(&mut self) -> Res<String> {
        match self.peek().clone() {
            // The grammar's own words cannot name attributes unescaped.
            Tok::Ident(name)
                if ["AND", "OR", "NOT", "BETWEEN", "IN"]
                    .iter()
                    .any(|word| name.eq_ignore_ascii_case(word)) =>
            {
                Err(self.error())
            }
            Tok::Ident(name) => {
                self.next();
                if self.reserved.is_none() && reserved::is_reserved(&name) {
                    self.reserved = Some(name.clone());
                }
                Ok(name)
            }
            Tok::Name(placeholder) => {
                self.next();
                match self.placeholders.names.get(&placeholder) {
                    Some(name) => {
                        let name = name.clone();
                        self.placeholders.used_names.insert(placeholder);
                        Ok(name)
                    }
                    None => Err(self.invalid(format!(
                        "An expression attribute name used in the document path is not defined; attribute name: {placeholder}"
                    ))),
                }
            }
            _ => Err(self.error()),
        }
    }

    fn update(&mut self) -> Res<Update> {
        let mut update = Update::default();
        let mut seen = BTreeSet::new();
        loop {
            let clause = match self.peek() {
                Tok::Ident(word) => word.to_ascii_uppercase(),
                Tok::Eof if !seen.is_empty() => return Ok(update),
                _ => return Err(self.error()),
            };
            if !["SET", "REMOVE", "ADD", "DELETE"].contains(&clause.as_str()) {
                return Err(self.error());
            }
            if !seen.insert(clause.clone()) {
                return Err(self.invalid(format!(
                    "The \"{clause}\" section can only be used once in an update expression;"
                )));
            }
            self.next();
            loop {
                match clause.as_str() {
                    "SET" => {
                        let path = self.path()?;
                        self.expect(&Tok::Eq)?;
                        let value = self.set_value()?;
                        update.set.push((path, value));
                    }
                    "REMOVE" => update.remove.push(self.path()?),
                    _ => {
                        let path = self.path()?;
                        let value = match self.peek().clone() {
                            Tok::Value(name) => {
                                self.next();
                                self.value(&name)?
                            }
                            _ => return Err(self.error()),
                        };
                        if clause == "ADD" {
                            update.add.push((path, value));
                        } else {
                            update.delete.push((path, value));
                        }
                    }
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
    }

    fn set_value(&mut self) -> Res<SetValue> {
        let left = self.set_operand()?;
        if self.eat(&Tok::Plus) {
            return Ok(SetValue::Plus(
                Box::new(left),
                Box::new(self.set_operand()?),
            ));
        }
        if self.eat(&Tok::Minus) {
            return Ok(SetValue::Minus(
                Box::new(left),
                Box::new(self.set_operand()?),
            ));
        }
        Ok(left)
    }

    fn set_operand(&mut self) -> Res<SetValue> {
        if let (Tok::Ident(name), Tok::LParen) = (self.peek().clone(), self.peek_at(1)) {
            self.next();
            self.next();
            let value = match name.as_str() {
                "if_not_exists" => {
                    let path = self.path()?;
                    self.expect(&Tok::Comma)?;
                    SetValue::IfNotExists(path, Box::new(self.nested(Self::set_value)?))
                }
                "list_append" => {
                    let left = self.nested(Self::set_value)?;
                    self.expect(&Tok::Comma)?;
                    SetValue::ListAppend(Box::new(left), Box::new(self.nested(Self::set_value)?))
                }
                other => {
                    return Err(self.invalid(format!("Invalid function name; function: {other}")));
                }
            };
            self.expect(&Tok::RParen)?;
            return Ok(value);
        }
        match self.peek().clone() {
            Tok::Value(name) => {
                self.next();
                Ok(SetValue::Operand(Operand::Value(self.value(&name)?)))
            }
            _ => Ok(SetValue::Operand(Operand::Path(self.path()?))),
        }
    }
}

/// The word DynamoDB uses for a type in operand type errors.
fn type_word(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::S => "STRING",
        ValueType::N => "NUMBER",
        ValueType::B => "BINARY",
        ValueType::Bool => "BOOLEAN",
        ValueType::Null => "NULL",
        ValueType::M => "MAP",
        ValueType::L => "LIST",
        ValueType::Ss => "SS",
        ValueType::Ns => "NS",
        ValueType::Bs => "BS",
    }
}

impl Path {
    /// The path as DynamoDB lists it in messages: `a, b, [1]`.
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|step| match step {
                Step::Attr(name) => name.clone(),
                Step::Index(idx) => format!("[{idx}]"),
            })
            .collect();
        parts.join(", ")
    }

    /// The top-level attribute the path starts at.
    pub(crate) fn top(&self) -> &str {
        match self.0.first() {
            Some(Step::Attr(name)) => name,
            _ => "",
        }
    }

    /// The value at the path, if there is one.
    pub(crate) fn resolve<'i>(&self, item: &'i Item) -> Option<&'i AttributeValue> {
        let mut steps = self.0.iter();
        let mut value = match steps.next()? {
            Step::Attr(name) => item.get(name)?,
            Step::Index(_) => return None,
        };
        for step in steps {
            value = match (step, value) {
                (Step::Attr(name), AttributeValue::M(map)) => map.get(name)?,
                (Step::Index(idx), AttributeValue::L(list)) => list.get(*idx)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// DynamoDB's order of two values of the same scalar type; `None` for other pairs.
pub(crate) fn compare(a: &AttributeValue, b: &AttributeValue) -> Option<Ordering> {
    match (a, b) {
        (AttributeValue::S(a), AttributeValue::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (AttributeValue::N(a), AttributeValue::N(b)) => Some(a.cmp(b)),
        (AttributeValue::B(a), AttributeValue::B(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Equality as DynamoDB has it: sets compare without order.
fn equal(a: &AttributeValue, b: &AttributeValue) -> bool {
    match (a, b) {
        (AttributeValue::Ss(a), AttributeValue::Ss(b)) => same_members(a, b),
        (AttributeValue::Ns(a), AttributeValue::Ns(b)) => same_members(a, b),
        (AttributeValue::Bs(a), AttributeValue::Bs(b)) => same_members(a, b),
        (AttributeValue::L(a), AttributeValue::L(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| equal(a, b))
        }
        (AttributeValue::M(a), AttributeValue::M(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|other| equal(v, other)))
        }
        _ => a == b,
    }
}

fn same_members<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len() && a.iter().all(|m| b.contains(m))
}

fn operand_value(operand: &Operand, item: &Item) -> Option<AttributeValue> {
    match operand {
        Operand::Value(value) => Some(value.clone()),
        Operand::Path(path) => path.resolve(item).cloned(),
        Operand::Size(path) => {
            let n = match path.resolve(item)? {
                AttributeValue::S(s) => s.chars().count(),
                AttributeValue::B(b) => b.len(),
                AttributeValue::L(l) => l.len(),
                AttributeValue::M(m) => m.len(),
                AttributeValue::Ss(s) => s.len(),
                AttributeValue::Ns(s) => s.len(),
                AttributeValue::Bs(s) => s.len(),
                _ => return None,
            };
            Number::parse(&n.to_string()).ok().map(AttributeValue::N)
        }
    }
}

/// Whether the condition holds for the item (an absent item is an empty one).
pub(crate) fn eval(condition: &Condition, item: &Item) -> bool {
    let value = |operand: &Operand| operand_value(operand, item);
    match condition {
        Condition::Compare(left, comparator, right) => {
            let (Some(left), Some(right)) = (value(left), value(right)) else {
                // A missing attribute differs from any value, so `<>` holds when just one
                // side is missing (what a TransactWriteItems `#pk <> :v` put relies on).
                return *comparator == Comparator::Ne
                    && (value(left).is_some() || value(right).is_some());
            };
            match comparator {
                Comparator::Eq => equal(&left, &right),
                Comparator::Ne => !equal(&left, &right),
                other => match compare(&left, &right) {
                    Some(ordering) => match other {
                        Comparator::Lt => ordering == Ordering::Less,
                        Comparator::Le => ordering != Ordering::Greater,
                        Comparator::Gt => ordering == Ordering::Greater,
                        _ => ordering != Ordering::Less,
                    },
                    None => false,
                },
            }
        }
        Condition::Between(operand, low, high) => {
            let (Some(v), Some(low), Some(high)) = (value(operand), value(low), value(high)) else {
                return false;
            };
            compare(&v, &low).is_some_and(|o| o != Ordering::Less)
                && compare(&v, &high).is_some_and(|o| o != Ordering::Greater)
        }
        Condition::In(operand, list) => match value(operand) {
            Some(v) => list
                .iter()
                .any(|candidate| value(candidate).is_some_and(|c| equal(&v, &c))),
            None => false,
        },
        Condition::And(a, b) => eval(a, item) && eval(b, item),
        Condition::Or(a, b) => eval(a, item) || eval(b, item),
        Condition::Not(a) => !eval(a, item),
        Condition::Exists(path) => path.resolve(item).is_some(),
        Condition::NotExists(path) => path.resolve(item).is_none(),
        Condition::Type(path, kind) => match (path.resolve(item), value(kind)) {
            (Some(v), Some(AttributeValue::S(name))) => v.value_type().name() == name,
            _ => false,
        },
        Condition::BeginsWith(a, b) => match (value(a), value(b)) {
            (Some(AttributeValue::S(a)), Some(AttributeValue::S(b))) => a.starts_with(&b),
            (Some(AttributeValue::B(a)), Some(AttributeValue::B(b))) => a.starts_with(&b),
            _ => false,
        },
        Condition::Contains(a, b) => match (value(a), value(b)) {
            (Some(AttributeValue::S(a)), Some(AttributeValue::S(b))) => a.contains(&b),
            (Some(AttributeValue::B(a)), Some(AttributeValue::B(b))) => {
                b.is_empty() || a.windows(b.len()).any(|w| w == b.as_slice())
            }
            (Some(AttributeValue::Ss(set)), Some(AttributeValue::S(member))) => {
                set.contains(&member)
            }
            (Some(AttributeValue::Ns(set)), Some(AttributeValue::N(member))) => {
                set.contains(&member)
            }
            (Some(AttributeValue::Bs(set)), Some(AttributeValue::B(member))) => {
                set.contains(&member)
            }
            (Some(AttributeValue::L(list)), Some(member)) => {
                list.iter().any(|element| equal(element, &member))
            }
            _ => false,
        },
    }
}

/// Paths in order, list indexes by number.
fn compare_steps(a: &[Step], b: &[Step]) -> Ordering {
    for (a, b) in a.iter().zip(b) {
        let ordering = match (a, b) {
            (Step::Index(a), Step::Index(b)) => a.cmp(b),
            (Step::Attr(a), Step::Attr(b)) => a.cmp(b),
            (Step::Attr(_), Step::Index(_)) => Ordering::Less,
            (Step::Index(_), Step::Attr(_)) => Ordering::Greater,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.len().cmp(&b.len())
}

/// DynamoDB's message for an update whose operand has the wrong type for the item's value.
const INCORRECT_DATA_TYPE: &str = "An operand in the update expression has an incorrect data type";

fn update_error(message: impl std::fmt::Display) -> ExprError {
    ExprError(format!("Invalid UpdateExpression: {message}"))
}

/// Applies an update to an item (an absent item is an empty one), returning the new item.
/// Every value is computed from the item as it was, as DynamoDB does.
pub(crate) fn apply_update(update: &Update, old: &Item) -> Res<Item> {
    let mut new = old.clone();
    let mut sets = Vec::with_capacity(update.set.len());
    for (path, value) in &update.set {
        sets.push((path, set_value(value, old)?));
    }
    for (path, value) in sets {
        assign(&mut new, path, value)?;
    }
    // Indexes name elements of the list as it was: removing `a[0], a[1]` removes the first
    // two, so higher indexes of a list go first.
    let mut removals: Vec<&Path> = update.remove.iter().collect();
    removals.sort_by(|a, b| compare_steps(&b.0, &a.0));
    for path in removals {
        remove(&mut new, path);
    }
    for (path, value) in &update.add {
        let result = match (path.resolve(old), value) {
            (
                None,
                AttributeValue::N(_)
                | AttributeValue::Ss(_)
                | AttributeValue::Ns(_)
                | AttributeValue::Bs(_),
            ) => value.clone(),
            (Some(AttributeValue::N(a)), AttributeValue::N(b)) => {
                AttributeValue::N(a.add(b).map_err(|e| ExprError(e.to_string()))?)
            }
            (Some(AttributeValue::Ss(a)), AttributeValue::Ss(b)) => AttributeValue::Ss(union(a, b)),
            (Some(AttributeValue::Ns(a)), AttributeValue::Ns(b)) => AttributeValue::Ns(union(a, b)),
            (Some(AttributeValue::Bs(a)), AttributeValue::Bs(b)) => AttributeValue::Bs(union(a, b)),
            (
                Some(_),
                AttributeValue::N(_)
                | AttributeValue::Ss(_)
                | AttributeValue::Ns(_)
                | AttributeValue::Bs(_),
            ) => {
                return Err(ExprError(INCORRECT_DATA_TYPE.to_owned()));
            }
            (current, value) => {
                let operand = match current {
                    Some(current)
                        if matches!(
                            value,
                            AttributeValue::N(_)
                                | AttributeValue::Ss(_)
                                | AttributeValue::Ns(_)
                                | AttributeValue::Bs(_)
                        ) =>
                    {
                        current
                    }
                    _ => value,
                };
                return Err(update_error(format!(
                    "Incorrect operand type for operator or function; operator: ADD, operand type: {}",
                    type_word(operand.value_type())
                )));
            }
        };
        assign(&mut new, path, result)?;
    }
    for (path, value) in &update.delete {
        let remaining = match (path.resolve(old), value) {
            (None, AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_)) => {
                continue;
            }
            (Some(AttributeValue::Ss(a)), AttributeValue::Ss(b)) => {
                difference(a, b).map(AttributeValue::Ss)
            }
            (Some(AttributeValue::Ns(a)), AttributeValue::Ns(b)) => {
                difference(a, b).map(AttributeValue::Ns)
            }
            (Some(AttributeValue::Bs(a)), AttributeValue::Bs(b)) => {
                difference(a, b).map(AttributeValue::Bs)
            }
            (Some(_), AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_)) => {
                return Err(ExprError(INCORRECT_DATA_TYPE.to_owned()));
            }
            (_, value) => {
                return Err(update_error(format!(
                    "Incorrect operand type for operator or function; operator or function: operator: DELETE, operand type: {}",
                    type_word(value.value_type())
                )));
            }
        };
        match remaining {
            Some(set) => assign(&mut new, path, set)?,
            None => remove(&mut new, path),
        }
    }
    Ok(new)
}

fn union<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = a.to_vec();
    for member in b {
        if !out.contains(member) {
            out.push(member.clone());
        }
    }
    out
}

/// `a` without `b`'s members; `None` when nothing is left (the attribute goes).
fn difference<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Option<Vec<T>> {
    let out: Vec<T> = a.iter().filter(|m| !b.contains(m)).cloned().collect();
    (!out.is_empty()).then_some(out)
}

fn set_value(value: &SetValue, item: &Item) -> Res<AttributeValue> {
    match value {
        SetValue::Operand(Operand::Path(path)) => path.resolve(item).cloned().ok_or_else(|| {
            ExprError(
                "The provided expression refers to an attribute that does not exist in the item"
                    .to_owned(),
            )
        }),
        SetValue::Operand(operand) => operand_value(operand, item).ok_or_else(|| {
            ExprError(
                "The provided expression refers to an attribute that does not exist in the item"
                    .to_owned(),
            )
        }),
        SetValue::Plus(left, right) | SetValue::Minus(left, right) => {
            let (a, b) = (set_value(left, item)?, set_value(right, item)?);
            let (symbol, sum) = match value {
                SetValue::Plus(..) => ("+", true),
                _ => ("-", false),
            };
            match (&a, &b) {
                (AttributeValue::N(a), AttributeValue::N(b)) => {
                    let res = if sum { a.add(b) } else { a.sub(b) };
                    res.map(AttributeValue::N)
                        .map_err(|e| ExprError(e.to_string()))
                }
                _ => {
                    let (wrong, wrong_operand) = if matches!(a, AttributeValue::N(_)) {
                        (&b, right)
                    } else {
                        (&a, left)
                    };
                    // A value placeholder's type is known from the request; an attribute's
                    // only from the item, for which DynamoDB has a message of its own.
                    if !matches!(**wrong_operand, SetValue::Operand(Operand::Value(_))) {
                        return Err(ExprError(INCORRECT_DATA_TYPE.to_owned()));
                    }
                    Err(update_error(format!(
                        "Incorrect operand type for operator or function; operator: {symbol}, operand type: {}",
                        type_word(wrong.value_type())
                    )))
                }
            }
        }
        SetValue::IfNotExists(path, fallback) => match path.resolve(item) {
            Some(value) => Ok(value.clone()),
            None => set_value(fallback, item),
        },
        SetValue::ListAppend(a, b) => match (set_value(a, item)?, set_value(b, item)?) {
            (AttributeValue::L(mut a), AttributeValue::L(b)) => {
                a.extend(b);
                Ok(AttributeValue::L(a))
            }
            (AttributeValue::L(_), other) | (other, _) => Err(update_error(format!(
                "Incorrect operand type for operator or function; operator or function: list_append, operand type: {}",
                type_word(other.value_type())
            ))),
        },
    }
}

fn invalid_path() -> ExprError {
    ExprError(
        "The document path provided in the update expression is invalid for update".to_owned(),
    )
}

/// Sets the value at a path; its parent must exist. A list index past the end appends.
fn assign(item: &mut Item, path: &Path, value: AttributeValue) -> Res<()> {
    let (last, parents) = match path.0.split_last() {
        Some(split) => split,
        None => return Err(invalid_path()),
    };
    if parents.is_empty() {
        return match last {
            Step::Attr(name) => {
                item.insert(name.clone(), value);
                Ok(())
            }
            Step::Index(_) => Err(invalid_path()),
        };
    }
    let parent = resolve_mut(item, parents).ok_or_else(invalid_path)?;
    match (last, parent) {
        (Step::Attr(name), AttributeValue::M(map)) => {
            map.insert(name.clone(), value);
        }
        (Step::Index(idx), AttributeValue::L(list)) => {
            if *idx < list.len() {
                list[*idx] = value;
            } else {
                list.push(value);
            }
        }
        _ => return Err(invalid_path()),
    }
    Ok(())
}

fn remove(item: &mut Item, path: &Path) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    if parents.is_empty() {
        if let Step::Attr(name) = last {
            item.remove(name);
        }
        return;
    }
    match (last, resolve_mut(item, parents)) {
        (Step::Attr(name), Some(AttributeValue::M(map))) => {
            map.remove(name);
        }
        (Step::Index(idx), Some(AttributeValue::L(list))) if *idx < list.len() => {
            list.remove(*idx);
        }
        _ => {}
    }
}

fn resolve_mut<'i>(item: &'i mut Item, steps: &[Step]) -> Option<&'i mut AttributeValue> {
    let (first, rest) = steps.split_first()?;
    let mut value = match first {
        Step::Attr(name) => item.get_mut(name)?,
        Step::Index(_) => return None,
    };
    for step in rest {
        value = match (step, value) {
            (Step::Attr(name), AttributeValue::M(map)) => map.get_mut(name)?,
            (Step::Index(idx), AttributeValue::L(list)) => list.get_mut(*idx)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The item cut down to the projected paths, nested values in their places.
pub(crate) fn project(item: &Item, paths: &[Path]) -> Item {
    let mut out = Item::new();
    for path in paths {
        let Some(value) = path.resolve(item) else {
            continue;
        };
        let Some((first, rest)) = path.0.split_first() else {
            continue;
        };
        let Step::Attr(name) = first else { continue };
        if rest.is_empty() {
            out.insert(name.clone(), value.clone());
            continue;
        }
        let template = match item.get(name) {
            Some(AttributeValue::M(_)) => AttributeValue::M(BTreeMap::new()),
            _ => AttributeValue::L(Vec::new()),
        };
        let slot = out.entry(name.clone()).or_insert(template);
        place(slot, rest, value.clone(), item.get(name));
    }
    out
}

/// Puts `value` into `slot` along `steps`, making maps and lists as the source has them.
fn place(
    slot: &mut AttributeValue,
    steps: &[Step],
    value: AttributeValue,
    source: Option<&AttributeValue>,
) {
    let Some((step, rest)) = steps.split_first() else {
        *slot = value;
        return;
    };
    let child_source = match (step, source) {
        (Step::Attr(name), Some(AttributeValue::M(map))) => map.get(name),
        (Step::Index(idx), Some(AttributeValue::L(list))) => list.get(*idx),
        _ => None,
    };
    let template = match child_source {
        Some(AttributeValue::M(_)) => AttributeValue::M(BTreeMap::new()),
        _ => AttributeValue::L(Vec::new()),
    };
    match (step, slot) {
        (Step::Attr(name), AttributeValue::M(map)) => {
            let child = map.entry(name.clone()).or_insert(template);
            place(child, rest, value, child_source);
        }
        (Step::Index(_), AttributeValue::L(list)) => {
            list.push(template);
            if let Some(child) = list.last_mut() {
                place(child, rest, value, child_source);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
