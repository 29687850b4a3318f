//! Simple tokens (etcd's simple_token.go): `<16 random letters>.<raft index>`, held in memory
//! on every member, each with a TTL that every use renews.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 16;

/// 16 random `[a-zA-Z]` letters from the thread's CSPRNG.
pub(crate) fn gen_prefix() -> String {
    let mut rng = rand::rng();
    (0..PREFIX_LEN)
        .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
        .collect()
}

/// The index part of `<prefix>.<index>`; anything else is not a simple token.
pub(crate) fn index_of(token: &str) -> Option<u64> {
    let (_, index) = token.split_once('.')?;
    // Go's ParseUint: decimal digits only (no sign).
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    index.parse().ok()
}

struct Entry {
    username: String,
    expires: Instant,
}

struct State {
    /// etcd keeps no tokens while auth is disabled (its TTL keeper is stopped).
    enabled: bool,
    tokens: HashMap<String, Entry>,
}

pub(crate) struct SimpleTokens {
    ttl: Duration,
    state: Mutex<State>,
}

impl SimpleTokens {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            state: Mutex::new(State {
                enabled: false,
                tokens: HashMap::new(),
            }),
        }
    }

    pub(crate) fn enable(&self) {
        self.state.lock().enabled = true;
    }

    /// Forgets every token.
    pub(crate) fn disable(&self) {
        let mut state = self.state.lock();
        state.enabled = false;
        state.tokens = HashMap::new();
    }

    pub(crate) fn assign(&self, username: &str, prefix: &str, index: u64, now: Instant) -> String {
        let token = format!("{prefix}.{index}");
        let mut state = self.state.lock();
        if state.enabled {
            let entry = Entry {
                username: username.to_owned(),
                expires: now + self.ttl,
            };
            if state.tokens.insert(token.clone(), entry).is_some() {
                tracing::warn!(
                    user = username,
                    "simple token assigned twice; the newer wins"
                );
            }
        }
        token
    }

    /// The user of `token`, renewing its TTL.
    pub(crate) fn user_of(&self, token: &str, now: Instant) -> Option<String> {
        let mut state = self.state.lock();
        let entry = state.tokens.get_mut(token)?;
        entry.expires = now + self.ttl;
        Some(entry.username.clone())
    }

    pub(crate) fn invalidate_user(&self, username: &str) {
        self.state
            .lock()
            .tokens
            .retain(|_, entry| entry.username != username);
    }

    pub(crate) fn expire(&self, now: Instant) {
        self.state
            .lock()
            .tokens
            .retain(|_, entry| entry.expires >= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_sixteen_letters_and_random() {
        let a = gen_prefix();
        let b = gen_prefix();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }

    #[test]
    fn index_needs_exactly_one_dot_and_a_number() {
        assert_eq!(index_of("abc.42"), Some(42));
        assert_eq!(index_of(".7"), Some(7));
        assert_eq!(index_of("abc"), None);
        assert_eq!(index_of("abc.4.2"), None);
        assert_eq!(index_of("abc.x"), None);
        assert_eq!(index_of("abc.-1"), None);
        assert_eq!(index_of("a.b.c"), None);
        assert_eq!(index_of("abc.+3"), None);
        assert_eq!(index_of("abc."), None);
    }

    #[test]
    fn tokens_expire_unless_used_and_use_renews() {
        let ttl = Duration::from_secs(10);
        let tokens = SimpleTokens::new(ttl);
        tokens.enable();
        let t0 = Instant::now();
        let a = tokens.assign("alice", "p", 5, t0);
        let b = tokens.assign("bob", "q", 6, t0);
        assert_eq!(a, "p.5");
        // Used at t0+8s: alice's token now lives until t0+18s; bob's still ends at t0+10s.
        assert_eq!(
            tokens.user_of(&a, t0 + Duration::from_secs(8)).as_deref(),
            Some("alice")
        );
        tokens.expire(t0 + Duration::from_secs(10));
        assert!(
            tokens.user_of(&b, t0).is_some(),
            "expires only after the deadline"
        );
        tokens.expire(t0 + Duration::from_secs(11));
        assert_eq!(tokens.user_of(&b, t0), None);
        tokens.expire(t0 + Duration::from_secs(17));
        assert_eq!(
            tokens.user_of(&a, t0 + Duration::from_secs(8)).as_deref(),
            Some("alice")
        );
        tokens.expire(t0 + Duration::from_secs(19));
        assert_eq!(tokens.user_of(&a, t0), None);
    }

    #[test]
    fn invalidate_user_drops_only_that_users_tokens() {
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        tokens.enable();
        let now = Instant::now();
        let a1 = tokens.assign("alice", "a", 1, now);
        let a2 = tokens.assign("alice", "b", 2, now);
        let b = tokens.assign("bob", "c", 3, now);
        tokens.invalidate_user("alice");
        assert_eq!(tokens.user_of(&a1, now), None);
        assert_eq!(tokens.user_of(&a2, now), None);
        assert_eq!(tokens.user_of(&b, now).as_deref(), Some("bob"));
    }

    #[test]
    fn nothing_is_kept_while_disabled() {
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        let now = Instant::now();
        let t = tokens.assign("alice", "p", 1, now);
        assert_eq!(tokens.user_of(&t, now), None);
        tokens.enable();
        let t = tokens.assign("alice", "p", 2, now);
        assert!(tokens.user_of(&t, now).is_some());
        tokens.disable();
        tokens.enable();
        assert_eq!(tokens.user_of(&t, now), None);
    }
}
