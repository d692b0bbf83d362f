//! Each architecture's tensor names and PyTorch shapes, in the order the
//! denoiser creates its parameters (`DenoiserConfig::build`), so that a
//! released checkpoint streams into the model one tensor at a time and the
//! model streams back out the same way.

use burn::prelude::*;

use super::config::{Architecture, HfConfig};
use crate::Denoiser;
use crate::host::{Host, to_host, transpose};

/// How a file's tensor becomes the denoiser's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    /// Norm gains and biases.
    Same,
    /// A linear layer: PyTorch stores `[out, in]`, burn `[in, out]`.
    Transpose,
    /// The embedding `[V, d]`: the denoiser appends a copy of the mask
    /// token's row as its own mask row `V`.
    Embedding { mask: usize },
    /// The head `[V + 1, d]` of a model cogrpo trained: its last row (the
    /// mask token's logit, which the denoiser does not produce) is zero in
    /// the file and dropped on reading.
    HeadWithMaskRow,
}

/// One tensor of the file.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub name: String,
    /// Shape in the file.
    pub shape: Vec<usize>,
    pub transform: Transform,
}

/// The file's tensors for `hf`, in creation order.
pub(crate) fn slots(hf: &HfConfig) -> Vec<Slot> {
    let cfg = &hf.denoiser;
    let (d, kv, ff, v) = (cfg.d_model, cfg.kv_dim(), cfg.d_ff, cfg.vocab_size);
    let names = Names::of(hf.architecture);
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, transform| {
        out.push(Slot {
            name,
            shape,
            transform,
        })
    };
    if hf.own_mask {
        push(names.embedding.into(), vec![v + 1, d], Transform::Same);
    } else {
        let mask = hf.mask_token_id as usize;
        push(
            names.embedding.into(),
            vec![v, d],
            Transform::Embedding { mask },
        );
    }
    for i in 0..cfg.n_layers {
        let at = |part: &str| format!("{}.{i}.{part}", names.blocks);
        push(at(names.norm_1), vec![d], Transform::Same);
        for (proj, width) in [(names.q, d), (names.k, kv), (names.v, kv)] {
            push(
                at(&format!("{proj}.weight")),
                vec![width, d],
                Transform::Transpose,
            );
            if cfg.qkv_bias {
                push(at(&format!("{proj}.bias")), vec![width], Transform::Same);
            }
        }
        push(at(names.out), vec![d, d], Transform::Transpose);
        push(at(names.norm_2), vec![d], Transform::Same);
        push(at(names.gate), vec![ff, d], Transform::Transpose);
        push(at(names.up), vec![ff, d], Transform::Transpose);
        push(at(names.down), vec![d, ff], Transform::Transpose);
    }
    push(names.final_norm.into(), vec![d], Transform::Same);
    if cfg.tied_head {
        // A tied head reads the embedding.
    } else if hf.own_mask {
        push(
            names.head.into(),
            vec![v + 1, d],
            Transform::HeadWithMaskRow,
        );
    } else {
        push(names.head.into(), vec![v, d], Transform::Transpose);
    }
    out
}

/// Buffers some checkpoints carry that are not parameters.
pub(crate) fn is_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// The module path of projection `target` in block `block` (the prefix of
/// its `.weight`, and of PEFT's adapter keys).
pub(crate) fn projection_module(
    arch: Architecture,
    block: usize,
    target: crate::LoraTarget,
) -> String {
    use crate::LoraTarget::*;
    let n = Names::of(arch);
    let name = match target {
        Q => n.q,
        K => n.k,
        V => n.v,
        O => n.out,
        Gate => n.gate,
        Up => n.up,
        Down => n.down,
    };
    format!("{}.{block}.{}", n.blocks, name.trim_end_matches(".weight"))
}

/// An architecture's tensor names.
struct Names {
    embedding: &'static str,
    /// Prefix of block `i`'s tensors (`{blocks}.{i}.`).
    blocks: &'static str,
    norm_1: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    out: &'static str,
    norm_2: &'static str,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
    final_norm: &'static str,
    head: &'static str,
}

impl Names {
    fn of(arch: Architecture) -> Self {
        match arch {
            // modeling_llada.py: LLaDAModel.transformer, LLaDALlamaBlock.
            Architecture::Llada => Names {
                embedding: "model.transformer.wte.weight",
                blocks: "model.transformer.blocks",
                norm_1: "attn_norm.weight",
                q: "q_proj",
                k: "k_proj",
                v: "v_proj",
                out: "attn_out.weight",
                norm_2: "ff_norm.weight",
                gate: "ff_proj.weight",
                up: "up_proj.weight",
                down: "ff_out.weight",
                final_norm: "model.transformer.ln_f.weight",
                head: "model.transformer.ff_out.weight",
            },
            // modeling_dream.py: DreamModel (Qwen2's names).
            Architecture::Dream => Names {
                embedding: "model.embed_tokens.weight",
                blocks: "model.layers",
                norm_1: "input_layernorm.weight",
                q: "self_attn.q_proj",
                k: "self_attn.k_proj",
                v: "self_attn.v_proj",
                out: "self_attn.o_proj.weight",
                norm_2: "post_attention_layernorm.weight",
                gate: "mlp.gate_proj.weight",
                up: "mlp.up_proj.weight",
                down: "mlp.down_proj.weight",
                final_norm: "model.norm.weight",
                head: "lm_head.weight",
            },
        }
    }
}

/// The shape of the denoiser's parameter for `slot`.
pub(crate) fn to_param_shape(slot: &Slot) -> Vec<usize> {
    match slot.transform {
        Transform::Same => slot.shape.clone(),
        Transform::Transpose => vec![slot.shape[1], slot.shape[0]],
        Transform::Embedding { .. } => vec![slot.shape[0] + 1, slot.shape[1]],
        Transform::HeadWithMaskRow => vec![slot.shape[1], slot.shape[0] - 1],
    }
}

/// A file's tensor as the denoiser's parameter.
pub(crate) fn to_param(slot: &Slot, h: Host) -> Host {
    match slot.transform {
        Transform::Same => h,
        Transform::Transpose => transpose(&h),
        Transform::HeadWithMaskRow => {
            let (rows, d) = (h.shape[0] - 1, h.shape[1]);
            let mut values = h.values;
            values.truncate(rows * d);
            transpose(&Host {
                shape: vec![rows, d],
                values,
            })
        }
        Transform::Embedding { mask } => {
            let d = h.shape[1];
            let mut values = h.values;
            values.extend_from_within(mask * d..(mask + 1) * d);
            Host {
                shape: vec![h.shape[0] + 1, d],
                values,
            }
        }
    }
}

/// The denoiser's parameter as the file's tensor: the inverse of
/// [`to_param`]. The embedding's mask row goes back to the mask token's
/// row (it is the one the model was trained to read at masked positions;
/// with a tied head, that row is also the mask token's output logit, which
/// is never a target).
pub(crate) fn from_param(slot: &Slot, h: Host) -> Host {
    match slot.transform {
        Transform::Same => h,
        Transform::Transpose => transpose(&h),
        Transform::HeadWithMaskRow => {
            let mut t = transpose(&h);
            let d = t.shape[1];
            t.values.extend(std::iter::repeat_n(0.0, d));
            t.shape[0] += 1;
            t
        }
        Transform::Embedding { mask } => {
            let (rows, d) = (h.shape[0] - 1, h.shape[1]);
            let mut values = h.values;
            let mask_row: Vec<f32> = values[rows * d..].to_vec();
            values.truncate(rows * d);
            values[mask * d..(mask + 1) * d].copy_from_slice(&mask_row);
            Host {
                shape: vec![rows, d],
                values,
            }
        }
    }
}

/// The denoiser's parameters in creation order (the order of [`slots`]).
pub(crate) fn parameters<B: Backend>(model: &Denoiser<B>) -> Vec<Host> {
    let mut out = vec![to_host(model.wte.weight.val())];
    for b in &model.blocks {
        out.push(to_host(b.norm_1.gamma.val()));
        for l in [&b.attn.q, &b.attn.k, &b.attn.v] {
            out.push(to_host(l.weight.val()));
            if let Some(bias) = &l.bias {
                out.push(to_host(bias.val()));
            }
        }
        out.push(to_host(b.attn.proj.weight.val()));
        out.push(to_host(b.norm_2.gamma.val()));
        for l in [&b.mlp.w1, &b.mlp.w2, &b.mlp.w3] {
            out.push(to_host(l.weight.val()));
        }
    }
    out.push(to_host(model.ln_f.gamma.val()));
    if let Some(head) = &model.lm_head {
        out.push(to_host(head.weight.val()));
    }
    out
}
