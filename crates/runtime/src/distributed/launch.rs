//! Where this process sits in a distributed run, and what it starts.

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use burn_collective::CollectiveConfig;
use burn_communication::Address;

use super::control::{Control, Shape};

/// The launch of one node, from the command line (`--nodes`,
/// `--node-rank`, `--coordinator`, `--devices`, ...).
#[derive(Debug, Clone)]
pub struct Launch {
    /// Machines (processes) in the run.
    pub nodes: usize,
    /// This node, `0..nodes`; node 0 coordinates and holds rank 0.
    pub node_rank: usize,
    /// `HOST:PORT` of node 0. The control plane listens on PORT, burn's
    /// collective orchestrator on PORT+1.
    pub coordinator: Option<String>,
    /// Devices (ranks) on each node.
    pub devices: usize,
    /// Port of this node's tensor service (default PORT+2+node_rank, so
    /// that several nodes can share one host).
    pub data_port: Option<u16>,
    /// The address the other nodes reach this node at (default: the
    /// interface that routes to the coordinator).
    pub node_host: Option<String>,
    /// How long nodes wait for each other at the start.
    pub join_timeout: Duration,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            nodes: 1,
            node_rank: 0,
            coordinator: None,
            devices: 1,
            data_port: None,
            node_host: None,
            join_timeout: Duration::from_secs(120),
        }
    }
}

impl Launch {
    /// Ranks in the run.
    pub fn world_size(&self) -> usize {
        self.nodes * self.devices
    }

    pub fn is_distributed(&self) -> bool {
        self.world_size() > 1
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.nodes == 0 || self.devices == 0 {
            bail!("--nodes and --devices must be at least 1");
        }
        if self.node_rank >= self.nodes {
            bail!(
                "--node-rank {} is not below --nodes {}: node ranks are 0..{}",
                self.node_rank,
                self.nodes,
                self.nodes - 1
            );
        }
        if self.nodes > 1 && self.coordinator.is_none() {
            bail!(
                "--nodes {} needs --coordinator HOST:PORT (node 0's address and a free port, \
                 the same on every node)",
                self.nodes
            );
        }
        Ok(())
    }

    /// The coordinator's host and control port.
    fn coordinator(&self) -> anyhow::Result<(String, u16)> {
        let c = self.coordinator.as_deref().unwrap_or_default();
        let (host, port) = c
            .rsplit_once(':')
            .with_context(|| format!("--coordinator {c}: expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p > 0 && p < u16::MAX - 2)
            .with_context(|| format!("--coordinator {c}: `{port}` is not a usable port"))?;
        Ok((host.to_string(), port))
    }

    /// The host the other nodes reach this node at.
    fn node_host(&self, coordinator: &str) -> anyhow::Result<String> {
        if let Some(h) = &self.node_host {
            return Ok(h.clone());
        }
        let addr = coordinator
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("--coordinator {coordinator}: cannot resolve it"))?;
        if addr.ip().is_loopback() {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
        }
        // The interface the route to the coordinator leaves by (a UDP
        // "connect" sends nothing).
        let probe = UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect(addr).map(|()| s))
            .and_then(|s| s.local_addr())
            .with_context(|| {
                format!(
                    "cannot find this machine's address towards {coordinator}; pass --node-host"
                )
            })?;
        Ok(probe.ip().to_string())
    }
}

/// One process's part of the run: its control plane and the collective
/// configuration its ranks register with.
pub struct Cluster {
    pub launch: Launch,
    control: Option<Arc<Control>>,
    collective: CollectiveConfig,
}

impl Cluster {
    /// Joins the run: node 0 starts burn's orchestrator and the control
    /// plane and waits for every node; the others connect to it. Returns
    /// once every node is in and runs the same job (`fingerprint`).
    pub fn start(launch: Launch, fingerprint: &str) -> anyhow::Result<Arc<Self>> {
        launch.validate()?;
        let collective = CollectiveConfig::default().with_num_devices(launch.devices);
        if launch.nodes == 1 {
            return Ok(Arc::new(Self {
                launch,
                control: None,
                collective,
            }));
        }
        let (host, port) = launch.coordinator()?;
        super::process::MULTI_NODE.store(true, std::sync::atomic::Ordering::SeqCst);
        let shape = Shape {
            node: launch.node_rank,
            nodes: launch.nodes,
            devices: launch.devices,
        };
        let control = if launch.node_rank == 0 {
            start_orchestrator(port + 1);
            Control::coordinate(shape, port, fingerprint, launch.join_timeout)?
        } else {
            let addr = format!("{host}:{port}");
            Control::join(shape, &addr, fingerprint, launch.join_timeout)?
        };
        let data_port = launch
            .data_port
            .unwrap_or(port + 2 + launch.node_rank as u16);
        let node_host = launch.node_host(&format!("{host}:{port}"))?;
        let address = |h: &str, p: u16| {
            Address::from_str(&format!("ws://{h}:{p}"))
                .map_err(|e| anyhow::anyhow!("ws://{h}:{p} is not an address: {e:?}"))
        };
        let collective = collective
            .with_num_nodes(launch.nodes as u32)
            .with_global_address(address(&host, port + 1)?)
            .with_node_address(address(&node_host, data_port)?)
            .with_data_service_port(data_port);
        tracing::info!(
            "node {} of {}: {} device(s), tensor service at {node_host}:{data_port}",
            launch.node_rank,
            launch.nodes,
            launch.devices
        );
        Ok(Arc::new(Self {
            launch,
            control: Some(control),
            collective,
        }))
    }

    pub(super) fn collective(&self) -> CollectiveConfig {
        self.collective.clone()
    }

    /// This node's job finished.
    pub fn done(&self) {
        if let Some(c) = &self.control {
            c.done();
        }
    }

    /// A rank of this node failed with `err`: every rank stops. With more
    /// ranks in this process than the failed one (they may wait in an
    /// all-reduce for it), the process exits here.
    pub fn fail(&self, rank: usize, err: &anyhow::Error) {
        let why = match self.launch.devices {
            1 => format!("{err:#}"),
            _ => format!("rank {rank}: {err:#}"),
        };
        if let Some(c) = &self.control {
            c.failed(&why);
        }
        if self.launch.devices > 1 {
            super::process::stop_process(&why);
        }
    }

    /// Whether the control plane has other nodes to hear from.
    pub(super) fn has_peers(&self) -> bool {
        self.control.is_some()
    }
}

/// burn's collective orchestrator on `port`, on its own runtime thread.
/// Its shutdown hook takes over Ctrl-C and SIGTERM for the whole process,
/// so this thread exits the process on either, as the default would.
fn start_orchestrator(port: u16) {
    std::thread::Builder::new()
        .name("cogrpo-orchestrator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => super::process::stop_process(&format!("cannot start the orchestrator: {e}")),
            };
            rt.block_on(async {
                tokio::select! {
                    () = burn_collective::start_global_orchestrator(port) => super::process::stop_process(
                        &format!("burn's collective orchestrator on port {port} stopped (is the port in use? pick another --coordinator port)")
                    ),
                    () = burn_communication::util::os_shutdown_signal() => {
                        let _guard = super::process::write_guard();
                        std::process::exit(130);
                    }
                }
            });
        })
        .expect("cannot start the orchestrator thread");
}
