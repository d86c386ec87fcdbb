//! Handoff: a Pingora gateway in front of an intranet that recognises the intranet's logged-in
//! user from its own session cookie and passes everything else through unchanged.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library:
//! [`config::load`] → [`server::build`] → `Server::run`.

pub mod config;
pub mod gateway;
pub mod handoff;
pub mod identity;
pub mod pages;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod routes;
pub mod server;
pub mod session;
pub mod standins;
pub mod upstream;
