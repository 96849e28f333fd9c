//! The MCP tools, one module per family. A tool is a params type (Deserialize + JsonSchema), an output type
//! (Serialize + JsonSchema) and an async handler returning `Result<Output, ToolError>`.

pub mod catalog;
pub mod curated;
pub mod dba;
pub mod dispatch;
pub mod error;
pub mod info;
pub mod profiles;
pub mod query;
pub mod registry;
pub mod schema;
pub mod stats;

pub use error::ToolError;
