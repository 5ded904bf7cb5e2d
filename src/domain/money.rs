//! Exact money: integer cents in an `i64`, with checked arithmetic.
//!
//! Amounts arrive as `rust_decimal::Decimal` (the API's representation) and are
//! converted here, refusing anything that would need rounding. Nothing in
//! walletql ever holds an amount in floating point.

use std::fmt;

use rust_decimal::Decimal;

pub use migration::MAX_BALANCE_CENTS;

/// Largest amount a single deposit or transfer may move: one billion dollars.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;

/// A non-negative quantity of USD, in cents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why an amount was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must have at most two decimal places")]
    TooPrecise,
    #[error("amount must not exceed 1000000000.00")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);
    /// The most a wallet may hold.
    pub const MAX_BALANCE: Money = Money(MAX_BALANCE_CENTS);

    /// Money from a stored cents value; `None` if it is negative.
    pub fn from_cents(cents: i64) -> Option<Money> {
        (cents >= 0).then_some(Money(cents))
    }

    /// A transferable amount: positive, at most two decimals, at most
    /// [`MAX_AMOUNT_CENTS`]. Never rounds: `10.505` is refused, not made `10.51`.
    pub fn amount(value: Decimal) -> Result<Money, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        // `normalize` drops trailing zeros, so "10.50" and "10.5" both pass
        // while "10.505" does not; the value itself is never changed.
        if value.normalize().scale() > 2 {
            return Err(AmountError::TooPrecise);
        }
        let cents = value
            .checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|c| i64::try_from(c).ok())
            .ok_or(AmountError::TooLarge)?;
        if cents > MAX_AMOUNT_CENTS {
            return Err(AmountError::TooLarge);
        }
        Ok(Money(cents))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).and_then(Money::from_cents)
    }

    /// The API representation: always exactly two decimals.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal())
    }
}

/// Cents as the API writes amounts: exactly two decimals (`"12.50"`).
pub fn format_cents(cents: i64) -> String {
    Decimal::new(cents, 2).to_string()
}

/// Parses the text of a decimal strictly: an optional minus sign, digits, and
/// an optional fraction. No exponent, no `+`, no underscores, no spaces.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    const MAX_LEN: usize = 40;
    if text.is_empty() || text.len() > MAX_LEN {
        return None;
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    // `from_str_exact` refuses what does not fit 28 digits instead of
    // rounding it ("0.0099999999999999999999999999999" is not 0.01).
    Decimal::from_str_exact(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Result<Money, AmountError> {
        Money::amount(parse_decimal(text).expect("valid decimal text"))
    }

    #[test]
    fn accepts_whole_and_two_decimal_amounts() {
        assert_eq!(amount("10"), Ok(Money(1000)));
        assert_eq!(amount("10.5"), Ok(Money(1050)));
        assert_eq!(amount("10.50"), Ok(Money(1050)));
        assert_eq!(amount("0.01"), Ok(Money(1)));
        assert_eq!(amount("10.500"), Ok(Money(1050)));
        assert_eq!(amount("1000000000.00"), Ok(Money(MAX_AMOUNT_CENTS)));
    }

    #[test]
    fn refuses_what_would_need_rounding_or_is_out_of_range() {
        assert_eq!(amount("10.505"), Err(AmountError::TooPrecise));
        assert_eq!(amount("0.001"), Err(AmountError::TooPrecise));
        assert_eq!(amount("0"), Err(AmountError::NotPositive));
        assert_eq!(amount("0.00"), Err(AmountError::NotPositive));
        assert_eq!(amount("-1"), Err(AmountError::NotPositive));
        assert_eq!(amount("1000000000.01"), Err(AmountError::TooLarge));
        assert_eq!(
            amount("99999999999999999999999"),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn parses_only_plain_decimal_text() {
        for bad in [
            "", "abc", "1e3", "1E3", "+1", "1_000", " 1", "1 ", ".5", "5.", "1.2.3", "--1", "0x10",
            "NaN", "inf", "１",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?} should be refused");
        }
        assert_eq!(parse_decimal(&"9".repeat(41)), None);
        assert_eq!(parse_decimal("-0.5"), Some(Decimal::new(-5, 1)));
        // More digits than a Decimal holds: refused, never rounded.
        for rounded in [
            "0.0099999999999999999999999999999",
            "1.00000000000000000000000000001",
        ] {
            assert_eq!(parse_decimal(rounded), None, "{rounded:?} must not round");
        }
    }

    #[test]
    fn formats_with_exactly_two_decimals() {
        assert_eq!(Money(1050).to_string(), "10.50");
        assert_eq!(Money(0).to_string(), "0.00");
        assert_eq!(Money(7).to_string(), "0.07");
        assert_eq!(Money(MAX_BALANCE_CENTS).to_string(), "1000000000000.00");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Money(5).checked_sub(Money(6)), None);
        assert_eq!(Money(i64::MAX).checked_add(Money(1)), None);
        assert_eq!(Money(5).checked_add(Money(6)), Some(Money(11)));
        assert_eq!(Money::from_cents(-1), None);
    }
}
