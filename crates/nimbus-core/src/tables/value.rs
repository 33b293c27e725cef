//! DynamoDB's attribute values and their JSON form (`{"S": "text"}`, `{"N": "1.5"}`,
//! `{"B": "<base64>"}`, `BOOL`, `NULL`, `M`, `L`, `SS`, `NS`, `BS`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;

use super::number::Number;

/// An item: attribute names to values.
pub type Item = BTreeMap<String, AttributeValue>;

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A string.
    S(String),
    /// A number.
    N(Number),
    /// Binary data.
    B(Vec<u8>),
    /// A boolean.
    Bool(bool),
    /// Null.
    Null,
    /// A map of attributes.
    M(BTreeMap<String, AttributeValue>),
    /// A list of values.
    L(Vec<AttributeValue>),
    /// A set of strings: not empty, no duplicates.
    Ss(Vec<String>),
    /// A set of numbers.
    Ns(Vec<Number>),
    /// A set of binary values.
    Bs(Vec<Vec<u8>>),
}

/// The type names DynamoDB gives values (`attribute_type`, error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `S`.
    S,
    /// `N`.
    N,
    /// `B`.
    B,
    /// `BOOL`.
    Bool,
    /// `NULL`.
    Null,
    /// `M`.
    M,
    /// `L`.
    L,
    /// `SS`.
    Ss,
    /// `NS`.
    Ns,
    /// `BS`.
    Bs,
}

impl ValueType {
    /// DynamoDB's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::S => "S",
            ValueType::N => "N",
            ValueType::B => "B",
            ValueType::Bool => "BOOL",
            ValueType::Null => "NULL",
            ValueType::M => "M",
            ValueType::L => "L",
            ValueType::Ss => "SS",
            ValueType::Ns => "NS",
            ValueType::Bs => "BS",
        }
    }

    /// The type a name stands for.
    pub fn from_name(name: &str) -> Option<ValueType> {
        Some(match name {
            "S" => ValueType::S,
            "N" => ValueType::N,
            "B" => ValueType::B,
            "BOOL" => ValueType::Bool,
            "NULL" => ValueType::Null,
            "M" => ValueType::M,
            "L" => ValueType::L,
            "SS" => ValueType::Ss,
            "NS" => ValueType::Ns,
            "BS" => ValueType::Bs,
            _ => return None,
        })
    }
}

impl AttributeValue {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            AttributeValue::S(_) => ValueType::S,
            AttributeValue::N(_) => ValueType::N,
            AttributeValue::B(_) => ValueType::B,
            AttributeValue::Bool(_) => ValueType::Bool,
            AttributeValue::Null => ValueType::Null,
            AttributeValue::M(_) => ValueType::M,
            AttributeValue::L(_) => ValueType::L,
            AttributeValue::Ss(_) => ValueType::Ss,
            AttributeValue::Ns(_) => ValueType::Ns,
            AttributeValue::Bs(_) => ValueType::Bs,
        }
    }

    /// Reads DynamoDB JSON; the error is a message as DynamoDB words it.
    pub fn from_json(json: &Json) -> Result<AttributeValue, String> {
        let Json::Object(fields) = json else {
            return Err(format!(
                "Supplied AttributeValue is not a map of one data type: {json}"
            ));
        };
        let mut set = fields
            .iter()
            .filter(|(_, v)| !v.is_null() || fields.len() == 1);
        let (Some((kind, value)), None) = (set.next(), set.next()) else {
            return Err(if fields.is_empty() {
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes".to_owned()
            } else {
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes".to_owned()
            });
        };
        let text = |value: &Json| -> Result<String, String> {
            match value {
                Json::String(s) => Ok(s.clone()),
                other => Err(format!("Expected a string for {kind}, got {other}")),
            }
        };
        let number = |value: &Json| -> Result<Number, String> {
            let text = match value {
                Json::String(s) => s.clone(),
                // Some clients send numbers unquoted; accept them as their text.
                Json::Number(n) => n.to_string(),
                other => return Err(format!("Expected a number as text for {kind}, got {other}")),
            };
            Number::parse(&text).map_err(|e| e.to_string())
        };
        let binary = |value: &Json| -> Result<Vec<u8>, String> {
            let text = text(value)?;
            BASE64
                .decode(text.as_bytes())
                .map_err(|_| format!("Invalid base64 in {kind}: {text:?}"))
        };
        let items = |value: &Json| -> Result<Vec<Json>, String> {
            match value {
                Json::Array(items) => Ok(items.clone()),
                other => Err(format!("Expected a list for {kind}, got {other}")),
            }
        };
        let empty_set = |noun: &str| {
            format!("One or more parameter values were invalid: An {noun} set  may not be empty")
        };
        Ok(match kind.as_str() {
            "S" => AttributeValue::S(text(value)?),
            "N" => AttributeValue::N(number(value)?),
            "B" => AttributeValue::B(binary(value)?),
            "BOOL" => match value {
                Json::Bool(b) => AttributeValue::Bool(*b),
                other => return Err(format!("Expected true or false for BOOL, got {other}")),
            },
            "NULL" => match value {
                Json::Bool(true) => AttributeValue::Null,
                _ => {
                    return Err("One or more parameter values were invalid: Null attribute value types must have the value of true".to_owned());
                }
            },
            "M" => match value {
                Json::Object(fields) => AttributeValue::M(item_from_json(fields)?),
                other => return Err(format!("Expected a map for M, got {other}")),
            },
            "L" => AttributeValue::L(
                items(value)?
                    .iter()
                    .map(AttributeValue::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            "SS" => {
                let set: Vec<String> = items(value)?.iter().map(text).collect::<Result<_, _>>()?;
                if set.is_empty() {
                    return Err(empty_set("string"));
                }
                check_distinct(&set, |s| format!("{s:?}"))?;
                AttributeValue::Ss(set)
            }
            "NS" => {
                let set: Vec<Number> =
                    items(value)?.iter().map(number).collect::<Result<_, _>>()?;
                if set.is_empty() {
                    return Err(empty_set("number"));
                }
                check_distinct(&set, |n| n.to_string())?;
                AttributeValue::Ns(set)
            }
            "BS" => {
                let set: Vec<Vec<u8>> =
                    items(value)?.iter().map(binary).collect::<Result<_, _>>()?;
                if set.is_empty() {
                    return Err(empty_set("binary"));
                }
                check_distinct(&set, |b| BASE64.encode(b))?;
                AttributeValue::Bs(set)
            }
            other => {
                return Err(format!(
                    "Supplied AttributeValue has an unknown data type: {other}"
                ));
            }
        })
    }

    /// DynamoDB JSON.
    pub fn to_json(&self) -> Json {
        let (kind, value) = match self {
            AttributeValue::S(s) => ("S", Json::String(s.clone())),
            AttributeValue::N(n) => ("N", Json::String(n.to_string())),
            AttributeValue::B(b) => ("B", Json::String(BASE64.encode(b))),
            AttributeValue::Bool(b) => ("BOOL", Json::Bool(*b)),
            AttributeValue::Null => ("NULL", Json::Bool(true)),
            AttributeValue::M(m) => ("M", item_to_json(m)),
            AttributeValue::L(l) => ("L", Json::Array(l.iter().map(Self::to_json).collect())),
            AttributeValue::Ss(s) => (
                "SS",
                Json::Array(s.iter().map(|s| Json::String(s.clone())).collect()),
            ),
            AttributeValue::Ns(s) => (
                "NS",
                Json::Array(s.iter().map(|n| Json::String(n.to_string())).collect()),
            ),
            AttributeValue::Bs(s) => (
                "BS",
                Json::Array(s.iter().map(|b| Json::String(BASE64.encode(b))).collect()),
            ),
        };
        let mut map = serde_json::Map::with_capacity(1);
        map.insert(kind.to_owned(), value);
        Json::Object(map)
    }

    /// The size DynamoDB counts for the value (without its name).
    pub fn size(&self) -> usize {
        match self {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.size(),
            AttributeValue::B(b) => b.len(),
            AttributeValue::Bool(_) | AttributeValue::Null => 1,
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| k.len() + v.size() + 1).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| v.size() + 1).sum::<usize>(),
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            AttributeValue::Ns(s) => s.iter().map(Number::size).sum(),
            AttributeValue::Bs(s) => s.iter().map(Vec::len).sum(),
        }
    }
}

/// An item from a DynamoDB JSON object.
pub fn item_from_json(fields: &serde_json::Map<String, Json>) -> Result<Item, String> {
    fields
        .iter()
        .map(|(name, value)| Ok((name.clone(), AttributeValue::from_json(value)?)))
        .collect()
}

/// An item as a DynamoDB JSON object.
pub fn item_to_json(item: &Item) -> Json {
    Json::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect(),
    )
}

/// The size DynamoDB counts for an item: names and values.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value.size())
        .sum()
}

fn check_distinct<T: PartialEq>(set: &[T], show: impl Fn(&T) -> String) -> Result<(), String> {
    for (idx, member) in set.iter().enumerate() {
        if set[..idx].contains(member) {
            let all: Vec<String> = set.iter().map(&show).collect();
            return Err(format!(
                "One or more parameter values were invalid: Input collection [{}] contains duplicates.",
                all.join(", ")
            ));
        }
    }
    Ok(())
}
