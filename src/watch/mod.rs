//! `kalandra watch`: a long-running mirror service (issue 11).
//!
//! SKELETON, being built: the scheduler (intervals, coalesced triggers,
//! reloads, graceful shutdown) drives [`crate::fleet`]'s syncs; [`http`]
//! serves webhooks, metrics and status over a [`Control`].

pub mod http;
pub mod metrics;
pub mod push_event;
pub mod schedule;
pub mod signature;

/// What a webhook asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// The mirror will sync now, or right after the sync in flight (requests
    /// that arrive while it runs are coalesced into one follow-up).
    Queued,
    /// No mirror has that name.
    Unknown,
}

/// A secret a webhook must prove it knows. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// What the HTTP listener needs from the service. The scheduler implements
/// it; the listener never touches mirrors itself.
pub trait Control: Send + Sync + 'static {
    /// The secret that authenticates webhooks for `mirror` (its own, else the
    /// `[defaults]` one); `None` when the mirror is unknown or has none, in
    /// which case its hooks are refused.
    fn webhook_secret(&self, mirror: &str) -> Option<WebhookSecret>;
    /// Whether a mirror of that name exists.
    fn has_mirror(&self, mirror: &str) -> bool;
    /// The mirrors whose upstream is the repository a push event names
    /// (any of `urls`: a forge's event carries several spellings).
    fn mirrors_for_repository(&self, urls: &[String]) -> Vec<String>;
    /// Asks for a sync of `mirror` now.
    fn trigger(&self, mirror: &str) -> Triggered;
    /// `GET /status`: the last result of each mirror, as JSON.
    fn status(&self) -> serde_json::Value;
    /// `GET /readyz`: the config is loaded and the scheduler runs.
    fn ready(&self) -> bool;
}
