//! Ctrl-C and SIGTERM: the process removes what it had not finished writing (a staged output
//! folder, a temporary file, a sweep's claim on a cell — everything registered through
//! [`crate::artifacts::Unfinished`]), says so in one line, and exits with 128 + the signal
//! number (130 for Ctrl-C, 143 for SIGTERM), as shells expect.
//!
//! The signal handler only stores the signal number (async-signal-safe); a watcher thread sees
//! it within [`POLL`] and does the removal on an ordinary thread. Finished outputs are never
//! touched: they were renamed into place and unregistered. A second signal while the first is
//! handled changes nothing. Elsewhere than Unix, [`install`] does nothing.

use std::time::Duration;

/// How often the watcher looks for a signal.
const POLL: Duration = Duration::from_millis(50);

#[cfg(unix)]
static RECEIVED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Installs the SIGINT and SIGTERM handlers and starts the watcher thread. Call once, early in
/// `main`.
#[cfg(unix)]
pub fn install() -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action only stores an integer in an atomic, which is async-signal-safe.
        unsafe {
            signal_hook_registry::register(signal, move || {
                let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
            })?;
        }
    }
    std::thread::Builder::new()
        .name("poisonscope-interrupt".to_owned())
        .spawn(|| {
            loop {
                let signal = RECEIVED.load(Ordering::SeqCst);
                if signal != 0 {
                    stop(signal);
                }
                std::thread::sleep(POLL);
            }
        })?;
    Ok(())
}

/// Elsewhere than Unix the default handling stays (the process ends at once).
#[cfg(not(unix))]
pub fn install() -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn stop(signal: i32) -> ! {
    use std::io::Write;
    let removed = crate::artifacts::remove_unfinished();
    let name = if signal == libc::SIGTERM {
        "SIGTERM"
    } else {
        "interrupted (Ctrl-C)"
    };
    let what = match removed.as_slice() {
        [] => String::new(),
        [one] => format!("; removed the unfinished {}", one.display()),
        [first, rest @ ..] => format!(
            "; removed the unfinished {} and {} more",
            first.display(),
            rest.len()
        ),
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut err = std::io::stderr().lock();
    // On a terminal, off the progress bar's line; elsewhere one line only.
    let _ = writeln!(
        err,
        "{}error: {name}{what}",
        if terminal { "\n" } else { "" }
    );
    let _ = err.flush();
    std::process::exit(128 + signal)
}
