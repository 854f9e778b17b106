//! Scope-name syntax and the wildcard patterns the builder accepts.

use crate::error::ConfigError;

/// The longest scope name accepted, in bytes. Longer stored strings are ignored
/// without being hashed.
pub const MAX_SCOPE_LEN: usize = 64;

/// Checks one scope name: one or two non-empty segments of `[a-z0-9_]` (plus `A-Z`
/// when `allow_uppercase`), separated by a single `:`, at most [`MAX_SCOPE_LEN`]
/// bytes, and never the operator words `AND` or `OR`.
///
/// The error names the scope and the first thing wrong with it.
pub(crate) fn check_scope(scope: &str, allow_uppercase: bool) -> Result<(), ConfigError> {
    let reason = scope_problem(scope, allow_uppercase, false);
    match reason {
        None => Ok(()),
        Some(reason) => Err(ConfigError::new(format!(
            "invalid scope {scope:?}: {reason}"
        ))),
    }
}

/// Checks a pattern: a scope name, or one in which a whole segment is `*` (`*`,
/// `*:read`, `employees:*`).
pub(crate) fn check_pattern(pattern: &str, allow_uppercase: bool) -> Result<(), ConfigError> {
    match scope_problem(pattern, allow_uppercase, true) {
        None => Ok(()),
        Some(reason) => Err(ConfigError::new(format!(
            "invalid scope pattern {pattern:?}: {reason}"
        ))),
    }
}

/// Checks one segment on its own (a resource or an action name).
pub(crate) fn check_segment(
    what: &str,
    segment: &str,
    allow_uppercase: bool,
) -> Result<(), ConfigError> {
    let problem = if segment.contains(':') {
        Some("':' is not allowed here".to_owned())
    } else {
        scope_problem(segment, allow_uppercase, false)
    };
    match problem {
        None => Ok(()),
        Some(reason) => Err(ConfigError::new(format!(
            "invalid {what} {segment:?}: {reason}"
        ))),
    }
}

fn scope_problem(scope: &str, allow_uppercase: bool, wildcards: bool) -> Option<String> {
    if scope.is_empty() {
        return Some("it is empty".to_owned());
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Some(format!("longer than {MAX_SCOPE_LEN} bytes"));
    }
    if scope == "AND" || scope == "OR" {
        return Some("AND and OR are requirement operators".to_owned());
    }
    let mut segments = scope.split(':');
    let (first, second, extra) = (segments.next(), segments.next(), segments.next());
    if extra.is_some() {
        return Some("more than one ':'".to_owned());
    }
    for segment in [first, second].into_iter().flatten() {
        if segment.is_empty() {
            return Some("empty segment around ':'".to_owned());
        }
        if wildcards && segment == "*" {
            continue;
        }
        for c in segment.chars() {
            let ok = c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
                || (allow_uppercase && c.is_ascii_uppercase());
            if !ok {
                return Some(if c.is_ascii_uppercase() {
                    format!("uppercase {c:?} is not allowed (see `allow_uppercase`)")
                } else {
                    format!(
                        "character {c:?} is not allowed (expected [a-z0-9_] and one optional ':')"
                    )
                });
            }
        }
    }
    None
}

/// A parsed builder pattern.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pattern<'a> {
    /// An exact scope name.
    Exact(&'a str),
    /// `*`: every scope.
    All,
    /// `*:action`, `resource:*` or `*:*`; `None` stands for `*`.
    Pair {
        resource: Option<&'a str>,
        action: Option<&'a str>,
    },
}

impl<'a> Pattern<'a> {
    /// Splits an already checked pattern.
    pub(crate) fn new(pattern: &'a str) -> Self {
        if !pattern.split(':').any(|s| s == "*") {
            return Self::Exact(pattern);
        }
        let star = |s: &'a str| (s != "*").then_some(s);
        match pattern.split_once(':') {
            None => Self::All,
            Some((resource, action)) => Self::Pair {
                resource: star(resource),
                action: star(action),
            },
        }
    }

    /// Whether `scope` matches. `*` alone matches every scope; a two-segment pattern
    /// only matches `resource:action` scopes.
    pub(crate) fn matches(&self, scope: &str) -> bool {
        match *self {
            Self::Exact(name) => name == scope,
            Self::All => true,
            Self::Pair { resource, action } => match scope.split_once(':') {
                None => false,
                Some((r, a)) => {
                    resource.is_none_or(|want| want == r) && action.is_none_or(|want| want == a)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_shapes() {
        for ok in [
            "admin",
            "read:all",
            "team_summaries:write",
            "v2:read",
            "public_api",
        ] {
            check_scope(ok, false).unwrap();
        }
        check_scope("Employees:Read", true).unwrap();
    }

    #[test]
    fn refuses_and_names_bad_scopes() {
        for (bad, why) in [
            ("", "empty"),
            ("employees read", "' '"),
            ("Employees:read", "uppercase 'E'"),
            ("a::b", "more than one ':'"),
            ("a:", "empty segment"),
            (":read", "empty segment"),
            ("a:b:c", "more than one"),
            ("a.b", "'.'"),
            ("a-b", "'-'"),
            ("*", "'*'"),
            ("café", "'é'"),
        ] {
            let err = check_scope(bad, false).unwrap_err();
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
            assert!(err.message().contains(why), "{err}");
        }
        let long = "a".repeat(MAX_SCOPE_LEN + 1);
        assert!(check_scope(&long, false).is_err());
        assert!(check_scope(&long[1..], false).is_ok());
        assert!(check_scope("AND", true).is_err());
        assert!(check_scope("OR", true).is_err());
    }

    #[test]
    fn patterns_match() {
        for pattern in ["*", "*:read", "employees:*", "*:*", "admin"] {
            check_pattern(pattern, false).unwrap();
        }
        assert!(check_pattern("emp*:read", false).is_err());
        assert!(check_pattern("**", false).is_err());

        let all = Pattern::new("*");
        assert!(all.matches("admin") && all.matches("a:read"));
        let reads = Pattern::new("*:read");
        assert!(reads.matches("employees:read"));
        assert!(!reads.matches("employees:write"));
        assert!(!reads.matches("read"));
        let employees = Pattern::new("employees:*");
        assert!(employees.matches("employees:write"));
        assert!(!employees.matches("webhooks:write"));
        let pairs = Pattern::new("*:*");
        assert!(pairs.matches("a:b") && !pairs.matches("a"));
        let exact = Pattern::new("admin");
        assert!(exact.matches("admin") && !exact.matches("admin2"));
    }

    #[test]
    fn segments_refuse_colons() {
        check_segment("resource", "employees", false).unwrap();
        let err = check_segment("action", "re:ad", false).unwrap_err();
        assert!(err.message().contains("\"re:ad\""), "{err}");
    }
}
