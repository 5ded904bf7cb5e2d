//! The amount parser: any text is parsed or refused without panic, and an
//! accepted amount prints back to text that parses to the same cents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walletql::domain::money::{Money, parse_decimal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(value) = parse_decimal(text) else {
        return;
    };
    let Ok(money) = Money::amount(value) else {
        return;
    };
    let printed = money.to_string();
    let reparsed = parse_decimal(&printed).and_then(|v| Money::amount(v).ok());
    assert_eq!(reparsed, Some(money), "{text:?} -> {printed:?}");
});
