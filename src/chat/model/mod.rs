//! The model behind the chat, spoken to over the Chat Completions API.

pub mod client;
pub mod stream;
pub mod wire;
