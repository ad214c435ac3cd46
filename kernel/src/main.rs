//! The `threadbook` command: the kernel itself, and kernelspec management.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use threadbook::engine::{capture, evcxr_engine::EvcxrEngine, mock::MockEngine, Engine, EngineFactory};
use threadbook::install::{self, Target};
use threadbook::server::{Kernel, KernelConfig, Stop};

#[derive(Parser)]
#[command(name = "threadbook", version, about = "A Jupyter kernel for Rust, on the evcxr engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the `threadbook` kernelspec so Jupyter can start this kernel.
    Install(Where),
    /// Remove the `threadbook` kernelspec.
    Uninstall(Where),
    /// Run the kernel (this is what kernel.json starts).
    Kernel {
        /// The connection file written by the frontend.
        #[arg(long, short = 'f')]
        connection_file: PathBuf,
        /// Run a scripted stand-in engine instead of Rust (for protocol tests).
        #[arg(long, hide = true)]
        mock: bool,
    },
}

#[derive(Args)]
#[group(multiple = false)]
struct Where {
    /// In the user's Jupyter data directory (the default).
    #[arg(long)]
    user: bool,
    /// In the prefix of the Python on PATH (use inside a virtualenv).
    #[arg(long)]
    sys_prefix: bool,
    /// In DIR/share/jupyter/kernels.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
}

impl Where {
    fn target(&self) -> Target {
        match (&self.prefix, self.sys_prefix) {
            (Some(dir), _) => Target::Prefix(dir.clone()),
            (None, true) => Target::SysPrefix,
            _ => Target::User,
        }
    }
}

fn main() {
    // In the evaluation process, capture output before evcxr takes over; in
    // every process, let evcxr take over first when this is its runtime or
    // rustc wrapper. Nothing else may run before this.
    if std::env::var_os("EVCXR_IS_RUNTIME").is_some() {
        capture::install_in_evaluation_process();
    }
    evcxr::runtime_hook();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Install(w) => std::env::current_exe()
            .context("cannot find this executable")
            .and_then(|exe| install::install(&w.target(), &exe))
            .map(|dir| println!("Installed kernelspec {} in {}", install::KERNEL_NAME, dir.display())),
        Command::Uninstall(w) => install::uninstall(&w.target()).map(|dir| match dir {
            Some(d) => println!("Removed kernelspec {} from {}", install::KERNEL_NAME, d.display()),
            None => println!("No kernelspec {} to remove there", install::KERNEL_NAME),
        }),
        Command::Kernel { connection_file, mock } => run_kernel(connection_file, mock),
    };
    if let Err(e) = result {
        eprintln!("threadbook: {e:#}");
        std::process::exit(1);
    }
}

/// rustc's version ("1.95.0") and the directory holding its libstd shared
/// library.
fn rustc_facts() -> (String, Vec<PathBuf>) {
    let run = |args: &[&str]| {
        std::process::Command::new("rustc")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .unwrap_or_default()
    };
    let version = run(&["--version"])
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_owned();
    let printed = run(&["--print", "sysroot", "--print", "host-tuple"]);
    let libs = match printed.lines().collect::<Vec<_>>()[..] {
        [sysroot, host] => vec![PathBuf::from(sysroot).join("lib/rustlib").join(host).join("lib")],
        _ => vec![],
    };
    (version, libs)
}

/// Cells are shared libraries linked against rustc's libstd; their relative
/// rpath only resolves when the build directory sits at a particular depth,
/// so the evaluation process is told where libstd is.
fn add_library_path(dirs: &[PathBuf]) {
    let mut paths: Vec<PathBuf> = dirs.to_vec();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    if let Ok(joined) = std::env::join_paths(paths) {
        std::env::set_var("LD_LIBRARY_PATH", joined);
    }
}

fn run_kernel(connection_file: PathBuf, mock: bool) -> Result<()> {
    threadbook::logging::init();
    let connection = threadbook::connection::ConnectionInfo::from_file(&connection_file)?;
    // Environment for the evaluation process, set while this process still
    // has one thread.
    std::env::set_var("THREADBOOK_KERNEL", "1");
    std::env::set_var(capture::IO_ENV, capture::default_socket_path());
    let (rustc_version, std_libs) = rustc_facts();
    add_library_path(&std_libs);
    let _slot = if mock { None } else { threadbook::engine::build_dir::claim()? };

    let engine: EngineFactory = if mock {
        Box::new(|out| Ok(Box::new(MockEngine::new(out)) as Box<dyn Engine>))
    } else {
        Box::new(|out| Ok(Box::new(EvcxrEngine::new(out)?) as Box<dyn Engine>))
    };
    let kernel = Kernel::start(KernelConfig {
        connection,
        engine,
        rustc_version,
    })?;
    let state = kernel.state();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGINT {
                log::info!("SIGINT: interrupting the running cell");
                state.interrupt();
            } else {
                log::info!("signal {sig}: shutting down");
                state.request_stop(Stop::Signal);
            }
        }
    })?;
    log::info!("threadbook {} ready ({})", env!("CARGO_PKG_VERSION"), connection_file.display());
    let stop = kernel.wait();
    log::info!("stopping: {stop:?}");
    if let Some(p) = std::env::var_os(capture::IO_ENV) {
        let _ = std::fs::remove_file(p);
    }
    std::process::exit(0);
}
