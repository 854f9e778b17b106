//! Scope requirement expressions (`ScopeModel::requirement`, `RequireScopesLayer::new`).
#![no_main]

#[path = "../../tests/checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: checks::ScopeInput| checks::check_scope(&input));
