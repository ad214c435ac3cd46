//! The `threadbook` command: the kernel itself, and kernelspec management.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use threadbook::engine::{cell_cache, evcxr::EvcxrEngine, mock, Engine, EngineFactory};
use threadbook::lifecycle;
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
        /// Arguments some frontends append (`jupyter run FILE` passes its
        /// files along); ignored, as ipykernel does.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        extra: Vec<String>,
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
    // In the evaluation process, set up before evcxr takes over; as cargo's
    // rustc wrapper, compile (or replay) and exit; as the kernel's watchdog,
    // watch; in every process, let evcxr take over first when this is its
    // runtime or rustc wrapper. Nothing else may run before this.
    if std::env::var_os("EVCXR_IS_RUNTIME").is_some() {
        cell_cache::disable_for_children();
        lifecycle::evaluation_process_setup();
    } else if let Some(status) = {
        if cell_cache::is_wrapper() {
            lifecycle::wrapper_setup();
        }
        cell_cache::wrapper_main()
    } {
        std::process::exit(status);
    } else if lifecycle::watchdog_requested() {
        lifecycle::watchdog_main();
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
        Command::Kernel { connection_file, mock, extra } => {
            if !extra.is_empty() {
                eprintln!("threadbook: ignoring extra arguments {extra:?}");
            }
            run_kernel(connection_file, mock)
        }
    };
    if let Err(e) = result {
        eprintln!("threadbook: {e:#}");
        std::process::exit(1);
    }
}

/// What the kernel needs to know of the Rust toolchain.
struct Toolchain {
    /// rustc's version, e.g. "1.95.0".
    version: String,
    /// The directory holding libstd's shared library.
    std_libs: Option<PathBuf>,
}

/// Asks rustc, run in `dir` (a directory the kernel trusts: not the
/// notebook's folder, whose files must not choose the compiler).
fn toolchain(dir: &std::path::Path) -> Toolchain {
    let run = |args: &[&str]| {
        std::process::Command::new("rustc")
            .args(args)
            .current_dir(dir)
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
    match printed.lines().collect::<Vec<_>>()[..] {
        [sysroot, host] => Toolchain {
            version,
            std_libs: Some(PathBuf::from(sysroot).join("lib/rustlib").join(host).join("lib")),
        },
        _ => Toolchain { version, std_libs: None },
    }
}

/// Puts `dir` in front of the search path in variable `var`.
fn prepend_path(var: &str, dir: &std::path::Path) {
    let mut paths = vec![dir.to_owned()];
    if let Some(old) = std::env::var_os(var) {
        paths.extend(std::env::split_paths(&old));
    }
    if let Ok(joined) = std::env::join_paths(paths) {
        std::env::set_var(var, joined);
    }
}

/// Environment for the engine's tools and the evaluation process.
fn prepare_toolchain_env(tc: &Toolchain) {
    // Cells are shared libraries linked against rustc's libstd; their
    // relative rpath only resolves when the build directory sits at a
    // particular depth, so the evaluation process is told where libstd is.
    if let Some(libs) = &tc.std_libs {
        prepend_path("LD_LIBRARY_PATH", libs);
    }
}

fn run_kernel(connection_file: PathBuf, mock: bool) -> Result<()> {
    threadbook::logging::init();
    threadbook::pipeline::install_panic_hook();
    let connection = threadbook::connection::ConnectionInfo::from_file(&connection_file)?;
    for warning in connection.warnings() {
        log::warn!("{warning}");
    }
    let ipc_files = connection.ipc_paths();
    // Environment for the evaluation process and the tools, set while this
    // process still has one thread.
    std::env::set_var(threadbook_display::KERNEL_ENV, "1");
    let slot = if mock { None } else { threadbook::engine::build_dir::claim()? };
    let trusted = slot.as_ref().map(|s| s.dir.clone()).unwrap_or_else(std::env::temp_dir);
    lifecycle::prepare(&trusted);
    let tc = toolchain(&trusted);
    prepare_toolchain_env(&tc);
    if !mock {
        cell_cache::enable();
    }

    let engine: EngineFactory = if mock {
        Box::new(mock::start)
    } else {
        Box::new(|out| Ok(Box::new(EvcxrEngine::new(out)?) as Box<dyn Engine>))
    };
    let kernel = Kernel::start(KernelConfig {
        connection,
        engine,
        rustc_version: tc.version,
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
    let state = kernel.state();
    lifecycle::watch_parent(move || state.request_stop(Stop::Signal));
    log::info!("threadbook {} ready ({})", env!("CARGO_PKG_VERSION"), connection_file.display());
    let stop = kernel.wait();
    log::info!("stopping: {stop:?}");
    for p in ipc_files {
        let _ = std::fs::remove_file(p);
    }
    drop(slot);
    std::process::exit(0);
}
