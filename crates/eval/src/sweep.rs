//! `cogrpo eval`'s evaluation of a checkpoint: every configured sampler at
//! every step count (an ARM or ILM once per temperature), and the held-out
//! likelihood.

use cogrpo_config::ExperimentConfig;
use cogrpo_runtime::logging::Scalars;
use envs::Task;
use mdm::{Denoiser, Family, Kernels};
use policy::{SamplerConfig, SamplerKind, TemperatureOverride};

use crate::decoding::Decoding;
use crate::likelihood::likelihood;
use crate::point::{EvalPoint, test_examples};
use crate::rows::EvalRow;
use crate::scorer::Scorer;

/// Runs the configured sweep and likelihood bound. An MDM runs every
/// sampler at every step count; an ARM or an ILM once per distinct
/// temperature of `eval.samplers` (step counts are the MDM's knob), and the
/// ARM's likelihood is exact.
pub fn evaluate<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    log: &mut Scalars,
) -> anyhow::Result<Vec<EvalRow>> {
    let e = &cfg.eval;
    let examples = test_examples(cfg, task);
    let point = |label: String, sampler: SamplerConfig, temperature: Option<f64>| EvalPoint {
        label,
        model,
        policy: None,
        sampler,
        temperature: temperature.map(TemperatureOverride::reference),
    };
    let points: Vec<EvalPoint<B>> = if model.family() == Family::Mdm {
        cfg.sweep()
            .into_iter()
            .map(|s| point(s.label(), s, None))
            .collect()
    } else {
        // Distinct temperatures, in the order the config first names them.
        let mut temperatures: Vec<f64> = Vec::new();
        for t in e.samplers.iter().map(|s| s.temperature) {
            if !temperatures.contains(&t) {
                temperatures.push(t);
            }
        }
        temperatures
            .into_iter()
            .filter_map(|t| {
                let decoding = Decoding::of(model.family(), t, e.top_k)?;
                let sampler = SamplerConfig::new(SamplerKind::Confidence, task.layout().answer_len);
                Some(point(decoding.label(), sampler, Some(t)))
            })
            .collect()
    };
    let mut rows = Vec::new();
    if !points.is_empty() {
        let scorer = Scorer::new(cfg, task)?;
        for point in points {
            let r = point
                .evaluate(cfg, task, examples, &scorer, false, device)?
                .rows;
            for row in &r {
                log.scalar(
                    &format!("eval/{}/{}", row.sampler, row.metric),
                    row.value,
                    point.sampler.steps,
                );
            }
            rows.extend(r);
        }
    }
    if e.nll_samples > 0 {
        let row = likelihood(cfg, task, model, device, examples)?;
        log.scalar(
            &format!("eval/{}_bits_per_token", row.sampler),
            row.value,
            0,
        );
        rows.push(row);
    }
    Ok(rows)
}
