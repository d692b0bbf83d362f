//! The learnable components of a schedule action and their valid ranges.
//!
//! Each learned component is a Gaussian in an unconstrained space, mapped to
//! its range: the reveal ratio and the confidence threshold through a
//! sigmoid, the temperatures through a softplus, the guidance scale as is. The Gaussian's log-probability is that
//! of the raw sample `u`, which the trajectory stores; no Jacobian is needed
//! because old and new policies are compared on the same `u`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Share of the still-masked positions revealed at the step, in (0, 1).
    Ratio,
    /// Sampling temperature `tau_s` of the token draws, > 0.
    Temperature,
    /// Re-mask (selection) temperature `tau_r`: Gumbel noise on confidence, > 0.
    RemaskTemperature,
    /// Classifier-free guidance scale `w`.
    Guidance,
    /// Fast-dLLM's confidence threshold, in (0, 1): every masked position of
    /// the block whose token probability reaches it is revealed (the ratio's
    /// count at least). Learned over a reference that sets one.
    Threshold,
}

/// Every component, in the order actions and records use (a component
/// added later goes last, so that earlier policies keep their layout).
pub const ALL: [Component; 5] = [
    Component::Ratio,
    Component::Temperature,
    Component::RemaskTemperature,
    Component::Guidance,
    Component::Threshold,
];

/// Smallest value a reference setting is mapped from (softplus^-1(0) and
/// logit(0 or 1) are infinite).
const FLOOR: f64 = 1e-3;

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Ratio => "ratio",
            Component::Temperature => "temperature",
            Component::RemaskTemperature => "remask_temperature",
            Component::Guidance => "guidance",
            Component::Threshold => "threshold",
        }
    }

    /// Whether the component decides how many positions a step reveals:
    /// then it has nothing to decide at a block's last step, which reveals
    /// all the block has left.
    pub fn sets_count(self) -> bool {
        matches!(self, Component::Ratio | Component::Threshold)
    }

    /// Unconstrained `u` to the component's value.
    pub fn map(self, u: f64) -> f64 {
        match self {
            Component::Ratio | Component::Threshold => 1.0 / (1.0 + (-u).exp()),
            Component::Temperature | Component::RemaskTemperature => softplus(u),
            Component::Guidance => u,
        }
    }

    /// The inverse of [`Component::map`], with values at the edge of the
    /// range moved inside it by [`FLOOR`].
    pub fn unmap(self, v: f64) -> f64 {
        match self {
            Component::Ratio | Component::Threshold => {
                let r = v.clamp(FLOOR, 1.0 - FLOOR);
                (r / (1.0 - r)).ln()
            }
            Component::Temperature | Component::RemaskTemperature => {
                let t = v.max(FLOOR);
                // softplus^-1(t) = ln(e^t - 1), written stably for large t.
                t + (-(-t).exp()).ln_1p()
            }
            Component::Guidance => v,
        }
    }
}

fn softplus(u: f64) -> f64 {
    if u > 30.0 { u } else { u.exp().ln_1p() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_inverts_unmap_inside_the_range() {
        for c in ALL {
            for v in [0.05, 0.3, 0.5, 0.9, 2.0, 7.5] {
                if c.sets_count() && v >= 1.0 {
                    // (0, 1): a sigmoid of u.
                    continue;
                }
                let back = c.map(c.unmap(v));
                assert!((back - v).abs() < 1e-9, "{c:?} {v} -> {back}");
            }
        }
        assert!((Component::Ratio.map(Component::Ratio.unmap(1.0)) - (1.0 - FLOOR)).abs() < 1e-12);
        assert!(Component::Temperature.unmap(0.0).is_finite());
        assert!(Component::Temperature.map(-50.0) > 0.0);
    }
}
