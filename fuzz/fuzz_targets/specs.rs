//! `RatePolicy` and `UnknownKeyBudget` text, rate and quota policies, request ids.
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|specs: Vec<checks::Spec>| specs.iter().for_each(checks::check_spec));
