//! `handoff`: the command line. Parse, load the config, build, run — nothing else.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use handoff::Handoff;
use pingora::prelude::Opt;

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

#[derive(Subcommand)]
enum Command {
    /// Serve: proxy the intranet and answer Handoff's routes.
    Run {
        /// The config file.
        #[arg(
            long,
            short = 'c',
            default_value = "conf/demo.toml",
            env = "HANDOFF_CONFIG"
        )]
        config: PathBuf,
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
        #[arg(long, short = 'c', default_value = "conf/demo.toml")]
        config: PathBuf,
    },
    /// Validate a config file: types, references, secrets, key files, addresses. Lists every
    /// problem with its key and exits non-zero if there is any.
    Check {
        /// The config file.
        #[arg(
            long,
            short = 'c',
            default_value = "conf/demo.toml",
            env = "HANDOFF_CONFIG"
        )]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Check { config } => match Handoff::from_file(&config) {
            Ok(handoff) => {
                println!("{}: OK ({})", config.display(), handoff.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Demo { config } => match handoff::demo::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            upgrade,
            daemon,
        } => {
            let opt = Opt {
                upgrade,
                daemon,
                ..Opt::default()
            };
            let server = match handoff::standalone::build(&config, Some(opt)) {
                Ok(s) => s,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            tracing::info!(config = %config.display(), "handoff starting");
            server.run_forever()
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
