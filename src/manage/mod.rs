//! Key lifecycle: the [`KeyManager`] (create, list, revoke, rotate with grace) and the
//! write-behind [`LastUsed`] buffer.

mod last_used;
mod manager;

pub use self::last_used::LastUsed;
pub use self::manager::{
    Actor, CreatedKey, Denied, Expiry, KeyManager, ManageError, NewKey, MAX_NAME_LEN,
};
