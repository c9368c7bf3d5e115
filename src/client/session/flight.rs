//! Single flight: a refresh or authorization runs once for everyone who needs it. The first
//! request spawns it as a task and publishes a shared future; every other request joins that
//! future, and one that comes after the tokens changed returns at once. A brake stops loops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::token_cache::Attach;
use super::Session;
use crate::challenge::BearerChallenge;
use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::LockExt;

/// What a flight does.
pub(crate) enum FlightOp {
    /// The token is due: refresh, authorizing again if the refresh grant is gone.
    Refresh,
    /// An explicit refresh: the refresh grant only.
    RefreshOnly,
    /// A 401: with a token, rediscover and refresh; without one, authorize.
    Recover {
        had_token: bool,
        challenge: Option<BearerChallenge>,
    },
    /// A 403 `insufficient_scope`, or a call that will need more: authorize for more scopes.
    StepUp {
        challenge: Option<BearerChallenge>,
        scopes: Vec<String>,
    },
    /// Authorize now.
    Authorize,
}

impl FlightOp {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::RefreshOnly => "refresh_only",
            Self::Recover {
                had_token: true, ..
            } => "recover_rejected_token",
            Self::Recover {
                had_token: false, ..
            } => "authorize_after_401",
            Self::StepUp { .. } => "step_up",
            Self::Authorize => "authorize",
        }
    }
}

pub(super) type Flight = Shared<BoxFuture<'static, Result<()>>>;

/// At most this many refreshes or authorizations may start within [`BRAKE_WINDOW`]; more means
/// something is looping (a server that rejects every new token, say) and we stop.
const BRAKE_LIMIT: usize = 6;
const BRAKE_WINDOW: Duration = Duration::from_secs(10);

impl Session {
    fn brake(&self) -> Result<()> {
        let now = Instant::now();
        let mut recent = self.recent_flights.locked();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > BRAKE_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= BRAKE_LIMIT {
            return Err(Error::new(
                ErrorKind::TooManyAttempts,
                format!(
                    "{BRAKE_LIMIT} refreshes or authorizations within {BRAKE_WINDOW:?}: the server keeps rejecting new tokens; stopping instead of looping"
                ),
            ));
        }
        recent.push_back(now);
        Ok(())
    }

    /// Runs `op` once for everyone who saw token generation `observed`: the first caller starts
    /// it, later callers join it, and callers that come after the tokens changed return at once.
    pub(crate) async fn run_flight(
        self: &Arc<Self>,
        observed: Option<u64>,
        op: FlightOp,
    ) -> Result<()> {
        let flight = {
            let mut slot = self.flight.locked();
            match slot.as_ref() {
                Some(flight) => flight.clone(),
                None => {
                    if self.current_generation() != observed {
                        return Ok(());
                    }
                    self.brake()?;
                    let session = self.clone();
                    let task = tokio::spawn(async move {
                        let result = session.execute(op).await;
                        *session.flight.locked() = None;
                        result
                    });
                    let flight = async move {
                        task.await.unwrap_or_else(|_| {
                            Err(Error::new(
                                ErrorKind::Handler,
                                "the authorization task failed",
                            ))
                        })
                    }
                    .boxed()
                    .shared();
                    *slot = Some(flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// The token to attach, refreshing first when it is due. `None` when there is no token yet
    /// (the request then goes out bare and its 401 starts the flow).
    pub(crate) async fn usable_token(self: &Arc<Self>) -> Result<Option<Attach>> {
        if let Some(attach) = self.fast_attach() {
            return Ok(Some(attach));
        }
        let Some(snapshot) = self.snapshot() else {
            return Ok(None);
        };
        let now = now_secs();
        if !snapshot.due(now) || !snapshot.refreshable {
            return Ok(Some(snapshot.attach.clone()));
        }
        match self
            .run_flight(Some(snapshot.attach.generation), FlightOp::Refresh)
            .await
        {
            Ok(()) => Ok(self.current_attach()),
            // A token that has not expired yet is still worth sending.
            Err(error) if !snapshot.expired(now_secs()) => {
                tracing::warn!(%error, "early refresh failed; using the current token until it expires");
                Ok(Some(snapshot.attach.clone()))
            }
            Err(error) => Err(error),
        }
    }

    /// Recovers after a 401 to a request made with token `generation`.
    pub(crate) async fn recover(
        self: &Arc<Self>,
        generation: Option<u64>,
        challenge: Option<BearerChallenge>,
    ) -> Result<()> {
        let op = FlightOp::Recover {
            had_token: generation.is_some(),
            challenge,
        };
        self.run_flight(generation, op).await
    }

    /// Steps up after a 403 `insufficient_scope` to a request made with token `generation`:
    /// authorizes again for the scopes already granted plus the ones the challenge names.
    /// Returns `false`, without authorizing, when the challenge asks for nothing the token
    /// lacks: asking again for the same scopes cannot help.
    pub(crate) async fn step_up(
        self: &Arc<Self>,
        generation: Option<u64>,
        challenge: &BearerChallenge,
    ) -> Result<bool> {
        let Some(scopes) = self.widened(challenge.scopes()) else {
            tracing::info!(
                "insufficient scope, but every scope asked for is already granted; not stepping up"
            );
            return Ok(false);
        };
        tracing::info!(scopes = %scopes.join(" "), "insufficient scope; stepping up");
        let op = FlightOp::StepUp {
            challenge: Some(challenge.clone()),
            scopes,
        };
        self.run_flight(generation, op).await?;
        Ok(true)
    }

    /// Steps up before a request that will need `wanted`: authorizes again for the scopes
    /// granted plus those, unless the token has them all (then `false`).
    pub(crate) async fn step_up_before<'w>(
        self: &Arc<Self>,
        wanted: impl IntoIterator<Item = &'w str>,
    ) -> Result<bool> {
        let generation = self.current_generation();
        let Some(scopes) = self.widened(wanted) else {
            return Ok(false);
        };
        tracing::info!(?scopes, "a call will need more scopes; stepping up first");
        let op = FlightOp::StepUp {
            challenge: None,
            scopes,
        };
        self.run_flight(generation, op).await?;
        Ok(true)
    }

    /// The scopes granted plus `wanted`, or `None` when nothing is missing.
    fn widened<'w>(&self, wanted: impl IntoIterator<Item = &'w str>) -> Option<Vec<String>> {
        let mut scopes = self.tokens().map(|t| t.scopes).unwrap_or_default();
        let granted = scopes.len();
        for scope in wanted {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        (scopes.len() > granted).then_some(scopes)
    }

    /// Runs `op` now, whatever the tokens are.
    pub(crate) async fn run_now(self: &Arc<Self>, op: FlightOp) -> Result<()> {
        self.run_flight(self.current_generation(), op).await
    }
}
