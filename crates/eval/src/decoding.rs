//! How a trained ARM or ILM completes prompts (an MDM completes them
//! through `policy::Rollout`'s samplers and learned schedules):
//!
//! - ARM: left to right with a KV cache ([`policy::autoregressive`]);
//! - ILM: insertion until the stop head stops ([`policy::insertion`]), of
//!   the length the model picks.

use envs::{Example, Task};
use mdm::{Denoiser, Family, Kernels};
use policy::autoregressive::{self, ArmSampling};
use policy::insertion::{self, IlmRow, IlmSampling};
use policy::{GenerationStats, SamplerError};

/// How an ARM or an ILM completes prompts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    Arm(ArmSampling),
    Ilm(IlmSampling),
}

impl Decoding {
    /// The decoding of `family` at `temperature` (0: greedy); `None` for
    /// the MDM, whose samplers are `policy`'s.
    pub fn of(family: Family, temperature: f64, top_k: usize) -> Option<Self> {
        match family {
            Family::Mdm => None,
            Family::Arm => Some(Self::Arm(ArmSampling { temperature, top_k })),
            Family::Ilm => Some(Self::Ilm(IlmSampling {
                temperature,
                top_k,
                max_new: 0,
            })),
        }
    }

    /// `arm`, `ilm(temp=0.8)`: the rows' sampler column.
    pub fn label(&self) -> String {
        let (name, t) = match self {
            Self::Arm(s) => ("arm", s.temperature),
            Self::Ilm(s) => ("ilm", s.temperature),
        };
        if t == 0.0 {
            name.to_string()
        } else {
            format!("{name}(temp={t})")
        }
    }

    /// Completes `prompts` with `answer_len` tokens (an ARM) or at most
    /// that many (an ILM, whose shorter answers are padded with `<pad>`
    /// where the task has one).
    pub fn complete<B: Kernels>(
        &self,
        model: &Denoiser<B>,
        task: &dyn Task,
        prompts: &Prompts,
        answer_len: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<Vec<u32>>, GenerationStats), SamplerError> {
        let (keys, prompts) = (&prompts.keys, &prompts.tokens);
        match self {
            Self::Arm(s) => {
                autoregressive::generate(model, prompts, keys, answer_len, *s, seed, device)
            }
            Self::Ilm(s) => {
                let mut rows: Vec<IlmRow> =
                    prompts.iter().map(|p| IlmRow::after_prompt(p)).collect();
                let s = IlmSampling {
                    max_new: answer_len,
                    ..*s
                };
                let stats = insertion::generate(model, &mut rows, keys, s, seed, device)?;
                let pad = task.vocab().id_of("<pad>");
                let answers = rows
                    .iter()
                    .zip(prompts)
                    .map(|(r, p)| {
                        let mut a = r.tokens[p.len()..].to_vec();
                        if let Some(pad) = pad {
                            a.resize(answer_len.max(a.len()), pad);
                        }
                        a
                    })
                    .collect();
                Ok((answers, stats))
            }
        }
    }
}

/// Rows to complete: each prompt with the key its row's draws come from.
pub struct Prompts {
    pub tokens: Vec<Vec<u32>>,
    pub keys: Vec<u64>,
}

impl Prompts {
    /// The prompts of `examples`, keyed by their ids.
    pub fn of(examples: &[Example]) -> Self {
        let (tokens, keys) = examples.iter().map(|e| (e.prompt.clone(), e.id)).unzip();
        Self { tokens, keys }
    }
}
