//! A fault-injecting TCP proxy: it sits between kalandra and a real server on 127.0.0.1 and,
//! once a direction has carried N bytes, cuts the connection, stalls, drips bytes slowly,
//! flips a byte or sends a segment twice. It also records what it relayed, so that a clean
//! run tells a sweep where the advertisement, the pack and the report are.
//!
//! Offsets count every byte a direction carried, across the connections the proxy accepted,
//! in the order it read them (kalandra opens its connections to one side one after the
//! other). The fault fires once; later connections pass untouched.
//!
//! [`FaultProxy::serial`] serves one connection at a time, as dulwich's `TCPGitServer` does:
//! a client that opens a second connection while its first is still open waits until the
//! first ends. The proxy counts such overlaps.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Which way bytes flow through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From kalandra to the server: requests, commands, the pack pushed downstream.
    ToServer,
    /// From the server to kalandra: advertisements, the fetched pack, the push report.
    ToClient,
}

impl Direction {
    pub(crate) fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// What happens to the byte at the fault's offset and after it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    /// Close both connections (both sockets shut down) before the byte.
    Cut,
    /// Stop forwarding in this direction, without closing, until the proxy is dropped.
    Stall,
    /// Forward the next `bytes` bytes one at a time, `delay` apart, then at full speed.
    Drip { bytes: usize, delay: Duration },
    /// Invert every bit of the byte.
    Flip,
    /// Send the next `len` bytes (fewer if the read that holds them is shorter) twice.
    Duplicate { len: usize },
}

/// One fault at one offset of one direction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Injection {
    pub direction: Direction,
    pub at: u64,
    pub fault: Fault,
}

/// What the proxy relayed in one direction: every byte (up to [`TRANSCRIPT_CAP`]) and the
/// offset at which each connection began.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transcript {
    pub bytes: Vec<u8>,
    pub connection_starts: Vec<u64>,
}

/// Recording stops here; the sweeps' transfers are far smaller.
const TRANSCRIPT_CAP: usize = 64 << 20;

/// How long after a new connection the serial proxy waits for the client to finish sending
/// on its previous one before it counts an overlap.
const OVERLAP_GRACE: Duration = Duration::from_secs(1);

/// How long a stall lasts at most if the proxy is never dropped.
const STALL_LIMIT: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    transcripts: [Transcript; 2],
    counts: [u64; 2],
    fired: bool,
    sockets: Vec<TcpStream>,
    /// Serial mode: connections that arrived while another one was being served.
    overlaps: usize,
    /// Connections relayed so far.
    connections: usize,
}

struct Shared {
    injection: Option<Injection>,
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A pump that panicked cannot leave the counts half-updated; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy, listening on 127.0.0.1; dropping it closes every connection it holds.
pub(crate) struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:<target>` that injects `injection` (None: a clean relay).
    pub(crate) fn start(target: u16, injection: Option<Injection>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port for the proxy");
        Self::on(listener, target, injection)
    }

    /// [`FaultProxy::start`] on a listener of the caller's.
    pub(crate) fn on(listener: TcpListener, target: u16, injection: Option<Injection>) -> Self {
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Shared {
            injection,
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept(listener, target, accepting));
        FaultProxy { port, shared }
    }

    /// A clean proxy to `127.0.0.1:<target>` that serves one connection at a time: the next
    /// one is accepted by the kernel (its connect succeeds) but hears nothing until the
    /// current one has ended in both directions.
    pub(crate) fn serial(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port for the proxy");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Shared {
            injection: None,
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept_serially(listener, target, accepting));
        FaultProxy { port, shared }
    }

    /// How many connections arrived while another was still open ([`FaultProxy::serial`]).
    pub(crate) fn overlaps(&self) -> usize {
        self.shared.lock().overlaps
    }

    /// How many connections the proxy has relayed (or begun to).
    pub(crate) fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// What was relayed in `direction` so far.
    pub(crate) fn transcript(&self, direction: Direction) -> Transcript {
        self.shared.lock().transcripts[direction.index()].clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for socket in self.shared.lock().sockets.drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so that it sees `stop` and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept(listener: TcpListener, target: u16, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        relay(client, target, &shared);
    }
}

/// Serves the connections one after the other. The listener is polled while a connection
/// is served, so that one arriving meanwhile is counted as an overlap (and queued).
fn accept_serially(listener: TcpListener, target: u16, shared: Arc<Shared>) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut queue: VecDeque<TcpStream> = VecDeque::new();
    let mut current: Option<[JoinHandle<()>; 2]> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let mut idle = true;
        match listener.accept() {
            Ok((client, _)) => {
                idle = false;
                // An overlap is a connection made while the client still sends on its
                // previous one. A client that closed its previous connection just before
                // gets a moment for the pump to see that end.
                let still_open = |pumps: &[JoinHandle<()>; 2]| {
                    let started = Instant::now();
                    while !pumps[0].is_finished() && started.elapsed() < OVERLAP_GRACE {
                        thread::sleep(Duration::from_millis(5));
                    }
                    !pumps[0].is_finished()
                };
                if !queue.is_empty() || current.as_ref().is_some_and(still_open) {
                    shared.lock().overlaps += 1;
                }
                if client.set_nonblocking(false).is_ok() {
                    queue.push_back(client);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        if current
            .as_ref()
            .is_some_and(|pumps| pumps.iter().all(JoinHandle::is_finished))
        {
            current = None;
        }
        if current.is_none() {
            if let Some(client) = queue.pop_front() {
                idle = false;
                current = relay(client, target, &shared);
            }
        }
        if idle {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Connects to the target and starts the two pumps of one connection.
fn relay(client: TcpStream, target: u16, shared: &Arc<Shared>) -> Option<[JoinHandle<()>; 2]> {
    let server = TcpStream::connect(("127.0.0.1", target)).ok()?;
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(c_read), Ok(s_write), Ok(c_keep), Ok(s_keep)) = clones else {
        return None;
    };
    {
        let mut state = shared.lock();
        state.connections += 1;
        let starts = [state.counts[0], state.counts[1]];
        for (t, start) in state.transcripts.iter_mut().zip(starts) {
            t.connection_starts.push(start);
        }
        state.sockets.extend([c_keep, s_keep]);
    }
    let both = [client.try_clone(), server.try_clone()];
    let [Ok(c_both), Ok(s_both)] = both else {
        return None;
    };
    let to_server = Pump {
        direction: Direction::ToServer,
        shared: Arc::clone(shared),
        ends: [c_both.try_clone().ok(), s_both.try_clone().ok()],
    };
    let to_client = Pump {
        direction: Direction::ToClient,
        shared: Arc::clone(shared),
        ends: [c_both.try_clone().ok(), s_both.try_clone().ok()],
    };
    Some([
        thread::spawn(move || to_server.run(c_read, s_write)),
        thread::spawn(move || to_client.run(server, client)),
    ])
}

/// Copies one direction of one connection, injecting the fault when its offset comes by.
struct Pump {
    direction: Direction,
    shared: Arc<Shared>,
    /// Both sockets of the connection, to cut it.
    ends: [Option<TcpStream>; 2],
}

impl Pump {
    fn run(self, mut src: TcpStream, mut dst: TcpStream) {
        let mut buf = vec![0u8; 16 * 1024];
        // Bytes still to drip, and how far apart.
        let mut drip: Option<(usize, Duration)> = None;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &mut buf[..n];
            let fire_at = self.account(chunk);
            let result = match fire_at {
                None => self.forward(&mut dst, chunk, &mut drip),
                Some((offset, fault)) => {
                    let (before, rest) = chunk.split_at_mut(offset);
                    if self.forward(&mut dst, before, &mut drip).is_err() {
                        break;
                    }
                    match fault {
                        Fault::Cut => {
                            self.cut();
                            return;
                        }
                        Fault::Stall => {
                            self.stall();
                            return;
                        }
                        Fault::Drip { bytes, delay } => {
                            drip = Some((bytes, delay));
                            self.forward(&mut dst, rest, &mut drip)
                        }
                        Fault::Flip => {
                            rest[0] = !rest[0];
                            self.forward(&mut dst, rest, &mut drip)
                        }
                        Fault::Duplicate { len } => {
                            let twice = len.min(rest.len());
                            self.forward(&mut dst, &rest[..twice], &mut drip)
                                .and_then(|()| self.forward(&mut dst, rest, &mut drip))
                        }
                    }
                }
            };
            if result.is_err() {
                break;
            }
        }
        let _ = dst.shutdown(Shutdown::Write);
    }

    /// Count and record `chunk`; if the injection falls inside it, mark it fired and return
    /// its offset within the chunk.
    fn account(&self, chunk: &[u8]) -> Option<(usize, Fault)> {
        let d = self.direction.index();
        let mut state = self.shared.lock();
        let start = state.counts[d];
        state.counts[d] += chunk.len() as u64;
        let transcript = &mut state.transcripts[d].bytes;
        if transcript.len() < TRANSCRIPT_CAP {
            let room = (TRANSCRIPT_CAP - transcript.len()).min(chunk.len());
            transcript.extend_from_slice(&chunk[..room]);
        }
        let injection = self.shared.injection?;
        let end = start + chunk.len() as u64;
        if state.fired || injection.direction != self.direction || injection.at >= end {
            return None;
        }
        state.fired = true;
        let offset = injection.at.saturating_sub(start) as usize;
        Some((offset, injection.fault))
    }

    fn forward(
        &self,
        dst: &mut TcpStream,
        bytes: &[u8],
        drip: &mut Option<(usize, Duration)>,
    ) -> std::io::Result<()> {
        let mut rest = bytes;
        while let Some((left, delay)) = *drip {
            let Some((&first, tail)) = rest.split_first() else {
                return Ok(());
            };
            dst.write_all(&[first])?;
            thread::sleep(delay);
            rest = tail;
            *drip = (left > 1).then_some((left - 1, delay));
        }
        dst.write_all(rest)
    }

    fn cut(&self) {
        for socket in self.ends.iter().flatten() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Hold the connection open and forward nothing more, until the proxy is dropped.
    fn stall(&self) {
        let started = Instant::now();
        while !self.shared.stop.load(Ordering::SeqCst) && started.elapsed() < STALL_LIMIT {
            thread::sleep(Duration::from_millis(20));
        }
        self.cut();
    }
}
