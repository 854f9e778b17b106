//! [`Requirement`]: a parsed scope expression, compiled to bitsets.

use std::fmt;
use std::sync::Arc;

use super::bits;
use super::grants::Grants;
use super::model::{Inner, ScopeModel};
use super::syntax::check_scope;
use crate::error::ConfigError;

/// The longest requirement expression accepted, in bytes.
const MAX_EXPR_LEN: usize = 4096;
/// The deepest nesting of parentheses accepted.
const MAX_DEPTH: usize = 32;
/// The most alternatives (terms of the disjunctive normal form) a requirement may
/// expand to.
const MAX_TERMS: usize = 256;

/// A parsed requirement: which scopes a route needs.
///
/// Made once, when the router is built, by [`ScopeModel::requirement`],
/// [`ScopeModel::all_of`] or [`ScopeModel::any_of`]. It is compiled to a list of
/// alternatives, each a bitset of scopes, so [`is_satisfied_by`](Self::is_satisfied_by)
/// is a handful of word operations and never allocates. Cloning is cheap (two `Arc`s).
///
/// `Display` writes the normalized expression: operators in capitals, single spaces,
/// nested groups flattened, and every group inside another in parentheses
/// (`a OR (b AND c)`), so it reads the same whoever reads it and parses back to the
/// same requirement.
///
/// ```
/// use tower_api_key::ScopeModel;
///
/// let model = tower_api_key::presets::workspace::scope_model();
/// let needed = model.requirement("(write:all)  OR admin")?;
/// assert_eq!(needed.to_string(), "write:all OR admin");
///
/// let reader = model.grants(["read:all"]);
/// assert!(!needed.is_satisfied_by(&reader));
/// assert_eq!(needed.missing(&reader), ["write:all"]);
/// assert!(needed.is_satisfied_by(&model.grants(["admin"])));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Requirement {
    model: Arc<Inner>,
    compiled: Arc<Compiled>,
}

struct Compiled {
    root: Node,
    /// The alternatives, `words` words each, in expression order.
    terms: Box<[u64]>,
    /// The distinct scopes named, in order of first appearance.
    leaves: Box<[u16]>,
}

impl Requirement {
    /// Whether `grants` meet the requirement. Never allocates.
    ///
    /// Grants resolved by another model (even one with the same scopes) never satisfy
    /// it: a requirement is only meaningful against the model that parsed it, and a
    /// mix-up fails closed.
    pub fn is_satisfied_by(&self, grants: &Grants) -> bool {
        if !Arc::ptr_eq(&self.model, grants.model()) {
            return false;
        }
        let held = grants.bits();
        self.terms().any(|term| bits::is_subset(term, held))
    }

    /// The smallest set of scopes whose addition would satisfy the requirement, in
    /// expression order; empty when it is satisfied.
    ///
    /// For `a AND b` that is the unmet ones; for `a OR b`, the alternative missing the
    /// fewest scopes, the first one on ties. Nested expressions are expanded into
    /// their alternatives first, so `(a OR b) AND c` held with nothing is `["a", "c"]`.
    /// Grants from another model count as holding nothing.
    ///
    /// Meant for the 403 message (`Required scope: observations:write`) and the
    /// `scope` of `WWW-Authenticate: Bearer error="insufficient_scope"`.
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = tower_api_key::presets::performance_blocks::scope_model();
    /// let needed = model.requirement("employees:write AND webhooks:write OR summaries:read")?;
    /// // Holding nothing, the second alternative is one scope away.
    /// assert_eq!(needed.missing(&model.grants([""; 0])), ["summaries:read"]);
    /// // Holding employees:write, both are one scope away: the first one wins.
    /// assert_eq!(needed.missing(&model.grants(["employees:write"])), ["webhooks:write"]);
    /// # Ok::<(), tower_api_key::ConfigError>(())
    /// ```
    pub fn missing(&self, grants: &Grants) -> Vec<String> {
        let nothing;
        let held = if Arc::ptr_eq(&self.model, grants.model()) {
            grants.bits()
        } else {
            nothing = vec![0; self.model.words];
            &nothing
        };
        let mut best: Option<(&[u64], u32)> = None;
        for term in self.terms() {
            let count = bits::count_missing(term, held);
            if count == 0 {
                return Vec::new();
            }
            if best.is_none_or(|(_, fewest)| count < fewest) {
                best = Some((term, count));
            }
        }
        let Some((term, _)) = best else {
            return Vec::new();
        };
        self.compiled
            .leaves
            .iter()
            .map(|&leaf| usize::from(leaf))
            .filter(|&leaf| bits::contains(term, leaf) && !bits::contains(held, leaf))
            .map(|leaf| self.model.name(leaf).to_owned())
            .collect()
    }

    /// The distinct scopes the expression names, in order of first appearance.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.compiled
            .leaves
            .iter()
            .map(|&leaf| self.model.name(usize::from(leaf)))
    }

    /// The alternatives, in expression order: the requirement is met by holding every
    /// scope of any one of them (its disjunctive normal form, duplicates removed). This
    /// is OpenAPI's shape for security requirements: a list of alternatives, each a set
    /// of scopes that are all needed.
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = tower_api_key::presets::performance_blocks::scope_model();
    /// let needed = model.requirement("(employees:read OR summaries:read) AND webhooks:write")?;
    /// let alternatives: Vec<Vec<&str>> = needed.alternatives().collect();
    /// assert_eq!(
    ///     alternatives,
    ///     [["employees:read", "webhooks:write"], ["summaries:read", "webhooks:write"]]
    /// );
    /// # Ok::<(), tower_api_key::ConfigError>(())
    /// ```
    pub fn alternatives(&self) -> impl Iterator<Item = Vec<&str>> {
        self.terms().map(|term| {
            self.compiled
                .leaves
                .iter()
                .map(|&leaf| usize::from(leaf))
                .filter(|&leaf| bits::contains(term, leaf))
                .map(|leaf| self.model.name(leaf))
                .collect()
        })
    }

    /// Whether this requirement was parsed by `model` (or a clone of it).
    pub fn belongs_to(&self, model: &ScopeModel) -> bool {
        Arc::ptr_eq(&self.model, model.inner())
    }

    fn terms(&self) -> std::slice::ChunksExact<'_, u64> {
        self.compiled.terms.chunks_exact(self.model.words)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.compiled.root.write(&self.model, f, false)
    }
}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Requirement")
            .field(&format_args!("{self}"))
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    And,
    Or,
}

enum Node {
    Leaf(u16),
    Group(Op, Vec<Self>),
}

impl Node {
    /// One node for `items` joined by `op`, flattening groups of the same operator.
    fn join(op: Op, mut items: Vec<Self>) -> Self {
        if items.len() == 1 {
            return items.pop().unwrap_or(Self::Group(op, Vec::new()));
        }
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Self::Group(inner, children) if inner == op => flat.extend(children),
                other => flat.push(other),
            }
        }
        Self::Group(op, flat)
    }

    fn write(&self, model: &Inner, f: &mut fmt::Formatter<'_>, nested: bool) -> fmt::Result {
        match self {
            Self::Leaf(index) => f.write_str(model.name(usize::from(*index))),
            Self::Group(op, children) => {
                if nested {
                    f.write_str("(")?;
                }
                let sep = match op {
                    Op::And => " AND ",
                    Op::Or => " OR ",
                };
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    child.write(model, f, true)?;
                }
                if nested {
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }

    fn collect_leaves(&self, out: &mut Vec<u16>) {
        match self {
            Self::Leaf(index) => {
                if !out.contains(index) {
                    out.push(*index);
                }
            }
            Self::Group(_, children) => children.iter().for_each(|c| c.collect_leaves(out)),
        }
    }

    /// The disjunctive normal form: alternatives in expression order, duplicates
    /// removed. `None` when it would exceed [`MAX_TERMS`].
    fn terms(&self, words: usize) -> Option<Vec<Vec<u64>>> {
        match self {
            Self::Leaf(index) => {
                let mut term = vec![0; words];
                let index = usize::from(*index);
                term[index / 64] |= 1 << (index % 64);
                Some(vec![term])
            }
            Self::Group(Op::Or, children) => {
                let mut out: Vec<Vec<u64>> = Vec::new();
                for child in children {
                    for term in child.terms(words)? {
                        if !out.contains(&term) {
                            out.push(term);
                        }
                    }
                    if out.len() > MAX_TERMS {
                        return None;
                    }
                }
                Some(out)
            }
            Self::Group(Op::And, children) => {
                let mut out = vec![vec![0; words]];
                for child in children {
                    let child = child.terms(words)?;
                    if out.len() * child.len() > MAX_TERMS * MAX_TERMS {
                        return None;
                    }
                    let mut next: Vec<Vec<u64>> = Vec::new();
                    for left in &out {
                        for right in &child {
                            let term: Vec<u64> =
                                left.iter().zip(right).map(|(l, r)| l | r).collect();
                            #[cfg(test)]
                            tests::PRODUCTS.with(|made| made.set(made.get() + 1));
                            if !next.contains(&term) {
                                next.push(term);
                                // Checked per product: each is compared with every one
                                // before it, so building all of them first is quadratic.
                                if next.len() > MAX_TERMS {
                                    return None;
                                }
                            }
                        }
                    }
                    out = next;
                }
                Some(out)
            }
        }
    }
}

fn compile(
    model: &Arc<Inner>,
    root: Node,
    text: &dyn fmt::Display,
) -> Result<Requirement, ConfigError> {
    let Some(terms) = root.terms(model.words) else {
        return Err(ConfigError::new(format!(
            "requirement {text} expands to more than {MAX_TERMS} alternatives"
        )));
    };
    let mut leaves = Vec::new();
    root.collect_leaves(&mut leaves);
    Ok(Requirement {
        model: Arc::clone(model),
        compiled: Arc::new(Compiled {
            root,
            terms: terms.concat().into_boxed_slice(),
            leaves: leaves.into_boxed_slice(),
        }),
    })
}

/// [`ScopeModel::all_of`] and [`ScopeModel::any_of`].
pub(super) fn from_list<I, S>(
    model: &Arc<Inner>,
    scopes: I,
    op: Op,
) -> Result<Requirement, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let what = match op {
        Op::And => "all_of",
        Op::Or => "any_of",
    };
    let mut items = Vec::new();
    for scope in scopes {
        let scope = scope.as_ref();
        let Some(index) = model.index_of(scope) else {
            check_scope(scope, model.allow_uppercase)
                .map_err(|e| ConfigError::new(format!("{what}: {e}")))?;
            return Err(ConfigError::new(format!("{what}: unknown scope {scope:?}")));
        };
        // index_of only returns indices below MAX_SCOPES, which fit in u16.
        let leaf = Node::Leaf(index as u16);
        if !items
            .iter()
            .any(|n| matches!((n, &leaf), (Node::Leaf(a), Node::Leaf(b)) if a == b))
        {
            items.push(leaf);
        }
    }
    if items.is_empty() {
        return Err(ConfigError::new(format!("{what} needs at least one scope")));
    }
    compile(model, Node::join(op, items), &what)
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Open,
    Close,
    Op(Op),
    Word(&'a str),
}

#[derive(Clone, Copy)]
struct Token<'a> {
    kind: Kind<'a>,
    at: usize,
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Open => write!(f, "'(' at byte {}", self.at),
            Kind::Close => write!(f, "')' at byte {}", self.at),
            Kind::Op(Op::And) => write!(f, "\"AND\" at byte {}", self.at),
            Kind::Op(Op::Or) => write!(f, "\"OR\" at byte {}", self.at),
            Kind::Word(word) => write!(f, "{word:?} at byte {}", self.at),
        }
    }
}

/// Splits on ASCII whitespace and parentheses. Every split point is an ASCII byte, so
/// slicing never cuts a UTF-8 character.
fn tokenize(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at = i;
        match bytes[i] {
            b if b.is_ascii_whitespace() => i += 1,
            b'(' => {
                tokens.push(Token {
                    kind: Kind::Open,
                    at,
                });
                i += 1;
            }
            b')' => {
                tokens.push(Token {
                    kind: Kind::Close,
                    at,
                });
                i += 1;
            }
            _ => {
                while i < bytes.len()
                    && !bytes[i].is_ascii_whitespace()
                    && bytes[i] != b'('
                    && bytes[i] != b')'
                {
                    i += 1;
                }
                let word = &src[at..i];
                let kind = match word {
                    "AND" => Kind::Op(Op::And),
                    "OR" => Kind::Op(Op::Or),
                    word => Kind::Word(word),
                };
                tokens.push(Token { kind, at });
            }
        }
    }
    tokens
}

/// [`ScopeModel::requirement`].
pub(super) fn parse(model: &Arc<Inner>, src: &str) -> Result<Requirement, ConfigError> {
    if src.len() > MAX_EXPR_LEN {
        let mut end = 40;
        while !src.is_char_boundary(end) {
            end -= 1;
        }
        return Err(ConfigError::new(format!(
            "requirement {:?}… is longer than {MAX_EXPR_LEN} bytes",
            &src[..end]
        )));
    }
    let mut parser = Parser {
        model,
        src,
        tokens: tokenize(src),
        pos: 0,
        depth: 0,
    };
    if parser.tokens.is_empty() {
        return Err(ConfigError::new(format!(
            "empty requirement {src:?}: expected scopes joined by AND and OR"
        )));
    }
    let root = parser.expr()?;
    if let Some(token) = parser.peek() {
        return Err(match token.kind {
            Kind::Close => parser.error(format!("unmatched {token}")),
            _ => parser.missing_operator(token),
        });
    }
    compile(model, root, &format_args!("{src:?}"))
}

/// A hint for `and` or `or` written in lowercase.
fn operator_hint(token: Token<'_>) -> &'static str {
    match token.kind {
        Kind::Word(word) if word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") => {
            " (operators are written AND and OR, in capitals)"
        }
        _ => "",
    }
}

struct Parser<'m, 'a> {
    model: &'m Inner,
    src: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    fn error(&self, message: String) -> ConfigError {
        ConfigError::new(format!("{message} in requirement {:?}", self.src))
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn at_op(&self, op: Op) -> bool {
        matches!(self.peek(), Some(Token { kind: Kind::Op(o), .. }) if o == op)
    }

    /// `conj (OR conj)*`
    fn expr(&mut self) -> Result<Node, ConfigError> {
        let mut items = vec![self.conj()?];
        while self.at_op(Op::Or) {
            self.pos += 1;
            items.push(self.conj()?);
        }
        Ok(Node::join(Op::Or, items))
    }

    /// `operand (AND operand)*`
    fn conj(&mut self) -> Result<Node, ConfigError> {
        let mut items = vec![self.operand()?];
        while self.at_op(Op::And) {
            self.pos += 1;
            items.push(self.operand()?);
        }
        Ok(Node::join(Op::And, items))
    }

    /// `scope | '(' expr ')'`
    fn operand(&mut self) -> Result<Node, ConfigError> {
        let previous = self
            .pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i).copied());
        let Some(token) = self.peek() else {
            return Err(match previous {
                Some(
                    op @ Token {
                        kind: Kind::Op(_), ..
                    },
                ) => self.error(format!("dangling operator {op}: nothing follows it")),
                // Only reachable after '(' at the very end.
                Some(open) => self.error(format!("unclosed {open}")),
                None => self.error("nothing to parse".to_owned()),
            });
        };
        match token.kind {
            Kind::Word(word) => {
                self.pos += 1;
                self.leaf(word, token)
            }
            Kind::Open => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.error(format!(
                        "parentheses nested deeper than {MAX_DEPTH} levels at {token}"
                    )));
                }
                self.pos += 1;
                if let Some(Token {
                    kind: Kind::Close, ..
                }) = self.peek()
                {
                    return Err(self.error(format!("empty parentheses {token}")));
                }
                let node = self.expr()?;
                match self.peek() {
                    Some(Token {
                        kind: Kind::Close, ..
                    }) => {
                        self.pos += 1;
                        self.depth -= 1;
                        Ok(node)
                    }
                    None => Err(self.error(format!("unclosed {token}"))),
                    Some(next) => Err(self.missing_operator(next)),
                }
            }
            Kind::Op(_) | Kind::Close => Err(match previous {
                Some(
                    op @ Token {
                        kind: Kind::Op(_), ..
                    },
                ) => self.error(format!(
                    "dangling operator {op}: {token} follows it instead of a scope"
                )),
                _ => match token.kind {
                    Kind::Close => self.error(format!("unmatched {token}")),
                    _ => self.error(format!("dangling operator {token}: nothing precedes it")),
                },
            }),
        }
    }

    /// Two operands in a row. When the second is not even a valid scope (`a && b`),
    /// that says more than the missing operator does.
    fn missing_operator(&self, token: Token<'_>) -> ConfigError {
        if let Kind::Word(word) = token.kind {
            if let Err(e) = check_scope(word, self.model.allow_uppercase) {
                return self.error(format!("{e} (at byte {})", token.at));
            }
        }
        self.error(format!(
            "missing operator before {token}{}",
            operator_hint(token)
        ))
    }

    fn leaf(&self, word: &str, token: Token<'_>) -> Result<Node, ConfigError> {
        if let Some(index) = self.model.index_of(word) {
            // index_of only returns indices below MAX_SCOPES, which fit in u16.
            return Ok(Node::Leaf(index as u16));
        }
        if let Err(e) = check_scope(word, self.model.allow_uppercase) {
            return Err(self.error(format!("{e} (at byte {})", token.at)));
        }
        Err(self.error(format!("unknown scope {token}{}", operator_hint(token))))
    }
}

// What a route requires, under the model.
impl ScopeModel {
    /// Parses a requirement expression, once, when the router is built.
    ///
    /// The expression is made of declared scope names, `AND`, `OR` (in capitals) and
    /// parentheses; `AND` binds tighter than `OR`, as in Unkey's permission queries:
    /// `a OR b AND c` means `a OR (b AND c)`.
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = tower_api_key::presets::performance_blocks::scope_model();
    /// let needed = model.requirement("employees:write OR summaries:read AND webhooks:read")?;
    /// assert_eq!(needed.to_string(), "employees:write OR (summaries:read AND webhooks:read)");
    /// assert!(needed.is_satisfied_by(&model.grants(["summaries:read", "webhooks:write"])));
    /// assert!(model.requirement("employees:read AND").is_err());
    /// # Ok::<(), tower_api_key::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the offending text for: an empty expression, an
    /// invalid or undeclared scope, an operator missing an operand, two operands with
    /// no operator between them, an unbalanced or empty pair of parentheses, nesting
    /// deeper than 32 levels, an expression longer than 4096 bytes, and one that
    /// expands to more than 256 alternatives.
    pub fn requirement(&self, expr: &str) -> Result<Requirement, ConfigError> {
        parse(&self.inner, expr)
    }

    /// A requirement met when every one of `scopes` is held, as `a AND b`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `scopes` is empty or names a scope that is malformed or
    /// not declared.
    pub fn all_of<I, S>(&self, scopes: I) -> Result<Requirement, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        from_list(&self.inner, scopes, Op::And)
    }

    /// A requirement met when any one of `scopes` is held, as `a OR b`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `scopes` is empty or names a scope that is malformed or
    /// not declared.
    pub fn any_of<I, S>(&self, scopes: I) -> Result<Requirement, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        from_list(&self.inner, scopes, Op::Or)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use crate::scope::ScopeModel;

    thread_local! {
        /// How many products of alternatives this thread's AND groups have made.
        pub(super) static PRODUCTS: Cell<usize> = const { Cell::new(0) };
    }

    fn model() -> ScopeModel {
        ScopeModel::builder()
            .scopes(["a", "b", "c", "d", "e"])
            .build()
            .unwrap()
    }

    fn err(expr: &str) -> String {
        model().requirement(expr).unwrap_err().message().to_owned()
    }

    #[test]
    fn precedence_and_normalization() {
        let model = model();
        for (input, shown) in [
            ("a", "a"),
            ("a OR b AND c", "a OR (b AND c)"),
            ("a AND b OR c", "(a AND b) OR c"),
            ("(a OR b) AND c", "(a OR b) AND c"),
            ("((a))", "a"),
            ("a AND (b AND c)", "a AND b AND c"),
            ("(a OR b) OR (c OR d)", "a OR b OR c OR d"),
            (
                "a AND (b OR (c AND (d OR e)))",
                "a AND (b OR (c AND (d OR e)))",
            ),
            ("\ta\n  OR(b)", "a OR b"),
        ] {
            let parsed = model.requirement(input).unwrap();
            assert_eq!(parsed.to_string(), shown, "{input}");
            let again = model.requirement(shown).unwrap();
            assert_eq!(again.to_string(), shown);
        }
        assert_eq!(
            format!("{:?}", model.requirement("a OR b").unwrap()),
            "Requirement(a OR b)"
        );
    }

    #[test]
    fn leaves_in_expression_order() {
        let model = model();
        let parsed = model.requirement("c OR (a AND c) OR b").unwrap();
        assert_eq!(parsed.scopes().collect::<Vec<_>>(), ["c", "a", "b"]);
    }

    #[test]
    fn errors_name_the_offending_text() {
        for (input, needles) in [
            ("", &["empty requirement \"\""][..]),
            ("   ", &["empty requirement \"   \""]),
            ("a AND", &["dangling operator \"AND\" at byte 2"]),
            ("OR a", &["dangling operator \"OR\" at byte 0"]),
            (
                "a AND OR b",
                &["dangling operator \"AND\" at byte 2", "\"OR\" at byte 6"],
            ),
            (
                "(a OR)",
                &["dangling operator \"OR\" at byte 3", "')' at byte 5"],
            ),
            ("(a", &["unclosed '(' at byte 0"]),
            ("(", &["unclosed '(' at byte 0"]),
            ("a)", &["unmatched ')' at byte 1"]),
            (")", &["unmatched ')' at byte 0"]),
            ("()", &["empty parentheses '(' at byte 0"]),
            ("a b", &["missing operator before \"b\" at byte 2"]),
            ("(a) (b)", &["missing operator before '(' at byte 4"]),
            ("(a b)", &["missing operator before \"b\" at byte 3"]),
            ("a AND zz", &["unknown scope \"zz\" at byte 6"]),
            (
                "a and b",
                &["missing operator before \"and\"", "in capitals"],
            ),
            (
                "a AND or",
                &["unknown scope \"or\" at byte 6", "in capitals"],
            ),
            ("a AND B", &["invalid scope \"B\"", "uppercase"]),
            ("a && b", &["invalid scope \"&&\""]),
            ("a:b:c", &["invalid scope \"a:b:c\""]),
        ] {
            let message = err(input);
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{input:?}: {message:?} lacks {needle:?}"
                );
            }
            assert!(message.contains(&format!("{input:?}")), "{message}");
        }
    }

    #[test]
    fn limits() {
        let deep = format!("{}a{}", "(".repeat(33), ")".repeat(33));
        assert!(err(&deep).contains("deeper than 32"), "{}", err(&deep));
        let ok = format!("{}a{}", "(".repeat(32), ")".repeat(32));
        model().requirement(&ok).unwrap();

        let long = "a OR ".repeat(1000) + "a";
        assert!(err(&long).contains("longer than 4096"));

        // Four groups of four distinct scopes: 4^4 alternatives fit, 4^5 do not.
        let wide_model = ScopeModel::builder()
            .resource("s", (0..20).map(|i| i.to_string()))
            .build()
            .unwrap();
        let group = |g: usize| {
            let alternatives: Vec<_> = (0..4).map(|i| format!("s:{}", g * 4 + i)).collect();
            format!("({})", alternatives.join(" OR "))
        };
        let fits: Vec<_> = (0..4).map(group).collect();
        let req = wide_model.requirement(&fits.join(" AND ")).unwrap();
        assert_eq!(
            req.missing(&wide_model.grants([""; 0])),
            ["s:0", "s:4", "s:8", "s:12"]
        );
        let too_wide: Vec<_> = (0..5).map(group).collect();
        let wide = too_wide.join(" AND ");
        let err = |expr: &str| {
            wide_model
                .requirement(expr)
                .unwrap_err()
                .message()
                .to_owned()
        };
        assert!(
            err(&wide).contains("more than 256 alternatives"),
            "{}",
            err(&wide)
        );
    }

    #[test]
    fn lists() {
        let model = model();
        assert_eq!(
            model.all_of(["a", "b", "a"]).unwrap().to_string(),
            "a AND b"
        );
        assert_eq!(model.any_of(["a"]).unwrap().to_string(), "a");
        assert_eq!(model.any_of(["a", "c"]).unwrap().to_string(), "a OR c");
        let message = model.all_of(["a", "zz"]).unwrap_err().message().to_owned();
        assert!(
            message.contains("all_of: unknown scope \"zz\""),
            "{message}"
        );
        let message = model.any_of(["a b"]).unwrap_err().message().to_owned();
        assert!(
            message.contains("any_of: invalid scope \"a b\""),
            "{message}"
        );
        assert!(model.all_of([""; 0]).is_err());
        assert!(model.any_of([""; 0]).is_err());
    }

    #[test]
    fn satisfaction_and_missing() {
        let model = model();
        let req = model.requirement("a OR b AND c").unwrap();
        assert!(req.is_satisfied_by(&model.grants(["a"])));
        assert!(req.is_satisfied_by(&model.grants(["b", "c"])));
        assert!(!req.is_satisfied_by(&model.grants(["b"])));
        assert!(!req.is_satisfied_by(&model.grants(["c", "d"])));
        // A tie (one scope missing either way) goes to the first alternative.
        assert_eq!(req.missing(&model.grants(["b"])), ["a"]);
        assert_eq!(req.missing(&model.grants([""; 0])), ["a"]);
        assert!(req.missing(&model.grants(["a"])).is_empty());
        let req = model.requirement("a AND d OR b AND c").unwrap();
        assert_eq!(req.missing(&model.grants(["b"])), ["c"]);

        let req = model.requirement("(a OR b) AND (c OR d)").unwrap();
        assert_eq!(req.missing(&model.grants([""; 0])), ["a", "c"]);
        assert_eq!(req.missing(&model.grants(["d"])), ["a"]);
        assert_eq!(req.missing(&model.grants(["b"])), ["c"]);

        // The smallest alternative wins even when it is not the first.
        let req = model.requirement("a AND b AND c OR d").unwrap();
        assert_eq!(req.missing(&model.grants(["e"])), ["d"]);
        assert_eq!(req.missing(&model.grants(["a", "b"])), ["c"]);

        // Expression order, not declaration order.
        let req = model.requirement("e AND a").unwrap();
        assert_eq!(req.missing(&model.grants([""; 0])), ["e", "a"]);
    }

    #[test]
    fn other_models_fail_closed() {
        let model = model();
        let twin = self::model();
        let req = model.requirement("a").unwrap();
        assert!(req.belongs_to(&model) && req.belongs_to(&model.clone()));
        assert!(!req.belongs_to(&twin));
        assert!(!req.is_satisfied_by(&twin.grants(["a"])));
        assert_eq!(req.missing(&twin.grants(["a"])), ["a"]);
    }

    /// Found while writing the fuzz targets: two groups of 256 alternatives each, joined
    /// by AND, passed the size check before the product (256 × 256 is not more than its
    /// limit), then built all 65,536 products, each checked against every one before
    /// it, before the count was compared with [`MAX_TERMS`](super::MAX_TERMS): seconds
    /// of work for an expression of 1,600 bytes. The count is now checked as the
    /// products are made.
    #[test]
    fn a_product_of_wide_groups_is_refused_without_building_it() {
        let names: Vec<String> = (0..32).map(|i| format!("s{i}")).collect();
        let model = ScopeModel::builder().scopes(names.clone()).build().unwrap();
        // Eight pairs ANDed together: 2^8 = 256 alternatives, written twice and ORed so
        // that the group is not flattened into the AND around it.
        let side = |pairs: &[String]| {
            let eight = pairs
                .chunks(2)
                .map(|pair| format!("({} OR {})", pair[0], pair[1]))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!("({eight} OR {eight})")
        };
        let expression = format!("{} AND {}", side(&names[..16]), side(&names[16..]));
        assert_eq!(
            model
                .requirement(&side(&names[..16]))
                .unwrap()
                .alternatives()
                .count(),
            256
        );
        // Before, all 65,536 products of the two sides were made (16 s in a debug
        // build); now that product stops at the 257th distinct one, after the about
        // 2,300 that building the four groups of 256 takes. Counted, not timed.
        PRODUCTS.with(|made| made.set(0));
        let message = model
            .requirement(&expression)
            .unwrap_err()
            .message()
            .to_owned();
        assert!(message.contains("more than 256 alternatives"), "{message}");
        let made = PRODUCTS.with(Cell::get);
        assert!(made < 3_000, "{made} products made before refusing");
    }
}
