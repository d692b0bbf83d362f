//! The training pipeline end to end, in process, on the CPU backend:
//! pre-training's checkpoints and resume, the Co-GRPO trainer's arms, the
//! schedule factor learning in the right direction, and a whole experiment
//! through the library the binary calls.
//!
//! One test binary on purpose. Each binary that names a concrete backend
//! compiles the whole pipeline for it again (45-70 s of release compile each
//! on a 2-core machine), so the pipeline's tests share one; they live in the
//! crate that assembles the pipeline.

mod adversarial;
mod arms;
mod experiment;
mod pretrain_resume;
mod schedule_learns;
mod validation;
