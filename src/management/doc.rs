//! The key-management router's OpenAPI description (the `utoipa` feature): its
//! operations, request and response schemas, and every refusal, the guards' through
//! [`ApiKeyDoc`] and the operations' own rendered by the same responder.

use http::StatusCode;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder,
};

use super::handlers::{Operation as Op, DEFAULT_LIMIT, MAX_GRACE_SECONDS, MAX_LIMIT};
use super::{AUDIT_PATH, KEYS_PATH, KEY_PATH, ROTATE_PATH, USAGE_PATH};
use crate::key::KeyFormat;
use crate::manage::MAX_NAME_LEN;
use crate::openapi::ApiKeyDoc;
use crate::scope::{Requirement, ScopeModel};
use crate::store::audit_entry::AuditQuery;
use crate::store::{KeyCursor, KeyState};

/// The tag of the key operations.
pub(crate) const KEYS_TAG: &str = "api_keys";
/// The tag of the audit log.
pub(crate) const AUDIT_TAG: &str = "audit_log";

/// What the document is made from: each operation's guard description and
/// requirement, the key format and the scope model.
pub(crate) struct Described<'a> {
    pub(crate) guards: [(&'a ApiKeyDoc, &'a Requirement); 3],
    pub(crate) format: &'a KeyFormat,
    pub(crate) model: &'a ScopeModel,
}

/// The description of every operation, with the schemas they reference.
pub(crate) fn document(described: &Described<'_>) -> OpenApi {
    let [read, write, audit] = described.guards;
    let mut paths = Paths::new();
    for (path, method, op, (doc, requirement)) in [
        (KEYS_PATH, HttpMethod::Post, Op::Create, write),
        (KEYS_PATH, HttpMethod::Get, Op::List, read),
        (KEY_PATH, HttpMethod::Get, Op::Get, read),
        (KEY_PATH, HttpMethod::Patch, Op::Update, write),
        (KEY_PATH, HttpMethod::Delete, Op::Revoke, write),
        (ROTATE_PATH, HttpMethod::Post, Op::Rotate, write),
        (USAGE_PATH, HttpMethod::Get, Op::Usage, read),
        (AUDIT_PATH, HttpMethod::Get, Op::Audit, audit),
    ] {
        let mut operation = operation(op, described);
        doc.document_outcomes(&mut operation, &refusals(op), describe(op));
        doc.document(&mut operation, requirement);
        let item = PathItem::new(method, operation);
        match paths.paths.get_mut(path) {
            Some(existing) => existing.merge_operations(item),
            None => {
                paths.paths.insert(path.to_owned(), item);
            }
        }
    }
    let components = ComponentsBuilder::new()
        .schema("ApiKey", key_schema(described.format, false))
        .schema("CreatedApiKey", key_schema(described.format, true))
        .schema(
            "ApiKeyList",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "items",
                    ArrayBuilder::new().items(Ref::from_schema_name("ApiKey")),
                )
                .required("items")
                .property(
                    "next_cursor",
                    nullable_string()
                        .description(Some(
                            "The `cursor` of the next page; `null` on the last page.",
                        ))
                        .pattern(Some(KeyCursor::PATTERN)),
                )
                .required("next_cursor"),
        )
        .schema(
            "AuditLog",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("Audit entries, newest first."))
                .property(
                    "items",
                    ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)),
                )
                .required("items"),
        )
        .schema("UsageList", usage_list_schema())
        .schema("CreateApiKey", create_schema(described))
        .schema(
            "UpdateApiKey",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "Exactly one change: a new `name`, or new `scopes` (ones the caller holds).",
                ))
                .property(
                    "name",
                    name_schema().description(Some("The key's new name.")),
                )
                .property(
                    "scopes",
                    scopes_schema(described.model)
                        .description(Some("The key's new scopes: ones the caller holds.")),
                )
                .min_properties(Some(1))
                .max_properties(Some(1))
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false))),
        )
        .schema(
            "RotateApiKey",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "grace_seconds",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                        .maximum(Some(MAX_GRACE_SECONDS))
                        .description(Some(
                            "How long the old key keeps working (at most a year; 0 by \
                             default: it stops at once).",
                        )),
                )
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false))),
        )
        .build();
    let mut components = components;
    // The refusals every operation references: one error schema and one response
    // per status for the surface (the three guards share it).
    for (doc, _) in described.guards {
        let shared = doc.components();
        components.schemas.extend(shared.schemas);
        components.responses.extend(shared.responses);
    }
    OpenApiBuilder::new()
        .paths(paths)
        .components(Some(components))
        .tags(Some(vec![
            TagBuilder::new()
                .name(KEYS_TAG)
                .description(Some(
                    "API keys: create, list, read, re-scope, rotate, revoke.",
                ))
                .build(),
            TagBuilder::new()
                .name(AUDIT_TAG)
                .description(Some(
                    "The audit log of key changes and state-changing requests.",
                ))
                .build(),
        ]))
        .build()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn nullable_string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

fn date_time(nullable: bool) -> ObjectBuilder {
    let builder = if nullable {
        nullable_string()
    } else {
        string()
    };
    builder.format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

fn environments(format: &KeyFormat) -> Vec<String> {
    format
        .environments()
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect()
}

fn scopes_schema(model: &ScopeModel) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(string().enum_values(Some(model.scopes().map(str::to_owned).collect::<Vec<_>>())))
}

/// A key as listed, or (`created`) with its secret.
fn key_schema(format: &KeyFormat, created: bool) -> ObjectBuilder {
    let environment = if format.environments().is_empty() {
        ObjectBuilder::new().schema_type(Type::Null)
    } else {
        nullable_string().enum_values(Some(
            environments(format)
                .into_iter()
                .map(serde_json::Value::from)
                .chain([serde_json::Value::Null])
                .collect::<Vec<_>>(),
        ))
    };
    let mut schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(if created {
            "A new key: `key` is the full key, shown this once."
        } else {
            "A key, without its secret."
        }))
        .property("id", string())
        .property("name", string())
        .property(
            "prefix",
            string().description(Some("The key's public start.")),
        )
        .property("environment", environment)
        .property("scopes", ArrayBuilder::new().items(string()))
        .property(
            "status",
            string().enum_values(Some(
                KeyState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            )),
        )
        .property("created_at", date_time(false))
        .property("expires_at", date_time(true))
        .property("last_used_at", date_time(true))
        .property("created_by", nullable_string())
        .property("revoked_at", date_time(true))
        .property(
            "superseded_by",
            nullable_string().description(Some("The key that replaced this one by rotation.")),
        )
        .property(
            "grace_ends_at",
            date_time(true).description(Some("When a key replaced by rotation stops working.")),
        );
    for name in [
        "id",
        "name",
        "prefix",
        "environment",
        "scopes",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
        "created_by",
        "revoked_at",
        "superseded_by",
        "grace_ends_at",
    ] {
        schema = schema.required(name);
    }
    if created {
        schema = schema
            .property(
                "key",
                string().description(Some("The full key, shown this once.")),
            )
            .required("key");
    }
    schema
}

fn create_schema(described: &Described<'_>) -> ObjectBuilder {
    let mut schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "name",
            name_schema().description(Some(
                "Not blank, at most 100 characters, no control characters.",
            )),
        )
        .required("name")
        .property(
            "scopes",
            scopes_schema(described.model).description(Some(
                "Scopes the caller holds itself; the scope model's creation defaults when \
                 absent.",
            )),
        )
        .property(
            "expires_at",
            date_time(true).description(Some(
                "When the key stops working: a time in the future (400 otherwise), and no \
                 later than the calling key's own expiry if it has one (403 otherwise, also \
                 when absent: no key outlives its maker). Never, when absent and the caller \
                 never expires.",
            )),
        )
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    let environments = environments(described.format);
    if !environments.is_empty() {
        schema = schema.property(
            "environment",
            string()
                .enum_values(Some(environments))
                .description(Some("The caller's own environment when absent.")),
        );
    }
    schema
}

fn json_body(schema: &str, required: bool) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(schema))),
        )
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .build()
}

fn id_parameter() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The key's id."))
        .schema(Some(string()))
        .build()
}

fn query(name: &str, description: &str, schema: ObjectBuilder) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn ok(status: &str, description: &str, schema: &str) -> (String, RefOr<utoipa::openapi::Response>) {
    (
        status.to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name(schema))),
                )
                .build(),
        ),
    )
}

/// A key's name as the manager accepts it: 1 to 100 characters, not blank, no
/// control characters.
fn name_schema() -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_LEN))
        .pattern(Some(
            r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        ))
}

/// `{"items": [bucket…], "next_from": …}`.
fn usage_list_schema() -> Schema {
    let count = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .description(Some(description))
    };
    let bucket = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("key_id", string())
        .required("key_id")
        .property(
            "hour",
            string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some("The start of the hour (UTC).")),
        )
        .required("hour")
        .property("admitted", count("Let through every guard and limit."))
        .required("admitted")
        .property("refused_scope", count("Refused for missing scopes."))
        .required("refused_scope")
        .property("refused_rate_limit", count("Refused by the rate limit."))
        .required("refused_rate_limit")
        .property("refused_quota", count("Refused by the quota."))
        .required("refused_quota");
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("items", ArrayBuilder::new().items(bucket))
        .required("items")
        .property(
            "next_from",
            nullable_string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(
                    "The `from` of the next page when the range was longer than 31 days; `null` otherwise.",
                )),
        )
        .required("next_from")
        .into()
}

/// The operation of `op`, before its refusals.
fn operation(op: Op, described: &Described<'_>) -> Operation {
    let (id, tag, summary) = match op {
        Op::Create => ("create_key", KEYS_TAG, "Creates a key; the full key is in the answer, once."),
        Op::List => ("list_keys", KEYS_TAG, "The keys of the caller's owner, a page at a time, newest first."),
        Op::Get => ("get_key", KEYS_TAG, "One key."),
        Op::Update => ("update_key", KEYS_TAG, "Renames a key, or replaces its scopes."),
        Op::Revoke => ("revoke_key", KEYS_TAG, "Revokes a key: the next request with it is refused."),
        Op::Rotate => ("rotate_key", KEYS_TAG, "Replaces a key with a new one of the same scopes; the old one works on for the grace period."),
        Op::Usage => ("get_key_usage", KEYS_TAG, "A key's verifications per hour, by outcome, oldest first. A revoked key's usage stays readable (for billing and disputes) until the retention drops it, although the key itself is gone from `GET /api_keys/{id}`."),
        Op::Audit => ("audit_log", AUDIT_TAG, "The owner's audit log: key changes and state-changing requests, newest first."),
    };
    let mut builder = OperationBuilder::new()
        .operation_id(Some(id))
        .tag(tag)
        .summary(Some(summary));
    if matches!(
        op,
        Op::Get | Op::Update | Op::Revoke | Op::Rotate | Op::Usage
    ) {
        builder = builder.parameter(id_parameter());
    }
    let environments = environments(described.format);
    builder = match op {
        Op::Create => builder
            .request_body(Some(json_body("CreateApiKey", true)))
            .response_with(ok(
                "201",
                "Created: `key` is shown this once.",
                "CreatedApiKey",
            )),
        Op::List => {
            let mut builder = builder;
            if !environments.is_empty() {
                builder = builder.parameter(query(
                    "environment",
                    "Only keys of this environment.",
                    string().enum_values(Some(environments)),
                ));
            }
            builder
                .parameter(query(
                    "status",
                    "Only keys in this state now.",
                    string().enum_values(Some(
                        KeyState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    )),
                ))
                .parameter(query(
                    "name_prefix",
                    "Only keys whose name starts with this (case-sensitive).",
                    string().max_length(Some(MAX_NAME_LEN)),
                ))
                .parameter(query(
                    "limit",
                    &format!("At most this many keys ({DEFAULT_LIMIT} by default)."),
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(MAX_LIMIT)),
                ))
                .parameter(query(
                    "cursor",
                    "The `next_cursor` of the page before, as it came.",
                    string().pattern(Some(KeyCursor::PATTERN)),
                ))
                .response_with(ok(
                    "200",
                    "A page of keys, without their secrets.",
                    "ApiKeyList",
                ))
        }
        Op::Get => builder.response_with(ok("200", "The key, without its secret.", "ApiKey")),
        Op::Update => builder
            .request_body(Some(json_body("UpdateApiKey", true)))
            .response_with(ok("200", "The updated key.", "ApiKey")),
        Op::Revoke => builder.response(
            "204",
            ResponseBuilder::new()
                .description("Revoked (or already revoked).")
                .build(),
        ),
        Op::Rotate => builder
            .request_body(Some(json_body("RotateApiKey", false)))
            .response_with(ok(
                "201",
                "The new key: `key` is shown this once.",
                "CreatedApiKey",
            )),
        Op::Usage => builder
            .parameter(query(
                "from",
                "The first hour (buckets whose hour starts at or after it); 24 hours before `to` by default.",
                string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            ))
            .parameter(query(
                "to",
                "The end (buckets whose hour starts before it); now by default. At most 31 days after `from` are answered; `next_from` starts the rest.",
                string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            ))
            .response_with(ok("200", "The key's hourly buckets, oldest first; hours without a verification have none.", "UsageList")),
        Op::Audit => builder
            .parameter(query(
                "api_key_id",
                "Only the entries of this key.",
                string().pattern(Some("^[A-Za-z0-9_-]{1,23}$")),
            ))
            .parameter(query(
                "limit",
                "At most this many entries (1000 by default).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(AuditQuery::MAX_LIMIT)),
            ))
            .response_with(ok("200", "Audit entries, newest first.", "AuditLog")),
    };
    builder.build()
}

trait ResponseWith {
    fn response_with(self, response: (String, RefOr<utoipa::openapi::Response>)) -> Self;
}

impl ResponseWith for OperationBuilder {
    fn response_with(self, (status, response): (String, RefOr<utoipa::openapi::Response>)) -> Self {
        self.response(status, response)
    }
}

/// The statuses of the operation's own refusals, as the handlers answer them (the
/// examples are in the surface's shared responses).
fn refusals(op: Op) -> Vec<StatusCode> {
    let mut statuses = vec![StatusCode::FORBIDDEN];
    if matches!(
        op,
        Op::Create | Op::Update | Op::Rotate | Op::List | Op::Audit | Op::Usage
    ) {
        statuses.push(StatusCode::BAD_REQUEST);
    }
    if matches!(op, Op::Create | Op::Update | Op::Rotate) {
        statuses.push(StatusCode::PAYLOAD_TOO_LARGE);
        statuses.push(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    if matches!(
        op,
        Op::Get | Op::Update | Op::Revoke | Op::Rotate | Op::Usage
    ) {
        statuses.push(StatusCode::NOT_FOUND);
    }
    if matches!(op, Op::Update | Op::Revoke | Op::Rotate) {
        statuses.push(StatusCode::CONFLICT);
    }
    statuses
}

/// What each of the operation's own refusal statuses means.
fn describe(op: Op) -> impl Fn(StatusCode) -> String {
    move |status| {
        match status {
            StatusCode::BAD_REQUEST => match op {
                Op::Create => "The body is invalid: not the operation's JSON, a blank or too long name, an unknown scope or environment, or an expiry in the past (`invalid_request`).",
                Op::List => "A query parameter is invalid: a limit out of range, an unknown status or environment, or a cursor this API did not return (`invalid_request`).",
                Op::Audit => "A query parameter is invalid (`invalid_request`).",
                Op::Usage => "`from` or `to` is not an RFC 3339 date-time (`invalid_request`).",
                _ => "The body is invalid (`invalid_request`).",
            },
            StatusCode::FORBIDDEN => match op {
                Op::Create => "A key-management authority rule refused it (`permission_denied`): a scope the caller does not hold, another environment, an expiry later than the caller's own (or none while the caller expires), or a caller replaced by a rotation.",
                Op::Update => "A key-management authority rule refused it (`permission_denied`): the key holds, or would be given, a scope the caller does not hold, or the caller was replaced by a rotation.",
                Op::Rotate => "A key-management authority rule refused it (`permission_denied`): the key holds a scope the caller does not, or expires later than the caller (the new key would outlive it), or the caller was replaced by a rotation.",
                Op::Revoke => "A key-management authority rule refused it (`permission_denied`): the key holds a scope the caller does not, or the caller was replaced by a rotation.",
                _ => "A key-management authority rule refused it (`permission_denied`): the caller was replaced by a rotation.",
            },
            StatusCode::NOT_FOUND => match op {
                Op::Get => "No such key: a missing id, and another organization's or another environment's key, get the same answer (`not_found`, \"No such key\"); or the key was revoked: the list and the audit log still show it.",
                _ => "No such key: a missing id, and another organization's or another environment's key, get the same answer (`not_found`, \"No such key\").",
            },
            StatusCode::CONFLICT => "The key is revoked, expired or already rotated, or changed while this ran (`conflict`).",
            StatusCode::PAYLOAD_TOO_LARGE => "The body is over 16 KiB (`payload_too_large`).",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "The body is not `application/json` (`unsupported_media_type`).",
            _ => "Refused.",
        }
        .to_owned()
    }
}
