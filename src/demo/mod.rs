//! `handoff demo`: the whole flow on this machine, with no accounts anywhere. The gateway runs
//! with a real config (conf/demo.toml); the demo intranet and the stand-ins of YourGPT and
//! TypingMind listen where that config says the intranet and the apps are.

pub mod intranet;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::config::{self, AppKind, Config, SecretRef};
use crate::standins::typingmind::TypingMindStandIn;
use crate::standins::yourgpt::YourGptStandIn;

/// Where each part of the demo listens, read from the config.
#[derive(Debug, Clone)]
pub struct Plan {
    pub gateway: String,
    pub intranet: SocketAddr,
    yourgpt: Option<(SocketAddr, String, Vec<u8>)>,
    typingmind: Option<(SocketAddr, String, Vec<u8>)>,
    /// The YourGPT chatbot widget (served by the YourGPT stand-in): its secret, widget ids and
    /// script URL.
    yourgpt_widget: Option<(Vec<u8>, Vec<String>, String)>,
    session_secret: Vec<u8>,
}

impl Plan {
    /// Reads the demo's layout from a loaded config: the first upstream server is the intranet,
    /// each app's API or instance URL is where its stand-in listens.
    pub fn from_config(config: &Config, path: &Path) -> Result<Plan, String> {
        let gateway = config
            .server
            .listen
            .first()
            .cloned()
            .ok_or("the demo needs a [server] listen address")?;
        let intranet = config
            .upstreams
            .first()
            .and_then(|u| u.servers.first().copied())
            .ok_or("the demo needs an upstream: the demo intranet listens on its first server")?;
        let mut plan = Plan {
            gateway,
            intranet,
            yourgpt: None,
            typingmind: None,
            yourgpt_widget: None,
            session_secret: session_secret(path)?,
        };
        for app in &config.apps {
            match &app.kind {
                AppKind::YourGpt(s) => {
                    let addr = loopback_addr(&s.api_url)?;
                    plan.yourgpt = Some((addr, s.client_id.clone(), s.secret.expose().to_vec()));
                    if let Some(w) = &s.widget {
                        if loopback_addr(&w.script_url)? != addr {
                            return Err(format!(
                                "{}: the demo serves the chatbot widget from the YourGPT stand-in ({})",
                                w.script_url, s.api_url
                            ));
                        }
                        plan.yourgpt_widget = Some((
                            w.secret.expose().to_vec(),
                            w.widget_ids.clone(),
                            w.script_url.clone(),
                        ));
                    }
                }
                AppKind::TypingMind(s) => {
                    let addr = loopback_addr(&s.instance_url)?;
                    plan.typingmind =
                        Some((addr, s.instance_url.clone(), s.secret.expose().to_vec()));
                }
                // The demo has no stand-in for these: they lead where the config says.
                AppKind::JwtLink(_) | AppKind::DiscourseConnect(_) => {}
            }
        }
        Ok(plan)
    }
}

/// The demo only ever listens on loopback.
fn loopback_addr(url: &str) -> Result<SocketAddr, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = u.host_str().unwrap_or_default();
    let port = u.port_or_known_default().unwrap_or(80);
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|_| format!("{url}: the demo's stand-ins listen on loopback IP addresses only"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url}: the demo's stand-ins listen on loopback only"
        ));
    }
    Ok(addr)
}

/// The session secret from the config's `[session] secret` (the demo intranet signs with it).
fn session_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let reference = table
        .get("session")
        .and_then(|s| s.get("secret"))
        .cloned()
        .ok_or("the demo needs [session] secret (the demo intranet signs its cookies with it)")?;
    let reference: SecretRef = reference
        .try_into()
        .map_err(|e| format!("session.secret: {e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(reference.resolve(base)?.expose().to_vec())
}

/// Starts the demo intranet and the stand-ins on a runtime of their own (they live as long as
/// the process) and returns once they listen.
pub fn start_services(plan: &Plan) -> Result<(), String> {
    let plan = plan.clone();
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async move {
            let result = serve(&plan).await;
            let failed = result.is_err();
            let _ = ready.send(result);
            if !failed {
                std::future::pending::<()>().await;
            }
        });
    });
    started
        .recv()
        .map_err(|_| "the demo services stopped before they started".to_string())?
}

async fn serve(plan: &Plan) -> Result<(), String> {
    let bind = |what: &str, addr: SocketAddr, e: std::io::Error| {
        format!("cannot listen for the {what} on {addr}: {e}")
    };
    let mut widget_src = String::new();
    if let Some((addr, instance, secret)) = &plan.typingmind {
        TypingMindStandIn::start_on(*addr, secret.clone())
            .await
            .map_err(|e| bind("TypingMind stand-in", *addr, e))?;
        widget_src = format!("{instance}/widget.js");
    }
    if let Some((addr, client_id, secret)) = &plan.yourgpt {
        let yourgpt = YourGptStandIn::start_on(*addr, secret.clone(), client_id)
            .await
            .map_err(|e| bind("YourGPT stand-in", *addr, e))?;
        // The person the stand-in treats as "already registered": the email path.
        yourgpt.add_unconfirmed("linus@demo.example");
        if let Some((secret, ids, _)) = &plan.yourgpt_widget {
            yourgpt.serve_widget(secret.clone(), ids.clone());
        }
    }
    let chatbot = plan
        .yourgpt_widget
        .as_ref()
        .and_then(|(_, ids, src)| Some((src.clone(), ids.first()?.clone())));
    intranet::start(
        plan.intranet,
        plan.session_secret.clone(),
        widget_src,
        chatbot,
    )
    .await
    .map_err(|e| bind("demo intranet", plan.intranet, e))
}

/// How the demo is reached from elsewhere than this machine's own browser.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The gateway's address as the browser reaches it (`--public-url`): the stand-ins'
    /// browser-facing URLs take its host.
    pub public_url: Option<url::Url>,
    /// Where the gateway and the stand-ins listen instead of loopback (`--listen`). The demo
    /// intranet always stays on loopback: it believes identity headers.
    pub listen: Option<IpAddr>,
}

impl Reach {
    /// Checks `--public-url`: an absolute http(s) URL with a host and nothing after it but `/`.
    pub fn public_url(text: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(text).map_err(|e| format!("--public-url {text:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "--public-url {text:?}: give the gateway's address as the browser reaches it, \
                 e.g. http://demo.example.net:8080"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "--public-url: no user name or password in it (the browser opens it)".to_string(),
            );
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "--public-url {text:?}: only scheme, host and port (the demo serves from /)"
            ));
        }
        Ok(url)
    }

    /// Moves the demo: listen addresses onto `listen`, the stand-ins' browser-facing URLs
    /// (YourGPT's login page and chatbot script, the TypingMind instance) onto the public host.
    fn apply(&self, config: &mut Config, plan: &mut Plan) -> Result<(), String> {
        if let Some(ip) = self.listen {
            let moved = |addr: &str| -> Result<String, String> {
                let a: SocketAddr = addr
                    .parse()
                    .map_err(|_| format!("server.listen {addr:?} is not IP:port"))?;
                Ok(SocketAddr::new(ip, a.port()).to_string())
            };
            config.server.listen = config
                .server
                .listen
                .iter()
                .map(|a| moved(a))
                .collect::<Result<_, _>>()?;
            plan.gateway = moved(&plan.gateway)?;
            for stand_in in [&mut plan.yourgpt, &mut plan.typingmind]
                .into_iter()
                .flatten()
            {
                stand_in.0.set_ip(ip);
            }
            // The gateway calls YourGPT's API where the stand-in now listens (on every
            // address, loopback is one of them).
            if !ip.is_unspecified() {
                for app in &mut config.apps {
                    if let AppKind::YourGpt(s) = &mut app.kind {
                        let mut api = url::Url::parse(&s.api_url)
                            .map_err(|e| format!("{}: {e}", s.api_url))?;
                        api.set_ip_host(ip)
                            .map_err(|()| format!("{}: cannot move it to {ip}", s.api_url))?;
                        s.api_url = api.as_str().trim_end_matches('/').to_string();
                    }
                }
            }
        }
        let Some(public) = &self.public_url else {
            return Ok(());
        };
        let host = public.host_str().unwrap_or_default().to_string();
        let on_public_host = |text: &str| -> Result<String, String> {
            let mut u = url::Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
            u.set_host(Some(&host))
                .map_err(|e| format!("--public-url host {host:?}: {e}"))?;
            Ok(u.as_str().trim_end_matches('/').to_string())
        };
        for app in &mut config.apps {
            match &mut app.kind {
                AppKind::YourGpt(s) => {
                    s.login_url = on_public_host(&s.login_url)?;
                    if let Some(w) = &mut s.widget {
                        w.script_url = on_public_host(&w.script_url)?;
                    }
                }
                AppKind::TypingMind(s) => s.instance_url = on_public_host(&s.instance_url)?,
                AppKind::JwtLink(_) | AppKind::DiscourseConnect(_) => {}
            }
        }
        if let Some((_, instance, _)) = &mut plan.typingmind {
            *instance = on_public_host(instance)?;
        }
        if let Some((_, _, script)) = &mut plan.yourgpt_widget {
            *script = on_public_host(script)?;
        }
        Ok(())
    }
}

/// Runs the demo: the services, then the gateway (until stopped).
pub fn run(path: &Path, reach: &Reach) -> Result<(), String> {
    let mut config = config::load(path).map_err(|e| e.to_string())?;
    let mut plan = Plan::from_config(&config, path)?;
    reach.apply(&mut config, &mut plan)?;
    start_services(&plan)?;
    let metrics = config.server.metrics_listen.clone();
    let server = crate::standalone::build_with_config(config, Some(path.to_path_buf()), None)
        .map_err(|e| e.to_string())?;
    println!("Handoff demo — everything runs on this machine; nothing is real.");
    match &reach.public_url {
        Some(public) => println!(
            "  open  {public}   (the gateway, listening on {})",
            plan.gateway
        ),
        None => println!("  open  http://{}/   (the gateway)", plan.gateway),
    }
    println!("        demo intranet        http://{}", plan.intranet);
    // Where the browser finds each stand-in: the public host when there is one.
    let shown = |addr: &SocketAddr| match reach.public_url.as_ref().and_then(|u| u.host_str()) {
        Some(host) => format!("http://{host}:{} (listening on {addr})", addr.port()),
        None => format!("http://{addr}"),
    };
    if let Some((addr, ..)) = &plan.yourgpt {
        println!("        YourGPT stand-in     {}", shown(addr));
    }
    if let Some((addr, ..)) = &plan.typingmind {
        println!("        TypingMind stand-in  {}", shown(addr));
    }
    if let Some(addr) = metrics {
        println!("        metrics              http://{addr}/metrics");
    }
    if reach.listen.is_some_and(|ip| !ip.is_loopback()) {
        println!(
            "Listening beyond loopback: the demo's secrets are public, so anyone who can reach \
             this machine can sign in as a demo person. The demo intranet stays on {} (it \
             believes identity headers; only the gateway may reach it).",
            plan.intranet
        );
    } else if reach.public_url.is_some() {
        let forwards: Vec<String> = std::iter::once(plan.gateway.parse::<SocketAddr>().ok())
            .chain([plan.yourgpt.as_ref(), plan.typingmind.as_ref()].map(|s| s.map(|s| s.0)))
            .flatten()
            .map(|a| format!("-L {port}:{a}", port = a.port()))
            .collect();
        println!(
            "Listening on loopback only: forward the ports (ssh {} SERVER) or add \
             --listen 0.0.0.0.",
            forwards.join(" ")
        );
    }
    println!("Stop with Ctrl-C.");
    server.run(false).map_err(|e| e.to_string())
}
