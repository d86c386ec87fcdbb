//! Turning a [`Config`] into a running Pingora [`Server`]: server settings, listeners, the proxy
//! service and one health-check service per checked upstream group.

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::Opt;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::config::{Config, ServerSettings};
use crate::gateway::Gateway;
use crate::proxy::HandoffProxy;
use crate::session::jwks::JwksRefresher;

/// Maps `[server]` onto Pingora's own settings (there is no second YAML file).
pub fn pingora_conf(s: &ServerSettings) -> ServerConf {
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        daemon: s.daemon,
        error_log: s.error_log.clone(),
        ca_file: s.ca_file.clone(),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        ..ServerConf::default()
    }
}

/// Builds a bootstrapped server ready to `run`. `opt` carries Pingora's command-line flags
/// (`--upgrade`, `--daemon`).
pub fn build(config: Config, opt: Option<Opt>) -> Result<Server, String> {
    let settings = config.server.clone();
    let mut server = Server::new_with_opt_and_conf(opt, pingora_conf(&settings));
    server.bootstrap();
    let gateway = Arc::new(Gateway::new(config)?);
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        HandoffProxy::new(gateway.clone()),
        "handoff",
    );
    if settings.h2c {
        if let Some(app) = proxy.app_logic_mut() {
            let mut options = HttpServerOptions::default();
            options.h2c = true;
            app.server_options = Some(options);
        }
    }
    for addr in &settings.listen {
        proxy.add_tcp(addr);
    }
    if let Some(tls) = &settings.tls {
        for addr in &tls.listen {
            let mut tls_settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)
                .map_err(|e| format!("server.tls: cannot load the certificate or key: {e}"))?;
            tls_settings.enable_h2();
            proxy.add_tls_with_settings(addr, None, tls_settings);
        }
    }
    let jwks = gateway.jwks().map(|jwks| {
        server.add_service(background_service(
            "jwks refresh",
            JwksRefresher(jwks.clone()),
        ))
    });
    let proxy = server.add_service(proxy);
    // With `startup_wait_ms`, the listeners open once the first keys are in (or the wait ran out).
    if let Some(jwks) = jwks {
        proxy.add_dependency(jwks);
    }
    for group in gateway.upstreams() {
        if let Some(health) = group.health_service() {
            server.add_service(health);
        }
    }
    Ok(server)
}
