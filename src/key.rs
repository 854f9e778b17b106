//! The key format: generation, parsing, checksums and digests.
//!
//! A key looks like `<product>_<environment>_<body>`, for example
//! `pb_live_KpdcXWzEgOW0NKBAjWGid45JI5cuH3Jvb0I38PZUbC7uN2kms8n`. The environment
//! segment is optional (`pbo_<body>`, as PgBeam's organization keys). The body is 51
//! base62 characters, with no separator inside it:
//!
//! | part     | length | content                                                    |
//! |----------|--------|------------------------------------------------------------|
//! | id       | 11     | public lookup id (64 random bits), shown in lists and logs |
//! | secret   | 22     | 128 bits from the operating system's CSPRNG                |
//! | tag      | 12     | the [`TagKey`]'s one-character id, then 64 bits of HMAC-SHA-256 under it, in base62 |
//! | checksum | 6      | CRC32 of everything before it, in base62 (GitHub's scheme)  |
//!
//! Only `[A-Za-z0-9_]` appear, so a double-click selects the whole key. The checksum
//! lets a typo, a truncated paste or a made-up key be refused before any cache or
//! store is touched; it is not a security measure (anyone can compute it, and secret
//! scanners do).
//!
//! The **tag** is what a forger cannot compute: an HMAC of everything before it under
//! a secret the server holds (its [`TagKey`], kept in the key store, so every instance
//! shares it). On a cache miss the tag is checked before any lookup, so a well-formed,
//! checksum-valid key that was never issued costs no store lookup at all, whichever
//! address it comes from. The tag's secret protects the store from lookups, never
//! authentication: a key is accepted only when its SHA-256 digest matches the stored
//! one, so a leaked tag secret lets an attacker cause lookups again, nothing more.
//!
//! Keys minted without a tag (before tags existed, or by
//! [`KeyFormat::generate`] with no tag secret) have a 39-character body without the
//! tag part. They keep working, through the unknown-key budget as before; rotating
//! one yields a tagged key.
//!
//! Only the SHA-256 [`Digest`] of a key is ever stored: of the whole key, or of a
//! tagged key's text before its tag (product, environment, id and secret; the tag and
//! the checksum are derived from that text, and leaving them out keeps the digest to
//! one SHA-256 block for the usual prefixes). API keys carry 128 bits of
//! entropy, so a fast hash is the right tool: a password KDF on every request costs
//! hundreds of milliseconds and buys nothing against a key that cannot be guessed.
//!
//! # Example
//!
//! ```
//! use tower_api_key::key::{KeyFormat, Presented};
//!
//! let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
//! let minted = format.generate(Some("live"))?;
//! let key = minted.key.expose_secret().to_owned();
//! assert!(key.starts_with("pb_live_"));
//!
//! match format.parse(&key) {
//!     Some(Presented::Native(parsed)) => assert_eq!(parsed.id(), &minted.id),
//!     _ => unreachable!("a freshly minted key parses"),
//! }
//! // One changed character fails the checksum: no lookup is ever made for it.
//! let last = if key.ends_with('0') { "1" } else { "0" };
//! let typo = format!("{}{last}", &key[..key.len() - 1]);
//! assert!(format.parse(&typo).is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// The longest input ever considered as a key, in bytes. Longer input is refused
/// before any hashing.
pub const MAX_KEY_LEN: usize = 256;

/// Length of the public id inside a key body.
pub const ID_LEN: usize = 11;
/// Length of the secret part of a key body (22 base62 characters hold 128 bits).
pub const SECRET_LEN: usize = 22;
/// Length of the base62 CRC32 checksum that ends a key.
pub(crate) const CHECKSUM_LEN: usize = 6;
/// Length of the body of an untagged key: id, secret and checksum.
pub(crate) const BODY_LEN: usize = ID_LEN + SECRET_LEN + CHECKSUM_LEN;
/// Length of a key's tag: the [`TagKey`]'s one-character id and 11 base62 characters
/// holding 64 bits of HMAC-SHA-256.
pub(crate) const TAG_LEN: usize = 1 + TAG_VALUE_LEN;
/// Length of the body of a tagged key: id, secret, tag and checksum.
pub const TAGGED_BODY_LEN: usize = BODY_LEN + TAG_LEN;
/// The base62 characters holding the tag's 64 bits.
const TAG_VALUE_LEN: usize = 11;
/// The shortest tag secret accepted, in bytes.
pub const MIN_TAG_SECRET_LEN: usize = 32;

const MAX_NAME_LEN: usize = 23;

/// A short ASCII string stored inline, so ids and environments are `Copy` and cost no
/// allocation on the request path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Inline {
    len: u8,
    buf: [u8; MAX_NAME_LEN],
}

impl Inline {
    /// Caller guarantees ASCII and `len <= MAX_NAME_LEN`.
    fn from_ascii(s: &str) -> Self {
        Self::from_ascii_bytes(s.as_bytes())
    }

    /// Caller guarantees ASCII and `len <= MAX_NAME_LEN`.
    fn from_ascii_bytes(s: &[u8]) -> Self {
        debug_assert!(s.is_ascii() && s.len() <= MAX_NAME_LEN);
        let mut buf = [0; MAX_NAME_LEN];
        buf[..s.len()].copy_from_slice(s);
        Self {
            len: s.len() as u8,
            buf,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn as_str(&self) -> &str {
        // Only ever built from `&str` slices that were checked to be ASCII.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or_default()
    }
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// The public identifier of a key.
///
/// It is not secret: it appears in key lists, logs, audit entries and metrics. For keys
/// minted by this crate it is the 11 base62 characters after the prefix; imported keys
/// get a freshly generated one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Inline);

impl KeyId {
    /// Parses an id: 1 to 23 characters of `[A-Za-z0-9_-]`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending text when it does not fit.
    pub fn new(id: &str) -> Result<Self, ConfigError> {
        if id.is_empty()
            || id.len() > MAX_NAME_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new(format!(
                "invalid key id {id:?}: expected 1 to {MAX_NAME_LEN} characters of [A-Za-z0-9_-]"
            )));
        }
        Ok(Self(Inline::from_ascii(id)))
    }

    /// A fresh random id of [`ID_LEN`] base62 characters.
    ///
    /// # Errors
    ///
    /// [`KeyError::Randomness`] when the operating system's CSPRNG fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|_| KeyError::Randomness)?;
        let id = base62_padded(u128::from(u64::from_le_bytes(bytes)), ID_LEN);
        Ok(Self(Inline::from_ascii(&id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyId {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A key's environment, such as `live`, `test` or `dev`.
///
/// Environments keep test and live traffic apart: a layer can refuse keys of other
/// environments, and handlers partition data on [`Principal::environment`](crate::Principal::environment).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Environment(Inline);

impl Environment {
    /// `live`.
    pub const fn live() -> Self {
        Self(Inline {
            len: 4,
            buf: *b"live\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        })
    }

    /// `test`.
    pub const fn test() -> Self {
        Self(Inline {
            len: 4,
            buf: *b"test\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        })
    }

    /// Parses an environment name: 1 to 23 characters of `[a-z0-9]`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending text.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(is_name_char) {
            return Err(ConfigError::new(format!(
                "invalid environment {name:?}: expected 1 to {MAX_NAME_LEN} characters of [a-z0-9]"
            )));
        }
        Ok(Self(Inline::from_ascii(name)))
    }

    /// The environment's name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The SHA-256 digest of a full key: the only form in which a key is stored.
///
/// Comparison through [`Digest::ct_eq`] (and `PartialEq`) takes constant time.
#[derive(Clone, Copy, Eq)]
pub struct Digest([u8; 32]);

impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Digest {
    /// SHA-256 of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Wraps digest bytes read from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal, for storage in text columns.
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Parses 64 hexadecimal characters.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the text is not 64 hexadecimal characters.
    pub fn from_hex(hex: &str) -> Result<Self, ConfigError> {
        let err = || ConfigError::new("a digest is 64 hexadecimal characters");
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }

    /// Compares two digests in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        // Four 64-bit words: the same constant-time comparison as byte by byte, with a
        // quarter of the steps.
        let words = |d: &[u8; 32]| {
            let mut out = [0_u64; 4];
            for (word, chunk) in out.iter_mut().zip(d.chunks_exact(8)) {
                let mut bytes = [0_u8; 8];
                bytes.copy_from_slice(chunk);
                *word = u64::from_ne_bytes(bytes);
            }
            out
        };
        words(&self.0).ct_eq(&words(&other.0)).into()
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not a secret, but a short form keeps logs readable.
        write!(f, "Digest({}…)", &self.to_hex()[..12])
    }
}

/// A full API key: a secret.
///
/// Its `Debug` and `Display` show only the public prefix and id
/// (`pb_live_2hT9xQk1LmZ…`); [`ApiKey::expose_secret`] is the one way to read it, for
/// showing it once to the person who created it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    value: String,
    /// Bytes of `value` that are public (product, environment and id).
    public_len: usize,
    /// Bytes of `value` that its digest covers: all of it, or the text before the tag.
    digested_len: usize,
}

impl ApiKey {
    /// The full key. Show it once, to the person who created it, and nowhere else.
    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    /// The public part: product, environment and id, e.g. `pb_live_2hT9xQk1LmZ`.
    pub fn public_prefix(&self) -> &str {
        &self.value[..self.public_len]
    }

    /// The SHA-256 digest of the key (of its text before the tag, for a tagged key:
    /// see [`ParsedKey::digest`]).
    pub fn digest(&self) -> Digest {
        Digest(Sha256::digest(&self.value.as_bytes()[..self.digested_len]).into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.public_prefix())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.public_prefix())
    }
}

/// A secret that tags native keys, so that a key the server never minted is refused
/// on a cache miss before any store lookup (see the [module docs](self)).
///
/// Its id is one base62 character, written into every key it tags, so the secret can
/// be rotated: a new one tags new keys while the older ones still verify the keys they
/// tagged. The SQL stores create one in `migrate()` and [`MemoryStore`] one per store,
/// so every instance over one store shares it without configuration; give one to
/// [`CachedStoreBuilder::with_tag_key`] for a store of your own.
///
/// Its `Debug` shows the id only.
///
/// [`MemoryStore`]: crate::store::MemoryStore
/// [`CachedStoreBuilder::with_tag_key`]: crate::store::CachedStoreBuilder::with_tag_key
///
/// ```
/// use tower_api_key::key::{KeyFormat, Presented, TagKey};
///
/// let tag_key = TagKey::new('a', &[7; 32])?;
/// let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
/// let minted = format.generate_tagged(Some("live"), &tag_key)?;
/// let Some(Presented::Native(parsed)) = format.parse(minted.key.expose_secret()) else {
///     unreachable!("a freshly minted key parses");
/// };
/// assert!(parsed.is_tagged());
/// assert!(parsed.tag_verifies(&tag_key));
/// assert!(!parsed.tag_verifies(&TagKey::new('a', &[8; 32])?), "another secret");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TagKey {
    id: u8,
    mac: Hmac<Sha256>,
}

impl TagKey {
    /// A tag secret named `id` (one of `[A-Za-z0-9]`), of at least
    /// [`MIN_TAG_SECRET_LEN`] random bytes.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for another id or a shorter secret (the secret is not named).
    pub fn new(id: char, secret: &[u8]) -> Result<Self, ConfigError> {
        if !id.is_ascii_alphanumeric() {
            return Err(ConfigError::new(format!(
                "invalid tag secret id {id:?}: expected one of [A-Za-z0-9]"
            )));
        }
        if secret.len() < MIN_TAG_SECRET_LEN {
            return Err(ConfigError::new(format!(
                "a tag secret needs at least {MIN_TAG_SECRET_LEN} bytes, got {}",
                secret.len()
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| ConfigError::new("the tag secret could not key HMAC-SHA-256"))?;
        Ok(Self { id: id as u8, mac })
    }

    /// The id written into the keys this secret tags.
    pub fn id(&self) -> char {
        char::from(self.id)
    }

    /// The 64-bit tag, under the secret id `secret_id`, of a key whose digest (SHA-256
    /// of its text before the tag) is `digest`.
    fn tag(&self, secret_id: u8, digest: &[u8; 32]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(&[secret_id]);
        mac.update(digest);
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first)
    }
}

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TagKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// How many tag secrets can exist at once: one per id character.
pub(crate) const TAG_KEY_IDS: i64 = 62;

/// The id of the `generation`-th tag secret (from 1): `0`–`9`, `A`–`Z`, `a`–`z`, as
/// base62 counts; `None` past the 62nd.
pub(crate) fn tag_key_id(generation: i64) -> Option<char> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let index = usize::try_from(generation.checked_sub(1)?).ok()?;
    ALPHABET.get(index).map(|&b| char::from(b))
}

/// The tag of a presented key, owning what verifying it needs (checked on a cache miss,
/// after the request's borrow of the key has ended).
#[derive(Clone, Copy)]
pub(crate) struct KeyTag {
    secret_id: u8,
    /// `None` when the base62 text holds more than 64 bits: no secret made it.
    value: Option<u64>,
    /// The key's digest: SHA-256 of its text before the tag.
    digest: [u8; 32],
}

impl KeyTag {
    /// The id of the secret the tag claims.
    pub(crate) fn secret_id(&self) -> char {
        char::from(self.secret_id)
    }

    /// Whether `key` made this tag (in constant time).
    pub(crate) fn verifies(&self, key: &TagKey) -> bool {
        let Some(value) = self.value else {
            return false;
        };
        key.id == self.secret_id
            && bool::from(
                key.tag(self.secret_id, &self.digest)
                    .to_be_bytes()
                    .ct_eq(&value.to_be_bytes()),
            )
    }
}

/// A key minted by [`KeyFormat::generate`]: the secret, shown once, and what is stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MintedKey {
    /// The full key.
    pub key: ApiKey,
    /// Its public id.
    pub id: KeyId,
    /// Its digest, the only part that is stored.
    pub digest: Digest,
    /// Its environment, when the format has environments.
    pub environment: Option<Environment>,
    /// The public display prefix (product, environment and id).
    pub prefix: String,
}

/// Errors while minting keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Randomness,
    /// The environment is not one of the format's environments (or the format has
    /// none).
    #[error("unknown environment {given:?}: {}", expected_environments(.expected))]
    UnknownEnvironment {
        /// The environment asked for.
        given: String,
        /// The format's environments.
        expected: Vec<Environment>,
    },
    /// The format has environments and none was given.
    #[error("this key format requires an environment: {}", or_list(.expected))]
    MissingEnvironment {
        /// The format's environments.
        expected: Vec<Environment>,
    },
}

fn or_list(environments: &[Environment]) -> String {
    match environments {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(Environment::as_str).collect();
            format!("{} or {last}", rest.join(", "))
        }
    }
}

fn expected_environments(environments: &[Environment]) -> String {
    if environments.is_empty() {
        "this key format has no environments".to_owned()
    } else {
        format!("expected {}", or_list(environments))
    }
}

/// A key as presented by a client, after a successful [`KeyFormat::parse`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A key in this crate's format: looked up by id.
    Native(ParsedKey<'a>),
    /// A key minted elsewhere and imported by digest: looked up by digest.
    Imported(&'a str),
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native(p) => f.debug_tuple("Native").field(p).finish(),
            Self::Imported(_) => f.write_str("Imported(…)"),
        }
    }
}

/// A well-formed key in this crate's format, whose checksum matched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    full: &'a [u8],
    id: KeyId,
    environment: Option<Environment>,
    tagged: bool,
}

impl<'a> ParsedKey<'a> {
    /// The key's public id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The environment named in the key's prefix.
    pub fn environment(&self) -> Option<Environment> {
        self.environment
    }

    /// SHA-256 of the key: of the full key when untagged, and of its text before the
    /// tag when tagged (the tag and the checksum derive from that text, so hashing
    /// them would only cost a second SHA-256 block).
    pub fn digest(&self) -> Digest {
        Digest(Sha256::digest(self.digested()).into())
    }

    /// The part of the key its digest covers.
    fn digested(&self) -> &[u8] {
        if self.tagged {
            &self.full[..self.full.len() - CHECKSUM_LEN - TAG_LEN]
        } else {
            self.full
        }
    }

    /// Whether the key carries a tag (see [`TagKey`]); keys minted before tags, or
    /// without a tag secret, do not.
    pub fn is_tagged(&self) -> bool {
        self.tagged
    }

    /// Whether the key's tag was made by `key`: `false` for an untagged key, a tag of
    /// another secret, or a forged one. Constant-time.
    pub fn tag_verifies(&self, key: &TagKey) -> bool {
        self.tag(&self.digest())
            .is_some_and(|tag| tag.verifies(key))
    }

    /// The key's tag, for checking once a cache miss makes it necessary; `digest` is
    /// [`ParsedKey::digest`], which the tag is made over.
    pub(crate) fn tag(&self, digest: &Digest) -> Option<KeyTag> {
        if !self.tagged {
            return None;
        }
        let value_at = self.full.len() - CHECKSUM_LEN - TAG_VALUE_LEN;
        let value = base62::decode(&self.full[value_at..value_at + TAG_VALUE_LEN])
            .ok()
            .and_then(|v| u64::try_from(v).ok());
        Some(KeyTag {
            secret_id: self.full[value_at - 1],
            value,
            digest: *digest.as_bytes(),
        })
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("environment", &self.environment)
            .field("tagged", &self.tagged)
            .finish_non_exhaustive()
    }
}

/// One deployment's key format: a product prefix, its environments, and the prefixes
/// of foreign keys accepted by digest.
///
/// See the [module docs](self) for the layout.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFormat {
    product: String,
    environments: Vec<Environment>,
    imported_prefixes: Vec<String>,
}

impl KeyFormat {
    /// A format for `product` (1 to 16 characters of `[a-z0-9]`), with no environment
    /// segment until [`KeyFormat::with_environments`] adds one.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending text.
    pub fn new(product: &str) -> Result<Self, ConfigError> {
        if product.is_empty() || product.len() > 16 || !product.bytes().all(is_name_char) {
            return Err(ConfigError::new(format!(
                "invalid key product {product:?}: expected 1 to 16 characters of [a-z0-9]"
            )));
        }
        Ok(Self {
            product: product.to_owned(),
            environments: Vec::new(),
            imported_prefixes: Vec::new(),
        })
    }

    /// Keys carry one of these environments after the product: `pb_live_…`, `pb_test_…`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid or repeated environment name.
    pub fn with_environments<I, E>(mut self, environments: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = E>,
        E: AsRef<str>,
    {
        self.environments.clear();
        for env in environments {
            let env = Environment::new(env.as_ref())?;
            if self.environments.contains(&env) {
                return Err(ConfigError::new(format!(
                    "environment {env:?} listed twice"
                )));
            }
            self.environments.push(env);
        }
        Ok(self)
    }

    /// Also accept keys minted by another system that start with `prefix` (e.g.
    /// ProductBridge's `pb_` followed by 43 URL-safe characters). They cannot be
    /// checksum-checked; they are looked up by their SHA-256 digest, so import them
    /// with [`KeyRecord::imported`](crate::KeyRecord::imported).
    ///
    /// Only input that cannot be a key of this format takes that path: anything that
    /// starts like a native key (`<product>_<environment>_`, or for a format without
    /// environments `<product>_` followed by a native key's length) is parsed as one
    /// and, with a wrong checksum or length, refused as malformed without a lookup. A
    /// mistyped native key never costs a lookup by digest.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the prefix is empty, too long or not `[A-Za-z0-9_-]`.
    pub fn with_imported_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        if prefix.is_empty() || prefix.len() > 32 || !prefix.bytes().all(is_foreign_char) {
            return Err(ConfigError::new(format!(
                "invalid imported key prefix {prefix:?}: expected 1 to 32 characters of [A-Za-z0-9_-]"
            )));
        }
        self.imported_prefixes.push(prefix.to_owned());
        Ok(self)
    }

    /// The product prefix.
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The configured environments, in order.
    pub fn environments(&self) -> &[Environment] {
        &self.environments
    }

    /// Mints a new key without a tag. `environment` must be one of the format's
    /// environments, or `None` for a format without them.
    ///
    /// [`KeyManager`](crate::manage::KeyManager) mints tagged keys whenever its store
    /// has a tag secret ([`KeyFormat::generate_tagged`]); an untagged key costs a store
    /// lookup on every cache miss, charged to the unknown-key budget.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnknownEnvironment`] for an environment the format does not have,
    /// [`KeyError::MissingEnvironment`] for none when the format has environments, and
    /// [`KeyError::Randomness`] when the CSPRNG fails.
    pub fn generate(&self, environment: Option<&str>) -> Result<MintedKey, KeyError> {
        self.mint(environment, None)
    }

    /// Mints a new key tagged under `tag_key`: on a cache miss its tag is checked
    /// before any lookup, so keys like it that were never minted cost no lookup.
    ///
    /// # Errors
    ///
    /// As [`KeyFormat::generate`].
    pub fn generate_tagged(
        &self,
        environment: Option<&str>,
        tag_key: &TagKey,
    ) -> Result<MintedKey, KeyError> {
        self.mint(environment, Some(tag_key))
    }

    fn mint(
        &self,
        environment: Option<&str>,
        tag_key: Option<&TagKey>,
    ) -> Result<MintedKey, KeyError> {
        let environment = match environment {
            None if self.environments.is_empty() => None,
            None => {
                return Err(KeyError::MissingEnvironment {
                    expected: self.environments.clone(),
                })
            }
            Some(name) => Some(
                *self
                    .environments
                    .iter()
                    .find(|e| e.as_str() == name)
                    .ok_or_else(|| KeyError::UnknownEnvironment {
                        given: name.to_owned(),
                        expected: self.environments.clone(),
                    })?,
            ),
        };
        let id = KeyId::generate()?;
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|_| KeyError::Randomness)?;

        let mut value = String::with_capacity(self.product.len() + 25 + TAGGED_BODY_LEN);
        value.push_str(&self.product);
        value.push('_');
        if let Some(env) = &environment {
            value.push_str(env.as_str());
            value.push('_');
        }
        value.push_str(id.as_str());
        let public_len = value.len();
        value.push_str(&base62_padded(u128::from_le_bytes(secret), SECRET_LEN));
        let before_tag = value.len();
        if let Some(tag_key) = tag_key {
            let digest = Sha256::digest(value.as_bytes()).into();
            value.push(tag_key.id());
            let tag = tag_key.tag(tag_key.id, &digest);
            value.push_str(&base62_padded(u128::from(tag), TAG_VALUE_LEN));
        }
        let checksum = crc32fast::hash(value.as_bytes());
        value.push_str(&base62_padded(u128::from(checksum), CHECKSUM_LEN));

        let prefix = value[..public_len].to_owned();
        let digested_len = if tag_key.is_some() {
            before_tag
        } else {
            value.len()
        };
        let key = ApiKey {
            value,
            public_len,
            digested_len,
        };
        Ok(MintedKey {
            digest: key.digest(),
            key,
            id,
            environment,
            prefix,
        })
    }

    /// Parses a presented key. `None` means malformed: too long, a character outside
    /// the alphabet, an unknown prefix or environment, a wrong length, or a failed
    /// checksum. Nothing is hashed and nothing is looked up for such input.
    pub fn parse<'a>(&self, input: &'a str) -> Option<Presented<'a>> {
        self.parse_bytes(input.as_bytes())
    }

    /// [`KeyFormat::parse`] on the bytes of a header value or a body field, which the
    /// request path hands over without a UTF-8 validation of its own: a key is ASCII,
    /// and anything else fails the alphabet checks.
    pub(crate) fn parse_bytes<'a>(&self, input: &'a [u8]) -> Option<Presented<'a>> {
        if let Some(parsed) = self.parse_native_bytes(input) {
            return Some(Presented::Native(parsed));
        }
        if self.could_be_native(input) {
            return None;
        }
        self.parse_imported_bytes(input).map(Presented::Imported)
    }

    /// A native key of this format, or `None`.
    pub(crate) fn parse_native_bytes<'a>(&self, input: &'a [u8]) -> Option<ParsedKey<'a>> {
        if input.len() > MAX_KEY_LEN {
            return None;
        }
        self.parse_native(input)
    }

    /// Whether `input` starts like a native key of this format: such input is never
    /// taken for an imported key, whatever its checksum or length.
    pub(crate) fn could_be_native(&self, input: &[u8]) -> bool {
        let Some(rest) = input
            .strip_prefix(self.product.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"_"))
        else {
            return false;
        };
        if self.environments.is_empty() {
            return rest.len() == BODY_LEN || rest.len() == TAGGED_BODY_LEN;
        }
        self.environments.iter().any(|env| {
            rest.strip_prefix(env.0.as_bytes())
                .is_some_and(|rest| rest.starts_with(b"_"))
        })
    }

    /// A foreign key with one of the imported prefixes, or `None`. The caller has
    /// checked that no configured format could take it for a native key.
    pub(crate) fn parse_imported_bytes<'a>(&self, input: &'a [u8]) -> Option<&'a str> {
        if input.len() > MAX_KEY_LEN {
            return None;
        }
        let imported = self
            .imported_prefixes
            .iter()
            .any(|p| input.len() > p.len() && input.starts_with(p.as_bytes()))
            && input.iter().all(|&b| is_foreign_char(b));
        if !imported {
            return None;
        }
        // Every byte is ASCII (checked just above), so this never fails.
        std::str::from_utf8(input).ok()
    }

    fn parse_native<'a>(&self, input: &'a [u8]) -> Option<ParsedKey<'a>> {
        let rest = input
            .strip_prefix(self.product.as_bytes())?
            .strip_prefix(b"_")?;
        let (environment, body) = if self.environments.is_empty() {
            (None, rest)
        } else {
            let at = rest.iter().position(|&b| b == b'_')?;
            let (env, body) = (&rest[..at], &rest[at + 1..]);
            let env = self.environments.iter().find(|e| e.0.as_bytes() == env)?;
            (Some(*env), body)
        };
        let tagged = body.len() == TAGGED_BODY_LEN;
        // No early exit: the compiler checks many bytes per instruction.
        if !(tagged || body.len() == BODY_LEN)
            || !body
                .iter()
                .fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
        {
            return None;
        }
        let (signed, checksum) = input.split_at(input.len() - CHECKSUM_LEN);
        let expected = base62::decode(checksum).ok()?;
        if expected != u128::from(crc32fast::hash(signed)) {
            return None;
        }
        let id = KeyId(Inline::from_ascii_bytes(&body[..ID_LEN]));
        Some(ParsedKey {
            full: input,
            id,
            environment,
            tagged,
        })
    }
}

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFormat")
            .field("product", &self.product)
            .field("environments", &self.environments)
            .field("imported_prefixes", &self.imported_prefixes)
            .finish()
    }
}

fn is_foreign_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `value` in base62, left-padded with `0` to `width` characters.
fn base62_padded(value: u128, width: usize) -> String {
    let digits = base62::encode(value);
    let mut out = String::with_capacity(width.max(digits.len()));
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> KeyFormat {
        KeyFormat::new("pb")
            .unwrap()
            .with_environments(["live", "test"])
            .unwrap()
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let minted = format().generate(Some("test")).unwrap();
        let key = minted.key.expose_secret();
        assert!(key.starts_with("pb_test_"));
        assert_eq!(key.len(), "pb_test_".len() + BODY_LEN);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_eq!(minted.prefix, format!("pb_test_{}", minted.id));
        assert_eq!(minted.digest, Digest::of(key));
    }

    #[test]
    fn tagged_keys_have_the_documented_shape_and_verify() {
        let tag_key = TagKey::new('b', &[3; 32]).unwrap();
        let minted = format().generate_tagged(Some("live"), &tag_key).unwrap();
        let key = minted.key.expose_secret();
        assert_eq!(key.len(), "pb_live_".len() + TAGGED_BODY_LEN);
        assert_eq!(key.as_bytes()["pb_live_".len() + ID_LEN + SECRET_LEN], b'b');
        let Some(Presented::Native(parsed)) = format().parse(key) else {
            panic!("a tagged key parses");
        };
        assert_eq!(parsed.id(), &minted.id);
        assert!(parsed.is_tagged());
        assert!(parsed.tag_verifies(&tag_key));
        // The digest covers the text before the tag: one SHA-256 block, as untagged.
        let before_tag = &key[..key.len() - TAG_LEN - CHECKSUM_LEN];
        assert_eq!(minted.digest, Digest::of(before_tag));
        assert_eq!(parsed.digest(), minted.digest);
        assert_eq!(minted.key.digest(), minted.digest);
        assert!(before_tag.len() <= 55, "fits one SHA-256 block");
        assert_eq!(parsed.tag(&parsed.digest()).unwrap().secret_id(), 'b');
        // Another secret, or the same secret under another id, does not verify it.
        assert!(!parsed.tag_verifies(&TagKey::new('b', &[4; 32]).unwrap()));
        assert!(!parsed.tag_verifies(&TagKey::new('c', &[3; 32]).unwrap()));
        // An untagged key has no tag to verify.
        let untagged = format().generate(Some("live")).unwrap();
        let Some(Presented::Native(parsed)) = format().parse(untagged.key.expose_secret()) else {
            panic!("an untagged key parses");
        };
        assert!(!parsed.is_tagged());
        assert!(!parsed.tag_verifies(&tag_key));
    }

    /// A forger who knows the format but not the secret: a fresh secret part with the
    /// tag of a real key, or a made-up tag, with a correct checksum, fails the tag.
    #[test]
    fn a_forged_tag_with_a_valid_checksum_fails() {
        let tag_key = TagKey::new('a', &[9; 32]).unwrap();
        let real = format().generate_tagged(Some("live"), &tag_key).unwrap();
        let real = real.key.expose_secret();
        let tag_at = "pb_live_".len() + ID_LEN + SECRET_LEN;
        let with_checksum = |text: &str| {
            let checksum = crc32fast::hash(text.as_bytes());
            format!(
                "{text}{}",
                base62_padded(u128::from(checksum), CHECKSUM_LEN)
            )
        };
        let other_secret = format!(
            "{}{}{}",
            &real[..tag_at - SECRET_LEN],
            "Z".repeat(SECRET_LEN),
            &real[tag_at..real.len() - CHECKSUM_LEN]
        );
        let made_up = format!("{}a{}", &real[..tag_at], "0".repeat(TAG_VALUE_LEN));
        let too_big = format!("{}a{}", &real[..tag_at], "z".repeat(TAG_VALUE_LEN));
        for forged in [other_secret, made_up, too_big] {
            let forged = with_checksum(&forged);
            let Some(Presented::Native(parsed)) = format().parse(&forged) else {
                panic!("well-formed: {forged}");
            };
            assert!(parsed.is_tagged());
            assert!(!parsed.tag_verifies(&tag_key), "{forged}");
        }
    }

    #[test]
    fn tag_secrets_are_validated_and_never_shown() {
        assert!(TagKey::new('-', &[0; 32]).is_err());
        assert!(TagKey::new('é', &[0; 32]).is_err());
        let short = TagKey::new('a', &[0x5a; 31]).unwrap_err().to_string();
        assert!(short.contains("32"), "{short}");
        let key = TagKey::new('Q', &[0x5a; 32]).unwrap();
        assert_eq!(key.id(), 'Q');
        let shown = format!("{key:?}");
        assert!(shown.contains("'Q'") && !shown.contains("5a") && !shown.contains("90"));
    }

    #[test]
    fn keys_are_unique() {
        let f = format();
        let a = f.generate(Some("live")).unwrap();
        let b = f.generate(Some("live")).unwrap();
        assert_ne!(a.key, b.key);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn environment_must_be_configured() {
        let err = format().generate(Some("dev")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown environment \"dev\": expected live or test"
        );
        assert_eq!(
            format().generate(None).unwrap_err().to_string(),
            "this key format requires an environment: live or test"
        );
        let plain = KeyFormat::new("pbo").unwrap();
        assert_eq!(
            plain.generate(Some("live")).unwrap_err().to_string(),
            "unknown environment \"live\": this key format has no environments"
        );
        let key = plain.generate(None).unwrap();
        assert!(key.key.expose_secret().starts_with("pbo_"));
        assert!(plain.parse(key.key.expose_secret()).is_some());
    }

    #[test]
    fn debug_and_display_redact() {
        let minted = format().generate(Some("live")).unwrap();
        let secret = minted.key.expose_secret();
        for shown in [
            format!("{:?}", minted.key),
            format!("{}", minted.key),
            format!("{minted:?}"),
            format!("{:?}", format().parse(secret)),
        ] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains(&secret[minted.prefix.len()..]), "{shown}");
        }
    }

    #[test]
    fn digest_hex_round_trips() {
        let d = Digest::of("x");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(Digest::from_hex("zz").is_err());
    }

    #[test]
    fn invalid_config_is_refused() {
        assert!(KeyFormat::new("PB").is_err());
        assert!(KeyFormat::new("p_b").is_err());
        assert!(KeyFormat::new("").is_err());
        assert!(format().with_environments(["live", "live"]).is_err());
        assert!(format().with_imported_prefix("pb/").is_err());
        assert!(KeyId::new("a b").is_err());
    }

    #[test]
    fn imported_prefix_accepts_foreign_keys() {
        let f = KeyFormat::new("pf")
            .unwrap()
            .with_imported_prefix("pb_")
            .unwrap();
        let foreign = "pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTYXSIM";
        assert_eq!(f.parse(foreign), Some(Presented::Imported(foreign)));
        assert_eq!(f.parse("pb_"), None);
        assert_eq!(f.parse("pb_abc def"), None);
        assert_eq!(f.parse("xx_abc"), None);
    }

    #[test]
    fn a_mistyped_native_key_is_never_taken_for_an_imported_one() {
        let f = KeyFormat::new("pb")
            .unwrap()
            .with_environments(["live", "test"])
            .unwrap()
            .with_imported_prefix("pb_")
            .unwrap();
        let minted = f.generate(Some("live")).unwrap();
        let key = minted.key.expose_secret();
        assert!(matches!(f.parse(key), Some(Presented::Native(_))));
        // A changed character (checksum), a dropped one and an added one.
        let mut typo = key.to_owned().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        for bad in [typo.as_str(), &key[..key.len() - 1], &format!("{key}x")] {
            assert_eq!(f.parse(bad), None, "{bad}");
        }
        // A foreign key with the same prefix but no environment is still imported.
        let foreign = "pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTYXSIM";
        assert_eq!(f.parse(foreign), Some(Presented::Imported(foreign)));
    }
}
