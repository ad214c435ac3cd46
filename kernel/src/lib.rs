//! threadbook: a Jupyter kernel for Rust on the evcxr engine.
//!
//! The path of a request, one file each: [`server`] (sockets and threads)
//! receives it → [`wire`] verifies its frames → [`protocol`] decodes it into a
//! typed request → [`dispatch`] picks its handler → [`executor`] runs it in
//! order on the [`engine`] (evcxr, or a mock for tests) → [`pipeline`]
//! answers it (busy, reply, idle) → [`iopub`] publishes everything else.
//! Around them: [`connection`], [`history`], [`syntax`], [`install`],
//! [`logging`], and [`lifecycle`] (the kernel's processes, from start to
//! exit).

pub mod connection;
pub mod dispatch;
pub mod engine;
pub mod executor;
pub mod history;
pub mod install;
pub mod iopub;
pub mod lifecycle;
pub mod logging;
pub mod pipeline;
pub mod protocol;
pub mod server;
pub mod syntax;
pub mod wire;

/// The message types' former home, kept so `crate::messages::…` paths work.
pub use protocol as messages;
