//! The JSON-body key scanner, through the authentication layer, against serde_json.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|body: &[u8]| checks::check_json_body(body));
