//! The control plane of a distributed run: one TCP connection from every
//! node to node 0, JSON lines on it.
//!
//! burn-collective moves the tensors but has no launch handshake and no
//! failure detection: a peer that dies makes the next all-reduce fail
//! without naming it (or wait, if the peer is alive but stuck before it),
//! and a node that cannot reach the orchestrator retries for ever. So,
//! before any tensor moves:
//!
//! 1. node 0 listens on the coordinator port; every other node connects
//!    (retrying until the join timeout) and says `hello` with its node
//!    rank, the world shape and a fingerprint of its job (command, config,
//!    version); node 0 refuses a node that disagrees, names what differs,
//!    and stops too;
//! 2. once all nodes are in, node 0 says `start` to each;
//! 3. from then on both ends of every connection send a `beat` each
//!    second. A connection that closes without a `done`, or stays silent
//!    for [`SILENCE`], means the node is lost: node 0 tells the others
//!    (`abort`) and every rank exits with [`super::EXIT_PEER_LOST`] and a
//!    message naming the lost ranks. A node whose job fails says `failed`
//!    with the error, and node 0 forwards it the same way.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// How often each end says it is alive.
const BEAT: Duration = Duration::from_secs(1);
/// Silence after which a node counts as lost (a machine that vanished
/// without closing its connection).
pub const SILENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
enum Msg {
    Hello {
        node: usize,
        nodes: usize,
        devices: usize,
        fingerprint: String,
    },
    Refused {
        why: String,
    },
    Start,
    Beat,
    /// The sender's job finished; its connection closes next.
    Done,
    /// The sender's job stopped with this error.
    Failed {
        why: String,
    },
    /// Node 0 to the others: stop, for this reason.
    Abort {
        why: String,
    },
}

/// Who this node is in the run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub node: usize,
    pub nodes: usize,
    pub devices: usize,
}

impl Shape {
    /// "rank 3" or "ranks 2-3 (node 1)": the ranks of `node`.
    pub fn ranks_of(&self, node: usize) -> String {
        let first = node * self.devices;
        match self.devices {
            1 => format!("rank {first}"),
            d => format!("ranks {first}-{} (node {node})", first + d - 1),
        }
    }
}

struct Peer {
    node: usize,
    addr: SocketAddr,
    stream: Mutex<TcpStream>,
    done: AtomicBool,
}

/// This node's end of the control plane.
pub struct Control {
    shape: Shape,
    peers: Vec<Peer>,
    finished: AtomicBool,
}

fn send(stream: &mut TcpStream, msg: &Msg) -> std::io::Result<()> {
    let mut line = serde_json::to_string(msg).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())
}

fn read_msg(reader: &mut impl BufRead) -> std::io::Result<Option<Msg>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// Node 0's judgement of a new connection: the node it is, if its hello
/// matches this run; `None` for a connection that said no hello (ignored);
/// an error, told to the node too, for one that cannot join.
fn admit(
    stream: &mut TcpStream,
    addr: SocketAddr,
    shape: &Shape,
    joined: &[Option<Peer>],
    fingerprint: &str,
) -> anyhow::Result<Option<usize>> {
    let hello = read_msg(&mut BufReader::new(stream.try_clone()?));
    let Ok(Some(Msg::Hello {
        node,
        nodes,
        devices,
        fingerprint: theirs,
    })) = hello
    else {
        tracing::warn!("coordinator: ignored a connection from {addr} that did not say hello");
        return Ok(None);
    };
    let why = if nodes != shape.nodes || devices != shape.devices {
        format!(
            "node {node} at {addr} was started with --nodes {nodes} --devices {devices}, node 0 \
             with --nodes {} --devices {}",
            shape.nodes, shape.devices
        )
    } else if node == 0 || node >= shape.nodes {
        format!(
            "a node at {addr} says it is node {node}; expected 1..{}",
            shape.nodes - 1
        )
    } else if joined[node].is_some() {
        format!("two nodes say they are node {node} (the second at {addr})")
    } else if theirs != fingerprint {
        format!(
            "node {node} at {addr} runs a different job than node 0 (another command, config or \
             cogrpo version: fingerprint {theirs} against {fingerprint}); every node must run the \
             same command with the same config"
        )
    } else {
        return Ok(Some(node));
    };
    let _ = send(stream, &Msg::Refused { why: why.clone() });
    bail!("{why}")
}

impl Control {
    /// Node 0: listens on `port` until every other node has said a hello
    /// that matches `fingerprint`, then starts them all.
    pub fn coordinate(
        shape: Shape,
        port: u16,
        fingerprint: &str,
        join_timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let listener = TcpListener::bind(("0.0.0.0", port)).with_context(|| {
            format!(
                "node 0 cannot listen on the coordinator port {port} (is another run using it? \
                 pick another --coordinator port)"
            )
        })?;
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + join_timeout;
        let mut joined: Vec<Option<Peer>> = (0..shape.nodes).map(|_| None).collect();
        while joined.iter().skip(1).any(Option::is_none) {
            let (mut stream, addr) = match listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<String> = (1..shape.nodes)
                            .filter(|&n| joined[n].is_none())
                            .map(|n| shape.ranks_of(n))
                            .collect();
                        bail!(
                            "{} did not join the coordinator on port {port} within {} s: start \
                             the same command with --node-rank on every node, and check that \
                             this port is reachable from them",
                            missing.join(", "),
                            join_timeout.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(e).context("the coordinator cannot accept a connection"),
            };
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let Some(node) = admit(&mut stream, addr, &shape, &joined, fingerprint)? else {
                continue;
            };
            joined[node] = Some(Peer {
                node,
                addr,
                stream: Mutex::new(stream),
                done: AtomicBool::new(false),
            });
        }
        let peers: Vec<Peer> = joined.into_iter().flatten().collect();
        for p in &peers {
            let mut s = p.stream.lock().unwrap_or_else(|e| e.into_inner());
            send(&mut s, &Msg::Start)
                .with_context(|| format!("cannot start node {} at {}", p.node, p.addr))?;
        }
        Ok(Self::watch(shape, peers))
    }

    /// Node `shape.node > 0`: connects to node 0 at `coordinator`
    /// (retrying until the join timeout), says hello, waits for the start.
    pub fn join(
        shape: Shape,
        coordinator: &str,
        fingerprint: &str,
        join_timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let deadline = Instant::now() + join_timeout;
        let (mut stream, addr) = loop {
            let last = match coordinator.to_socket_addrs() {
                Ok(addrs) => {
                    let mut last = None;
                    let mut found = None;
                    for a in addrs {
                        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                            Ok(s) => {
                                found = Some((s, a));
                                break;
                            }
                            Err(e) => last = Some(e.to_string()),
                        }
                    }
                    if let Some(conn) = found {
                        break conn;
                    }
                    last.unwrap_or_else(|| "no address".into())
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "node {} cannot reach the coordinator at {coordinator} within {} s ({last}): \
                     start node 0 (--node-rank 0) there, and check that the port is reachable",
                    shape.node,
                    join_timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        send(
            &mut stream,
            &Msg::Hello {
                node: shape.node,
                nodes: shape.nodes,
                devices: shape.devices,
                fingerprint: fingerprint.to_string(),
            },
        )
        .with_context(|| format!("cannot talk to the coordinator at {coordinator}"))?;
        stream.set_read_timeout(Some(join_timeout + Duration::from_secs(10)))?;
        match read_msg(&mut BufReader::new(stream.try_clone()?)) {
            Ok(Some(Msg::Start)) => {}
            Ok(Some(Msg::Refused { why })) => bail!("the coordinator refused this node: {why}"),
            Ok(other) => bail!(
                "the coordinator at {coordinator} closed the connection before the start \
                 ({other:?}): another node was refused or did not join, see node 0's log"
            ),
            Err(e) => bail!("no start from the coordinator at {coordinator}: {e}"),
        }
        let peer = Peer {
            node: 0,
            addr,
            stream: Mutex::new(stream),
            done: AtomicBool::new(false),
        };
        Ok(Self::watch(shape, vec![peer]))
    }

    /// Starts the heartbeat and one reader per peer.
    fn watch(shape: Shape, peers: Vec<Peer>) -> Arc<Self> {
        let control = Arc::new(Self {
            shape,
            peers,
            finished: AtomicBool::new(false),
        });
        for i in 0..control.peers.len() {
            let c = control.clone();
            std::thread::Builder::new()
                .name(format!("cogrpo-control-{}", c.peers[i].node))
                .spawn(move || c.read_peer(i))
                .expect("cannot start a control-plane thread");
        }
        let c = Arc::downgrade(&control);
        std::thread::Builder::new()
            .name("cogrpo-heartbeat".into())
            .spawn(move || {
                while let Some(c) = c.upgrade() {
                    if c.finished.load(Ordering::SeqCst) {
                        break;
                    }
                    c.broadcast(&Msg::Beat, false);
                    drop(c);
                    std::thread::sleep(BEAT);
                }
            })
            .expect("cannot start the heartbeat thread");
        control
    }

    /// `msg` to every peer that has not said `done` (with `to_done`, to
    /// those too); a broken connection is the reader's to report.
    fn broadcast(&self, msg: &Msg, to_done: bool) {
        for p in &self.peers {
            if to_done || !p.done.load(Ordering::SeqCst) {
                let mut s = p.stream.lock().unwrap_or_else(|e| e.into_inner());
                let _ = send(&mut s, msg);
            }
        }
    }

    /// Follows one peer's messages until it is done, this node is, or the
    /// peer is lost (which stops this process).
    fn read_peer(&self, i: usize) {
        let peer = &self.peers[i];
        let stream = {
            let s = peer.stream.lock().unwrap_or_else(|e| e.into_inner());
            s.try_clone()
        };
        let lost = |why: String| {
            if !self.finished.load(Ordering::SeqCst) {
                self.abort(&format!(
                    "{}{} was lost: {why}; stopping every rank (the last checkpoint is kept)",
                    self.shape.ranks_of(peer.node),
                    if peer.node == 0 {
                        " (the coordinator)"
                    } else {
                        ""
                    }
                ));
            }
        };
        let Ok(stream) = stream else {
            return lost("its connection could not be read".into());
        };
        if stream.set_read_timeout(Some(SILENCE)).is_err() {
            return lost("its connection could not be read".into());
        }
        let mut reader = BufReader::new(stream);
        loop {
            match read_msg(&mut reader) {
                Ok(Some(Msg::Beat)) => {}
                Ok(Some(Msg::Done)) => peer.done.store(true, Ordering::SeqCst),
                Ok(Some(Msg::Failed { why })) => {
                    peer.done.store(true, Ordering::SeqCst);
                    return self.abort(&format!(
                        "{} stopped with an error: {why}",
                        self.shape.ranks_of(peer.node)
                    ));
                }
                Ok(Some(Msg::Abort { why })) => return self.abort(&why),
                Ok(Some(_)) => {}
                Ok(None) if peer.done.load(Ordering::SeqCst) => return,
                Ok(None) => {
                    return lost(format!(
                        "its connection from {} closed without a goodbye (the process ended \
                         or was killed)",
                        peer.addr
                    ));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return lost(format!(
                        "it sent nothing for {} s (its machine or the network is down)",
                        SILENCE.as_secs()
                    ));
                }
                Err(_) if peer.done.load(Ordering::SeqCst) => return,
                Err(e) => return lost(format!("its connection from {} broke: {e}", peer.addr)),
            }
        }
    }

    /// Stops the run: node 0 tells every other node why; then this
    /// process exits.
    fn abort(&self, why: &str) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.shape.node == 0 {
            let abort = Msg::Abort {
                why: why.to_string(),
            };
            self.broadcast(&abort, false);
        }
        super::process::stop_process(why)
    }

    /// This node's job finished: the peers expect the connections to close.
    ///
    /// Node 0 hosts burn-collective's orchestrator, so it waits (at most
    /// [`SILENCE`]) for every other node's `done` first. Leaving earlier
    /// reset their connections to the orchestrator while they were still
    /// leaving the collective, and burn-collective's worker panics on that
    /// (seen in CI as an exit 101 of node 1 after a successful run).
    pub fn done(&self) {
        // Also to a peer that said `done` already: node 0 waits for this
        // one's.
        self.broadcast(&Msg::Done, true);
        if self.shape.node == 0 {
            let deadline = Instant::now() + SILENCE;
            while Instant::now() < deadline
                && !self.peers.iter().all(|p| p.done.load(Ordering::SeqCst))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.finished.store(true, Ordering::SeqCst);
    }

    /// This node's job failed with `why`: every node stops with it.
    pub fn failed(&self, why: &str) {
        let why = why.trim().to_string();
        let msg = match self.shape.node {
            0 => Msg::Abort {
                why: format!("{} stopped with an error: {why}", self.shape.ranks_of(0)),
            },
            _ => Msg::Failed { why },
        };
        self.broadcast(&msg, false);
        self.finished.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(node: usize) -> Shape {
        Shape {
            node,
            nodes: 2,
            devices: 1,
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    #[test]
    fn a_node_with_another_job_is_refused_with_the_difference_named() {
        let port = free_port();
        let coord = std::thread::spawn(move || {
            Control::coordinate(shape(0), port, "aaa", Duration::from_secs(20)).map(|_| ())
        });
        let joined = Control::join(
            shape(1),
            &format!("127.0.0.1:{port}"),
            "bbb",
            Duration::from_secs(20),
        );
        let err = joined.map(|_| ()).expect_err("refused").to_string();
        assert!(err.contains("different job"), "{err}");
        let err = coord.join().expect("no panic").expect_err("stops");
        assert!(err.to_string().contains("node 1"), "{err}");
    }

    #[test]
    fn a_node_that_never_comes_is_named_after_the_join_timeout() {
        let port = free_port();
        let err = Control::coordinate(shape(0), port, "a", Duration::from_millis(300))
            .map(|_| ())
            .expect_err("times out");
        assert!(err.to_string().contains("rank 1 did not join"), "{err}");
        let err = Control::join(
            shape(1),
            &format!("127.0.0.1:{}", free_port()),
            "a",
            Duration::from_millis(300),
        )
        .map(|_| ())
        .expect_err("nobody listens");
        assert!(
            err.to_string().contains("cannot reach the coordinator"),
            "{err}"
        );
    }

    #[test]
    fn matching_nodes_start_and_finish_cleanly() {
        let port = free_port();
        let coord = std::thread::spawn(move || {
            Control::coordinate(shape(0), port, "same", Duration::from_secs(20))
        });
        let node1 = Control::join(
            shape(1),
            &format!("127.0.0.1:{port}"),
            "same",
            Duration::from_secs(20),
        )
        .expect("joins");
        let node0 = coord.join().expect("no panic").expect("starts");
        std::thread::sleep(Duration::from_millis(1500));
        node1.done();
        node0.done();
        assert!(node0.finished.load(Ordering::SeqCst));
    }
}
