//! DynamoDB's numbers: decimals of up to 38 significant digits, magnitudes from 1E-130 to
//! below 1E+126, compared numerically and kept exactly (no binary floating point).

use std::cmp::Ordering;
use std::fmt;

/// The most significant digits a number may have (DynamoDB's limit).
pub const MAX_DIGITS: usize = 38;
/// `0.d × 10^exponent`: the largest exponent (magnitudes below 1E+126).
const MAX_EXPONENT: i32 = 126;
/// The smallest exponent (magnitudes from 1E-130).
const MIN_EXPONENT: i32 = -129;

/// An exact decimal number, normalised: `0.d₁d₂…dₙ × 10^exponent` with no leading or
/// trailing zero digits; zero has no digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    digits: Vec<u8>,
    exponent: i32,
}

/// Why a text is not a DynamoDB number; the messages are DynamoDB's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberError {
    /// Not a number at all.
    Invalid(String),
    /// More than 38 significant digits.
    TooPrecise,
    /// 1E+126 or more.
    Overflow,
    /// Below 1E-130 (and not zero).
    Underflow,
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberError::Invalid(text) => {
                write!(f, "The parameter cannot be converted to a numeric value: {text}")
            }
            NumberError::TooPrecise => f.write_str(
                "Attempting to store more than 38 significant digits in a Number",
            ),
            NumberError::Overflow => f.write_str(
                "Number overflow. Attempting to store a number with magnitude larger than supported range",
            ),
            NumberError::Underflow => f.write_str(
                "Number underflow. Attempting to store a number with magnitude smaller than supported range",
            ),
        }
    }
}

impl std::error::Error for NumberError {}

impl Number {
    /// Zero.
    pub fn zero() -> Number {
        Number {
            negative: false,
            digits: Vec::new(),
            exponent: 0,
        }
    }

    /// Parses DynamoDB's number text: an optional sign, digits with an optional point, an
    /// optional exponent (`-12.5e3`).
    pub fn parse(text: &str) -> Result<Number, NumberError> {
        let invalid = || NumberError::Invalid(text.to_owned());
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(idx) => (&rest[..idx], Some(&rest[idx + 1..])),
            None => (rest, None),
        };
        let exp: i64 = match exp {
            Some(exp) => {
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                // Long exponents only matter for their sign: clamp them.
                let value: i64 = digits.parse().unwrap_or(i64::from(i32::MAX));
                let value = value.min(100_000);
                if exp.starts_with('-') { -value } else { value }
            }
            None => 0,
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty()
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let all: Vec<u8> = int_part
            .bytes()
            .chain(frac_part.bytes())
            .map(|b| b - b'0')
            .collect();
        let point = int_part.len() as i64 + exp;
        let Some(first) = all.iter().position(|&d| d != 0) else {
            return Ok(Number::zero());
        };
        let last = all.iter().rposition(|&d| d != 0).unwrap_or(first);
        let exponent = point - first as i64;
        Number::checked(negative, all[first..=last].to_vec(), exponent)
    }

    fn checked(negative: bool, digits: Vec<u8>, exponent: i64) -> Result<Number, NumberError> {
        if digits.is_empty() {
            return Ok(Number::zero());
        }
        if digits.len() > MAX_DIGITS {
            return Err(NumberError::TooPrecise);
        }
        if exponent > i64::from(MAX_EXPONENT) {
            return Err(NumberError::Overflow);
        }
        if exponent < i64::from(MIN_EXPONENT) {
            return Err(NumberError::Underflow);
        }
        Ok(Number {
            negative,
            digits,
            exponent: exponent as i32,
        })
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The sum, or an error when it needs more than 38 digits or leaves the range.
    pub fn add(&self, other: &Number) -> Result<Number, NumberError> {
        if self.is_zero() {
            return Ok(other.clone());
        }
        if other.is_zero() {
            return Ok(self.clone());
        }
        // Both as integers of digits at a common lowest place.
        let low = (self.exponent - self.digits.len() as i32)
            .min(other.exponent - other.digits.len() as i32);
        let high = self.exponent.max(other.exponent);
        let width = (high - low) as usize;
        let align = |n: &Number| {
            let mut out = vec![0u8; width];
            let start = (high - n.exponent) as usize;
            out[start..start + n.digits.len()].copy_from_slice(&n.digits);
            out
        };
        let (a, b) = (align(self), align(other));
        let (negative, digits) = if self.negative == other.negative {
            (self.negative, add_digits(&a, &b))
        } else {
            match a.cmp(&b) {
                Ordering::Equal => return Ok(Number::zero()),
                Ordering::Greater => (self.negative, sub_digits(&a, &b)),
                Ordering::Less => (other.negative, sub_digits(&b, &a)),
            }
        };
        // `digits` may have one more leading digit than `width` (a carry).
        let top = high + (digits.len() as i32 - width as i32);
        let Some(first) = digits.iter().position(|&d| d != 0) else {
            return Ok(Number::zero());
        };
        let last = digits.iter().rposition(|&d| d != 0).unwrap_or(first);
        Number::checked(
            negative,
            digits[first..=last].to_vec(),
            i64::from(top) - first as i64,
        )
    }

    /// The difference `self - other`.
    pub fn sub(&self, other: &Number) -> Result<Number, NumberError> {
        self.add(&other.negated())
    }

    fn negated(&self) -> Number {
        Number {
            negative: !self.negative && !self.is_zero(),
            ..self.clone()
        }
    }

    /// An encoding whose byte order (memcmp) is the numeric order, for keys.
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.digits.len() + 4);
        if self.is_zero() {
            out.push(0x01);
            return out;
        }
        let biased = (self.exponent + 0x8000) as u16;
        if self.negative {
            out.push(0x00);
            out.extend_from_slice(&(!biased).to_be_bytes());
            out.extend(self.digits.iter().map(|d| 9 - d));
            // A longer negative number with the same leading digits is smaller: the
            // terminator sorts after every digit.
            out.push(0xFF);
        } else {
            out.push(0x02);
            out.extend_from_slice(&biased.to_be_bytes());
            out.extend_from_slice(&self.digits);
        }
        out
    }

    /// The number a `key_bytes` encoding stands for.
    pub fn from_key_bytes(bytes: &[u8]) -> Option<Number> {
        match bytes.first()? {
            0x01 => Some(Number::zero()),
            0x02 => {
                let biased = u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?]);
                Some(Number {
                    negative: false,
                    digits: bytes.get(3..)?.to_vec(),
                    exponent: i32::from(biased) - 0x8000,
                })
            }
            0x00 => {
                let biased = !u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?]);
                let digits = bytes.get(3..bytes.len().checked_sub(1)?)?;
                Some(Number {
                    negative: true,
                    digits: digits.iter().map(|d| 9 - d).collect(),
                    exponent: i32::from(biased) - 0x8000,
                })
            }
            _ => None,
        }
    }

    /// A size estimate as DynamoDB counts it: about one byte per two digits, plus one.
    pub fn size(&self) -> usize {
        self.digits.len().div_ceil(2) + 1
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Number) -> Ordering {
        self.key_bytes().cmp(&other.key_bytes())
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Plain decimal notation, as DynamoDB answers numbers: `100`, `0.001`, `-12.5`; numbers
/// of more than 38 integer digits as `1.5E+40`.
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let mut out = String::with_capacity(self.digits.len() + 8);
        if self.negative {
            out.push('-');
        }
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let len = self.digits.len() as i32;
        if self.exponent <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-self.exponent) as usize));
            out.push_str(&digits);
        } else if self.exponent > MAX_DIGITS as i32 {
            // Beyond 38 integer digits, the zeros would count as digits for clients that
            // parse with 38-digit precision (boto3 traps the rounding): use an exponent.
            let (first, rest) = digits.split_at(1);
            out.push_str(first);
            if !rest.is_empty() {
                out.push('.');
                out.push_str(rest);
            }
            out.push_str(&format!("E+{}", self.exponent - 1));
        } else if self.exponent >= len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (self.exponent - len) as usize));
        } else {
            let (int, frac) = digits.split_at(self.exponent as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
        f.write_str(&out)
    }
}

fn add_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len() + 1];
    let mut carry = 0;
    for idx in (0..a.len()).rev() {
        let sum = a[idx] + b[idx] + carry;
        out[idx + 1] = sum % 10;
        carry = sum / 10;
    }
    out[0] = carry;
    out
}

/// `a - b` for `a >= b`, both of the same width.
fn sub_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i8;
    for idx in (0..a.len()).rev() {
        let mut diff = a[idx] as i8 - b[idx] as i8 - borrow;
        borrow = 0;
        if diff < 0 {
            diff += 10;
            borrow = 1;
        }
        out[idx] = diff as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::Number;

    fn check(text: &str, expect: Expect) {
        let res = match Number::parse(text) {
            Ok(n) => {
                let back = Number::from_key_bytes(&n.key_bytes());
                assert_eq!(back.as_ref(), Some(&n), "key bytes round trip of {text}");
                n.to_string()
            }
            Err(e) => format!("error: {e}"),
        };
        expect.assert_eq(&res);
    }

    fn check_sum(a: &str, b: &str, expect: Expect) {
        let res = match (Number::parse(a), Number::parse(b)) {
            (Ok(a), Ok(b)) => match a.add(&b) {
                Ok(sum) => sum.to_string(),
                Err(e) => format!("error: {e}"),
            },
            _ => "unparsable".to_owned(),
        };
        expect.assert_eq(&res);
    }

    #[test]
    fn parses_and_normalises() {
        check("0", expect!["0"]);
        check("-0.000", expect!["0"]);
        check("007", expect!["7"]);
        check("1.50", expect!["1.5"]);
        check("+12.5e3", expect!["12500"]);
        check("1e-3", expect!["0.001"]);
        check(".5", expect!["0.5"]);
        check("5.", expect!["5"]);
        check("-123.456", expect!["-123.456"]);
        check(
            "12345678901234567890123456789012345678",
            expect!["12345678901234567890123456789012345678"],
        );
        check(
            "0.12345678901234567890123456789012345678",
            expect!["0.12345678901234567890123456789012345678"],
        );
        check(
            "123456789012345678901234567890123456789",
            expect!["error: Attempting to store more than 38 significant digits in a Number"],
        );
        check("1E+125", expect!["1E+125"]);
        check(
            "1E+126",
            expect![
                "error: Number overflow. Attempting to store a number with magnitude larger than supported range"
            ],
        );
        check(
            "1E-130",
            expect![
                "0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"
            ],
        );
        check(
            "1E-131",
            expect![
                "error: Number underflow. Attempting to store a number with magnitude smaller than supported range"
            ],
        );
        check(
            "abc",
            expect!["error: The parameter cannot be converted to a numeric value: abc"],
        );
        check(
            "",
            expect!["error: The parameter cannot be converted to a numeric value: "],
        );
        check(
            "1e",
            expect!["error: The parameter cannot be converted to a numeric value: 1e"],
        );
        check(
            "--1",
            expect!["error: The parameter cannot be converted to a numeric value: --1"],
        );
        check(
            "1.2.3",
            expect!["error: The parameter cannot be converted to a numeric value: 1.2.3"],
        );
    }

    #[test]
    fn adds_exactly() {
        check_sum("1", "2", expect!["3"]);
        check_sum("0.1", "0.2", expect!["0.3"]);
        check_sum("999", "1", expect!["1000"]);
        check_sum("-5", "3", expect!["-2"]);
        check_sum("5", "-5", expect!["0"]);
        check_sum("-1.5", "-1.5", expect!["-3"]);
        check_sum("100", "-0.01", expect!["99.99"]);
        check_sum(
            "99999999999999999999999999999999999999",
            "1",
            expect!["1E+38"],
        );
        check_sum(
            "12345678901234567890123456789012345678",
            "0.1",
            expect!["error: Attempting to store more than 38 significant digits in a Number"],
        );
    }

    #[test]
    fn orders_numerically() {
        let texts = [
            "-1e10", "-100", "-1.23", "-1.2", "-1", "-0.5", "0", "1e-130", "0.5", "1", "1.2",
            "1.23", "9", "10", "1e125",
        ];
        let numbers: Vec<Number> = texts
            .iter()
            .map(|t| Number::parse(t).expect("valid number"))
            .collect();
        for pair in numbers.windows(2) {
            assert!(
                pair[0].key_bytes() < pair[1].key_bytes(),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
    }
}
