//! Credentials in the request head (`Authorization: Bearer`, `X-API-Key`, the `api_key`
//! query parameter) and `X-Request-Id`, through the authentication layer.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: checks::HeadInput| checks::check_head(&input));
