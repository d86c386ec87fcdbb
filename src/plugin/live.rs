//! The config in use and its life: the atomic swap on reload, and the background tasks
//! (health checks, JWKS refresh) that belong to each config.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};
use pingora::services::ServiceReadyNotifier;
use tokio::sync::watch;

use super::LoadError;
use crate::config::{self, Config, ConfigErrors};
use crate::gateway::Gateway;
use crate::gateway::StateCollector;
use crate::metrics::Metrics;

/// What every clone of a `Handoff` shares.
pub(super) struct Live {
    /// The config in use. A request keeps the one it started with to its end.
    current: Arc<ArcSwap<Gateway>>,
    metrics: Arc<Metrics>,
    /// The file a reload reads; `None` when built from text or settings in code.
    source: Option<PathBuf>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Whether the background service runs (then a reload starts the new config's tasks).
    background: AtomicBool,
    /// Stops the current config's health checks and JWKS refresh when it is replaced.
    tasks: Mutex<Option<Tasks>>,
}

/// The background tasks of one config: dropping this stops them.
struct Tasks(watch::Sender<bool>);

impl Drop for Tasks {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

impl Live {
    pub(super) fn new(config: Config, source: Option<PathBuf>) -> Result<Arc<Live>, LoadError> {
        let metrics = Metrics::new();
        let gateway = Gateway::build(config, metrics.clone(), None)?;
        let current = Arc::new(ArcSwap::from_pointee(gateway));
        match StateCollector::new(&current) {
            Ok(collector) => metrics.register(Box::new(collector)),
            Err(e) => tracing::error!(target: "handoff::metrics", "no state metrics: {e}"),
        }
        metrics.last_reload.set(unix_now());
        Ok(Arc::new(Live {
            current,
            metrics,
            source,
            reloading: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
            tasks: Mutex::new(None),
        }))
    }

    /// The config in use.
    pub(super) fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The service that runs the current config's background tasks until the server stops.
    pub(super) fn background_service(self: &Arc<Self>) -> GenBackgroundService<Background> {
        background_service("handoff background", Background(self.clone()))
    }

    /// See [`super::Handoff::reload`]: logs and counts the outcome.
    pub(super) async fn reload(&self) -> Result<String, LoadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.swap_in_file().await;
        match &result {
            Ok(summary) => {
                self.metrics.reloads.with_label_values(&["success"]).inc();
                self.metrics.last_reload.set(unix_now());
                tracing::info!(target: "handoff::config", "config reloaded: {summary}");
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(
                    target: "handoff::config",
                    "config reload refused, the config in use stays:\n{e}"
                );
            }
        }
        result
    }

    async fn swap_in_file(&self) -> Result<String, LoadError> {
        let path = self.source.clone().ok_or_else(|| {
            ConfigErrors::one("built from settings in code: there is no file to reload")
        })?;
        let config = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| ConfigErrors::one(format!("the reload stopped: {e}")))??;
        let old = self.gateway();
        if &config.server != old.server_settings() {
            tracing::warn!(
                target: "handoff::config",
                "[server] changed: apart from endpoints_prefix, its keys take effect at the next \
                 restart or binary upgrade"
            );
        }
        let (log_now, log_new) = (old.log_settings(), &config.log);
        if log_new.format != log_now.format || log_new.file != log_now.file {
            tracing::warn!(
                target: "handoff::config",
                "[log] format or file changed: takes effect at the next restart"
            );
        }
        let new = Gateway::build(config, self.metrics.clone(), Some(&old))?;
        first_keys(&new).await?;
        let new = Arc::new(new);
        let tasks = if self.background.load(Ordering::Acquire) {
            // The new config serves once its first keys are in (at once when adopted).
            let (ready_tx, mut ready) = watch::channel(false);
            let tasks = start_tasks(&new, Some(ServiceReadyNotifier::new(ready_tx)));
            let _ = ready.wait_for(|r| *r).await;
            Some(tasks)
        } else {
            None
        };
        let summary = super::summary_of(&new);
        self.current.store(new);
        if let Some(tasks) = tasks {
            // Dropping the old config's tasks stops its health checks and key refreshes.
            *lock(&self.tasks) = Some(tasks);
        }
        Ok(summary)
    }
}

/// A reloaded config whose key set is new (another JWKS URL) serves only once its first keys
/// are in: they must load within `startup_wait_ms` (the fetch's own `timeout_ms` when that is
/// 0), else the reload is refused and the config in use keeps serving.
async fn first_keys(new: &Gateway) -> Result<(), LoadError> {
    let Some(jwks) = new.jwks() else {
        return Ok(());
    };
    if jwks.generation().is_some() {
        // Lent by the config in use (the same URL).
        return Ok(());
    }
    let settings = jwks.settings();
    let wait = match settings.startup_wait {
        wait if wait.is_zero() => settings.timeout,
        wait => wait,
    };
    let failure = match tokio::time::timeout(wait, jwks.refresh()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => format!("no key set within {} ms", wait.as_millis()),
    };
    Err(ConfigErrors::one(format!(
        "session.jwks.url: the new key set at {} did not load ({failure}); without keys every \
         session would be refused",
        config::redacted_url(&settings.url)
    )))
}

/// Runs the current config's background tasks until the server shuts down.
pub(super) struct Background(Arc<Live>);

#[async_trait]
impl BackgroundService for Background {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let live = &self.0;
        {
            let mut tasks = lock(&live.tasks);
            *tasks = Some(start_tasks(&live.current.load(), Some(ready)));
            live.background.store(true, Ordering::Release);
        }
        let _ = shutdown.changed().await;
        lock(&live.tasks).take();
    }
}

/// Starts `gateway`'s health checks and JWKS refresh; `ready` is notified once its first keys
/// are in (at once without JWKS).
fn start_tasks(gateway: &Gateway, ready: Option<ServiceReadyNotifier>) -> Tasks {
    let (stop, stopped) = watch::channel(false);
    for lb in gateway
        .upstreams()
        .iter()
        .filter_map(|g| g.health_checker())
    {
        let stopped = stopped.clone();
        tokio::spawn(async move { lb.start(stopped).await });
    }
    if let Some(state) = gateway.shared_state() {
        let (state, mut stopped) = (state.clone(), stopped.clone());
        tokio::spawn(async move {
            loop {
                state.ping().await;
                tokio::select! {
                    _ = tokio::time::sleep(crate::shared_state::PING_EVERY) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
    }
    // A ServiceReadyNotifier says "ready" when it is dropped.
    let ready = move || drop(ready);
    match gateway.jwks() {
        Some(jwks) => {
            tokio::spawn(crate::intranet_session::jwks::keep_fresh(
                jwks.clone(),
                stopped,
                ready,
            ));
        }
        None => ready(),
    }
    Tasks(stop)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
