//! `KeyFormat::parse` and its checksums, on raw input and on keys built with a valid
//! checksum, then changed by one character.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: checks::KeyInput| checks::check_key(&input));
