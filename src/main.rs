//! `handoff`: the command line. Parse, load the config, build, run — nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use handoff::internals::config::{self, LogFormat, LogSettings};
use handoff::Handoff;
use pingora::prelude::Opt;

/// jemalloc, as Pingora's own servers use it: the request path allocates a lot of small,
/// short-lived objects (BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start: one arena per proxy thread's worth instead of four
/// per core (RSS at 1,000 connections: BENCHMARKS.md, "The allocator").
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"narenas:2\0";

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "Intranet gateway that hands people on to SaaS AI apps, already logged in"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config FILE`, shared by the commands that read the gateway's config.
#[derive(clap::Args)]
struct ConfigFile {
    /// The config file [default: /etc/handoff/handoff.toml].
    #[arg(
        long = "config",
        short = 'c',
        value_name = "FILE",
        env = "HANDOFF_CONFIG"
    )]
    path: Option<PathBuf>,
}

/// Where `run`, `check` and `reload` read their config when neither `--config` nor
/// `$HANDOFF_CONFIG` says.
const SYSTEM_CONFIG: &str = "/etc/handoff/handoff.toml";

impl ConfigFile {
    /// The file named, else the system's one. Never the demo config: its secrets are public.
    fn resolve(self) -> Result<PathBuf, ExitCode> {
        if let Some(path) = self.path {
            return Ok(path);
        }
        let system = PathBuf::from(SYSTEM_CONFIG);
        if system.exists() {
            return Ok(system);
        }
        eprintln!(
            "no config: pass --config FILE or set HANDOFF_CONFIG ({SYSTEM_CONFIG} does not \
             exist). To try Handoff with its demo config, run `handoff demo`."
        );
        Err(ExitCode::from(2))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve: proxy the intranet and answer Handoff's routes.
    Run {
        #[command(flatten)]
        config: ConfigFile,
        /// Take over the listening sockets of a running instance (zero-downtime upgrade; send
        /// the old process SIGQUIT once this one is up).
        #[arg(long, short = 'u')]
        upgrade: bool,
        /// Run in the background.
        #[arg(long, short = 'd')]
        daemon: bool,
    },
    /// The whole flow on this machine: the gateway, a demo intranet to log in to, and local
    /// stand-ins of YourGPT and TypingMind, where the config says they are.
    Demo {
        /// The demo config.
        #[arg(
            long,
            short = 'c',
            value_name = "FILE",
            default_value = "conf/demo.toml",
            env = "HANDOFF_CONFIG"
        )]
        config: PathBuf,
        /// The gateway's address as your browser reaches it, when that is not this machine's
        /// loopback (e.g. http://demo.example.net:8080): the stand-ins' pages use its host.
        #[arg(long, value_name = "URL", value_parser = handoff::internals::demo::Reach::public_url)]
        public_url: Option<url::Url>,
        /// Listen on this address instead of 127.0.0.1 (e.g. 0.0.0.0), for the gateway and the
        /// stand-ins. The demo's secrets are public: anyone who can reach it can sign in.
        #[arg(long, value_name = "IP")]
        listen: Option<std::net::IpAddr>,
    },
    /// Check the config file, then tell the running gateway (the process in `server.pid_file`)
    /// to reload it (SIGHUP). Its log says how the reload went.
    Reload {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Validate a config file: types, references, secrets, key files, addresses. Lists every
    /// problem with its key and exits non-zero if there is any.
    Check {
        #[command(flatten)]
        config: ConfigFile,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            let config = match config.resolve() {
                Ok(path) => path,
                Err(code) => return code,
            };
            let _logs = text_logs();
            match Handoff::from_file(&config) {
                Ok(handoff) => {
                    println!("{}: OK ({})", config.display(), handoff.summary());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Reload { config } => match config.resolve() {
            Ok(path) => reload(&path),
            Err(code) => code,
        },
        Command::Demo {
            config,
            public_url,
            listen,
        } => {
            let _logs = text_logs();
            let reach = handoff::internals::demo::Reach { public_url, listen };
            match handoff::internals::demo::run(&config, &reach) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            config,
            upgrade,
            daemon,
        } => match config.resolve() {
            Ok(path) => run(&path, upgrade, daemon),
            Err(code) => code,
        },
    }
}

fn run(path: &Path, upgrade: bool, daemon: bool) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    let logs = match handoff::internals::logging::init(&config.log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let opt = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let server =
        match handoff::standalone::build_with_config(config, Some(path.to_path_buf()), Some(opt)) {
            Ok(s) => s,
            Err(e) => {
                eprint!("{e}");
                return ExitCode::from(2);
            }
        };
    tracing::info!(config = %path.display(), "handoff starting");
    let outcome = server.run(upgrade);
    let code = match outcome {
        Ok(()) => {
            tracing::info!("handoff stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    };
    // Flushes the last log lines.
    drop(logs);
    code
}

/// Validates the config, then sends SIGHUP to the process in its `server.pid_file`.
fn reload(path: &Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            eprintln!("not reloading: the running gateway keeps its config");
            return ExitCode::from(2);
        }
    };
    let pid_file = &config.server.pid_file;
    let pid = match std::fs::read_to_string(pid_file) {
        Ok(text) => match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => pid,
            _ => {
                eprintln!("server.pid_file {pid_file} does not hold a process id: {text:?}");
                return ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("cannot read server.pid_file {pid_file}: {e} (is the gateway running?)");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = running_gateway(pid) {
        eprintln!("not signalling process {pid} (from server.pid_file {pid_file}): {why}");
        return ExitCode::from(2);
    }
    // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("cannot signal process {pid} (from {pid_file}): {e}");
        return ExitCode::from(2);
    }
    println!(
        "{}: OK; sent SIGHUP to process {pid}: its log says how the reload went",
        path.display()
    );
    ExitCode::SUCCESS
}

/// Whether `pid` is a serving handoff: a process of the same program as this one
/// (`/proc/PID/comm`) started with `run` or `demo`. A stale pid file may name a process that
/// reused the id; it must not get a SIGHUP (which ends most programs).
fn running_gateway(pid: i32) -> Result<(), String> {
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm"));
    let theirs = comm(&pid.to_string())
        .map_err(|_| "no such process is running (a stale pid file?)".to_string())?;
    let ours = comm("self").map_err(|e| format!("cannot read /proc/self/comm: {e}"))?;
    if theirs.trim() != ours.trim() {
        return Err(format!(
            "it is {:?}, not {:?}: the pid file is stale",
            theirs.trim(),
            ours.trim()
        ));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let serving = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .any(|arg| arg == b"run" || arg == b"demo");
    if !serving {
        return Err("it is a handoff command, not a running gateway".to_string());
    }
    Ok(())
}

/// Human-readable logs to stderr, for `check` and `demo`.
fn text_logs() -> Option<handoff::internals::log_writer::LogGuard> {
    let settings = LogSettings {
        format: LogFormat::Text,
        ..LogSettings::default()
    };
    handoff::internals::logging::init_for_console(&settings).ok()
}
