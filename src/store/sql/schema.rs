//! The embedded, versioned schema shared by the SQL stores.

use super::TablePrefix;
use crate::store::StoreError;

/// The schema version this build of the crate writes and understands.
pub(crate) const CURRENT_VERSION: i64 = 4;

/// One step of the schema, from `version - 1` to `version`.
pub(crate) struct Migration {
    pub(crate) version: i64,
    /// SQL with `{prefix}` (and `{channel}`) placeholders; may hold several statements.
    pub(crate) sql: &'static str,
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/sqlite/0001_create.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/sqlite/0002_audit_actor.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/sqlite/0003_tag_secrets.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/sqlite/0004_key_usage.sql"),
    },
];

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/postgres/0001_create.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/postgres/0002_audit_actor.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/postgres/0003_tag_secrets.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/postgres/0004_key_usage.sql"),
    },
];

/// The migrations still to apply to a database at `found`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the database is at a version newer than this crate
/// knows: it was migrated by a newer tower-api-key, and writing it with this one could
/// lose what the newer version relies on.
pub(crate) fn pending<'a>(
    migrations: &'a [Migration],
    found: i64,
    prefix: &TablePrefix,
) -> Result<impl Iterator<Item = &'a Migration>, StoreError> {
    check(found, prefix)?;
    Ok(migrations.iter().filter(move |m| m.version > found))
}

/// Refuses a schema newer than [`CURRENT_VERSION`].
pub(crate) fn check(found: i64, prefix: &TablePrefix) -> Result<(), StoreError> {
    if found > CURRENT_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database schema of the tower-api-key tables (prefix {prefix:?}) is at version \
             {found}, newer than version {CURRENT_VERSION} that this build of tower-api-key \
             knows; it was migrated by a newer release. Upgrade tower-api-key rather than run \
             an older one against it"
        )));
    }
    Ok(())
}

/// The error for a database that was never migrated, or only partly.
pub(crate) fn outdated(found: i64, prefix: &TablePrefix) -> StoreError {
    StoreError::Corrupt(format!(
        "the database schema of the tower-api-key tables (prefix {prefix:?}) is at version \
         {found}, but this build needs version {CURRENT_VERSION}: call `migrate()` first"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Migration] = &[
        Migration {
            version: 1,
            sql: "one",
        },
        Migration {
            version: 2,
            sql: "two",
        },
    ];

    #[test]
    fn only_missing_steps_are_pending() {
        let prefix = TablePrefix::default();
        let steps = |found| -> Vec<i64> {
            pending(ALL, found, &prefix)
                .unwrap()
                .map(|m| m.version)
                .collect()
        };
        assert_eq!(steps(0), [1, 2]);
        assert_eq!(steps(1), [2]);
        assert!(steps(2).is_empty());
    }

    #[test]
    fn a_newer_schema_is_refused_with_both_versions_named() {
        let prefix = TablePrefix::new("auth_").unwrap();
        let Err(StoreError::Corrupt(message)) = pending(ALL, CURRENT_VERSION + 1, &prefix) else {
            panic!("a newer schema was accepted");
        };
        assert!(message.contains(&format!("version {}", CURRENT_VERSION + 1)));
        assert!(message.contains(&format!("version {CURRENT_VERSION}")));
        assert!(message.contains("\"auth_\""));
        assert!(message.contains("Upgrade tower-api-key"));
    }

    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn both_backends_reach_the_current_version() {
        for set in [SQLITE, POSTGRES] {
            assert_eq!(set.last().map(|m| m.version), Some(CURRENT_VERSION));
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
            }
        }
    }
}
