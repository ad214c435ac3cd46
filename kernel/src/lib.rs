//! threadbook: a Jupyter kernel for Rust on the evcxr engine.
//!
//! Layers, in the order data flows: [`wire`] (frames, signing) →
//! [`messages`] (typed contents) → [`server`] (sockets and threads) →
//! [`dispatch`] (what each request does) → [`engine`] (the language: evcxr,
//! or a mock for tests) → [`iopub`] (everything published). Around them:
//! [`connection`], [`history`], [`syntax`], [`install`], [`logging`], and
//! [`lifecycle`] (the kernel's processes, from start to exit).

pub mod connection;
pub mod dispatch;
pub mod engine;
pub mod history;
pub mod install;
pub mod iopub;
pub mod lifecycle;
pub mod logging;
pub mod messages;
pub mod server;
pub mod syntax;
pub mod wire;
