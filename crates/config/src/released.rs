//! `model.source`: a model directory's `config.json`, or a released SMDM
//! file's tensor shapes, as the `[model]` section. Its shape fills the
//! section; a key the file also gives must agree, or the config is refused
//! naming both values.

use envs::Problem;
use mdm::Family;

use crate::sections::ModelConfig;
use crate::source::SourceModel;

/// Reads `model.source` (when set) and fills `model` from it.
pub fn resolve(model: &mut ModelConfig) -> Vec<Problem> {
    let Some(dir) = model.source.clone() else {
        return Vec::new();
    };
    let problem = |key: &str, message: String| Problem {
        key: format!("model.{key}"),
        message,
    };
    let n_heads = (model.n_heads != 0).then_some(model.n_heads);
    let source = match SourceModel::read(&dir, n_heads) {
        Ok(source) => source,
        Err(e) => return vec![problem("source", e)],
    };
    let d = &source.denoiser;
    let file = source.file.clone();
    let mut problems = Vec::new();
    let mut agree = |key: &str, here: Option<String>, there: String| {
        if let Some(here) = here.filter(|h| *h != there) {
            problems.push(problem(
                key,
                format!("{here} here, but {} says {there}", file.display()),
            ));
        }
    };
    let count = |n: usize| (n != 0).then(|| n.to_string());
    let flag = |b: bool| b.then(|| b.to_string());
    agree(
        "family",
        (model.family != Family::Mdm).then(|| model.family.to_string()),
        "mdm".into(),
    );
    agree("d_model", count(model.d_model), d.d_model.to_string());
    agree("n_layers", count(model.n_layers), d.n_layers.to_string());
    agree("n_heads", count(model.n_heads), d.n_heads.to_string());
    agree("d_ff", count(model.d_ff), d.d_ff.to_string());
    let kv = d.n_kv_heads.unwrap_or(d.n_heads);
    agree(
        "n_kv_heads",
        model.n_kv_heads.map(|n| n.to_string()),
        kv.to_string(),
    );
    agree("qkv_bias", flag(model.qkv_bias), d.qkv_bias.to_string());
    agree("tied_head", flag(model.tied_head), d.tied_head.to_string());
    agree(
        "logit_shift",
        flag(model.logit_shift),
        d.logit_shift.to_string(),
    );
    agree(
        "rope_theta",
        model.rope_theta.map(|t| t.to_string()),
        d.rope_base.to_string(),
    );
    agree(
        "norm_eps",
        model.norm_eps.map(|e| e.to_string()),
        d.norm_eps.to_string(),
    );
    if !problems.is_empty() {
        return problems;
    }
    model.family = Family::Mdm;
    model.d_model = d.d_model;
    model.n_layers = d.n_layers;
    model.n_heads = d.n_heads;
    model.d_ff = d.d_ff;
    model.n_kv_heads = d.n_kv_heads;
    model.qkv_bias = d.qkv_bias;
    model.tied_head = d.tied_head;
    model.logit_shift = d.logit_shift;
    model.rope_theta = Some(d.rope_base);
    model.norm_eps = Some(d.norm_eps);
    model.released = Some(source);
    Vec::new()
}
