//! Upstreams for the load harness (benches/load.sh) that nginx cannot play: the YourGPT
//! stand-in (verifies every minted token with the secret, as YourGPT does) and a slow intranet
//! answering every request after a fixed delay.
//!
//! ```sh
//! cargo run --release --example bench_upstreams -- YOURGPT_ADDR SECRET_FILE SLOW_ADDR DELAY_MS
//! ```
// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use handoff::internals::standins::yourgpt::{YourGptStandIn, CLIENT_ID};

fn arg(n: usize) -> String {
    std::env::args().nth(n).unwrap_or_else(|| {
        eprintln!("usage: bench_upstreams YOURGPT_ADDR SECRET_FILE SLOW_ADDR DELAY_MS");
        std::process::exit(2)
    })
}

fn main() -> std::io::Result<()> {
    let yourgpt: SocketAddr = arg(1).parse().map_err(std::io::Error::other)?;
    let secret = std::fs::read(arg(2))?;
    let secret: Vec<u8> = secret.into_iter().filter(|b| *b != b'\n').collect();
    let slow: SocketAddr = arg(3).parse().map_err(std::io::Error::other)?;
    let delay = Duration::from_millis(arg(4).parse().map_err(std::io::Error::other)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        YourGptStandIn::start_on(yourgpt, secret, CLIENT_ID).await?;
        let app = Router::new().fallback(get(move || async move {
            tokio::time::sleep(delay).await;
            "slow page, 100 bytes of it: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
        }));
        let listener = tokio::net::TcpListener::bind(slow).await?;
        println!("yourgpt stand-in on {yourgpt}, slow intranet on {slow} ({delay:?})");
        axum::serve(listener, app).await
    })
}
