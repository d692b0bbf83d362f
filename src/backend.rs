//! The one place where a concrete backend is chosen.

use cogrpo_train::config::DeviceKind;
use mdm::AutodiffKernels;

/// Work that runs on any autodiff backend.
pub trait Job {
    fn run<B: AutodiffKernels>(self, device: B::Device) -> anyhow::Result<()>;
}

/// Runs `job` on the backend the config names.
pub fn dispatch(kind: DeviceKind, job: impl Job) -> anyhow::Result<()> {
    match kind {
        DeviceKind::Cpu => {
            job.run::<burn::backend::Autodiff<burn::backend::Flex>>(burn::backend::flex::FlexDevice)
        }
        DeviceKind::Cuda => cuda(job),
    }
}

#[cfg(feature = "cuda")]
fn cuda(job: impl Job) -> anyhow::Result<()> {
    job.run::<burn::backend::Autodiff<burn::backend::Cuda>>(
        burn::backend::cuda::CudaDevice::default(),
    )
}

#[cfg(not(feature = "cuda"))]
fn cuda(_job: impl Job) -> anyhow::Result<()> {
    anyhow::bail!(
        "this binary was built without CUDA support; rebuild with \
         `cargo build --release --features cuda` (and put the CUDA toolkit's lib64 on LD_LIBRARY_PATH)"
    )
}
