//! ASL's intrinsic functions (`States.Format('Hello {}', $.name)` and friends): parsing and evaluation.

use std::collections::HashSet;

use base64::Engine as _;
use serde_json::Value;
use sha1::Digest as _;

use crate::workflow::path::Path;
use crate::workflow::random::Rng;

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Which function.
    pub function: Function,
    /// Its arguments, in order.
    pub args: Vec<Arg>,
}

/// One argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A string, number, boolean or null literal.
    Literal(Value),
    /// A Path into the input or the context object.
    Path(Path),
    /// A nested call.
    Call(Box<Call>),
}

/// The intrinsic functions of ASL's JSONPath dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is the States.* function of the same name"
)]
pub enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

/// Why an intrinsic call could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct IntrinsicError(pub String);

const FUNCTIONS: &[(&str, Function, usize, usize)] = &[
    ("Format", Function::Format, 1, usize::MAX),
    ("StringToJson", Function::StringToJson, 1, 1),
    ("JsonToString", Function::JsonToString, 1, 1),
    ("Array", Function::Array, 0, usize::MAX),
    ("ArrayPartition", Function::ArrayPartition, 2, 2),
    ("ArrayContains", Function::ArrayContains, 2, 2),
    ("ArrayRange", Function::ArrayRange, 3, 3),
    ("ArrayGetItem", Function::ArrayGetItem, 2, 2),
    ("ArrayLength", Function::ArrayLength, 1, 1),
    ("ArrayUnique", Function::ArrayUnique, 1, 1),
    ("Base64Encode", Function::Base64Encode, 1, 1),
    ("Base64Decode", Function::Base64Decode, 1, 1),
    ("Hash", Function::Hash, 2, 2),
    ("JsonMerge", Function::JsonMerge, 3, 3),
    ("MathRandom", Function::MathRandom, 2, 3),
    ("MathAdd", Function::MathAdd, 2, 2),
    ("StringSplit", Function::StringSplit, 2, 2),
    ("UUID", Function::Uuid, 0, 0),
];

/// Whether a `.$` value is an intrinsic call rather than a Path.
pub fn is_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Function {
    /// The name after `States.`.
    pub fn name(self) -> &'static str {
        FUNCTIONS.iter().find(|f| f.1 == self).map_or("?", |f| f.0)
    }
}

impl Call {
    /// Parses `States.Name(args...)`.
    pub fn parse(text: &str) -> Result<Call, IntrinsicError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parser = Parser { chars, idx: 0 };
        parser.skip_spaces();
        let call = parser.call()?;
        parser.skip_spaces();
        if parser.idx != parser.chars.len() {
            return Err(IntrinsicError(format!(
                "unexpected text after the call at offset {}",
                parser.idx
            )));
        }
        Ok(call)
    }

    /// Every Path among the arguments, nested calls included.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        for arg in &self.args {
            match arg {
                Arg::Path(p) => out.push(p),
                Arg::Call(c) => out.extend(c.paths()),
                Arg::Literal(_) => {}
            }
        }
        out
    }

    /// Evaluates the call against a state's input and context object.
    pub fn eval(
        &self,
        input: &Value,
        context: &Value,
        rng: &mut Rng,
    ) -> Result<Value, IntrinsicError> {
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            args.push(match arg {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p.select(input, context).ok_or_else(|| {
                    IntrinsicError(format!(
                        "The JsonPath argument for the field '{p}' could not be found in the input"
                    ))
                })?,
                Arg::Call(c) => c.eval(input, context, rng)?,
            });
        }
        apply(self.function, &args, rng)
    }
}

struct Parser {
    chars: Vec<char>,
    idx: usize,
}

impl Parser {
    fn skip_spaces(&mut self) {
        while self.chars.get(self.idx).is_some_and(|c| c.is_whitespace()) {
            self.idx += 1;
        }
    }

    fn error(&self, message: &str) -> IntrinsicError {
        IntrinsicError(format!("{message} at offset {}", self.idx))
    }

    fn call(&mut self) -> Result<Call, IntrinsicError> {
        let start = self.idx;
        while self
            .chars
            .get(self.idx)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
        {
            self.idx += 1;
        }
        let name: String = self.chars[start..self.idx].iter().collect();
        let Some(short) = name.strip_prefix("States.") else {
            return Err(self.error("an intrinsic function starts with States."));
        };
        let Some(&(_, function, min, max)) = FUNCTIONS.iter().find(|f| f.0 == short) else {
            return Err(IntrinsicError(format!("unknown intrinsic function {name}")));
        };
        self.skip_spaces();
        if self.chars.get(self.idx) != Some(&'(') {
            return Err(self.error(&format!("expected '(' after {name}")));
        }
        self.idx += 1;
        let mut args = Vec::new();
        self.skip_spaces();
        if self.chars.get(self.idx) == Some(&')') {
            self.idx += 1;
        } else {
            loop {
                self.skip_spaces();
                args.push(self.arg()?);
                self.skip_spaces();
                match self.chars.get(self.idx) {
                    Some(',') => self.idx += 1,
                    Some(')') => {
                        self.idx += 1;
                        break;
                    }
                    _ => return Err(self.error("expected ',' or ')'")),
                }
            }
        }
        if args.len() < min || args.len() > max {
            return Err(IntrinsicError(format!(
                "{name} takes {} arguments, not {}",
                if min == max {
                    min.to_string()
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                },
                args.len()
            )));
        }
        Ok(Call { function, args })
    }

    fn arg(&mut self) -> Result<Arg, IntrinsicError> {
        match self.chars.get(self.idx) {
            Some('\'') => {
                self.idx += 1;
                let mut text = String::new();
                loop {
                    match self.chars.get(self.idx) {
                        None => return Err(self.error("unterminated string")),
                        Some('\\') => {
                            // ASL escapes ' { } and \ with a backslash; States.Format
                            // needs to see the escapes of braces, so those stay.
                            match self.chars.get(self.idx + 1) {
                                Some(c @ ('{' | '}')) => {
                                    text.push('\\');
                                    text.push(*c);
                                }
                                Some(c) => text.push(*c),
                                None => return Err(self.error("unterminated string")),
                            }
                            self.idx += 2;
                        }
                        Some('\'') => {
                            self.idx += 1;
                            break;
                        }
                        Some(c) => {
                            text.push(*c);
                            self.idx += 1;
                        }
                    }
                }
                Ok(Arg::Literal(Value::String(text)))
            }
            Some('$') => {
                let start = self.idx;
                let mut depth = 0usize;
                let mut quote = None;
                while let Some(&c) = self.chars.get(self.idx) {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[') => depth += 1,
                        (None, ']') => depth = depth.saturating_sub(1),
                        (None, ',' | ')') if depth == 0 => break,
                        (None, c) if c.is_whitespace() && depth == 0 => break,
                        _ => {}
                    }
                    self.idx += 1;
                }
                let text: String = self.chars[start..self.idx].iter().collect();
                Path::parse(&text)
                    .map(Arg::Path)
                    .map_err(|e| IntrinsicError(e.to_string()))
            }
            Some('S') => Ok(Arg::Call(Box::new(self.call()?))),
            Some(_) => {
                let start = self.idx;
                while self
                    .chars
                    .get(self.idx)
                    .is_some_and(|c| !matches!(c, ',' | ')') && !c.is_whitespace())
                {
                    self.idx += 1;
                }
                let text: String = self.chars[start..self.idx].iter().collect();
                match serde_json::from_str::<Value>(&text) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                        Ok(Arg::Literal(v))
                    }
                    _ => Err(IntrinsicError(format!("'{text}' is not a valid argument"))),
                }
            }
            None => Err(self.error("expected an argument")),
        }
    }
}

fn want_str(f: Function, args: &[Value], idx: usize) -> Result<&str, IntrinsicError> {
    args.get(idx).and_then(Value::as_str).ok_or_else(|| {
        IntrinsicError(format!(
            "States.{}: argument {} must be a string",
            f.name(),
            idx + 1
        ))
    })
}

fn want_array(f: Function, args: &[Value], idx: usize) -> Result<&Vec<Value>, IntrinsicError> {
    args.get(idx).and_then(Value::as_array).ok_or_else(|| {
        IntrinsicError(format!(
            "States.{}: argument {} must be an array",
            f.name(),
            idx + 1
        ))
    })
}

fn want_int(f: Function, args: &[Value], idx: usize) -> Result<i64, IntrinsicError> {
    let err = || {
        IntrinsicError(format!(
            "States.{}: argument {} must be an integer",
            f.name(),
            idx + 1
        ))
    };
    let n = args.get(idx).ok_or_else(err)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 9e15 => Ok(x as i64),
        _ => Err(err()),
    }
}

/// ASL's limit on the strings Base64Encode and Base64Decode take.
const BASE64_LIMIT: usize = 10_000;
/// ASL's limit on the arrays ArrayRange makes.
const RANGE_LIMIT: usize = 1_000;

fn apply(f: Function, args: &[Value], rng: &mut Rng) -> Result<Value, IntrinsicError> {
    let fail = |message: String| Err(IntrinsicError(format!("States.{}: {message}", f.name())));
    match f {
        Function::Format => {
            let template = want_str(f, args, 0)?;
            let mut out = String::new();
            let mut rest = args[1..].iter();
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(next) = chars.next() {
                            out.push(next);
                        }
                    }
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let Some(arg) = rest.next() else {
                            return fail("more {} than arguments".to_owned());
                        };
                        match arg {
                            Value::String(s) => out.push_str(s),
                            Value::Object(_) | Value::Array(_) => {
                                return fail(
                                    "arguments must be strings, numbers, booleans or null"
                                        .to_owned(),
                                );
                            }
                            other => out.push_str(&other.to_string()),
                        }
                    }
                    c => out.push(c),
                }
            }
            if rest.next().is_some() {
                return fail("more arguments than {}".to_owned());
            }
            Ok(Value::String(out))
        }
        Function::StringToJson => {
            let text = want_str(f, args, 0)?;
            serde_json::from_str(text).or_else(|e| fail(format!("not JSON: {e}")))
        }
        Function::JsonToString => Ok(Value::String(args[0].to_string())),
        Function::Array => Ok(Value::Array(args.to_vec())),
        Function::ArrayPartition => {
            let array = want_array(f, args, 0)?;
            let size = want_int(f, args, 1)?;
            let Ok(size @ 1..) = usize::try_from(size) else {
                return fail("the chunk size must be positive".to_owned());
            };
            Ok(Value::Array(
                array
                    .chunks(size)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        Function::ArrayContains => {
            let array = want_array(f, args, 0)?;
            Ok(Value::Bool(array.contains(&args[1])))
        }
        Function::ArrayRange => {
            let (first, last, step) = (
                want_int(f, args, 0)?,
                want_int(f, args, 1)?,
                want_int(f, args, 2)?,
            );
            if step == 0 {
                return fail("the step must not be 0".to_owned());
            }
            let mut out = Vec::new();
            let mut n = first;
            while (step > 0 && n <= last) || (step < 0 && n >= last) {
                if out.len() == RANGE_LIMIT {
                    return fail(format!("the range has more than {RANGE_LIMIT} elements"));
                }
                out.push(Value::from(n));
                n = match n.checked_add(step) {
                    Some(n) => n,
                    None => break,
                };
            }
            Ok(Value::Array(out))
        }
        Function::ArrayGetItem => {
            let array = want_array(f, args, 0)?;
            let idx = want_int(f, args, 1)?;
            match usize::try_from(idx).ok().and_then(|i| array.get(i)) {
                Some(v) => Ok(v.clone()),
                None => fail(format!("index {idx} is out of bounds")),
            }
        }
        Function::ArrayLength => Ok(Value::from(want_array(f, args, 0)?.len())),
        Function::ArrayUnique => {
            let array = want_array(f, args, 0)?;
            let mut seen = HashSet::new();
            Ok(Value::Array(
                array
                    .iter()
                    .filter(|v| seen.insert(v.to_string()))
                    .cloned()
                    .collect(),
            ))
        }
        Function::Base64Encode => {
            let text = want_str(f, args, 0)?;
            if text.len() > BASE64_LIMIT {
                return fail(format!(
                    "the input is longer than {BASE64_LIMIT} characters"
                ));
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(text),
            ))
        }
        Function::Base64Decode => {
            let text = want_str(f, args, 0)?;
            if text.len() > BASE64_LIMIT {
                return fail(format!(
                    "the input is longer than {BASE64_LIMIT} characters"
                ));
            }
            let bytes = match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => bytes,
                Err(e) => return fail(format!("not base64: {e}")),
            };
            match String::from_utf8(bytes) {
                Ok(s) => Ok(Value::String(s)),
                Err(_) => fail("the decoded bytes are not UTF-8".to_owned()),
            }
        }
        Function::Hash => {
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let algorithm = want_str(f, args, 1)?;
            let digest: Vec<u8> = match algorithm {
                "MD5" => md5::Md5::digest(data.as_bytes()).to_vec(),
                "SHA-1" => sha1::Sha1::digest(data.as_bytes()).to_vec(),
                "SHA-256" => sha2::Sha256::digest(data.as_bytes()).to_vec(),
                "SHA-384" => sha2::Sha384::digest(data.as_bytes()).to_vec(),
                "SHA-512" => sha2::Sha512::digest(data.as_bytes()).to_vec(),
                other => {
                    return fail(format!(
                        "unknown algorithm {other} (MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                    ));
                }
            };
            Ok(Value::String(
                digest.iter().map(|b| format!("{b:02x}")).collect(),
            ))
        }
        Function::JsonMerge => {
            let (Some(Value::Object(left)), Some(Value::Object(right))) =
                (args.first(), args.get(1))
            else {
                return fail("the first two arguments must be objects".to_owned());
            };
            if args.get(2) != Some(&Value::Bool(false)) {
                return fail("only a shallow merge (false) is supported, as in ASL".to_owned());
            }
            let mut merged = left.clone();
            for (k, v) in right {
                merged.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(merged))
        }
        Function::MathRandom => {
            let (start, end) = (want_int(f, args, 0)?, want_int(f, args, 1)?);
            if end <= start {
                return fail("the end must be greater than the start".to_owned());
            }
            let mut draw = match args.get(2) {
                Some(_) => Rng::new(want_int(f, args, 2)? as u64, 0),
                None => rng.clone(),
            };
            let span = end.abs_diff(start);
            let value = start.wrapping_add((draw.next_u64() % span) as i64);
            if args.get(2).is_none() {
                *rng = draw;
            }
            Ok(Value::from(value))
        }
        Function::MathAdd => {
            let (a, b) = (want_int(f, args, 0)?, want_int(f, args, 1)?);
            match a.checked_add(b) {
                Some(sum) => Ok(Value::from(sum)),
                None => fail("the sum overflows".to_owned()),
            }
        }
        Function::StringSplit => {
            let text = want_str(f, args, 0)?;
            let delimiters: Vec<char> = want_str(f, args, 1)?.chars().collect();
            Ok(Value::Array(
                text.split(|c| delimiters.contains(&c))
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ))
        }
        Function::Uuid => Ok(Value::String(rng.uuid())),
    }
}
