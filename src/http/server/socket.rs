//! The server's sockets on a lane ([`super::lane`]): a listener's duplicate per lane and the
//! connections it accepts, with reads and writes that wait on the lane's edge-triggered readiness.
//!
//! A read that fills less than the room it was given has drained the socket (the kernel queues
//! what arrives after it as a new edge), so the next read waits for epoll instead of trying and
//! getting `EAGAIN`, as nginx does; a write that is cut short waits for the socket to drain.

use super::lane::{self, Dir, Registration};
use rustix::event::epoll::EventFlags;
use rustix::net::{Shutdown, SocketFlags};
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::task::Poll;
use std::time::Instant;

/// A connection registered with the lane that accepted it.
#[derive(Debug)]
pub(crate) struct Stream {
    // Declared first, so the registration is removed before the socket closes.
    registration: Registration,
    socket: std::net::TcpStream,
    peer: Option<SocketAddr>,
}

impl Stream {
    /// The peer's address, as `accept` returned it.
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Registers an accepted, non-blocking socket from `peer` with this thread's lane.
    pub(crate) fn register(fd: OwnedFd, peer: Option<SocketAddr>) -> io::Result<Stream> {
        let socket = std::net::TcpStream::from(fd);
        let _ = socket.set_nodelay(true);
        // Readable once epoll says so (the registration reports data already queued); writable.
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP;
        let registration = lane::register(&socket, flags, false, true)?;
        Ok(Stream {
            registration,
            socket,
            peer,
        })
    }

    /// Sets the one deadline of this connection's waits (`None`: wait without limit). A wait that
    /// reaches it fails with `TimedOut`.
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        self.registration.set_deadline(deadline);
    }

    /// Reads into `buf` (not empty): `Ok(0)` at the end of the stream.
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| loop {
            match self.registration.poll_ready(Dir::Read, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            match (&self.socket).read(buf) {
                Ok(n) => {
                    if n > 0 && n < buf.len() {
                        self.registration.clear(Dir::Read);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.registration.clear(Dir::Read)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        })
        .await
    }

    /// Writes all of `buf`.
    pub(crate) async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut written = 0;
        poll_fn(|cx| loop {
            if written == buf.len() {
                return Poll::Ready(Ok(()));
            }
            match self.registration.poll_ready(Dir::Write, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            match (&self.socket).write(&buf[written..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    written += n;
                    if written < buf.len() {
                        // Cut short: the send buffer is full until epoll says it drained.
                        self.registration.clear(Dir::Write);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.registration.clear(Dir::Write)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        })
        .await
    }

    /// Stops sending (the peer reads the end of the stream after what was written).
    pub(crate) fn shutdown_write(&self) {
        let _ = rustix::net::shutdown(&self.socket, Shutdown::Write);
    }
}

/// One lane's duplicate of a listening socket, registered edge-triggered and exclusive: a new
/// connection wakes one waiting lane, not every lane.
#[derive(Debug)]
pub(crate) struct Listener {
    registration: Registration,
    socket: OwnedFd,
}

impl Listener {
    /// Registers `fd` (a duplicate of a non-blocking listening socket) with this thread's lane.
    pub(crate) fn register(fd: OwnedFd) -> io::Result<Listener> {
        let flags = EventFlags::IN | EventFlags::EXCLUSIVE;
        // Readable at first: connections may already wait in the backlog.
        let registration = lane::register(&fd, flags, true, false)?;
        Ok(Listener {
            registration,
            socket: fd,
        })
    }

    /// Accepts one connection, non-blocking, with its peer's address (from the same `accept4`, so
    /// no `getpeername`); [`Stream::register`] it on the lane that will serve it.
    pub(crate) async fn accept(&self) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
        poll_fn(|cx| loop {
            match self.registration.poll_ready(Dir::Read, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
            match rustix::net::acceptfrom_with(&self.socket, flags) {
                Ok((fd, peer)) => {
                    let peer = peer.and_then(|a| SocketAddr::try_from(a).ok());
                    return Poll::Ready(Ok((fd, peer)));
                }
                Err(rustix::io::Errno::AGAIN) => self.registration.clear(Dir::Read),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        })
        .await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Other descriptors of this socket stay open (the other lanes', the caller's), so closing
        // this one would not take it out of this lane's epoll.
        self.registration.delete(&self.socket);
    }
}

/// Stops a listening socket at once, though other descriptors of it are still open: new
/// connections are refused and waiting accepts fail.
pub(crate) fn stop_listening(fd: impl AsFd) {
    let _ = rustix::net::shutdown(fd, Shutdown::Read);
}
