//! The HTTP/1.1 server: an accept loop on every lane and one task per connection.
//!
//! The codec is in [`decode`] (bytes to a borrowed [`Request`]) and [`encode`] ([`Response`] to
//! bytes); this file only moves bytes and keeps time, on the server's own threads (`lane`, with
//! its sockets in `socket`): a connection stays on the lane that accepted it. Each connection
//! reads into one bounded buffer, decodes as many pipelined requests as it holds, answers them in
//! order into one output buffer and flushes before it would wait on a read. Every wait has a
//! deadline: a new connection must send its head within the head timeout, a kept-alive connection
//! may idle for the idle timeout, a started request must complete within the head timeout (else
//! 408), and a peer that stops reading is dropped after the write timeout.

pub mod decode;
pub mod encode;
pub mod idle;
pub(crate) mod lane;
mod socket;

use self::decode::{parse_request, Request, Version};
use self::encode::Response;
use self::idle::{IdleConns, IdleMember};
use self::socket::{Listener, Stream};
use super::buf::ReadBuf;
use super::{
    HEAD_TIMEOUT, IDLE_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_HEAD_BYTES, WRITE_TIMEOUT,
};
use async_net::TcpListener;
use smol::Timer;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes asked of the socket per read while a request is arriving.
const READ_CHUNK: usize = 4096;
/// Bytes asked of the socket for the first read of a request (most requests here are ~100 bytes).
const IDLE_CHUNK: usize = 1024;
/// Answers queued for pipelined requests are flushed once they reach this size.
const MAX_PENDING_OUT: usize = 64 * 1024;
/// First wait after an accept error such as EMFILE; doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between accept attempts while the process is out of descriptors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Connections a lane accepts in a row before it lets its other tasks run.
const ACCEPT_BURST: usize = 16;
/// Connections a lane takes before the next lane gets any (see [`placed_lane`]).
const LANE_FILL: usize = 32;
/// After an error reply, how long unread input is drained so the peer reads the reply, not a reset.
const LINGER: Duration = Duration::from_millis(500);
/// And how many bytes at most are drained.
const LINGER_BYTES: usize = 256 * 1024;

/// Timeouts and the connection cap; the defaults are the named constants in [`crate::http`].
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Time for a whole request to arrive once started (and for a new connection's first byte).
    pub head_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a reply may take to be written.
    pub write_timeout: Duration,
    /// Open connections past which new ones are closed at once.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            head_timeout: HEAD_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What a role implements to answer requests.
///
/// The request borrows the connection's input buffer for as long as the answer takes.
///
/// ```
/// use mini::http::{Handler, Request, Response};
/// struct Hello;
/// impl Handler for Hello {
///     async fn handle(&self, req: &Request<'_>) -> Response {
///         Response::text(200, req.query("name").unwrap_or("hello".into()))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: &Request<'_>) -> impl Future<Output = Response> + Send;
}

/// Accepts connections forever, one task each, never exiting on accept errors.
///
/// Every lane accepts from `listener` (a duplicate of it each) and serves the connections it
/// accepted. Dropping this future stops the listener at once: new connections are refused.
///
/// ```no_run
/// # struct Hello;
/// # impl mini::http::Handler for Hello {
/// #     async fn handle(&self, _r: &mini::http::Request<'_>) -> mini::http::Response { mini::http::Response::text(200, "hi") }
/// # }
/// mini::rt::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     mini::http::server::serve(listener, std::sync::Arc::new(Hello), Default::default()).await;
///     Ok::<(), std::io::Error>(())
/// });
/// ```
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, config: ServerConfig) {
    let lanes = match lane::lanes() {
        Ok(lanes) => lanes,
        Err(e) => {
            eprintln!("mini: cannot start the server's threads ({e}); not serving");
            return smol::future::pending().await;
        }
    };
    let server = Arc::new(Server {
        handler,
        config,
        active: Arc::new(AtomicUsize::new(0)),
        idle: Arc::new(IdleConns::with_shards(lanes.len())),
        per_lane: (0..lanes.len()).map(|_| AtomicUsize::new(0)).collect(),
        lanes,
        stopped: AtomicBool::new(false),
    });
    let mut accepting = Vec::with_capacity(lanes.len());
    for index in 0..lanes.len() {
        match listener.as_fd().try_clone_to_owned() {
            Ok(fd) => accepting.push(lane::spawn_on(lanes, index, accept(fd, server.clone()))),
            Err(e) => eprintln!("mini: cannot hand the listener to lane {index} ({e})"),
        }
    }
    let _stop = Stop {
        listener,
        server,
        _accepting: accepting,
    };
    smol::future::pending().await
}

/// What every lane's accept loop and connections share.
struct Server<H> {
    handler: Arc<H>,
    config: ServerConfig,
    active: Arc<AtomicUsize>,
    idle: Arc<IdleConns>,
    /// Connections each lane serves now.
    per_lane: Arc<[AtomicUsize]>,
    /// The lanes connections are placed on.
    lanes: &'static [Arc<lane::Lane>],
    stopped: AtomicBool,
}

/// Stops the listener when [`serve`] is dropped, then cancels the lanes' accept loops.
struct Stop<H> {
    listener: TcpListener,
    server: Arc<Server<H>>,
    _accepting: Vec<async_task::Task<()>>,
}

impl<H> Drop for Stop<H> {
    fn drop(&mut self) {
        self.server.stopped.store(true, Ordering::SeqCst);
        socket::stop_listening(&self.listener);
    }
}

/// One lane's accept loop on its duplicate `fd` of the listener.
async fn accept<H: Handler>(fd: OwnedFd, server: Arc<Server<H>>) {
    let listener = match Listener::register(fd) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("mini: cannot accept on a server lane ({e})");
            return;
        }
    };
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut burst = 0;
    loop {
        match listener.accept().await {
            Ok((fd, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                // At the cap, an idle kept-alive connection makes room; with none idle, refuse.
                let max = server.config.max_connections;
                let slot = match Slot::take(&server.active, max) {
                    Some(slot) => slot,
                    None if server.idle.reclaim_oldest() => Slot::forced(&server.active),
                    None => {
                        drop(fd);
                        continue;
                    }
                };
                let placed = Placed::new(&server);
                let target = placed.lane;
                let conn_server = server.clone();
                let run = async move {
                    let (_slot, _placed) = (slot, placed);
                    // Registered with the lane that runs it, for the rest of its life.
                    let stream = match Stream::register(fd, peer) {
                        Ok(stream) => stream,
                        Err(e) => return eprintln!("mini: cannot serve a connection ({e})"),
                    };
                    let (config, idle) = (conn_server.config, conn_server.idle.member());
                    Connection::new(stream, config, idle)
                        .run(&*conn_server.handler)
                        .await;
                };
                lane::spawn_on(server.lanes, target, run).detach();
                burst += 1;
                if burst == ACCEPT_BURST {
                    burst = 0;
                    smol::future::yield_now().await;
                }
            }
            Err(_) if server.stopped.load(Ordering::SeqCst) => return,
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                if backoff == ACCEPT_BACKOFF_MIN {
                    eprintln!("mini: accept failed ({e}); backing off");
                }
                Timer::after(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Which lane serves a new connection: the first lane holding fewer than [`LANE_FILL`]
/// connections, else the lane holding fewest. A few connections spread over the lanes would buy
/// nothing (each carries one request at a time) and cost every lane its own sleeps and wakeups:
/// measured at `wrk -t1 -c16` on 2 cores, 150k req/s when the kernel's wake-ups happened to split them
/// over both lanes against 200k when one lane had them all (BENCH.md).
fn placed_lane<H>(server: &Server<H>) -> usize {
    let counts = &server.per_lane;
    let load = |i: usize| counts[i].load(Ordering::Relaxed);
    (0..counts.len())
        .find(|&i| load(i) < LANE_FILL)
        .or_else(|| (0..counts.len()).min_by_key(|&i| load(i)))
        .unwrap_or(0)
}

/// A connection counted on the lane [`placed_lane`] picked, from the accept until it closes.
struct Placed {
    counts: Arc<[AtomicUsize]>,
    lane: usize,
}

impl Placed {
    fn new<H>(server: &Server<H>) -> Placed {
        let lane = placed_lane(server);
        server.per_lane[lane].fetch_add(1, Ordering::Relaxed);
        Placed {
            counts: server.per_lane.clone(),
            lane,
        }
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.counts[self.lane].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Errors about one half-open connection, not about the listener: accept again at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// One counted connection; dropping it frees the slot.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        let prev = active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(active.clone());
        (prev < max).then_some(slot)
    }

    /// A slot over the cap, for a connection admitted because an idle one is being closed for it.
    fn forced(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::AcqRel);
        Slot(active.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection: its input buffer apart from the rest, since a request borrows the input while
/// the rest (socket, output, clocks) goes on being used.
struct Connection {
    input: ReadBuf,
    io: Io,
}

struct Io {
    stream: Stream,
    config: ServerConfig,
    idle: IdleMember,
    output: Vec<u8>,
    served: u64,
    started: Option<Instant>,
    peer: Option<std::net::SocketAddr>,
}

impl Connection {
    fn new(stream: Stream, config: ServerConfig, idle: IdleMember) -> Connection {
        let peer = stream.peer_addr();
        Connection {
            input: ReadBuf::new(),
            io: Io {
                peer,
                stream,
                config,
                idle,
                output: Vec::new(),
                served: 0,
                started: None,
            },
        }
    }

    async fn run<H: Handler>(self, handler: &H) {
        let Connection { mut input, mut io } = self;
        loop {
            // Read until a whole request is in the buffer, or the connection ends.
            let decoded = loop {
                // An empty buffer needs more, as the parser would say.
                match (!input.is_empty()).then(|| parse_request(input.filled())) {
                    Some(Ok(Some(found))) => break Ok(found),
                    None | Some(Ok(None)) => {}
                    Some(Err(e)) => break Err(Response::error(e.status(), e)),
                }
                match io.read_more(&mut input).await {
                    Ok(true) => {}
                    Ok(false) if input.is_empty() => return io.done().await,
                    Ok(false) => break Err(Response::error(400, "connection closed mid-request")),
                    Err(Timeout::Quiet) => return io.done().await,
                    Err(Timeout::Request) => {
                        let secs = io.config.head_timeout.as_secs_f64();
                        let why = format_args!("request not received within {secs} s");
                        break Err(Response::error(408, why));
                    }
                }
            };
            let (req, used) = match decoded {
                Ok((req, used)) => (req.with_peer(io.peer), used),
                Err(resp) => {
                    resp.encode(false, false, &mut io.output);
                    return io.close().await;
                }
            };
            io.started = None;
            let keep = req.keep_alive();
            let http10 = req.version() == Version::Http10;
            let mut later = Vec::new();
            let answered = io
                .answer(handler, &req, input.len() - used, &mut later)
                .await;
            input.consume(used);
            input.extend(&later);
            let Some(resp) = answered else {
                return;
            };
            resp.encode(keep, http10, &mut io.output);
            io.served += 1;
            if !keep {
                return io.close().await;
            }
            if io.output.len() >= MAX_PENDING_OUT && !io.flush().await {
                return;
            }
        }
    }
}

impl Io {
    /// Runs the handler. When it does not answer at once (a watch that waits for a change), queued
    /// answers are flushed and the socket is watched meanwhile, so a peer that goes away cancels the
    /// handler instead of leaving it waiting; `None` then. Bytes the peer sends meanwhile (pipelined
    /// requests) go to `later`, since the input buffer is borrowed by `req`; `pending` of them are
    /// already buffered behind it.
    async fn answer<H: Handler>(
        &mut self,
        handler: &H,
        req: &Request<'_>,
        pending: usize,
        later: &mut Vec<u8>,
    ) -> Option<Response> {
        let mut answer = std::pin::pin!(handler.handle(req));
        if let Some(resp) = smol::future::poll_once(answer.as_mut()).await {
            return Some(resp);
        }
        if !self.flush().await {
            return None;
        }
        smol::future::or(async { Some(answer.await) }, async {
            self.peer_gone(pending, later).await;
            None
        })
        .await
    }

    /// Resolves when the peer closes or fails; bytes it sends meanwhile are kept, up to one full
    /// request, after which the socket is left alone.
    async fn peer_gone(&mut self, pending: usize, later: &mut Vec<u8>) {
        let mut chunk = [0u8; 512];
        self.stream.set_deadline(None);
        loop {
            if pending + later.len() >= MAX_HEAD_BYTES + MAX_BODY_BYTES {
                return smol::future::pending().await;
            }
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => later.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The peer closed or idled out between requests: send what is queued and close quietly.
    async fn done(&mut self) {
        self.flush().await;
    }

    /// Sends what is queued, then closes gracefully so the peer reads it rather than a reset.
    async fn close(&mut self) {
        if self.flush().await {
            self.linger().await;
        }
    }

    /// Sends the answers queued so far, then reads once into `input`; `Ok(false)` on EOF or a
    /// socket error, `Err(Quiet)` also when the answers could not be sent.
    async fn read_more(&mut self, input: &mut ReadBuf) -> Result<bool, Timeout> {
        if self.started.is_none() && !input.is_empty() {
            // Part of a pipelined request came with the previous one: it has begun, so the head
            // timeout (and a 408) applies to it, not the idle timeout.
            self.started = Some(lane::now());
        }
        // Between requests the connection is idle: the server may reclaim it at its cap. It is from
        // before its last answer is sent, so a peer that read the answer finds it reclaimable.
        let ticket = (input.is_empty() && self.served > 0).then(|| self.idle.enter());
        let limit = self.config.write_timeout;
        if !flush(&self.stream, &mut self.output, limit).await {
            return Err(Timeout::Quiet);
        }
        let (deadline, on_timeout) = self.read_deadline(input.is_empty());
        let want = if input.is_empty() {
            // Small reads while nothing is pending: an idle connection holds 1 KiB, not more.
            input.shrink(IDLE_CHUNK);
            IDLE_CHUNK
        } else {
            READ_CHUNK
        };
        let room = input.spare(want);
        let stream = &self.stream;
        stream.set_deadline(Some(deadline));
        let read = async { Some(stream.read(room).await) };
        let reclaimed = async {
            match &ticket {
                Some(ticket) => ticket.reclaimed().await,
                None => smol::future::pending().await,
            }
            None
        };
        let read = smol::future::or(read, reclaimed).await;
        drop(ticket);
        let n = match read {
            Some(Ok(n)) => n,
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => return Err(on_timeout),
            Some(Err(_)) => 0,
            None => return Err(on_timeout),
        };
        input.commit(n);
        if n > 0 && self.started.is_none() {
            self.started = Some(lane::now());
        }
        Ok(n > 0)
    }

    /// Between requests the idle timeout applies (head timeout before the first); within one, the
    /// head timeout counted from its first byte.
    fn read_deadline(&self, nothing_pending: bool) -> (Instant, Timeout) {
        let now = lane::now();
        match self.started {
            Some(start) if !nothing_pending => (start + self.config.head_timeout, Timeout::Request),
            _ if self.served == 0 => (now + self.config.head_timeout, Timeout::Quiet),
            _ => (now + self.config.idle_timeout, Timeout::Quiet),
        }
    }

    /// Writes queued output; false when the peer is gone or too slow.
    async fn flush(&mut self) -> bool {
        flush(&self.stream, &mut self.output, self.config.write_timeout).await
    }

    /// Stops sending and drains what the peer still sends, briefly, so it reads our error reply.
    async fn linger(&mut self) {
        self.stream.shutdown_write();
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        self.stream.set_deadline(Some(lane::now() + LINGER));
        while drained < LINGER_BYTES {
            match self.stream.read(&mut sink).await {
                Ok(n) if n > 0 => drained += n,
                _ => return,
            }
        }
    }
}

/// Writes `output` within `limit` and clears it; false when the peer is gone or too slow.
async fn flush(stream: &Stream, output: &mut Vec<u8>, limit: Duration) -> bool {
    if output.is_empty() {
        return true;
    }
    stream.set_deadline(Some(lane::now() + limit));
    let written = stream.write_all(output).await;
    output.clear();
    written.is_ok()
}

/// Which kind of read deadline passed.
enum Timeout {
    /// No request in progress: close without a reply.
    Quiet,
    /// A request was half received: 408.
    Request,
}
