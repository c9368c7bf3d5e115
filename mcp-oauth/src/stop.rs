//! SIGINT and SIGTERM: the bridge stops taking messages, lets what it is writing finish (a
//! refreshed token on its way to the store), and exits with status 0.

use std::future::Future;
use std::time::Duration;

/// How long work in flight may go on after a stop signal.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(3);

/// The stop signals, listened to from the moment they are installed (so one that arrives
/// during start-up is not lost to the default action, which ends the process at once).
pub(crate) struct StopSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves at the first SIGINT or SIGTERM (Ctrl-C elsewhere).
    pub(crate) async fn received(&mut self) {
        #[cfg(unix)]
        {
            let terminate = async {
                match &mut self.terminate {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                match &mut self.interrupt {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = terminate => tracing::info!("SIGTERM: stopping"),
                _ = interrupt => tracing::info!("SIGINT: stopping"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: stopping");
        }
    }
}

/// `work`, unless a stop signal comes first: then `work` goes on for [`STOP_WAIT`] at most
/// (what it is writing gets written) and `None` says the bridge is stopping.
pub(crate) async fn unless_stopped<T>(
    signals: &mut StopSignals,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => Some(done),
        () = signals.received() => {
            let _ = tokio::time::timeout(STOP_WAIT, work).await;
            None
        }
    }
}
