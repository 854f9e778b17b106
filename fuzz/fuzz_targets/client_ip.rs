//! `ClientIp` over `X-Forwarded-For` and `Forwarded`.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: checks::ClientInput| checks::check_client(&input));
