//! [`ScopeModelBuilder`]: declarations, implication rules, defaults and presets, checked
//! once by [`ScopeModelBuilder::build`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::bits::{self, Bits};
use super::model::{Inner, ScopeModel};
use super::syntax::{check_pattern, check_scope, check_segment, Pattern};
use crate::error::ConfigError;

/// The most scopes one model may declare.
pub const MAX_SCOPES: usize = 4096;

#[derive(Debug, Clone)]
enum Declaration {
    Scope(String),
    Resource(String, Vec<String>),
}

/// Builds a [`ScopeModel`]. Created by [`ScopeModel::builder`].
///
/// Every method records what it is given; nothing is checked until
/// [`build`](Self::build), which reports the first mistake as a [`ConfigError`] naming
/// the offending text. The order of calls does not matter, except that scopes are
/// listed in declaration order.
///
/// # Scope syntax
///
/// A scope is one or two non-empty segments of `[a-z0-9_]`, separated by one `:`
/// (`admin`, `read:all`, `team_summaries:write`), at most
/// [`MAX_SCOPE_LEN`](super::MAX_SCOPE_LEN) bytes. Nothing else is accepted: no
/// spaces, dots, dashes or non-ASCII, so a scope list can always be written
/// space-separated (as in `WWW-Authenticate: Bearer scope="a b"`), and uppercase only
/// after [`allow_uppercase(true)`](Self::allow_uppercase). `AND` and `OR` are never
/// scope names.
///
/// # Patterns
///
/// [`implies`](Self::implies) and [`preset`](Self::preset) also take patterns, where a
/// whole segment is `*`: `*` is every declared scope, `*:read` every
/// `resource:read` scope, `employees:*` every action of `employees`. A pattern that
/// matches nothing is an error.
///
/// # Example
///
/// ```
/// use tower_api_key::ScopeModel;
///
/// // A read:all umbrella over resource scopes, in the manner of the workspace API.
/// let model = ScopeModel::builder()
///     .resource("users", ["read", "write"])
///     .resource("projects", ["read", "write"])
///     .scope("read:all")
///     .scope("admin")
///     .action_implies("write", "read")
///     .implies("read:all", ["*:read"])
///     .implies("admin", ["read:all", "users:write", "projects:write"])
///     .creation_defaults(["read:all"])
///     .preset("Read-only", ["*:read"])
///     .build()?;
///
/// let grants = model.grants(["read:all"]);
/// assert!(grants.contains("projects:read"));
/// assert!(!grants.contains("projects:write"));
/// assert_eq!(model.preset("Read-only").unwrap(), ["users:read", "projects:read"]);
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct ScopeModelBuilder {
    declarations: Vec<Declaration>,
    action_rules: Vec<(String, String)>,
    implications: Vec<(String, Vec<String>)>,
    granted_to_all: Vec<String>,
    creation_defaults: Vec<String>,
    presets: Vec<(String, Vec<String>)>,
    allow_uppercase: bool,
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

impl ScopeModelBuilder {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Declares `name:action` for each action, in order: `resource("employees",
    /// ["read", "write"])` declares `employees:read` and `employees:write`.
    pub fn resource(
        mut self,
        name: impl Into<String>,
        actions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.declarations
            .push(Declaration::Resource(name.into(), strings(actions)));
        self
    }

    /// Declares one scope, bare (`admin`) or `resource:action`.
    pub fn scope(mut self, name: impl Into<String>) -> Self {
        self.declarations.push(Declaration::Scope(name.into()));
        self
    }

    /// Declares several scopes, in order.
    pub fn scopes(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.declarations
            .extend(names.into_iter().map(|n| Declaration::Scope(n.into())));
        self
    }

    /// For every resource that declares both actions, `resource:action` implies
    /// `resource:implied`: `action_implies("write", "read")` makes `employees:write`
    /// grant `employees:read`. An error when no resource has both.
    pub fn action_implies(mut self, action: impl Into<String>, implied: impl Into<String>) -> Self {
        self.action_rules.push((action.into(), implied.into()));
        self
    }

    /// Holding `scope` grants each of `implied` too. Implications apply transitively;
    /// a cycle is an error. `implied` may hold [patterns](Self#patterns), which never
    /// match `scope` itself: `implies("read:all", ["*:read"])`.
    pub fn implies(
        mut self,
        scope: impl Into<String>,
        implied: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.implications.push((scope.into(), strings(implied)));
        self
    }

    /// Scopes every key holds, whatever it was given (Performance Blocks'
    /// `session:read`). Calls add up.
    pub fn granted_to_all(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.granted_to_all.extend(strings(scopes));
        self
    }

    /// Scopes a new key gets when its creator picks none (PromptFloe's `read` and
    /// `build`). Unlike [`granted_to_all`](Self::granted_to_all) they are only a
    /// default for creation: a key created with other scopes does not hold them.
    /// Calls add up.
    pub fn creation_defaults(
        mut self,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.creation_defaults.extend(strings(scopes));
        self
    }

    /// A named list of scopes offered when creating a key ("Read-only"). `scopes` may
    /// hold [patterns](Self#patterns), expanded in declaration order.
    pub fn preset(
        mut self,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.presets.push((name.into(), strings(scopes)));
        self
    }

    /// Whether scope names may contain `A-Z`. Off by default. Scopes always match
    /// case-sensitively: a stored `Employees:read` never grants `employees:read`.
    pub fn allow_uppercase(mut self, allow: bool) -> Self {
        self.allow_uppercase = allow;
        self
    }

    /// Checks everything and builds the model: every implication closure is computed
    /// here, once, as a bitset.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the offending text for: an invalid scope name,
    /// resource or action; a scope declared twice; a resource with no actions; no
    /// scopes at all, or more than [`MAX_SCOPES`]; an implication, default or preset
    /// naming an undeclared scope, or a pattern or action rule matching nothing; an
    /// implication cycle (reported as its path, `a ⇒ b ⇒ a`); a scope listed twice in
    /// the defaults or in one preset; a preset with an empty name, no scopes, or
    /// declared twice.
    pub fn build(self) -> Result<ScopeModel, ConfigError> {
        let upper = self.allow_uppercase;

        let mut names: Vec<String> = Vec::new();
        for declaration in self.declarations {
            match declaration {
                Declaration::Scope(scope) => {
                    check_scope(&scope, upper)?;
                    names.push(scope);
                }
                Declaration::Resource(resource, actions) => {
                    check_segment("resource", &resource, upper)?;
                    if actions.is_empty() {
                        return Err(ConfigError::new(format!(
                            "resource {resource:?} declares no actions"
                        )));
                    }
                    for action in actions {
                        check_segment("action", &action, upper)?;
                        names.push(format!("{resource}:{action}"));
                    }
                }
            }
        }
        if names.is_empty() {
            return Err(ConfigError::new("a scope model needs at least one scope"));
        }
        if names.len() > MAX_SCOPES {
            return Err(ConfigError::new(format!(
                "{} scopes declared, more than the {MAX_SCOPES} allowed",
                names.len()
            )));
        }
        let mut index: HashMap<Box<str>, u16, ahash::RandomState> =
            HashMap::with_capacity_and_hasher(names.len(), ahash::RandomState::new());
        for (i, name) in names.iter().enumerate() {
            // MAX_SCOPES fits in u16.
            if index.insert(name.as_str().into(), i as u16).is_some() {
                return Err(ConfigError::new(format!(
                    "scope {name:?} is declared twice"
                )));
            }
        }
        let lookup = |scope: &str| index.get(scope).map(|&i| usize::from(i));

        // Direct implications.
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for (action, implied) in &self.action_rules {
            check_segment("action", action, upper)?;
            check_segment("action", implied, upper)?;
            let mut matched = false;
            for (i, name) in names.iter().enumerate() {
                let Some((resource, a)) = name.split_once(':') else {
                    continue;
                };
                if a != action {
                    continue;
                }
                if let Some(j) = lookup(&format!("{resource}:{implied}")) {
                    edges[i].push(j);
                    matched = true;
                }
            }
            if !matched {
                return Err(ConfigError::new(format!(
                    "action rule {action:?} ⇒ {implied:?} matches no resource declaring both actions"
                )));
            }
        }
        for (scope, implied) in &self.implications {
            let Some(from) = lookup(scope) else {
                return Err(ConfigError::new(format!(
                    "implication from undeclared scope {scope:?}"
                )));
            };
            if implied.is_empty() {
                return Err(ConfigError::new(format!(
                    "implication of {scope:?} lists no scopes"
                )));
            }
            for target in implied {
                check_pattern(target, upper)
                    .map_err(|e| ConfigError::new(format!("implication of {scope:?}: {e}")))?;
                match Pattern::new(target) {
                    Pattern::Exact(name) => match lookup(name) {
                        Some(to) => edges[from].push(to),
                        None => {
                            return Err(ConfigError::new(format!(
                                "implication {scope:?} ⇒ {target:?}: {target:?} is not declared"
                            )))
                        }
                    },
                    pattern => {
                        let before = edges[from].len();
                        edges[from].extend(
                            (0..names.len()).filter(|&j| j != from && pattern.matches(&names[j])),
                        );
                        if edges[from].len() == before {
                            return Err(ConfigError::new(format!(
                                "implication {scope:?} ⇒ {target:?}: the pattern matches no declared scope"
                            )));
                        }
                    }
                }
            }
        }
        for targets in &mut edges {
            targets.sort_unstable();
            targets.dedup();
        }

        // Closures, children before parents.
        let words = bits::words_for(names.len());
        let order = finish_order(&edges, &names)?;
        let mut closures = vec![0u64; names.len() * words];
        let mut closure = vec![0u64; words];
        for v in order {
            closure.fill(0);
            closure[v / 64] |= 1 << (v % 64);
            for &w in &edges[v] {
                for (c, x) in closure
                    .iter_mut()
                    .zip(&closures[w * words..(w + 1) * words])
                {
                    *c |= x;
                }
            }
            closures[v * words..(v + 1) * words].copy_from_slice(&closure);
        }

        let granted_to_all = exact_list("granted_to_all", &self.granted_to_all, &lookup)?;
        let creation_defaults = exact_list("creation_defaults", &self.creation_defaults, &lookup)?;
        let mut base = Bits::zero(words);
        for scope in &granted_to_all {
            if let Some(i) = lookup(scope) {
                base.union_with(&closures[i * words..(i + 1) * words]);
            }
        }

        let mut presets: Vec<(String, Vec<String>)> = Vec::with_capacity(self.presets.len());
        for (name, scopes) in self.presets {
            if name.trim().is_empty() {
                return Err(ConfigError::new(format!("preset name {name:?} is empty")));
            }
            if presets.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::new(format!(
                    "preset {name:?} is declared twice"
                )));
            }
            let expanded = expand_preset(&name, &scopes, &names, &lookup, upper)?;
            presets.push((name, expanded));
        }

        let implications = edges
            .iter()
            .enumerate()
            .flat_map(|(from, to)| to.iter().map(move |&to| (from as u16, to as u16)))
            .collect();
        Ok(ScopeModel::from_inner(Arc::new(Inner {
            names: names.into_iter().map(String::into_boxed_str).collect(),
            index,
            words,
            closures: closures.into_boxed_slice(),
            base,
            implications,
            granted_to_all,
            creation_defaults,
            presets,
            allow_uppercase: upper,
        })))
    }
}

/// A list of exact, declared, distinct scope names.
fn exact_list(
    what: &str,
    scopes: &[String],
    lookup: &impl Fn(&str) -> Option<usize>,
) -> Result<Vec<String>, ConfigError> {
    let mut seen = HashSet::new();
    for scope in scopes {
        if lookup(scope).is_none() {
            return Err(ConfigError::new(format!(
                "{what}: scope {scope:?} is not declared"
            )));
        }
        if !seen.insert(scope.as_str()) {
            return Err(ConfigError::new(format!(
                "{what}: scope {scope:?} is listed twice"
            )));
        }
    }
    Ok(scopes.to_vec())
}

fn expand_preset(
    name: &str,
    scopes: &[String],
    names: &[String],
    lookup: &impl Fn(&str) -> Option<usize>,
    upper: bool,
) -> Result<Vec<String>, ConfigError> {
    if scopes.is_empty() {
        return Err(ConfigError::new(format!("preset {name:?} lists no scopes")));
    }
    let mut exact = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        check_pattern(scope, upper)
            .map_err(|e| ConfigError::new(format!("preset {name:?}: {e}")))?;
        match Pattern::new(scope) {
            Pattern::Exact(scope) => {
                if lookup(scope).is_none() {
                    return Err(ConfigError::new(format!(
                        "preset {name:?}: scope {scope:?} is not declared"
                    )));
                }
                if !exact.insert(scope) {
                    return Err(ConfigError::new(format!(
                        "preset {name:?}: scope {scope:?} is listed twice"
                    )));
                }
                if !out.iter().any(|s| s == scope) {
                    out.push(scope.to_owned());
                }
            }
            pattern => {
                let mut matched = false;
                for declared in names.iter().filter(|n| pattern.matches(n)) {
                    matched = true;
                    if !out.contains(declared) {
                        out.push(declared.clone());
                    }
                }
                if !matched {
                    return Err(ConfigError::new(format!(
                        "preset {name:?}: pattern {scope:?} matches no declared scope"
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// A depth-first finishing order of the implication graph (every scope after all the
/// scopes it implies), or the first cycle found, as `a ⇒ b ⇒ a`.
fn finish_order(edges: &[Vec<usize>], names: &[String]) -> Result<Vec<usize>, ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    let mut order = Vec::with_capacity(edges.len());
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if mark[root] != Mark::New {
            continue;
        }
        mark[root] = Mark::Open;
        stack.push((root, 0));
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = edges[v].get(*next) {
                *next += 1;
                match mark[w] {
                    Mark::New => {
                        mark[w] = Mark::Open;
                        stack.push((w, 0));
                    }
                    Mark::Open => {
                        let start = stack.iter().position(|&(s, _)| s == w).unwrap_or(0);
                        let mut path = String::new();
                        for &(s, _) in &stack[start..] {
                            let _ = write!(path, "{} ⇒ ", names[s]);
                        }
                        path.push_str(&names[w]);
                        return Err(ConfigError::new(format!("implication cycle: {path}")));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[v] = Mark::Done;
                order.push(v);
                stack.pop();
            }
        }
    }
    Ok(order)
}

// Building a model.
impl ScopeModel {
    /// A builder for a custom model.
    pub fn builder() -> ScopeModelBuilder {
        ScopeModelBuilder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(builder: ScopeModelBuilder) -> String {
        builder.build().unwrap_err().message().to_owned()
    }

    #[test]
    fn closures_are_transitive() {
        let model = ScopeModel::builder()
            .scopes(["a", "b", "c", "d"])
            .implies("a", ["b"])
            .implies("b", ["c"])
            .build()
            .unwrap();
        let held: Vec<_> = model.grants(["a"]).iter().map(str::to_owned).collect();
        assert_eq!(held, ["a", "b", "c"]);
        assert_eq!(model.grants(["c"]).iter().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn cycles_are_reported_as_paths() {
        let message = err(ScopeModel::builder()
            .scopes(["a", "b", "c"])
            .implies("a", ["b"])
            .implies("b", ["c"])
            .implies("c", ["a"]));
        assert!(message.contains("a ⇒ b ⇒ c ⇒ a"), "{message}");

        let message = err(ScopeModel::builder().scope("a").implies("a", ["a"]));
        assert!(message.contains("a ⇒ a"), "{message}");

        // Two umbrella scopes that imply each other through a pattern.
        let message = err(ScopeModel::builder()
            .scopes(["x:read", "y:read"])
            .implies("x:read", ["*:read"])
            .implies("y:read", ["*:read"]));
        assert!(message.contains("x:read ⇒ y:read ⇒ x:read"), "{message}");
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let model = ScopeModel::builder()
            .scopes(["top", "l", "r", "bottom"])
            .implies("top", ["l", "r"])
            .implies("l", ["bottom"])
            .implies("r", ["bottom"])
            .build()
            .unwrap();
        assert_eq!(model.grants(["top"]).len(), 4);
    }

    #[test]
    fn declaration_mistakes_name_the_text() {
        for (builder, needle) in [
            (ScopeModel::builder().scope("a b"), "\"a b\""),
            (ScopeModel::builder().scope("Admin"), "\"Admin\""),
            (
                ScopeModel::builder().scopes(["a", "a"]),
                "\"a\" is declared twice",
            ),
            (
                ScopeModel::builder()
                    .resource("x", ["read"])
                    .scope("x:read"),
                "\"x:read\" is declared twice",
            ),
            (
                ScopeModel::builder().resource("x", [""; 0]),
                "\"x\" declares no actions",
            ),
            (
                ScopeModel::builder().resource("Bad", ["read"]),
                "resource \"Bad\"",
            ),
            (
                ScopeModel::builder().resource("x", ["re ad"]),
                "action \"re ad\"",
            ),
            (ScopeModel::builder(), "at least one scope"),
        ] {
            let message = err(builder);
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn references_must_be_declared() {
        let base = || ScopeModel::builder().resource("x", ["read", "write"]);
        for (builder, needle) in [
            (base().implies("nope", ["x:read"]), "\"nope\""),
            (
                base().implies("x:write", ["nope"]),
                "\"nope\" is not declared",
            ),
            (base().implies("x:write", ["y:*"]), "\"y:*\""),
            (base().implies("x:write", ["X:read"]), "\"X:read\""),
            (
                base().implies("x:write", [""; 0]),
                "\"x:write\" lists no scopes",
            ),
            (
                base().action_implies("delete", "read"),
                "\"delete\" ⇒ \"read\"",
            ),
            (base().granted_to_all(["nope"]), "\"nope\" is not declared"),
            (
                base().granted_to_all(["x:read", "x:read"]),
                "\"x:read\" is listed twice",
            ),
            (base().granted_to_all(["*:read"]), "\"*:read\""),
            (base().creation_defaults(["nope"]), "\"nope\""),
            (base().preset("P", ["nope"]), "\"nope\""),
            (base().preset("P", ["*:delete"]), "\"*:delete\""),
            (
                base().preset("P", ["x:read", "x:read"]),
                "\"x:read\" is listed twice",
            ),
            (base().preset("P", [""; 0]), "\"P\" lists no scopes"),
            (base().preset(" ", ["x:read"]), "\" \""),
            (
                base().preset("P", ["x:read"]).preset("P", ["x:write"]),
                "\"P\" is declared twice",
            ),
        ] {
            let message = err(builder);
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn presets_expand_patterns_in_declaration_order() {
        let model = ScopeModel::builder()
            .resource("a", ["read", "write"])
            .resource("b", ["read", "write"])
            .scope("c")
            .preset("reads", ["*:read"])
            .preset("mixed", ["c", "*:read", "a:read"])
            .preset("everything", ["*"])
            .preset("pairs", ["*:*"])
            .preset("b", ["b:*"])
            .build()
            .unwrap();
        assert_eq!(model.preset("reads").unwrap(), ["a:read", "b:read"]);
        assert_eq!(model.preset("mixed").unwrap(), ["c", "a:read", "b:read"]);
        assert_eq!(model.preset("everything").unwrap().len(), 5);
        assert_eq!(model.preset("pairs").unwrap().len(), 4);
        assert_eq!(model.preset("b").unwrap(), ["b:read", "b:write"]);
        assert_eq!(model.preset("nope"), None);
    }

    #[test]
    fn large_models_work() {
        let model = ScopeModel::builder()
            .resource("r", (0..300).map(|i| format!("a{i}")))
            .implies("r:a0", ["r:a299"])
            .build()
            .unwrap();
        let grants = model.grants(["r:a0", "r:a150"]);
        assert_eq!(
            grants.iter().collect::<Vec<_>>(),
            ["r:a0", "r:a150", "r:a299"]
        );
        let too_many =
            ScopeModel::builder().resource("r", (0..=MAX_SCOPES).map(|i| format!("a{i}")));
        assert!(err(too_many).contains("4097 scopes"));
    }
}
