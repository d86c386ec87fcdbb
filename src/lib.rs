//! Handoff: intranet sign-in for AI apps, as a plugin for your Pingora proxy.
//!
//! Handoff recognises the person behind a request from the intranet's own session — a JWT
//! cookie it verifies (shared secret, public key, or keys the identity provider publishes), an
//! opaque cookie it checks with the intranet's userinfo endpoint, or a Bearer token — and on
//! its configured routes hands them on to **YourGPT** or **TypingMind** already logged in, with
//! a freshly minted token. Intranet pages that embed the TypingMind widget get it signed in as
//! they pass through. Routes, apps and policies come from one config (see `conf/handoff.toml`).
//!
//! The `handoff` binary is the first user of this library ([`standalone`]); your own proxy can
//! embed it in a few lines:
//!
//! | your `ProxyHttp` phase | call |
//! |---|---|
//! | `new_ctx` | [`Handoff::new_ctx`], kept inside your CTX |
//! | `request_filter` | [`Handoff::request_filter`]: [`Filtered::Answered`] → return `Ok(true)`; [`Filtered::NotMine`] → your routing |
//! | `upstream_peer` | [`Handoff::upstream_peer`] for [`Filtered::Proxy`] requests, if you proxy Handoff's routes |
//! | `upstream_request_filter` | [`Handoff::upstream_request_filter`] on every request (strips forged identity headers) |
//! | `response_filter`, `response_body_filter` | [`Handoff::response_filter`], [`Handoff::response_body_filter`] (widget sign-in) |
//! | `logging` | [`Handoff::log_access`] (metrics, and the access-log line unless `[log] access = false`) |
//! | at start-up | [`Handoff::add_services`] (health checks, JWKS refresh) |
//!
//! Optional helpers: [`Handoff::fail_to_connect`], [`Handoff::fail_to_proxy`],
//! [`Handoff::answer_not_found`]. Operations: [`Handoff::reload`] (re-read the config file and
//! swap it in, e.g. on your SIGHUP), [`Handoff::metrics_text`] or
//! [`Handoff::add_metrics_service`] (Prometheus).
//!
//! ```no_run
//! use async_trait::async_trait;
//! use handoff::{Filtered, Handoff, HandoffCtx};
//! use pingora::prelude::*;
//! use pingora::proxy::{ProxyHttp, Session};
//!
//! struct MyProxy {
//!     handoff: Handoff,
//! }
//!
//! #[async_trait]
//! impl ProxyHttp for MyProxy {
//!     type CTX = HandoffCtx;
//!     fn new_ctx(&self) -> HandoffCtx {
//!         self.handoff.new_ctx()
//!     }
//!     async fn request_filter(&self, session: &mut Session, ctx: &mut HandoffCtx) -> Result<bool> {
//!         Ok(self.handoff.request_filter(session, ctx).await? == Filtered::Answered)
//!     }
//!     async fn upstream_peer(&self, _: &mut Session, _: &mut HandoffCtx) -> Result<Box<HttpPeer>> {
//!         Ok(Box::new(HttpPeer::new("127.0.0.1:9000", false, String::new())))
//!     }
//!     async fn upstream_request_filter(
//!         &self,
//!         _: &mut Session,
//!         upstream: &mut RequestHeader,
//!         ctx: &mut HandoffCtx,
//!     ) -> Result<()> {
//!         self.handoff.upstream_request_filter(upstream, ctx)
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let handoff = Handoff::from_settings(
//!         serde_json::json!({
//!             "session": {
//!                 "cookie": "intranet_session",
//!                 "algorithms": ["HS256"],
//!                 "secret": { "env": "INTRANET_SESSION_SECRET" },
//!             },
//!             "apps": { "chat": {
//!                 "kind": "typingmind",
//!                 "instance_url": "https://chat.example.com",
//!                 "secret": { "env": "TYPINGMIND_JWT_SECRET" },
//!             }},
//!             "routes": [{ "path": "/ai/chat", "app": "chat" }],
//!         }),
//!         ".",
//!     )?;
//!     let mut server = Server::new(None)?;
//!     server.bootstrap();
//!     let keys = handoff.add_services(&mut server);
//!     let mut proxy = http_proxy_service(&server.configuration, MyProxy { handoff });
//!     proxy.add_tcp("127.0.0.1:8080");
//!     server.add_service(proxy).add_dependencies(&keys);
//!     server.run_forever()
//! }
//! ```
//!
//! `examples/embedded.rs` is a complete host with its own routing. The API is what this page
//! shows: [`Handoff`], [`HandoffCtx`], [`Filtered`], [`Identity`], [`ConfigErrors`] and
//! [`standalone`]. The crate's own tests, benchmarks and fuzz targets reach further through one
//! hidden path, `handoff::internals`, which is not API and may change.
//!
//! Cargo features: `cli` (the `handoff` command line and its log setup) and `demo` (`handoff
//! demo` and the vendor stand-ins), both default. An embedding proxy sets
//! `default-features = false`; it also needs Handoff's two `[patch.crates-io]` lines for
//! Pingora (see the README).

#![warn(missing_docs)]
// Tests may unwrap; the library itself may not (Cargo.toml's [lints.clippy]).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod plugin;
pub mod standalone;

pub use config::{ConfigError, ConfigErrors};

/// What the crate's own tests, benchmarks, examples and fuzz targets reach into: the config
/// loader, session recognition, the app connectors, paths and routes, the demo and the vendor
/// stand-ins. Not API — it changes without notice; an embedding proxy uses the items above.
#[doc(hidden)]
#[path = "."]
pub mod internals {
    #[path = "apps/mod.rs"]
    pub mod apps;
    #[path = "config/mod.rs"]
    pub mod config;
    #[cfg(feature = "demo")]
    #[path = "demo/mod.rs"]
    pub mod demo;
    #[path = "identity.rs"]
    pub mod identity;
    #[path = "intranet_session/mod.rs"]
    pub mod intranet_session;
    #[cfg(feature = "cli")]
    #[path = "log_writer.rs"]
    pub mod log_writer;
    #[cfg(feature = "cli")]
    #[path = "logging.rs"]
    pub mod logging;
    #[path = "paths.rs"]
    pub mod paths;
    #[path = "routes.rs"]
    pub mod routes;
    #[path = "shared_state.rs"]
    pub mod shared_state;
    #[cfg(feature = "demo")]
    #[path = "standins/mod.rs"]
    pub mod standins;
}
pub use identity::Identity;
#[cfg(feature = "demo")]
pub(crate) use internals::standins;
pub(crate) use internals::{apps, config, identity, intranet_session, paths, routes, shared_state};
#[cfg(feature = "cli")]
pub(crate) use internals::{log_writer, logging};
pub use plugin::{Filtered, Handoff, HandoffCtx, LoadError};

mod errors;
mod gateway;
mod https_port;
mod keyed;
mod metrics;
mod outbound;
mod pages;
mod policy;
mod reply;
#[cfg(test)]
mod test_config;
mod upstream;
