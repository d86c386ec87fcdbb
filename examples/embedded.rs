//! A Pingora proxy of its own — its own routing, upstream, headers and health page — that
//! embeds Handoff for the AI apps. Handoff answers its routes (`/ai/*` in
//! `conf/embedded.toml`) and its endpoints (`/_handoff/*`); everything else is the host's.
//! On every request Handoff also strips forged identity headers, and on browser pages it signs
//! the TypingMind widget in.
//!
//! ```sh
//! export INTRANET_SESSION_SECRET=… YOURGPT_SSO_SECRET=… TYPINGMIND_JWT_SECRET=…
//! cargo run --example embedded -- conf/embedded.toml 127.0.0.1:8090 127.0.0.1:9000
//! ```
//!
//! Arguments (all optional): the Handoff config, the address to listen on, the host's own
//! upstream.
// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use handoff::{Filtered, Handoff, HandoffCtx};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

/// The host: its own routing, with Handoff called in each phase.
pub struct HostProxy {
    handoff: Handoff,
    upstream: String,
}

/// The host's per-request state, with Handoff's inside.
pub struct HostCtx {
    handoff: HandoffCtx,
}

#[async_trait]
impl ProxyHttp for HostProxy {
    type CTX = HostCtx;

    fn new_ctx(&self) -> HostCtx {
        HostCtx {
            handoff: self.handoff.new_ctx(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut HostCtx) -> Result<bool> {
        match self
            .handoff
            .request_filter(session, &mut ctx.handoff)
            .await?
        {
            Filtered::Answered => return Ok(true),
            // This host sends Handoff's proxy routes (if its config has any) to its own
            // upstream too.
            Filtered::Proxy | Filtered::NotMine => {}
        }
        // The host's own routing.
        if session.req_header().uri.path() == "/host/health" {
            let mut resp = ResponseHeader::build(200, Some(2))?;
            resp.insert_header("Content-Type", "text/plain")?;
            resp.insert_header("Content-Length", "8")?;
            session.write_response_header(Box::new(resp), false).await?;
            session
                .write_response_body(Some(Bytes::from_static(b"host ok\n")), true)
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut HostCtx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut HostCtx,
    ) -> Result<()> {
        // Handoff first: it removes identity headers a client may have forged.
        self.handoff
            .upstream_request_filter(upstream, &ctx.handoff)?;
        upstream.insert_header("X-Host-Route", "intranet")?;
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut HostCtx,
    ) -> Result<()> {
        response.insert_header("X-Served-By-Host", "embedded")?;
        self.handoff
            .response_filter(session, response, &mut ctx.handoff)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut HostCtx,
    ) -> Result<Option<Duration>> {
        self.handoff
            .response_body_filter(body, end_of_stream, &mut ctx.handoff)?;
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut HostCtx) {
        // Handoff's metrics and access-log line; the host would log its own requests too.
        self.handoff.log_access(session, e, &ctx.handoff);
    }
}

/// The host's server: `handoff` embedded, listening on `listen`, proxying to `upstream`.
pub fn host_server(
    handoff: Handoff,
    listen: &str,
    upstream: &str,
    conf: ServerConf,
) -> Result<Server> {
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    // Health checks and the JWKS refresher; the listeners wait for the first signing keys.
    let keys = handoff.add_services(&mut server);
    let mut proxy = http_proxy_service(
        &server.configuration,
        HostProxy {
            handoff,
            upstream: upstream.to_string(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy).add_dependencies(&keys);
    Ok(server)
}

#[allow(dead_code)] // the integration test compiles this file as a module and never calls it
fn main() {
    let mut args = std::env::args().skip(1);
    let config = args.next().unwrap_or_else(|| "conf/embedded.toml".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let handoff = match Handoff::from_file(&config) {
        Ok(h) => h,
        Err(e) => {
            eprint!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "host on {listen} → {upstream}; Handoff: {}",
        handoff.summary()
    );
    match host_server(handoff, &listen, &upstream, ServerConf::default()) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(2);
        }
    }
}
