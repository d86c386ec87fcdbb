mod common;

mod bad_input;
mod browser;
mod config_check;
mod embedded;
mod faults;
mod idp;
mod jwks;
mod passthrough;
mod policy;
mod routing;
mod sessions;
mod spoofing;
mod typingmind;
mod userinfo;
mod yourgpt;
