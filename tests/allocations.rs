//! Heap allocations per request on the registry's hot paths, counted by a global allocator.
//!
//! Two measures, both of a lookup (`GET /serviceAddr?queryParam=add`) and a heartbeat
//! (`POST /registerList?ip=127.0.0.1:1111`) after a warm-up:
//!
//! - Over a socket: a registry runs in this process on port 0 with one instance registered, and
//!   one kept-alive blocking connection sends 1 000 of each; every allocation in the process during
//!   the run is counted. The test's own side (the socket, its buffer) allocates nothing, so the
//!   count is the server's: reading, parsing, routing, the pick or renewal, encoding, writing, and
//!   the event loop under them. That loop is one of the server's own lanes
//!   (`src/http/server/lane.rs`): the socket is registered with the lane's epoll once, a wait moves
//!   the socket's one deadline without touching the timer heap, and the connection's task never
//!   changes threads, so a kept-alive request allocates nothing at all (0.00 per request
//!   measured). The bound asserted is still the issue's, two per request, over the best of three
//!   runs, since the count also takes in whatever else runs in the process meanwhile (the
//!   registry's own loops on smol, the test harness's thread).
//! - Our code alone: the same requests decoded from bytes, answered by the registry's routes and
//!   encoded into a reused output buffer, with no runtime underneath, must allocate nothing (best
//!   of three runs, since the counter also sees the test harness's own thread).

use mini::registry::routes::Routes;
use mini::registry::{Config, Shared};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts every allocation (and reallocation) of the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter is a relaxed atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests per measured run.
const ROUNDS: u64 = 1000;
/// Requests before counting (pools, caches and buffers reach their steady size).
const WARMUP: u64 = 200;
/// The target: at most this many heap allocations per lookup and per heartbeat.
const MAX_PER_REQUEST: u64 = 2;

const LOOKUP: &[u8] = b"GET /serviceAddr?queryParam=add HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const BEAT: &[u8] =
    b"POST /registerList?ip=127.0.0.1:1111 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";

/// Starts a registry in this process (its own thread drives the runtime) and returns its address.
fn start_registry() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        mini::rt::block_on(async move {
            let listener = async_net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("local_addr").to_string())
                .expect("send addr");
            let config = mini::registry::Config {
                probe_interval: Duration::from_secs(24 * 3600),
                warmup: Duration::ZERO,
                ..mini::registry::Config::default()
            };
            mini::registry::run(listener, config).await;
        })
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("registry address")
}

/// One kept-alive connection and a fixed buffer: sending and reading allocate nothing.
struct Conn {
    stream: TcpStream,
    buf: [u8; 4096],
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn {
            stream,
            buf: [0; 4096],
        }
    }

    /// Sends `req` and reads its whole response; returns the status and the body's length.
    fn exchange(&mut self, req: &[u8]) -> (u16, usize) {
        self.stream.write_all(req).expect("write");
        let mut len = 0;
        loop {
            let n = self.stream.read(&mut self.buf[len..]).expect("read");
            assert!(n > 0, "registry closed the connection");
            len += n;
            let Some(head) = find(&self.buf[..len], b"\r\n\r\n").map(|p| p + 4) else {
                continue;
            };
            let body = content_length(&self.buf[..head]);
            if len >= head + body {
                assert_eq!(len, head + body, "bytes past the response");
                let status = std::str::from_utf8(&self.buf[9..12]).expect("status");
                return (status.parse().expect("status"), body);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    let at = find(head, b"Content-Length: ").expect("Content-Length") + 16;
    head[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, d| n * 10 + usize::from(d - b'0'))
}

/// Allocations in the whole process over `ROUNDS` exchanges of `req` (after a warm-up).
fn count(conn: &mut Conn, req: &[u8], want_body: usize) -> u64 {
    for _ in 0..WARMUP {
        assert_eq!(conn.exchange(req), (200, want_body));
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..ROUNDS {
        let (status, body) = conn.exchange(req);
        assert_eq!((status, body), (200, want_body));
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// Allocations over `ROUNDS` requests decoded, answered by `routes` and encoded, without sockets.
fn count_in_process(routes: &Routes, req: &[u8], want: &[u8]) -> u64 {
    let mut out = Vec::with_capacity(1024);
    let answer = |out: &mut Vec<u8>| {
        let (req, _) = mini::http::parse_request(req)
            .expect("valid")
            .expect("whole");
        let resp =
            smol::future::block_on(smol::future::poll_once(routes.answer(&req))).expect("at once");
        out.clear();
        resp.encode(req.keep_alive(), false, out);
        assert!(out.ends_with(want), "{}", String::from_utf8_lossy(out));
    };
    for _ in 0..WARMUP {
        answer(&mut out);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..ROUNDS {
        answer(&mut out);
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

fn per_request(total: u64) -> f64 {
    total as f64 / ROUNDS as f64
}

#[test]
fn a_lookup_and_a_heartbeat_allocate_at_most_twice() {
    // Our code alone first, while nothing else runs in the process (the test harness's own
    // thread settles first; the best of three runs is taken all the same).
    std::thread::sleep(Duration::from_millis(200));
    let routes = Routes::new(Arc::new(Shared::new(Config::default())));
    let registered: &[u8] = b"\r\n\r\n127.0.0.1:1111 registered";
    let mut best = (u64::MAX, u64::MAX);
    for _ in 0..3 {
        let beats = count_in_process(&routes, BEAT, registered);
        let lookups = count_in_process(&routes, LOOKUP, b"\r\n\r\n127.0.0.1:1111");
        eprintln!("allocations without sockets: {lookups} per {ROUNDS} lookups, {beats} per {ROUNDS} heartbeats");
        best = (best.0.min(lookups), best.1.min(beats));
    }
    assert_eq!(best, (0, 0), "decoding, routing and encoding allocate");

    let addr = start_registry();
    let mut conn = Conn::open(&addr);
    assert_eq!(conn.exchange(BEAT), (200, registered.len() - 4));
    let mut runs = Vec::new();
    for _ in 0..3 {
        let lookups = count(&mut conn, LOOKUP, "127.0.0.1:1111".len());
        let beats = count(&mut conn, BEAT, registered.len() - 4);
        eprintln!(
            "allocations over a socket: {:.2} per lookup, {:.2} per heartbeat ({ROUNDS} of each)",
            per_request(lookups),
            per_request(beats)
        );
        runs.push((lookups, beats));
    }
    let best_lookups = runs.iter().map(|r| r.0).min().unwrap_or(u64::MAX);
    let best_beats = runs.iter().map(|r| r.1).min().unwrap_or(u64::MAX);
    assert!(
        best_lookups <= MAX_PER_REQUEST * ROUNDS,
        "{:.2} allocations per lookup",
        per_request(best_lookups)
    );
    assert!(
        best_beats <= MAX_PER_REQUEST * ROUNDS,
        "{:.2} allocations per heartbeat",
        per_request(best_beats)
    );
}
