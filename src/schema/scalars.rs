//! The `Decimal` scalar: exact decimal numbers as JSON strings.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use rust_decimal::Decimal;

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

#[Scalar(name = "Decimal")]
impl ScalarType for Dec {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_decimal(text)
                .map(Dec)
                .ok_or_else(|| InputValueError::custom("expected a decimal such as \"10.50\"")),
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
