//! The custom scalars, each with a description and `@specifiedBy`, so schema
//! tools (graphql-codegen, Apollo) can map them to a concrete type.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::money::{Money, parse_decimal};

/// An exact decimal number, sent and received as a string (`"10.50"`) so no
/// JSON parser turns it into a float. Output always has two decimals. Input
/// must be plain decimal text: no exponent, sign `+`, separators or spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec(pub Decimal);

impl From<Money> for Dec {
    fn from(money: Money) -> Dec {
        Dec(money.to_decimal())
    }
}

/// An exact decimal amount of US dollars as a JSON string, e.g. "10.50":
/// always two decimals in output; input is plain decimal text (a whole JSON
/// number is accepted too), never rounded.
#[Scalar(
    name = "Decimal",
    specified_by_url = "https://github.com/walletql/walletql#amounts"
)]
impl ScalarType for Dec {
    /// Checked at validation too, so a bad value in variables is refused
    /// before anything runs, with its path (`extensions.field`).
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_decimal(text).map(Dec).ok_or_else(|| {
                InputValueError::custom(
                    "expected an exact decimal such as \"10.50\" (at most 28 significant digits)",
                )
            }),
            // Whole JSON numbers are exact; fractions may already have been
            // rounded by a float on their way here, so they must be strings.
            Value::Number(number) => {
                number
                    .as_i64()
                    .map(|n| Dec(Decimal::from(n)))
                    .ok_or_else(|| {
                        InputValueError::custom(
                            "send fractional amounts as strings, e.g. \"10.50\"",
                        )
                    })
            }
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A UUID in its canonical hyphenated text form (RFC 9562), e.g.
/// "0192f4d6-9c3e-7a51-8d2f-3b6c1e9a7f40".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id(pub Uuid);

/// A UUID (RFC 9562) as a string, e.g. "0192f4d6-9c3e-7a51-8d2f-3b6c1e9a7f40".
#[Scalar(
    name = "UUID",
    specified_by_url = "https://www.rfc-editor.org/rfc/rfc9562"
)]
impl ScalarType for Id {
    /// Checked at validation too, so a bad value in variables is refused
    /// before anything runs, with its path (`extensions.field`).
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => Uuid::try_parse(text)
                .map(Id)
                .map_err(|_| InputValueError::custom("expected a UUID")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.hyphenated().to_string())
    }
}

/// A point in time, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

/// A point in time as an RFC 3339 string. Output is UTC with microseconds,
/// e.g. "2026-11-29T21:18:58.123456Z" (JavaScript's Date keeps the
/// milliseconds); input may carry any offset, with a year from 1 to 9999.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://scalars.graphql.org/chillicream/date-time.html"
)]
impl ScalarType for Timestamp {
    /// Checked at validation too, so a bad value in variables is refused
    /// before anything runs, with its path (`extensions.field`).
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        let at = DateTime::parse_from_rfc3339(text)
            .map_err(|_| InputValueError::custom("expected an RFC 3339 date-time"))?
            .with_timezone(&Utc);
        // Both backends compare dates correctly only within four-digit years.
        if !(1..=9999).contains(&at.year()) {
            return Err(InputValueError::custom(
                "the year must be between 1 and 9999",
            ));
        }
        Ok(Timestamp(at))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Timestamp {
        Timestamp(at)
    }
}

impl From<Uuid> for Id {
    fn from(id: Uuid) -> Id {
        Id(id)
    }
}
