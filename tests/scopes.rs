//! The documented scope models, requirement expressions and every refused input.

use tower_api_key::{ConfigError, Grants, ScopeModel};

const PB_RESOURCES_RW: [&str; 11] = [
    "employees",
    "observations",
    "summaries",
    "team_summaries",
    "conversations",
    "objectives",
    "assignments",
    "review_items",
    "notifications",
    "preferences",
    "webhooks",
];

fn names(grants: &Grants) -> Vec<&str> {
    grants.iter().collect()
}

fn none() -> [&'static str; 0] {
    []
}

fn err_of<T: std::fmt::Debug>(result: Result<T, ConfigError>) -> String {
    result.unwrap_err().message().to_owned()
}

// ---- 000 Performance Blocks ----

#[test]
fn performance_blocks_declares_the_documented_table() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let mut expected = Vec::new();
    for resource in &PB_RESOURCES_RW[..10] {
        expected.push(format!("{resource}:read"));
        expected.push(format!("{resource}:write"));
    }
    expected.extend(
        [
            "search:read",
            "webhooks:read",
            "webhooks:write",
            "session:read",
        ]
        .map(String::from),
    );
    assert_eq!(model.scopes().collect::<Vec<_>>(), expected);
    assert!(!model.contains("search:write"));
    assert!(!model.contains("session:write"));
    assert!(!model.contains("*:*"));
    assert!(model.creation_defaults().is_empty());
}

#[test]
fn performance_blocks_write_implies_read_of_the_same_resource_only() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    for resource in PB_RESOURCES_RW {
        let write = format!("{resource}:write");
        let read = format!("{resource}:read");
        assert_eq!(
            names(&model.grants([&write])),
            [read.as_str(), write.as_str(), "session:read"]
        );

        let reader = model.grants([&read]);
        assert!(!reader.contains(&write), "{read} must not imply {write}");
        assert_eq!(names(&reader), [read.as_str(), "session:read"]);
    }
    for bare_read in ["search:read", "session:read"] {
        assert_eq!(
            model.grants([bare_read]).len(),
            if bare_read == "session:read" { 1 } else { 2 }
        );
    }
}

#[test]
fn performance_blocks_grants_session_read_to_every_key() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    assert_eq!(model.granted_to_all(), ["session:read"]);
    assert_eq!(names(&model.grants(none())), ["session:read"]);
    assert_eq!(names(&model.grants(["unknown:scope"])), ["session:read"]);
    let session = model.requirement("session:read").unwrap();
    assert!(session.is_satisfied_by(&model.grants(none())));
}

#[test]
fn performance_blocks_has_no_super_scope() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let total = model.scopes().count();
    for scope in model.scopes() {
        let grants = model.grants([scope]);
        assert!(grants.len() <= 3, "{scope} grants {grants:?}");
        assert!(grants.len() < total);
    }
    for attempt in ["*", "*:*", "admin", "*:write", "all"] {
        assert_eq!(
            names(&model.grants([attempt])),
            ["session:read"],
            "{attempt}"
        );
    }
    // Only listing every scope grants everything.
    let full = model.preset("Full access").unwrap();
    assert_eq!(model.grants(full).len(), total);
}

#[test]
fn performance_blocks_presets_are_exact() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    assert_eq!(
        model.presets().map(|(name, _)| name).collect::<Vec<_>>(),
        ["Read-only", "HRIS integration", "Full access"]
    );
    let mut reads: Vec<String> = PB_RESOURCES_RW[..10]
        .iter()
        .map(|r| format!("{r}:read"))
        .collect();
    reads.extend(["search:read", "webhooks:read", "session:read"].map(String::from));
    assert_eq!(model.preset("Read-only").unwrap(), reads);
    assert!(!model
        .grants(model.preset("Read-only").unwrap())
        .iter()
        .any(|s| s.ends_with(":write")));
    assert_eq!(
        model.preset("HRIS integration").unwrap(),
        ["employees:read", "employees:write", "webhooks:write"]
    );
    let everything: Vec<&str> = model.scopes().collect();
    assert_eq!(model.preset("Full access").unwrap(), everything);
    assert_eq!(model.preset("full access"), None);
}

#[test]
fn demo_model_adds_the_server_scopes() {
    // What the demo declares: its own scopes after the documented ones.
    let model = tower_api_key::presets::performance_blocks::scope_model_builder()
        .resource("api_keys", ["read", "write"])
        .scope("audit_log:read")
        .scope("public_api")
        .build()
        .unwrap();
    for scope in [
        "api_keys:read",
        "api_keys:write",
        "audit_log:read",
        "public_api",
    ] {
        assert!(model.contains(scope), "{scope}");
        assert!(
            !tower_api_key::presets::performance_blocks::scope_model().contains(scope),
            "{scope}"
        );
    }
    assert_eq!(
        names(&model.grants(["api_keys:write"])),
        ["session:read", "api_keys:read", "api_keys:write"]
    );
    assert!(!model.grants(["api_keys:read"]).contains("api_keys:write"));
    let full = model.preset("Full access").unwrap();
    assert_eq!(
        full,
        tower_api_key::presets::performance_blocks::scope_model()
            .preset("Full access")
            .unwrap()
    );
    assert!(!model.grants(full).contains("api_keys:read"));
}

// ---- 001 workspace ----

#[test]
fn workspace_admin_encompasses_read_and_write() {
    let model = tower_api_key::presets::workspace::scope_model();
    assert_eq!(
        model.scopes().collect::<Vec<_>>(),
        ["read:all", "write:all", "admin"]
    );
    assert_eq!(
        names(&model.grants(["admin"])),
        ["read:all", "write:all", "admin"]
    );
    assert_eq!(names(&model.grants(["write:all"])), ["write:all"]);
    assert_eq!(names(&model.grants(["read:all"])), ["read:all"]);
    assert!(model.grants(none()).is_empty());
    assert!(model.granted_to_all().is_empty());
    assert!(model.creation_defaults().is_empty());
    assert_eq!(model.presets().count(), 0);

    let post = model.requirement("write:all").unwrap();
    assert!(post.is_satisfied_by(&model.grants(["admin"])));
    assert!(!post.is_satisfied_by(&model.grants(["read:all"])));
    let billing = model.requirement("admin").unwrap();
    assert!(!billing.is_satisfied_by(&model.grants(["read:all", "write:all"])));
    assert_eq!(
        billing.missing(&model.grants(["read:all", "write:all"])),
        ["admin"]
    );
}

#[test]
fn an_umbrella_read_all_over_resource_scopes() {
    let model = ScopeModel::builder()
        .resource("users", ["read", "write"])
        .resource("projects", ["read", "write"])
        .resource("records", ["read", "write"])
        .resource("settings", ["read", "write"])
        .scopes(["read:all", "write:all", "admin"])
        .action_implies("write", "read")
        .implies("read:all", ["*:read"])
        .implies(
            "write:all",
            ["users:write", "projects:write", "records:write"],
        )
        .implies("admin", ["read:all", "write:all", "settings:write"])
        .build()
        .unwrap();
    assert_eq!(
        names(&model.grants(["read:all"])),
        [
            "users:read",
            "projects:read",
            "records:read",
            "settings:read",
            "read:all"
        ]
    );
    let writer = model.grants(["write:all"]);
    assert!(writer.contains("records:read"));
    assert!(!writer.contains("settings:write"));
    assert!(!writer.contains("read:all"));
    assert_eq!(model.grants(["admin"]).len(), 11);
    let admin_only = model.requirement("settings:write").unwrap();
    assert_eq!(admin_only.missing(&writer), ["settings:write"]);
}

// ---- 004 PromptFloe ----

#[test]
fn promptfloe_defaults_and_explicit_admin() {
    let model = tower_api_key::presets::promptfloe::scope_model();
    assert_eq!(
        model.scopes().collect::<Vec<_>>(),
        ["read", "build", "deploy", "admin", "webhook:write"]
    );
    assert_eq!(model.creation_defaults(), ["read", "build"]);
    assert!(!model.creation_defaults().iter().any(|s| s == "admin"));
    // Defaults are for creation only: nothing is granted to every key.
    assert!(model.granted_to_all().is_empty());
    assert!(model.grants(none()).is_empty());
    assert_eq!(names(&model.grants(["deploy"])), ["deploy"]);

    // Nothing implies admin, and admin implies nothing.
    for scope in model.scopes().filter(|s| *s != "admin") {
        assert!(!model.grants([scope]).contains("admin"), "{scope}");
    }
    assert_eq!(names(&model.grants(["admin"])), ["admin"]);
    let all_but_admin = model.grants(["read", "build", "deploy", "webhook:write"]);
    assert!(!all_but_admin.contains("admin"));

    let defaults = model.grants(model.creation_defaults());
    assert!(model
        .requirement("read AND build")
        .unwrap()
        .is_satisfied_by(&defaults));
    assert!(!model
        .requirement("deploy")
        .unwrap()
        .is_satisfied_by(&defaults));
}

// ---- requirement expressions ----

#[test]
fn and_binds_tighter_than_or() {
    let model = tower_api_key::presets::promptfloe::scope_model();
    let implicit = model.requirement("read OR build AND deploy").unwrap();
    let explicit = model.requirement("read OR (build AND deploy)").unwrap();
    let other = model.requirement("(read OR build) AND deploy").unwrap();
    assert_eq!(implicit.to_string(), explicit.to_string());
    assert_ne!(implicit.to_string(), other.to_string());

    let cases: [&[&str]; 6] = [
        &[],
        &["read"],
        &["build"],
        &["deploy"],
        &["build", "deploy"],
        &["read", "deploy"],
    ];
    for held in cases {
        let grants = model.grants(held);
        assert_eq!(
            implicit.is_satisfied_by(&grants),
            explicit.is_satisfied_by(&grants),
            "{held:?}"
        );
    }
    // Where the two readings differ.
    let read_only = model.grants(["read"]);
    assert!(implicit.is_satisfied_by(&read_only));
    assert!(!other.is_satisfied_by(&read_only));
    let build_deploy = model.grants(["build", "deploy"]);
    assert!(implicit.is_satisfied_by(&build_deploy));
    assert!(other.is_satisfied_by(&build_deploy));
    assert!(!implicit.is_satisfied_by(&model.grants(["build"])));
}

#[test]
fn nested_expressions() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let req = model
        .requirement(
            "employees:write AND (summaries:read OR (observations:read AND webhooks:read))",
        )
        .unwrap();
    assert_eq!(
        req.to_string(),
        "employees:write AND (summaries:read OR (observations:read AND webhooks:read))"
    );
    assert!(req.is_satisfied_by(&model.grants(["employees:write", "summaries:write"])));
    assert!(req.is_satisfied_by(&model.grants([
        "employees:write",
        "observations:read",
        "webhooks:write"
    ])));
    assert!(!req.is_satisfied_by(&model.grants(["employees:write", "observations:read"])));
    assert!(!req.is_satisfied_by(&model.grants(["employees:read", "summaries:read"])));

    assert_eq!(
        req.missing(&model.grants(none())),
        ["employees:write", "summaries:read"]
    );
    assert_eq!(
        req.missing(&model.grants(["employees:write", "observations:read"])),
        ["summaries:read"]
    );
    assert_eq!(
        req.missing(&model.grants(["observations:read", "webhooks:read"])),
        ["employees:write"]
    );
    // employees:read is held, but only write satisfies the leaf.
    assert_eq!(
        req.missing(&model.grants(["employees:read", "summaries:read"])),
        ["employees:write"]
    );
    assert!(req
        .missing(&model.grants(["employees:write", "summaries:read"]))
        .is_empty());
}

#[test]
fn missing_for_the_documented_403() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let create_observation = model.requirement("observations:write").unwrap();
    let reader = model.grants(["observations:read"]);
    let missing = create_observation.missing(&reader);
    assert_eq!(missing, ["observations:write"]);
    assert_eq!(
        format!("Required scope: {}", missing.join(" ")),
        "Required scope: observations:write"
    );

    let both = model.all_of(["employees:write", "webhooks:write"]).unwrap();
    assert_eq!(both.to_string(), "employees:write AND webhooks:write");
    assert_eq!(
        both.missing(&model.grants(none())),
        ["employees:write", "webhooks:write"]
    );
    assert_eq!(
        both.missing(&model.grants(["webhooks:write"])),
        ["employees:write"]
    );

    let either = model
        .any_of(["summaries:write", "observations:write"])
        .unwrap();
    assert_eq!(either.to_string(), "summaries:write OR observations:write");
    assert_eq!(either.missing(&reader), ["summaries:write"]);
    assert!(either
        .missing(&model.grants(["observations:write"]))
        .is_empty());
}

#[test]
fn implications_apply_inside_requirements() {
    let model = tower_api_key::presets::workspace::scope_model();
    let req = model.requirement("read:all AND write:all").unwrap();
    assert!(req.is_satisfied_by(&model.grants(["admin"])));
    assert_eq!(req.missing(&model.grants(["read:all"])), ["write:all"]);
}

// ---- refused input ----

#[test]
fn bad_expressions_name_the_offending_text() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    for (expr, needle) in [
        ("", "empty requirement \"\""),
        ("  \t ", "empty requirement"),
        (
            "employees:read AND nope:read",
            "unknown scope \"nope:read\"",
        ),
        ("employees:admin", "unknown scope \"employees:admin\""),
        ("(employees:read", "unclosed '('"),
        ("employees:read)", "unmatched ')'"),
        ("((employees:read) OR webhooks:read", "unclosed '('"),
        ("employees:read AND", "dangling operator \"AND\""),
        ("OR employees:read", "dangling operator \"OR\""),
        (
            "employees:read OR OR webhooks:read",
            "dangling operator \"OR\"",
        ),
        ("()", "empty parentheses"),
        ("Employees:read", "invalid scope \"Employees:read\""),
        ("employees read", "unknown scope \"employees\""),
        (
            "employees:read webhooks:read",
            "missing operator before \"webhooks:read\"",
        ),
        ("employees:read & webhooks:read", "invalid scope \"&\""),
        ("employees::read", "invalid scope \"employees::read\""),
        ("employees:*", "invalid scope \"employees:*\""),
    ] {
        let message = err_of(model.requirement(expr));
        assert!(
            message.contains(needle),
            "{expr:?}: {message:?} lacks {needle:?}"
        );
        assert!(
            message.contains(&format!("{expr:?}")),
            "{expr:?}: {message:?}"
        );
    }
    assert!(err_of(model.all_of(["nope"])).contains("\"nope\""));
    assert!(err_of(model.any_of(["employees:read", "Nope"])).contains("\"Nope\""));
    assert!(model.all_of(none()).is_err());
}

#[test]
fn bad_models_name_the_offending_text() {
    let ok = || {
        ScopeModel::builder()
            .resource("users", ["read", "write"])
            .scope("admin")
    };
    for (builder, needle) in [
        (ScopeModel::builder().scope("users read"), "\"users read\""),
        (ScopeModel::builder().scope("Users:read"), "\"Users:read\""),
        (ScopeModel::builder().scope("users.read"), "\"users.read\""),
        (ScopeModel::builder().scope("users-read"), "\"users-read\""),
        (ScopeModel::builder().scope("a:b:c"), "\"a:b:c\""),
        (ScopeModel::builder().scope(""), "\"\""),
        (
            ScopeModel::builder().resource("Users", ["read"]),
            "\"Users\"",
        ),
        (
            ScopeModel::builder().resource("users", ["read", "Write"]),
            "\"Write\"",
        ),
        (ok().scope("admin"), "\"admin\" is declared twice"),
        (
            ok().resource("users", ["delete", "read"]),
            "\"users:read\" is declared twice",
        ),
        (ok().implies("root", ["admin"]), "\"root\""),
        (ok().implies("admin", ["root"]), "\"root\""),
        (ok().implies("admin", ["groups:*"]), "\"groups:*\""),
        (ok().action_implies("delete", "read"), "\"delete\""),
        (ok().granted_to_all(["session:read"]), "\"session:read\""),
        (ok().creation_defaults(["users:delete"]), "\"users:delete\""),
        (
            ok().creation_defaults(["admin", "admin"]),
            "\"admin\" is listed twice",
        ),
        (ok().preset("Ops", ["admin", "billing"]), "\"billing\""),
        (
            ok().preset("Ops", ["admin"]).preset("Ops", ["users:read"]),
            "\"Ops\"",
        ),
        (
            ok().action_implies("write", "read")
                .implies("admin", ["users:write"])
                .implies("users:read", ["admin"]),
            "users:read ⇒ admin ⇒ users:write ⇒ users:read",
        ),
    ] {
        let message = err_of(builder.build());
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    // The same scopes are fine with uppercase allowed.
    ScopeModel::builder()
        .scope("Users:read")
        .allow_uppercase(true)
        .build()
        .unwrap();
}

#[test]
fn cycles_are_detected() {
    let message = err_of(
        ScopeModel::builder()
            .scopes(["a", "b", "c"])
            .implies("a", ["b"])
            .implies("b", ["c"])
            .implies("c", ["a"])
            .build(),
    );
    assert!(message.contains("cycle"), "{message}");
    assert!(message.contains("a ⇒ b ⇒ c ⇒ a"), "{message}");

    // A cycle created by an action rule and a scope-level rule together.
    let message = err_of(
        ScopeModel::builder()
            .resource("users", ["read", "write"])
            .action_implies("write", "read")
            .implies("users:read", ["users:write"])
            .build(),
    );
    assert!(
        message.contains("users:read ⇒ users:write ⇒ users:read"),
        "{message}"
    );
}

#[test]
fn unknown_stored_scopes_grant_nothing() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let stored = [
        "employees:delete",
        "EMPLOYEES:READ",
        " employees:read",
        "employees:read\n",
        "employees",
        "*",
        "*:*",
        "",
        "employees:read OR webhooks:read",
    ];
    let grants = model.grants(stored);
    assert_eq!(names(&grants), ["session:read"]);
    assert_eq!(grants, model.grants(none()));
    let long = "x".repeat(10_000);
    assert_eq!(model.grants([long]), model.grants(none()));
    // Mixed with a real scope, only the real one counts.
    assert_eq!(
        names(&model.grants(["nope", "webhooks:read", "employees:delete"])),
        ["webhooks:read", "session:read"]
    );
    assert!(
        err_of(model.validate_scopes(["webhooks:read", "employees:delete"]))
            .contains("\"employees:delete\"")
    );
    model.validate_scopes(["webhooks:read"]).unwrap();
}

#[test]
fn grants_and_requirements_of_another_model_fail_closed() {
    let model = tower_api_key::presets::promptfloe::scope_model();
    let twin = tower_api_key::presets::promptfloe::scope_model();
    let req = model.requirement("read").unwrap();
    assert!(req.is_satisfied_by(&model.grants(["read"])));
    assert!(req.is_satisfied_by(&model.clone().grants(["read"])));
    assert!(!req.is_satisfied_by(&twin.grants(["read"])));
    assert_eq!(req.missing(&twin.grants(["read"])), ["read"]);
    assert!(!model.covers(&twin.grants(["admin", "read"]), &model.grants(["read"])));
}

#[test]
fn covers_refuses_privilege_escalation() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let creator = model.grants(["employees:write", "webhooks:read"]);
    assert!(model.covers(&creator, &model.grants(["employees:read"])));
    assert!(model.covers(
        &creator,
        &model.grants(["employees:write", "webhooks:read"])
    ));
    assert!(model.covers(&creator, &model.grants(none())));
    assert!(!model.covers(&creator, &model.grants(["webhooks:write"])));
    assert!(!model.covers(
        &creator,
        &model.grants(model.preset("Full access").unwrap())
    ));

    let workspace = tower_api_key::presets::workspace::scope_model();
    let admin = workspace.grants(["admin"]);
    assert!(workspace.covers(&admin, &workspace.grants(["read:all", "write:all"])));
    assert!(!workspace.covers(&workspace.grants(["read:all", "write:all"]), &admin));
}
