//! The smallest Pingora proxy: one fixed upstream, no logic — the floor that
//! `benches/instructions.sh` measures Handoff against ("what Pingora itself costs").
//!
//! Run: `cargo run --release --example minimal_proxy -- 127.0.0.1:8099 127.0.0.1:9000`
//! (one worker thread, Pingora's defaults otherwise).
// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use pingora::prelude::*;

/// Proxies everything to one prebuilt peer.
struct Minimal {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        panic!("usage: minimal_proxy LISTEN_ADDR UPSTREAM_ADDR");
    };
    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let peer = HttpPeer::new(upstream.as_str(), false, String::new());
    let mut service = http_proxy_service(&server.configuration, Minimal { peer });
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever();
}
