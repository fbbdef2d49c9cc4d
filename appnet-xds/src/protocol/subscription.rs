//! Which resources of one type a stream is subscribed to.

use std::collections::BTreeSet;

use super::WILDCARD;

/// A subscription to one type: wildcard, explicit names, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) wildcard: bool,
    pub(crate) names: BTreeSet<String>,
    /// Some request named resources (or `*`) explicitly: from then on an
    /// empty list means "nothing", not the legacy wildcard.
    pub(crate) explicit_seen: bool,
}

/// What one request changed in a subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) wildcard_changed: bool,
    /// Unsubscribed names that were never subscribed (harmless no-ops).
    pub(crate) not_subscribed: Vec<String>,
}

impl Subscription {
    /// Whether `name` is covered (by the wildcard or by name).
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Whether nothing at all is subscribed.
    pub(crate) fn is_empty(&self) -> bool {
        !self.wildcard && self.names.is_empty()
    }

    /// Applies a state-of-the-world request's full `resource_names` list.
    /// An empty list is the legacy wildcard until names were ever sent.
    pub(crate) fn apply_sotw(&mut self, names: &[String]) -> Diff {
        let was_wildcard = self.wildcard;
        let new_names: BTreeSet<String> = names
            .iter()
            .filter(|n| n.as_str() != WILDCARD)
            .cloned()
            .collect();
        if names.is_empty() {
            self.wildcard = !self.explicit_seen;
        } else {
            self.explicit_seen = true;
            self.wildcard = names.iter().any(|n| n == WILDCARD);
        }
        let added = new_names.difference(&self.names).cloned().collect();
        let removed = self.names.difference(&new_names).cloned().collect();
        self.names = new_names;
        Diff {
            added,
            removed,
            wildcard_changed: was_wildcard != self.wildcard,
            not_subscribed: Vec::new(),
        }
    }

    /// Applies an incremental request's subscribe/unsubscribe lists. `first`
    /// marks the first request of the type on the stream, where an empty
    /// subscribe list is the legacy wildcard.
    pub(crate) fn apply_delta(
        &mut self,
        subscribe: &[String],
        unsubscribe: &[String],
        first: bool,
    ) -> Diff {
        let was_wildcard = self.wildcard;
        let mut diff = Diff::default();
        if first && subscribe.is_empty() && !self.explicit_seen {
            self.wildcard = true;
        }
        for name in subscribe {
            self.explicit_seen = true;
            if name == WILDCARD {
                self.wildcard = true;
            } else if self.names.insert(name.clone()) {
                diff.added.push(name.clone());
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                if !self.wildcard {
                    diff.not_subscribed.push(name.clone());
                }
                self.wildcard = false;
            } else if self.names.remove(name) {
                diff.removed.push(name.clone());
            } else {
                diff.not_subscribed.push(name.clone());
            }
        }
        diff.wildcard_changed = was_wildcard != self.wildcard;
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sotw_empty_is_wildcard_only_before_names() {
        let mut sub = Subscription::default();
        sub.apply_sotw(&[]);
        assert!(sub.wildcard);
        sub.apply_sotw(&s(&["a"]));
        assert!(!sub.wildcard && sub.covers("a"));
        let diff = sub.apply_sotw(&[]);
        assert!(sub.is_empty(), "after names, empty means nothing");
        assert_eq!(diff.removed, s(&["a"]));
        sub.apply_sotw(&s(&["*", "b"]));
        assert!(sub.wildcard && sub.names.contains("b"));
    }

    #[test]
    fn delta_unsubscribe_unknown_is_reported_not_fatal() {
        let mut sub = Subscription::default();
        let diff = sub.apply_delta(&s(&["a"]), &s(&["zzz", "*"]), true);
        assert_eq!(diff.added, s(&["a"]));
        assert_eq!(diff.not_subscribed, s(&["zzz", "*"]));
        assert!(sub.covers("a") && !sub.wildcard);
        let diff = sub.apply_delta(&[], &[], false);
        assert!(!sub.wildcard, "legacy wildcard only on the first request");
        assert_eq!(diff, Diff::default());
    }
}
