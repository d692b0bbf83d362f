//! Configuration problems: the one shape in which every config section of
//! every crate reports what is wrong with it.
//!
//! A section implements [`Validate`] and checks only its own keys, relative
//! to itself; the section that contains it nests it with
//! [`Problems::section`], which prefixes the keys. So the whole config is
//! checked in one pass and the user sees every problem at once, each naming
//! its full key path (`cogrpo.reference.temperature`).
//!
//! It lives in `envs` because `envs` is the crate every config-holding crate
//! (`policy`, `rewards`, the trainer) already depends on.

use std::fmt;

/// One problem: the key's full path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// A config section that checks its own ranges and combinations.
pub trait Validate {
    /// Reports every problem of this section into `p`, with keys relative
    /// to the section.
    fn check(&self, p: &mut Problems);

    /// Every problem of this section, keys relative to it.
    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        self.check(&mut p);
        p.into_vec()
    }
}

/// The problems found so far, and the key prefix of the section being
/// checked.
#[derive(Debug, Default)]
pub struct Problems {
    prefix: String,
    list: Vec<Problem>,
}

impl Problems {
    /// A problem with `key` (relative to the current section; `""` is the
    /// section itself).
    pub fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(Problem {
            key: join(&self.prefix, key),
            message: message.into(),
        });
    }

    /// Checks a nested section under `name` (`"reference"`, `"samplers[2]"`).
    pub fn section(&mut self, name: &str, section: &(impl Validate + ?Sized)) {
        let outer = std::mem::take(&mut self.prefix);
        self.prefix = join(&outer, name);
        section.check(self);
        self.prefix = outer;
    }

    /// A count that must be at least 1.
    pub fn at_least_one(&mut self, key: &str, v: usize) {
        if v == 0 {
            self.bad(key, "must be at least 1");
        }
    }

    /// A count in the closed interval `[lo, hi]`: the upper bounds keep
    /// sizes whose products would overflow or exhaust memory from reaching
    /// the code that multiplies them.
    pub fn count_within(&mut self, key: &str, v: usize, lo: usize, hi: usize) {
        if !(lo..=hi).contains(&v) {
            self.bad(key, format!("must lie in {lo}..={hi}, got {v}"));
        }
    }

    /// A finite number > 0.
    pub fn positive(&mut self, key: &str, v: f64) {
        if !(v > 0.0 && v.is_finite()) {
            self.bad(key, format!("must be a finite number > 0, got {v}"));
        }
    }

    /// A finite number >= 0.
    pub fn non_negative(&mut self, key: &str, v: f64) {
        if !(v >= 0.0 && v.is_finite()) {
            self.bad(key, format!("must be a finite number >= 0, got {v}"));
        }
    }

    /// A finite number.
    pub fn finite(&mut self, key: &str, v: f64) {
        if !v.is_finite() {
            self.bad(key, format!("must be finite, got {v}"));
        }
    }

    /// A number in the closed interval `[lo, hi]`.
    pub fn within(&mut self, key: &str, v: f64, lo: f64, hi: f64) {
        if !(v >= lo && v <= hi) {
            self.bad(key, format!("must lie in [{lo}, {hi}], got {v}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Inner(f64);
    impl Validate for Inner {
        fn check(&self, p: &mut Problems) {
            p.positive("lr", self.0);
            if self.0 > 1.0 {
                p.bad("", "too large as a whole");
            }
        }
    }

    struct Outer(Vec<Inner>, usize);
    impl Validate for Outer {
        fn check(&self, p: &mut Problems) {
            p.at_least_one("steps", self.1);
            for (i, s) in self.0.iter().enumerate() {
                p.section(&format!("items[{i}]"), s);
            }
            p.within("after", 2.0, 0.0, 1.0);
        }
    }

    #[test]
    fn nested_sections_name_their_full_key_and_the_prefix_is_restored() {
        let mut p = Problems::default();
        p.section("top", &Outer(vec![Inner(0.5), Inner(-1.0), Inner(3.0)], 0));
        let keys: Vec<String> = p.into_vec().into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            ["top.steps", "top.items[1].lr", "top.items[2]", "top.after"]
        );
    }

    #[test]
    fn range_checks_reject_nan_and_infinity() {
        let mut p = Problems::default();
        p.positive("a", f64::NAN);
        p.non_negative("b", f64::INFINITY);
        p.finite("c", f64::NEG_INFINITY);
        p.within("d", f64::NAN, 0.0, 1.0);
        p.non_negative("ok", 0.0);
        p.within("ok", 1.0, 0.0, 1.0);
        let keys: Vec<String> = p.into_vec().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(
            Inner(-1.0).problems()[0].to_string(),
            "`lr`: must be a finite number > 0, got -1"
        );
    }
}
