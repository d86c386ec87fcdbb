// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

mod bad_input;
mod bounds;
mod conformance;

mod config_check;
mod demo;
mod differential;
mod embedded;
mod faults;
mod fleet;
mod idp;
mod jwks;
mod keepalive;
mod leaks;
mod lifecycle;
mod monitoring;
mod observability;
mod pages;
mod passthrough;
mod pipelining;
mod policy;
mod pooling;
mod process;
mod routing;
mod saas;
mod security;
mod sessions;
mod spawned;
mod spoofing;
mod tls;
mod typingmind;
mod userinfo;
mod yourgpt;
mod yourgpt_widget;
