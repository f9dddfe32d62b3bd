//! UDP and TCP on one address (async-net, tasks on [`crate::rt`]).
//!
//! UDP: one worker task per executor thread receives on the shared socket, answers inline (a
//! lookup is a quick synchronous call) and sends the reply. TCP: an accept loop with a connection
//! cap, and per connection a loop of length-prefixed queries answered in order (RFC 7766 §6.2.1:
//! several queries per connection), each wait under a deadline: the next query's length within
//! the idle timeout, the rest of it within the read timeout, the reply within the write timeout.

use super::answer::{answer, Transport, Zone};
use super::encode::UDP_MAX_PAYLOAD;
use super::{DnsConfig, DnsMetrics, Source, TcpLimits, TCP_MAX_QUERY};
use crate::rt;
use async_net::{TcpListener, TcpStream, UdpSocket};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tries at binding UDP and then TCP on the same free port when port 0 is asked for (another
/// process may take the TCP side of the port UDP got in between).
const BIND_ATTEMPTS: usize = 8;
/// Bytes read per UDP datagram: queries are far smaller; a longer one is cut and answered FORMERR.
const UDP_RECV_BUFFER: usize = UDP_MAX_PAYLOAD;
/// Wait after a socket error (out of buffers or descriptors), doubling up to [`ERROR_BACKOFF_MAX`].
const ERROR_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between tries while a socket keeps failing (as the HTTP server's accept loop).
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A DNS server bound on UDP and TCP at the same address, not yet serving.
///
/// ```no_run
/// use mini::dns::{DnsConfig, DnsMetrics, DnsServer, Lookup, Source, Endpoint};
/// use std::sync::Arc;
/// struct Empty;
/// impl Source for Empty {
///     fn lookup(&self, _: &str, _: Option<&str>, _: &mut Vec<Endpoint>) -> Lookup { Lookup::Unknown }
/// }
/// mini::rt::block_on(async {
///     let server = DnsServer::bind(&DnsConfig::default()).await?;
///     println!("DNS on {}", server.local_addr());
///     server.run(Arc::new(Empty), Arc::new(DnsMetrics::default())).await;
///     Ok::<(), std::io::Error>(())
/// });
/// ```
#[derive(Debug)]
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    zone: Zone,
    limits: TcpLimits,
}

impl DnsServer {
    /// Checks the domain and binds UDP, then TCP on the same port; with port 0, a free port for
    /// both (retried when the TCP side is taken).
    pub async fn bind(config: &DnsConfig) -> io::Result<DnsServer> {
        let zone = Zone::new(&config.domain, config.ttl)?;
        let attempts = if config.listen.port() == 0 {
            BIND_ATTEMPTS
        } else {
            1
        };
        let mut last = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(config.listen)
                .await
                .map_err(|e| context(e, "UDP", config.listen))?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => {
                    return Ok(DnsServer {
                        udp,
                        tcp,
                        addr,
                        zone,
                        limits: config.limits,
                    })
                }
                Err(e) => last = Some(context(e, "TCP", addr)),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("DNS: no bind attempt made")))
    }

    /// The address both sides listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves forever (dropping the future stops the UDP workers and the accept loop; open TCP
    /// connections end at their next deadline).
    pub async fn run<S: Source + Send + Sync + 'static>(
        self,
        source: Arc<S>,
        metrics: Arc<DnsMetrics>,
    ) {
        let zone = Arc::new(self.zone);
        let _workers: Vec<smol::Task<()>> = (0..rt::threads())
            .map(|_| {
                let worker = udp_worker(
                    self.udp.clone(),
                    source.clone(),
                    zone.clone(),
                    metrics.clone(),
                );
                rt::spawn(worker)
            })
            .collect();
        serve_tcp(self.tcp, source, zone, metrics, self.limits).await;
    }
}

fn context(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("DNS: cannot listen on {proto} {addr}: {e}"),
    )
}

async fn udp_worker<S: Source + ?Sized>(
    socket: UdpSocket,
    source: Arc<S>,
    zone: Arc<Zone>,
    metrics: Arc<DnsMetrics>,
) {
    let mut buf = vec![0u8; UDP_RECV_BUFFER];
    let mut rng = fastrand::Rng::new();
    let mut backoff = ERROR_BACKOFF_MIN;
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => {
                backoff = ERROR_BACKOFF_MIN;
                got
            }
            Err(_) => {
                Timer::after(backoff).await;
                backoff = (backoff * 2).min(ERROR_BACKOFF_MAX);
                continue;
            }
        };
        // Port 0 cannot be answered (and is a sign of spoofing); nothing to count.
        if peer.port() == 0 {
            continue;
        }
        let reply = answer(&buf[..n], &*source, &zone, Transport::Udp, &mut rng);
        metrics.record(reply.as_ref());
        if let Some(reply) = reply {
            // A failed send (no buffer, unreachable peer) loses one datagram; the client retries.
            let _ = socket.send_to(&reply.bytes, peer).await;
        }
    }
}

async fn serve_tcp<S: Source + Send + Sync + 'static>(
    listener: TcpListener,
    source: Arc<S>,
    zone: Arc<Zone>,
    metrics: Arc<DnsMetrics>,
    limits: TcpLimits,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut backoff = ERROR_BACKOFF_MIN;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ERROR_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    Timer::after(backoff).await;
                    backoff = (backoff * 2).min(ERROR_BACKOFF_MAX);
                }
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, limits.max_connections) else {
            metrics.tcp_refused();
            drop(stream);
            continue;
        };
        let (source, zone, metrics) = (source.clone(), zone.clone(), metrics.clone());
        rt::spawn(async move {
            let _slot = slot;
            connection(stream, &*source, &zone, &metrics, limits).await;
        })
        .detach();
    }
}

/// One counted TCP connection; dropping it frees the place.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, cap: usize) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers length-prefixed queries in order until the peer closes, errs, or misses a deadline.
/// A zero or oversized length ends the connection: it cannot be a query.
async fn connection<S: Source + ?Sized>(
    mut stream: TcpStream,
    source: &S,
    zone: &Zone,
    metrics: &DnsMetrics,
    limits: TcpLimits,
) {
    let _ = stream.set_nodelay(true);
    let mut rng = fastrand::Rng::new();
    let mut query = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 2];
        if !within(limits.idle_timeout, stream.read_exact(&mut len)).await {
            return;
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 || len > TCP_MAX_QUERY {
            return;
        }
        query.resize(len, 0);
        if !within(limits.read_timeout, stream.read_exact(&mut query)).await {
            return;
        }
        let reply = answer(&query, source, zone, Transport::Tcp, &mut rng);
        metrics.record(reply.as_ref());
        let Some(reply) = reply else { continue };
        out.clear();
        out.extend_from_slice(&(reply.bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply.bytes);
        if !within(limits.write_timeout, stream.write_all(&out)).await {
            return;
        }
    }
}

/// Whether `io` completed successfully within `limit`.
async fn within(limit: Duration, io: impl Future<Output = io::Result<()>>) -> bool {
    smol::future::or(async { io.await.is_ok() }, async {
        Timer::after(limit).await;
        false
    })
    .await
}
