//! What the digits model tests share: the digits experiment's config
//! writing under a temporary folder and reading the repository's data.

use std::path::Path;

use cogrpo_config::{ExperimentConfig, load};
use rand::Rng;

pub fn config(out: &Path) -> ExperimentConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    load(
        &root.join("experiments/digits.toml"),
        &[
            format!("run.out_dir={}", out.display()),
            format!("task.data_dir={}", root.join("data").display()),
        ],
    )
    .expect("experiments/digits.toml loads")
}

/// An image with ink of random gray at a share `ink` of its pixels, as an
/// untrained MDM draws.
pub fn scribble(rng: &mut impl Rng, ink: f64) -> Vec<u32> {
    (0..64)
        .map(|_| {
            if rng.random_bool(ink) {
                rng.random_range(0..17)
            } else {
                0
            }
        })
        .collect()
}
