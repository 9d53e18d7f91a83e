//! The shutdown trigger: SIGINT or SIGTERM; a second one during shutdown exits at once.
//!
//! The first signal starts a graceful stop (final checkpoint, output published), bounded by
//! `runtime.shutdown_timeout`. An operator who signals again does not want to wait for it
//! (Flink and Vector behave the same way): the process exits immediately with `128 + signal`
//! (130 for SIGINT, 143 for SIGTERM), as if killed by it. Nothing is lost that a crash would
//! not lose: the newest complete checkpoint stays valid and the next start resumes from it.

use std::future::Future;

/// Exit code after a second SIGINT.
pub const EXIT_SIGINT: i32 = 130;
/// Exit code after a second SIGTERM.
pub const EXIT_SIGTERM: i32 = 143;

/// Installs the signal handlers now (so no signal between this call and the first poll is
/// missed) and returns a future that resolves on the first SIGINT or SIGTERM. After that
/// first one, a second SIGINT or SIGTERM exits the process. Call inside the tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => {
                tokio::spawn(watch(term, int, first_tx));
            }
            // Without signal handlers the job still ends at end of input or by SIGKILL.
            _ => drop(first_tx),
        }
        async move {
            if first_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(unix)]
async fn watch(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let (name, _) = next(&mut term, &mut int).await;
    tracing::info!("{name} received.");
    let _ = first.send(());
    let (name, code) = next(&mut term, &mut int).await;
    // Printed directly: the process ends before a buffered log line would be written.
    eprintln!(
        "error: second {name} during shutdown: exiting now without the final checkpoint \
         (the newest complete checkpoint stays valid; the next start resumes from it)"
    );
    std::process::exit(code);
}

#[cfg(unix)]
async fn next(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> (&'static str, i32) {
    tokio::select! {
        _ = term.recv() => ("SIGTERM", EXIT_SIGTERM),
        _ = int.recv() => ("SIGINT", EXIT_SIGINT),
    }
}
