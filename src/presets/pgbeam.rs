//! PgBeam: personal keys (`pbu_…`, every organization of their user) and organization
//! keys (`pbo_…`, one organization), sent as `Authorization: Bearer` or `X-API-Key`,
//! with an optional expiry of 30, 90 or 365 days
//! ([`Expiry::Days30`](crate::manage::Expiry::Days30) and its siblings).
//!
//! A personal key's owner is an [`Owner::User`](crate::Owner::User); check its
//! membership with [`Principal::check_organization_with`](crate::Principal::check_organization_with).

use crate::credentials::KeySources;
use crate::key::KeyFormat;

/// Personal keys: `pbu_…`.
///
/// # Panics
///
/// Never: the format is fixed, and a unit test builds it.
pub fn personal_key_format() -> KeyFormat {
    KeyFormat::new("pbu").expect("the PgBeam personal key format is valid")
}

/// Organization keys: `pbo_…`.
///
/// # Panics
///
/// Never: the format is fixed, and a unit test builds it.
pub fn organization_key_format() -> KeyFormat {
    KeyFormat::new("pbo").expect("the PgBeam organization key format is valid")
}

/// `Authorization: Bearer` or `X-API-Key`.
pub fn key_sources() -> KeySources {
    KeySources::bearer_or_header()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixed_formats_build() {
        let personal = super::personal_key_format().generate(None).unwrap();
        assert!(personal.key.expose_secret().starts_with("pbu_"));
        let organization = super::organization_key_format().generate(None).unwrap();
        assert!(organization.key.expose_secret().starts_with("pbo_"));
    }
}
