//! Which requests [`OAuth`](super::OAuth) may send again after a 401 or 403.

use http::Request;
use http_body::Body;

/// Decides whether a request body can be copied, to send the request again.
///
/// Implemented by [`CloneBodies`] (the default), [`NoReplay`] and [`ReplayFn`]; implement it for
/// your own body types where a copy is cheap and complete.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot copy request bodies of type `{B}`",
    note = "the default policy, `CloneBodies`, replays only bodies that are `Clone`; for a streaming body use `OAuthLayer::replay_policy(NoReplay)` or your own `ReplayPolicy`"
)]
/// Which requests [`OAuth`](super::OAuth) may send again after a 401 or 403.
///
/// Replaying needs a second copy of the request. The method, URI, version, headers and
/// extensions are copied at `call`; the body is the policy's business, as with tower-http's
/// `follow_redirect`. An empty body (`size_hint` exactly 0) is always rebuilt with
/// `B::default()`. For anything else, when the policy gives no copy the session is still
/// repaired, but the 401 goes back to the caller, whose own retry then succeeds.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower_mcp_oauth::client::{replay_fn, NoReplay, ReplayPolicy};
///
/// // The default, `CloneBodies`, copies any body type that is `Clone` (`Full<Bytes>`, `String`).
/// // A streaming body is not: say so, or copy it your own way.
/// let never = NoReplay;
/// let own = replay_fn(|body: &Full<Bytes>| Some(body.clone()));
/// assert!(ReplayPolicy::<Full<Bytes>>::clone_body(&never, &Full::new(Bytes::new())).is_none());
/// assert!(own.clone_body(&Full::new(Bytes::from_static(b"{}"))).is_some());
/// ```
pub trait ReplayPolicy<B>: Clone {
    /// A complete copy of `body`, or `None` when it cannot be had (the request is then sent
    /// once).
    fn clone_body(&self, body: &B) -> Option<B>;
}

/// The default policy: a body whose type is `Clone` is replayed as its clone (`Full<Bytes>`,
/// `String`, `Empty<Bytes>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneBodies;

impl<B: Clone> ReplayPolicy<B> for CloneBodies {
    fn clone_body(&self, body: &B) -> Option<B> {
        Some(body.clone())
    }
}

/// Never copies a body: for streaming bodies such as hyper's `Incoming`. Empty bodies are
/// still replayed.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> ReplayPolicy<B> for NoReplay {
    fn clone_body(&self, _body: &B) -> Option<B> {
        None
    }
}

/// A policy from a closure: see [`replay_fn`].
#[derive(Clone, Copy)]
pub struct ReplayFn<F> {
    copy: F,
}

impl<F> std::fmt::Debug for ReplayFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayFn").finish_non_exhaustive()
    }
}

/// A policy that copies bodies with `copy`.
pub fn replay_fn<B, F>(copy: F) -> ReplayFn<F>
where
    F: Fn(&B) -> Option<B> + Clone,
{
    ReplayFn { copy }
}

impl<B, F> ReplayPolicy<B> for ReplayFn<F>
where
    F: Fn(&B) -> Option<B> + Clone,
{
    fn clone_body(&self, body: &B) -> Option<B> {
        (self.copy)(body)
    }
}

/// A copy of a request kept for replays.
pub(crate) struct Replay<B, P> {
    parts: http::request::Parts,
    body: ReplayBody<B>,
    policy: P,
}

enum ReplayBody<B> {
    Empty,
    Copy(B),
}

impl<B: Body + Default, P: ReplayPolicy<B>> Replay<B, P> {
    /// `None` when the policy cannot copy the body: the request is then sent once.
    pub(crate) fn capture(request: &Request<B>, policy: &P) -> Option<Self> {
        let body = if request.body().size_hint().exact() == Some(0) {
            ReplayBody::Empty
        } else {
            ReplayBody::Copy(policy.clone_body(request.body())?)
        };
        let mut parts = Request::new(()).into_parts().0;
        parts.method = request.method().clone();
        parts.uri = request.uri().clone();
        parts.version = request.version();
        parts.headers = request.headers().clone();
        parts.extensions = request.extensions().clone();
        Some(Self {
            parts,
            body,
            policy: policy.clone(),
        })
    }

    /// The next request to send; `None` when the policy refuses a further copy.
    pub(crate) fn build(&self) -> Option<Request<B>> {
        let body = match &self.body {
            ReplayBody::Empty => B::default(),
            ReplayBody::Copy(body) => self.policy.clone_body(body)?,
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = self.parts.uri.clone();
        *request.version_mut() = self.parts.version;
        *request.headers_mut() = self.parts.headers.clone();
        *request.extensions_mut() = self.parts.extensions.clone();
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    fn request<B>(body: B) -> Request<B> {
        let mut request = Request::post("https://mcp.example.com/mcp")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        request.extensions_mut().insert(7u8);
        request
    }

    #[test]
    fn a_clonable_body_is_replayed_whole_with_its_parts() {
        let original = request(Full::new(Bytes::from_static(b"{\"id\":1}")));
        let replay = Replay::capture(&original, &CloneBodies).expect("Full is clonable");
        for _ in 0..3 {
            let copy = replay.build().expect("a copy each time");
            assert_eq!(copy.method(), original.method());
            assert_eq!(copy.uri(), original.uri());
            assert_eq!(copy.headers(), original.headers());
            assert_eq!(copy.extensions().get::<u8>(), Some(&7));
            assert_eq!(copy.body().size_hint().exact(), Some(8));
        }
    }

    #[test]
    fn no_replay_still_replays_an_empty_body() {
        assert!(Replay::capture(&request(Empty::<Bytes>::new()), &NoReplay).is_some());
        assert!(
            Replay::capture(&request(Full::new(Bytes::from_static(b"x"))), &NoReplay).is_none()
        );
    }

    #[test]
    fn a_closure_decides_for_its_own_body_type() {
        let only_small = replay_fn(|body: &String| (body.len() < 4).then(|| body.clone()));
        assert!(Replay::capture(&request("abc".to_owned()), &only_small).is_some());
        assert!(Replay::capture(&request("abcdef".to_owned()), &only_small).is_none());
    }
}
