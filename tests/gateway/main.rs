mod common;
mod config_check;
mod passthrough;
mod routing;
mod sessions;
