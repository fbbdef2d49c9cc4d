//! What a request costs per model, and which models a principal may use.

use std::collections::HashMap;

use super::error::SpecError;
use crate::model::StringMatch;

/// Token counts a response reports.
///
/// `cached_input` is the part of `input` served from a prompt cache (the
/// OpenAI convention: `prompt_tokens` includes `cached_tokens`). For an API
/// that reports cache reads apart from input (Anthropic's
/// `cache_read_input_tokens`), add them to `input` too. A `cached_input`
/// larger than `input` is read as equal to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input: u64,
    /// Prompt tokens read from a cache (a part of `input`).
    pub cached_input: u64,
    /// Generated tokens.
    pub output: u64,
}

impl Usage {
    /// Usage with no cached input.
    pub const fn new(input: u64, output: u64) -> Self {
        Self {
            input,
            cached_input: 0,
            output,
        }
    }

    /// The same usage with `cached_input` of the input read from a cache.
    pub const fn with_cached_input(mut self, cached_input: u64) -> Self {
        self.cached_input = cached_input;
        self
    }
}

/// How many limit tokens one input, cached-input and output token cost, in
/// thousandths (1000 = one token). Costs are rounded up to whole tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CostWeights {
    input: u32,
    cached_input: u32,
    output: u32,
}

impl Default for CostWeights {
    fn default() -> Self {
        Self::UNIT
    }
}

impl CostWeights {
    /// Every token costs one.
    pub const UNIT: Self = Self::per_mille(1000, 1000, 1000);

    /// Weights in thousandths: `per_mille(1000, 250, 4000)` makes a cached
    /// input token cost a quarter and an output token four.
    pub const fn per_mille(input: u32, cached_input: u32, output: u32) -> Self {
        Self {
            input,
            cached_input,
            output,
        }
    }

    /// The weights in thousandths: (input, cached input, output).
    pub const fn as_per_mille(&self) -> (u32, u32, u32) {
        (self.input, self.cached_input, self.output)
    }

    /// What a request is reserved at: its input estimate (assumed uncached)
    /// plus its largest possible output.
    pub fn reservation_cost(&self, estimated_input: u64, max_output: u64) -> u64 {
        self.cost(estimated_input, 0, max_output)
    }

    /// What a finished request costs.
    pub fn usage_cost(&self, usage: Usage) -> u64 {
        let cached = usage.cached_input.min(usage.input);
        self.cost(usage.input - cached, cached, usage.output)
    }

    fn cost(&self, uncached: u64, cached: u64, output: u64) -> u64 {
        // Realistic counts fit in u64; u128 division is a slow library call.
        let small = uncached
            .checked_mul(u64::from(self.input))
            .zip(cached.checked_mul(u64::from(self.cached_input)))
            .zip(output.checked_mul(u64::from(self.output)))
            .and_then(|((a, b), c)| a.checked_add(b)?.checked_add(c));
        if let Some(milli) = small {
            return milli.div_ceil(1000);
        }
        let milli = u128::from(uncached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(output) * u128::from(self.output);
        u64::try_from(milli.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// Per-model [`CostWeights`], with a fallback for models not listed.
///
/// A model is looked up by exact name first, then by the longest matching
/// `prefix*` pattern, then the default applies.
#[derive(Debug, Clone, Default)]
pub struct CostModel {
    exact: HashMap<String, CostWeights>,
    /// Longest prefix first.
    prefixes: Vec<(String, CostWeights)>,
    default: CostWeights,
}

impl CostModel {
    /// A model where every model costs `default`.
    pub fn new(default: CostWeights) -> Self {
        Self {
            default,
            ..Self::default()
        }
    }

    /// Sets the weights of a model (`gpt-4o`) or of a family by prefix
    /// (`gpt-4o*`); a later entry for the same pattern replaces the earlier.
    ///
    /// # Errors
    /// [`SpecError::InvalidPattern`] for an empty pattern or a `*` anywhere but
    /// at the end.
    pub fn with_model(mut self, pattern: &str, weights: CostWeights) -> Result<Self, SpecError> {
        match parse_pattern(pattern)? {
            StringMatch::Exact(name) => {
                self.exact.insert(name, weights);
            }
            StringMatch::Prefix(prefix) => {
                self.prefixes.retain(|(p, _)| *p != prefix);
                self.prefixes.push((prefix, weights));
                self.prefixes
                    .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            }
            StringMatch::Suffix(_) | StringMatch::Presence => {
                return Err(SpecError::InvalidPattern {
                    pattern: pattern.to_owned(),
                    reason: "a cost model entry is a model name or a `prefix*`",
                });
            }
        }
        Ok(self)
    }

    /// The weights that apply to `model`.
    pub fn weights_for(&self, model: &str) -> CostWeights {
        if let Some(w) = self.exact.get(model) {
            return *w;
        }
        self.prefixes
            .iter()
            .find(|(p, _)| model.starts_with(p.as_str()))
            .map_or(self.default, |(_, w)| *w)
    }
}

/// Parses `exact`, `prefix*`, `*suffix` or `*` (any non-empty value), the
/// string forms of POLICY.md.
fn parse_pattern(pattern: &str) -> Result<StringMatch, SpecError> {
    let invalid = |reason| SpecError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    if pattern.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if pattern == "*" {
        return Ok(StringMatch::Presence);
    }
    let (kind, body): (fn(String) -> StringMatch, &str) =
        if let Some(rest) = pattern.strip_prefix('*') {
            (StringMatch::Suffix, rest)
        } else if let Some(rest) = pattern.strip_suffix('*') {
            (StringMatch::Prefix, rest)
        } else {
            (StringMatch::Exact, pattern)
        };
    if body.contains('*') {
        return Err(invalid("`*` may only start or end a pattern"));
    }
    Ok(kind(body.to_owned()))
}

#[derive(Debug, Clone)]
struct AllowRule {
    principal: StringMatch,
    models: Vec<StringMatch>,
}

/// Which models each principal may use (governance).
///
/// An empty list restricts nothing. Once it has a rule, a request is allowed
/// only when some rule's principal pattern matches the principal and one of
/// that rule's model patterns matches the model; rules add up, their order
/// does not matter, and a principal no rule names may use no model. Patterns
/// are `exact`, `prefix*`, `*suffix` or `*` (any non-empty value); principals
/// are compared as given (strip `spiffe://` before, if you match on trust
/// domain paths).
#[derive(Debug, Clone, Default)]
pub struct ModelAllowList {
    rules: Vec<AllowRule>,
}

impl ModelAllowList {
    /// A list that allows every model to every principal.
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Adds a rule: principals matching `principal` may use models matching
    /// any of `models` (an empty `models` adds nothing but still makes the
    /// list restrictive).
    ///
    /// # Errors
    /// [`SpecError::InvalidPattern`] for a malformed pattern.
    pub fn allow<S: AsRef<str>>(
        mut self,
        principal: &str,
        models: &[S],
    ) -> Result<Self, SpecError> {
        let principal = parse_pattern(principal)?;
        let models = models
            .iter()
            .map(|m| parse_pattern(m.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.rules.push(AllowRule { principal, models });
        Ok(self)
    }

    /// Whether the list has any rule (and so restricts anything).
    pub fn is_restrictive(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether `principal` may use `model`.
    pub fn allows(&self, principal: &str, model: &str) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|rule| {
                rule.principal.matches(principal) && rule.models.iter().any(|m| m.matches(model))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(parse_pattern("a*"), Ok(StringMatch::Prefix("a".into())));
        assert_eq!(parse_pattern("*a"), Ok(StringMatch::Suffix("a".into())));
        assert_eq!(parse_pattern("*"), Ok(StringMatch::Presence));
        assert!(parse_pattern("a*b").is_err());
        assert!(parse_pattern("**").is_err());
        assert!(parse_pattern("").is_err());
    }

    #[test]
    fn cost_rounds_up_and_clamps_cached() {
        let w = CostWeights::per_mille(1000, 250, 4000);
        assert_eq!(
            w.usage_cost(Usage::new(10, 3).with_cached_input(4)),
            6 + 1 + 12
        );
        assert_eq!(w.usage_cost(Usage::new(2, 0).with_cached_input(9)), 1);
        assert_eq!(w.reservation_cost(10, 3), 22);
        // Past u64 in thousandths, still exact (and saturating at the end).
        assert_eq!(w.reservation_cost(u64::MAX / 2, 0), u64::MAX / 2);
        assert_eq!(w.reservation_cost(0, u64::MAX), u64::MAX);
    }

    #[test]
    fn longest_prefix_wins() {
        let m = CostModel::new(CostWeights::UNIT)
            .with_model("gpt-*", CostWeights::per_mille(1, 1, 1))
            .unwrap()
            .with_model("gpt-4o*", CostWeights::per_mille(2, 2, 2))
            .unwrap()
            .with_model("gpt-4o-mini", CostWeights::per_mille(3, 3, 3))
            .unwrap();
        assert_eq!(m.weights_for("gpt-4o-mini").as_per_mille().0, 3);
        assert_eq!(m.weights_for("gpt-4o-2024").as_per_mille().0, 2);
        assert_eq!(m.weights_for("gpt-3.5").as_per_mille().0, 1);
        assert_eq!(m.weights_for("claude"), CostWeights::UNIT);
    }
}
