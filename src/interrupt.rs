//! SIGINT and SIGTERM end a run the way [`RunHandle::stop`] does: the sources end their streams,
//! the pipeline drains what it holds, and the run's report is printed. Every command and example
//! uses this one handler.
//!
//! The handler is process-wide (signals are): [`install`] sets it up once, [`Interrupts::watch`]
//! points it at the run in progress. The first signal stops that run (and any run watched after
//! it, so a benchmark's loop ends too); a second one exits at once with the signal's exit code,
//! and so does a signal that arrives while no run is in progress (there is nothing to drain).
//! A run ended by a signal must end the process with [`Signal::exit_code`] (130 for SIGINT, 143
//! for SIGTERM, as shells report them), so a caller can tell a stopped run from a finished one.
//!
//! SIGINT and SIGTERM are told apart (for the exit code) by listening for each on a small thread
//! of its own; Ctrl-C, `kill`, systemd's and Kubernetes' stop all take the same path.
//!
//! ```no_run
//! use std::process::ExitCode;
//! use weir::prelude::*;
//!
//! fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
//!     let interrupts = weir::interrupt::install()?;
//!     let mut p = Pipeline::new("endless");
//!     let count = p.source("gen", Generator::new(u64::MAX, |i| i)).sink("count", Count::new());
//!     let (report, stopped_by) = interrupts.run(p)?;
//!     println!("{report}");
//!     println!("rows counted: {}", count.take().unwrap_or_default());
//!     Ok(weir::interrupt::exit_code(stopped_by))
//! }
//! ```

use std::fmt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use weir_runtime::{Pipeline, RunError, RunHandle, RunReport, StopSignal};

/// A signal that stops a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, systemd, Kubernetes).
    Terminate,
}

impl Signal {
    /// The exit code of a process this signal stopped: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    /// The signal's name (`SIGINT`, `SIGTERM`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The process's signal handler: which signal arrived, and the run it stops.
#[derive(Debug, Default)]
pub struct Interrupts {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    received: Option<Signal>,
    target: Option<Target>,
}

/// What a signal stops.
#[derive(Debug)]
enum Target {
    /// A run in this process.
    Run(Arc<StopSignal>),
    /// A child process (in a process group of its own), which gets the same signal.
    Process(u32),
}

impl Target {
    fn stop(&self, signal: Signal) {
        match self {
            Target::Run(stop) => stop.stop(),
            Target::Process(pid) => {
                let name = signal.name().trim_start_matches("SIG");
                let sent = std::process::Command::new("kill")
                    .args(["-s", name, &pid.to_string()])
                    .status();
                if !sent.is_ok_and(|s| s.success()) {
                    eprintln!("could not pass {signal} on to process {pid}");
                }
            }
        }
    }
}

static INTERRUPTS: OnceLock<Interrupts> = OnceLock::new();
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs the handler for SIGINT and SIGTERM (once per process; later calls return the same
/// handler). When it returns, both signals are caught.
///
/// # Errors
///
/// The signal listener could not be set up (no thread, or the OS refused the handler).
pub fn install() -> std::io::Result<&'static Interrupts> {
    let interrupts = INTERRUPTS.get_or_init(Interrupts::default);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        listen(interrupts)?;
        *installed = true;
    }
    Ok(interrupts)
}

/// Runs `pipeline` under the installed handler when there is one (see [`install`]), otherwise
/// plainly: what the benchmarks' runs go through, so that a signal stops them too.
///
/// # Errors
///
/// As [`Pipeline::run`].
pub fn run(pipeline: Pipeline) -> Result<RunReport, RunError> {
    match INTERRUPTS.get() {
        Some(interrupts) if *INSTALLED.lock().unwrap_or_else(|e| e.into_inner()) => {
            interrupts.run(pipeline).map(|(report, _)| report)
        }
        _ => pipeline.run(),
    }
}

/// The signal that stopped this process's runs, if one did (and the handler is installed).
pub fn received() -> Option<Signal> {
    INTERRUPTS.get().and_then(Interrupts::received)
}

/// Runs `command` to its end under the installed handler when there is one (see [`install`]):
/// the child gets a process group of its own, and a signal this process receives is passed on
/// to it once, so it drains and reports as a run in this process would. Without the handler the
/// child runs plainly. Its stdout is captured, its stderr is this process's.
///
/// # Errors
///
/// The child could not be started or waited for.
pub fn run_child(command: &mut std::process::Command) -> std::io::Result<std::process::Output> {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let interrupts = INTERRUPTS
        .get()
        .filter(|_| *INSTALLED.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(interrupts) = interrupts {
        interrupts.set_target(Target::Process(child.id()));
    }
    let output = child.wait_with_output();
    if let Some(interrupts) = interrupts {
        interrupts.lock().target = None;
    }
    output
}

/// `ExitCode::SUCCESS` for a run that finished, the signal's code for one a signal stopped.
pub fn exit_code(stopped_by: Option<Signal>) -> ExitCode {
    stopped_by.map_or(ExitCode::SUCCESS, |s| ExitCode::from(s.exit_code()))
}

impl Interrupts {
    /// Points the handler at `handle`'s run: the next signal stops it. If a signal has already
    /// arrived, the run is stopped now.
    pub fn watch(&self, handle: &RunHandle) {
        self.set_target(Target::Run(handle.stop_signal()));
    }

    fn set_target(&self, target: Target) {
        let mut state = self.lock();
        if let Some(signal) = state.received {
            target.stop(signal);
        }
        state.target = Some(target);
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        self.lock().received
    }

    /// Spawns `pipeline`, lets a signal stop it, and waits for it to drain. Returns its report
    /// and the signal that stopped it (`None`: it finished by itself).
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`].
    pub fn run(&self, pipeline: Pipeline) -> Result<(RunReport, Option<Signal>), RunError> {
        let handle = pipeline.spawn()?;
        self.watch(&handle);
        let result = handle.join();
        let mut state = self.lock();
        state.target = None;
        let stopped_by = state.received;
        drop(state);
        result.map(|report| (report, stopped_by))
    }

    /// Records `signal` and stops the watched run; a second signal, or one while no run is
    /// watched, exits the process at once.
    fn deliver(&self, signal: Signal) {
        let mut state = self.lock();
        if let Some(first) = state.received {
            eprintln!("{signal} again after {first}: exiting without draining");
            if let Some(target @ Target::Process(_)) = &state.target {
                target.stop(signal);
            }
            std::process::exit(i32::from(signal.exit_code()));
        }
        if state.target.is_none() {
            // No run in progress: nothing to drain.
            eprintln!("{signal}: no run in progress; exiting");
            std::process::exit(i32::from(signal.exit_code()));
        }
        state.received = Some(signal);
        eprintln!(
            "{signal}: stopping; the sources end their streams and the pipeline drains \
             (send it again to exit at once)"
        );
        if let Some(target) = &state.target {
            target.stop(signal);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the listener thread; returns once both signals are registered.
fn listen(interrupts: &'static Interrupts) -> std::io::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let registered = signal(SignalKind::interrupt())
                        .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
                    let (mut int, mut term) = match registered {
                        Ok(pair) => pair,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    loop {
                        let signal = tokio::select! {
                            Some(()) = int.recv() => Signal::Interrupt,
                            Some(()) = term.recv() => Signal::Terminate,
                            else => return,
                        };
                        interrupts.deliver(signal);
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = ready_tx.send(Ok(()));
                    while tokio::signal::ctrl_c().await.is_ok() {
                        interrupts.deliver(Signal::Interrupt);
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the signal listener ended early")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal_number() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
        assert_eq!(exit_code(None), ExitCode::SUCCESS);
    }
}
