//! Where a [`Guard`](tower_api_key::Guard) does not fit, the router does not compile:
//! each `tests/ui/*.rs` but `handler_layer.rs` puts a guard on something wider than
//! one handler, and its `.stderr` is the compiler's answer, which names the fix.
//! `handler_layer.rs` is the right wiring, built and run.
//!
//! The `.stderr` files were written by the stable toolchain these tests run on
//! (`TRYBUILD=overwrite cargo test --all-features --test compile_fail` rewrites them
//! after a compiler upgrade; read the diff before committing it).

#[test]
fn a_guard_fits_only_on_one_handler() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/handler_layer.rs");
    cases.compile_fail("tests/ui/method_router_*.rs");
    cases.compile_fail("tests/ui/router_*.rs");
}
