//! The authentication middleware: [`AuthenticateLayer`] and [`Authenticate`], around the
//! [`KeyVerifier`] that checks one presented key. Public through [`parts`](crate::parts).

mod authenticator;
mod config;
mod layer;
mod service;

pub use self::authenticator::{KeyVerifier, UNIDENTIFIED_CLIENTS_METRIC};
pub use self::layer::AuthenticateLayer;
pub use self::service::Authenticate;
