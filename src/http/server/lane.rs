//! Lanes: the server's own event loops, one thread each. A connection is accepted, read, answered
//! and written by one lane from its accept to its close, so no request is handed between threads.
//!
//! Each lane owns an epoll instance in which its sockets are registered once, edge-triggered, for
//! both directions (as nginx does): a wait costs no `epoll_ctl`, and a socket is read again only after
//! epoll said it has more (a read that filled less than the buffer drained it). Its tasks are
//! `async-task` tasks that only this lane runs; a task woken from another thread (a watch answered by
//! a change, a connection reclaimed at the cap) is handed over through a queue and an eventfd. Each
//! socket has one deadline, a plain value that moves with every wait; the timer heap holds at most
//! one live entry per socket, which finds the deadline moved on when it fires and re-arms, so a
//! request on a kept-alive connection touches no timer. The rest of the process (the registry's
//! loops, clients, `smol::Timer`s the handlers use) stays on smol; a handler may await anything, since
//! a lane's wakers are ordinary wakers.
//!
//! Why not async-io underneath: its reactor is shared by every thread, so a socket's readiness is
//! often found by one thread and run by another, it re-arms one-shot interest with an `epoll_ctl` per
//! wait, and its epoll waits set a timerfd; see ARCHITECTURE.md for the measurements.

use async_task::{Runnable, Task};
use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Tasks a lane runs before it looks at its sockets again.
const BUDGET: usize = 1024;
/// Events taken from epoll per wait.
const EVENTS: usize = 256;
/// The epoll token of a lane's eventfd (no socket slot has it).
const WAKE_TOKEN: u64 = u64::MAX;

/// Which way a socket waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// A lane as other threads see it: where to hand it a task.
pub(crate) struct Lane {
    index: usize,
    epoll: OwnedFd,
    wake: OwnedFd,
    injected: Mutex<Vec<Runnable>>,
    /// `injected` is not empty.
    pending: AtomicBool,
    /// The lane is in, or about to enter, an epoll wait that only its eventfd can cut short.
    sleeping: AtomicBool,
}

impl Lane {
    fn injected(&self) -> MutexGuard<'_, Vec<Runnable>> {
        crate::rt::lock(&self.injected)
    }

    /// Queues a woken task: on this lane's own thread without a lock, else through the hand-over
    /// queue, waking the lane when it sleeps.
    fn schedule(&self, runnable: Runnable) {
        if CURRENT.get() == self.index {
            QUEUE.with_borrow_mut(|q| q.push_back(runnable));
            return;
        }
        self.injected().push(runnable);
        self.pending.store(true, Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            // Edge-triggered: every write is a new event, so the counter is never read back.
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
    }
}

thread_local! {
    /// The index of the lane this thread runs, `usize::MAX` on other threads.
    static CURRENT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// This lane's runnable tasks.
    static QUEUE: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
    /// This lane's sockets and their timers.
    static SOURCES: RefCell<Sources> = const { RefCell::new(Sources::new()) };
    /// The time this lane last woke from epoll, and the Unix second then (nginx's cached time).
    static NOW: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// The time: on a lane, the moment it last woke from epoll (read once per wake, not once per
/// request: deadlines are at most one turn of the loop early); elsewhere the clock.
pub(crate) fn now() -> Instant {
    NOW.get().map_or_else(Instant::now, |(now, _)| now)
}

/// The Unix time in seconds: on a lane, when it last woke (as [`now`]); elsewhere the clock.
pub(crate) fn unix_secs() -> u64 {
    NOW.get().map_or_else(clock_secs, |(_, secs)| secs)
}

fn clock_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn tick() -> Instant {
    let now = Instant::now();
    NOW.set(Some((now, clock_secs())));
    now
}

static LANES: OnceLock<Result<Vec<Arc<Lane>>, String>> = OnceLock::new();

/// The lanes, started on first use: one per [`crate::rt::threads`] (`MINI_THREADS`, else one per
/// core).
pub(crate) fn lanes() -> Result<&'static [Arc<Lane>], &'static str> {
    match LANES.get_or_init(|| start(crate::rt::threads()).map_err(|e| e.to_string())) {
        Ok(lanes) => Ok(lanes),
        Err(e) => Err(e),
    }
}

fn start(count: usize) -> io::Result<Vec<Arc<Lane>>> {
    let mut lanes = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        )?;
        let lane = Arc::new(Lane {
            index,
            epoll,
            wake,
            injected: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
        });
        let run = lane.clone();
        std::thread::Builder::new()
            .name(format!("mini-http-{index}"))
            .spawn(move || run_lane(&run))?;
        lanes.push(lane);
    }
    Ok(lanes)
}

/// The index of the lane running this thread; `None` off the lanes.
pub(crate) fn current() -> Option<usize> {
    let index = CURRENT.get();
    (index != usize::MAX).then_some(index)
}

/// Spawns `future` on lane `index` (modulo the lane count).
pub(crate) fn spawn_on<F>(lanes: &[Arc<Lane>], index: usize, future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let lane = lanes[index % lanes.len()].clone();
    let (runnable, task) = async_task::spawn(future, move |r| lane.schedule(r));
    runnable.schedule();
    task
}

/// The event loop of one lane: run what is ready, then wait on epoll (at most until the next
/// deadline), mark what it reports ready and wake its waiters, fire due timers; forever.
fn run_lane(lane: &Lane) {
    CURRENT.set(lane.index);
    tick();
    let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS);
    let mut woken: Vec<Waker> = Vec::new();
    loop {
        for _ in 0..BUDGET {
            let Some(runnable) = QUEUE.with_borrow_mut(|q| q.pop_front()) else {
                break;
            };
            runnable.run();
        }
        if lane.pending.load(Ordering::SeqCst) {
            take_injected(lane);
        }
        let mut timeout = if QUEUE.with_borrow(|q| q.is_empty()) {
            SOURCES.with_borrow(|s| s.next_timeout())
        } else {
            Some(Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            })
        };
        let blocking = timeout
            .as_ref()
            .is_none_or(|t| t.tv_sec > 0 || t.tv_nsec > 0);
        if blocking {
            lane.sleeping.store(true, Ordering::SeqCst);
            if lane.pending.load(Ordering::SeqCst) {
                lane.sleeping.store(false, Ordering::SeqCst);
                timeout = Some(Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                });
            }
        }
        events.clear();
        let waited = epoll::wait(
            &lane.epoll,
            rustix::buffer::spare_capacity(&mut events),
            timeout.as_ref(),
        );
        if blocking {
            lane.sleeping.store(false, Ordering::SeqCst);
        }
        let now = tick();
        if let Err(e) = waited {
            if e != rustix::io::Errno::INTR {
                eprintln!(
                    "mini: epoll_wait failed ({e}); the server's lane {} goes on",
                    lane.index
                );
            }
            continue;
        }
        SOURCES.with_borrow_mut(|s| {
            for event in &events {
                let token = event.data.u64();
                if token != WAKE_TOKEN {
                    s.ready(token, event.flags, &mut woken);
                }
            }
            s.fire_timers(now, &mut woken);
        });
        for waker in woken.drain(..) {
            waker.wake();
        }
    }
}

fn take_injected(lane: &Lane) {
    let mut injected = lane.injected();
    lane.pending.store(false, Ordering::SeqCst);
    QUEUE.with_borrow_mut(|q| q.extend(injected.drain(..)));
}

/// A socket registered with the lane running this thread.
#[derive(Debug)]
pub(crate) struct Registration {
    token: u64,
    lane: usize,
}

/// Registers `fd` with this thread's lane, edge-triggered for `flags` (plus `ET`), with its
/// initial readiness; an error off the lanes.
pub(crate) fn register(
    fd: impl AsFd,
    flags: epoll::EventFlags,
    readable: bool,
    writable: bool,
) -> io::Result<Registration> {
    let index = CURRENT.get();
    let lane = match LANES.get() {
        Some(Ok(lanes)) if index < lanes.len() => &lanes[index],
        _ => return Err(io::Error::other("not on a server lane")),
    };
    let token = SOURCES.with_borrow_mut(|s| s.insert(readable, writable));
    let data = epoll::EventData::new_u64(token);
    if let Err(e) = epoll::add(&lane.epoll, fd, data, flags | epoll::EventFlags::ET) {
        SOURCES.with_borrow_mut(|s| s.remove(token));
        return Err(e.into());
    }
    Ok(Registration { token, lane: index })
}

impl Registration {
    /// Removes `fd` from the lane's epoll: needed only for a descriptor whose file stays open
    /// elsewhere (a listener's duplicate), since closing the last descriptor of a socket does it.
    pub(crate) fn delete(&self, fd: impl AsFd) {
        if let Some(Ok(lanes)) = LANES.get() {
            if let Some(lane) = lanes.get(self.lane) {
                let _ = epoll::delete(&lane.epoll, fd);
            }
        }
    }

    fn on_own_lane(&self) -> bool {
        CURRENT.get() == self.lane
    }

    /// Ready (`Ok`) when epoll said `dir` is ready since it was last cleared; `Err(TimedOut)` once
    /// the deadline has passed; else pending, woken by the next event or the deadline.
    pub(crate) fn poll_ready(&self, dir: Dir, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.on_own_lane() {
            return Poll::Ready(Err(io::Error::other("socket polled off its lane")));
        }
        SOURCES.with_borrow_mut(|s| s.poll_ready(self.token, dir, cx))
    }

    /// Marks `dir` as not ready: the last operation drained it (`EAGAIN`, or a short read). A
    /// socket whose peer hung up stays ready, as nginx keeps its `pending_eof`: the end of the
    /// stream (or the error) is there for the next operation, and no new edge would announce it.
    pub(crate) fn clear(&self, dir: Dir) {
        if self.on_own_lane() {
            SOURCES.with_borrow_mut(|s| {
                if let Some(slot) = s.slot(self.token) {
                    let ended = match dir {
                        Dir::Read => slot.read_ended,
                        Dir::Write => slot.write_ended,
                    };
                    if !ended {
                        *slot.ready_mut(dir) = false;
                    }
                }
            });
        }
    }

    /// Sets the socket's one deadline, for this wait and those after it (`None`: no limit).
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        if self.on_own_lane() {
            SOURCES.with_borrow_mut(|s| {
                if let Some(slot) = s.slot(self.token) {
                    slot.deadline = deadline;
                }
            });
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Off its lane (a task dropped at exit) the slot is left: that thread has no sources.
        if self.on_own_lane() {
            let wakers = SOURCES.with_borrow_mut(|s| s.remove(self.token));
            drop(wakers);
        }
    }
}

/// The sockets of one lane: readiness, waiters and the one deadline of each, in a slab indexed by
/// the low half of the token (the high half is a generation, so a stale event or timer is ignored).
struct Sources {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// `(when, token)`: at most one live entry per slot, the one matching its `armed`.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    live: bool,
    readable: bool,
    writable: bool,
    /// epoll reported the peer's end of the stream (`RDHUP`), a hang-up or an error: reads stay ready.
    read_ended: bool,
    /// epoll reported a hang-up or an error: writes stay ready (and fail).
    write_ended: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    deadline: Option<Instant>,
    /// When the slot's live timer entry fires, if it has one.
    armed: Option<Instant>,
}

impl Slot {
    fn ready_mut(&mut self, dir: Dir) -> &mut bool {
        match dir {
            Dir::Read => &mut self.readable,
            Dir::Write => &mut self.writable,
        }
    }

    fn waiter_mut(&mut self, dir: Dir) -> &mut Option<Waker> {
        match dir {
            Dir::Read => &mut self.reader,
            Dir::Write => &mut self.writer,
        }
    }
}

fn token(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

impl Sources {
    const fn new() -> Sources {
        Sources {
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
        }
    }

    fn insert(&mut self, readable: bool, writable: bool) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.live = true;
        slot.read_ended = false;
        slot.write_ended = false;
        slot.readable = readable;
        slot.writable = writable;
        token(index, slot.generation)
    }

    /// Frees the slot; its waiters are returned so they are dropped outside the borrow.
    fn remove(&mut self, token: u64) -> [Option<Waker>; 2] {
        let Some(slot) = self.slot(token) else {
            return [None, None];
        };
        let wakers = [slot.reader.take(), slot.writer.take()];
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        slot.deadline = None;
        slot.armed = None;
        self.free.push((token & u64::from(u32::MAX)) as u32);
        wakers
    }

    fn slot(&mut self, token: u64) -> Option<&mut Slot> {
        let index = (token & u64::from(u32::MAX)) as usize;
        let generation = (token >> 32) as u32;
        self.slots
            .get_mut(index)
            .filter(|s| s.live && s.generation == generation)
    }

    fn poll_ready(&mut self, token: u64, dir: Dir, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(slot) = self.slot(token) else {
            return Poll::Ready(Err(io::Error::other("socket not registered")));
        };
        if *slot.ready_mut(dir) {
            return Poll::Ready(Ok(()));
        }
        let deadline = slot.deadline;
        if let Some(deadline) = deadline {
            if now() >= deadline {
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
        }
        match slot.waiter_mut(dir) {
            Some(w) if w.will_wake(cx.waker()) => {}
            waiter => *waiter = Some(cx.waker().clone()),
        }
        if let Some(deadline) = deadline {
            if slot.armed.is_none_or(|armed| armed > deadline) {
                slot.armed = Some(deadline);
                self.timers.push(Reverse((deadline, token)));
            }
        }
        Poll::Pending
    }

    /// Applies one epoll event: hang-ups and errors make both directions ready, so the next
    /// operation reports them.
    fn ready(&mut self, token: u64, flags: epoll::EventFlags, woken: &mut Vec<Waker>) {
        let Some(slot) = self.slot(token) else {
            return;
        };
        use epoll::EventFlags as F;
        if flags.intersects(F::RDHUP | F::HUP | F::ERR) {
            slot.read_ended = true;
        }
        if flags.intersects(F::HUP | F::ERR) {
            slot.write_ended = true;
        }
        if flags.intersects(F::IN | F::RDHUP | F::HUP | F::ERR | F::PRI) {
            slot.readable = true;
            woken.extend(slot.reader.take());
        }
        if flags.intersects(F::OUT | F::HUP | F::ERR) {
            slot.writable = true;
            woken.extend(slot.writer.take());
        }
    }

    /// Pops due timer entries: a slot whose deadline has passed has its waiters woken (they see the
    /// time and fail the wait); one whose deadline moved later is re-armed at it.
    fn fire_timers(&mut self, now: Instant, woken: &mut Vec<Waker>) {
        while let Some(&Reverse((when, token))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slot(token) else {
                continue;
            };
            if slot.armed != Some(when) {
                continue;
            }
            slot.armed = None;
            match slot.deadline {
                Some(deadline) if deadline <= now => {
                    woken.extend(slot.reader.take());
                    woken.extend(slot.writer.take());
                }
                Some(deadline) if slot.reader.is_some() || slot.writer.is_some() => {
                    slot.armed = Some(deadline);
                    self.timers.push(Reverse((deadline, token)));
                }
                _ => {}
            }
        }
    }

    /// How long epoll may wait: until the earliest timer entry, or forever without one.
    fn next_timeout(&self) -> Option<Timespec> {
        let Reverse((when, _)) = self.timers.peek()?;
        let left = when.saturating_duration_since(Instant::now());
        Some(Timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        })
    }
}
