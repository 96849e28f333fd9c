//! Database access: pool, TLS, statement execution, rows to JSON.

pub mod connect;
pub mod ident;
pub mod render;
pub mod tls;

pub use ident::quote_ident;
pub mod deadline;
pub mod exec;
pub mod mask;
pub mod params;
pub mod pool;
pub mod session;

pub use pool::{Database, UserLogin};
