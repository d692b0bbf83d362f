//! The one place where a concrete backend is chosen, and where the ranks of
//! a distributed run are started (one thread per local device).

use cogrpo_config::DeviceKind;
use cogrpo_runtime::distributed::{Cluster, Launch, World};
use mdm::AutodiffKernels;

/// Work that runs on any autodiff backend, as one rank of `world`.
pub trait Job {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()>;
}

/// Runs `job` on the backend the config names, as a single rank.
pub fn dispatch(kind: DeviceKind, job: impl Job + Clone + Send) -> anyhow::Result<()> {
    dispatch_ranks(kind, Launch::default(), "", job)
}

/// Runs `job` as this node's ranks of the run `launch` describes
/// (`fingerprint`: what every node must agree on).
pub fn dispatch_ranks(
    kind: DeviceKind,
    launch: Launch,
    fingerprint: &str,
    job: impl Job + Clone + Send,
) -> anyhow::Result<()> {
    match kind {
        DeviceKind::Cpu => {
            // The CPU has one device: N ranks on it are N replicas sharing
            // the cores (for tests, and to compare with threads).
            let devices = vec![burn::backend::flex::FlexDevice; launch.devices];
            ranks::<burn::backend::Autodiff<burn::backend::Flex>>(devices, launch, fingerprint, job)
        }
        DeviceKind::Cuda => cuda(launch, fingerprint, job),
    }
}

#[cfg(feature = "cuda")]
fn cuda(launch: Launch, fingerprint: &str, job: impl Job + Clone + Send) -> anyhow::Result<()> {
    use burn::backend::cuda::CudaDevice;
    let devices = (0..launch.devices).map(CudaDevice::new).collect();
    ranks::<burn::backend::Autodiff<burn::backend::Cuda>>(devices, launch, fingerprint, job)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: Launch, _: &str, _job: impl Job) -> anyhow::Result<()> {
    available(DeviceKind::Cuda)
}

/// Whether this binary can run on `kind`: `check` asks before a run does,
/// so that a config naming a device the build lacks fails in both the same
/// way (exit 2, the key named).
pub fn available(kind: DeviceKind) -> anyhow::Result<()> {
    if kind == DeviceKind::Cuda && !cfg!(feature = "cuda") {
        return Err(cogrpo_runtime::BadInput(
            "`run.device` = \"cuda\", but this binary was built without CUDA support; rebuild with \
             `cargo build --release --features cuda` (and put the CUDA toolkit's lib64 on LD_LIBRARY_PATH)"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// One rank per device: joins the run, runs `job` on each device's own
/// thread, leaves. A rank that fails stops the run on every rank.
fn ranks<B: AutodiffKernels>(
    devices: Vec<B::Device>,
    launch: Launch,
    fingerprint: &str,
    job: impl Job + Clone + Send,
) -> anyhow::Result<()> {
    if !launch.is_distributed() {
        let device = devices.into_iter().next().unwrap_or_default();
        return job.run::<B>(device, &World::single());
    }
    let cluster = Cluster::start(launch, fingerprint)?;
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .into_iter()
            .enumerate()
            .map(|(local, device)| {
                let (job, cluster) = (job.clone(), &cluster);
                std::thread::Builder::new()
                    .name(format!("cogrpo-rank-{local}"))
                    .stack_size(64 << 20)
                    .spawn_scoped(scope, move || {
                        let world = World::join::<B::InnerBackend>(cluster, local, &device)?;
                        let rank = world.rank;
                        let result = job.run::<B>(device, &world);
                        match &result {
                            Ok(()) => world.finish::<B::InnerBackend>(),
                            Err(e) => cluster.fail(rank, e),
                        }
                        result
                    })
                    .expect("cannot start a rank's thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a rank panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    cluster.done();
    Ok(())
}
