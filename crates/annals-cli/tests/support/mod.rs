//! What the viewer's HTTP tests and browser tests share: a raw HTTP client, the `annals serve`
//! process, and the stores they look at.

#![allow(dead_code)] // each test crate uses its own part

pub mod http;
pub mod server;
pub mod stores;
