//! The running server ([`TestServer`]): the listener and its accept loop
//! (one worker per connection, see `conn.rs`), a real outage
//! ([`TestServer::refuse_connections`]), the idle timeout, and the calls
//! tests make on it.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::conn::serve;
use super::faults::Faults;
use super::state::{Request, State};

pub(super) struct Inner {
    pub(super) state: Mutex<State>,
    pub(super) cv: Condvar,
    stop: AtomicBool,
    /// Open connections by id (removed when their worker ends).
    open: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Read timeout of new connections (`None`: wait for ever).
    idle: Mutex<Option<Duration>>,
    net: Mutex<Net>,
    net_cv: Condvar,
}

/// The listener's state (see [`TestServer::refuse_connections`]).
#[derive(Debug)]
struct Net {
    refuse: bool,
    listening: bool,
}

/// Default idle timeout of a connection: longer than any pause of the
/// client's own between requests in the tests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running server; stopped on drop.
pub struct TestServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            idle: Mutex::new(Some(IDLE_TIMEOUT)),
            net: Mutex::new(Net {
                refuse: false,
                listening: true,
            }),
            net_cv: Condvar::new(),
        });
        let i2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || accept_loop(&i2, listener, addr))
            .unwrap();
        TestServer {
            addr,
            inner,
            thread: Some(thread),
        }
    }

    /// A real outage (`true`): the listening socket is closed, so connects
    /// are refused, and every open connection is closed. `false` listens
    /// again on the same port. Returns once the change is in effect.
    pub fn refuse_connections(&self, refuse: bool) {
        let mut net = self.inner.net.lock().unwrap();
        net.refuse = refuse;
        self.inner.net_cv.notify_all();
        if refuse {
            drop(net);
            // Wakes the accept loop, which sees `refuse` and closes the port.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let mut net = self.inner.net.lock().unwrap();
            while net.listening {
                net = self.inner.net_cv.wait(net).unwrap();
            }
            drop(net);
            self.drop_connections();
        } else {
            while !net.listening {
                net = self.inner.net_cv.wait(net).unwrap();
            }
        }
    }

    /// Read timeout of connections accepted from now on (default
    /// [`IDLE_TIMEOUT`]; `None`: none): a connection whose client sends
    /// nothing for that long is closed and counted in `State::idle_closed`.
    pub fn set_idle_timeout(&self, idle: Option<Duration>) {
        *self.inner.idle.lock().unwrap() = idle;
    }

    /// Counting mode (set it before the run starts): metric points are
    /// tallied per stream ([`State::tally`]) instead of kept, and request
    /// bodies are not recorded, so a run of any length fits in memory.
    pub fn set_counting(&self, on: bool) {
        self.state().counting = on;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        let mut st = self.state();
        f(&mut st.faults);
        if let Some(r) = st.faults.random {
            st.rng = Some(fastrand::Rng::with_seed(r.seed));
        }
        drop(st);
        self.inner.cv.notify_all();
    }

    /// Closes every connection the server holds (a black hole lets go).
    pub fn drop_connections(&self) {
        for (_, c) in self.inner.open.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Waits until `cond` holds (re-checked after every request), at most `timeout`.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.state();
        loop {
            if cond(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            st = self.inner.cv.wait_timeout(st, end - now).unwrap().0;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        {
            let _net = self.inner.net.lock().unwrap();
            self.inner.net_cv.notify_all();
        }
        for (_, c) in self.inner.open.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections (one worker thread each); closes the port while
/// refusing and binds it again after.
fn accept_loop(inner: &Arc<Inner>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                let mut net = inner.net.lock().unwrap();
                while net.refuse && !inner.stop.load(Ordering::SeqCst) {
                    net = inner.net_cv.wait(net).unwrap();
                }
                drop(net);
                if inner.stop.load(Ordering::SeqCst) {
                    return;
                }
                // The port was ours a moment ago; another socket may hold it
                // briefly (SO_REUSEADDR is set by std on Unix).
                let end = Instant::now() + Duration::from_secs(30);
                let l = loop {
                    match TcpListener::bind(addr) {
                        Ok(l) => break l,
                        Err(e) if Instant::now() < end => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => panic!("cannot listen on {addr} again: {e}"),
                    }
                };
                let mut net = inner.net.lock().unwrap();
                net.listening = true;
                inner.net_cv.notify_all();
                l
            }
        };
        for conn in l.incoming() {
            if inner.stop.load(Ordering::SeqCst) {
                return;
            }
            if inner.net.lock().unwrap().refuse {
                break;
            }
            let Ok(conn) = conn else { continue };
            let _ = conn.set_nodelay(true);
            let _ = conn.set_read_timeout(*inner.idle.lock().unwrap());
            let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = conn.try_clone() {
                inner.open.lock().unwrap().insert(id, c);
            }
            let i3 = inner.clone();
            let _ = std::thread::Builder::new()
                .name("test-server-conn".into())
                .spawn(move || {
                    serve(&i3, conn);
                    i3.open.lock().unwrap().remove(&id);
                });
        }
        drop(l); // the port is closed: connects are refused
        let mut net = inner.net.lock().unwrap();
        net.listening = false;
        inner.net_cv.notify_all();
    }
}
