//! A data server for transfer tests: plain HTTP/1.1 on 127.0.0.1 that the test controls.
//! It serves one byte string to every GET, honours (or ignores) `Range: bytes=N-`, can
//! cut a response after K bytes, declare a wrong Content-Length or none, go slow after a
//! number of bytes, and records every request's head, the bytes it served and the most
//! responses it had open at once. One thread per connection, `Connection: close`.
use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

/// What Content-Length a full answer declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declare {
    /// The length of what is sent (a 206 answer also sends `Content-Range`).
    Exact,
    /// This many bytes, whatever is sent.
    Length(u64),
    /// Nothing: the body ends when the connection closes.
    Nothing,
}

/// How the server answers; change it while it runs with [`DataServer::set`].
#[derive(Debug, Clone)]
pub struct Serve {
    pub data: Vec<u8>,
    pub honour_range: bool,
    pub declare: Declare,
    /// For each coming request in turn: cut the connection after this many body bytes.
    pub cuts: VecDeque<u64>,
    /// Each response's first bytes go at full speed; the rest `slow_chunk` bytes at a
    /// time with `slow_delay` between chunks (read again before each chunk: a change
    /// made with [`DataServer::set`] applies to the responses under way too).
    pub fast_bytes: u64,
    pub slow_chunk: usize,
    pub slow_delay: Duration,
    /// Answer every request with `302 Found` to this location instead.
    pub redirect: Option<String>,
}

impl Serve {
    pub fn new(data: Vec<u8>) -> Serve {
        Serve {
            data,
            honour_range: true,
            declare: Declare::Exact,
            cuts: VecDeque::new(),
            fast_bytes: u64::MAX,
            slow_chunk: 64 << 10,
            slow_delay: Duration::ZERO,
            redirect: None,
        }
    }

    /// Everything after the first `fast_bytes` of each response at about `per_sec`.
    pub fn slow_after(mut self, fast_bytes: u64, per_sec: u64) -> Serve {
        self.fast_bytes = fast_bytes;
        self.slow_chunk = 16 << 10;
        self.slow_delay = Duration::from_secs_f64(self.slow_chunk as f64 / per_sec as f64);
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request line and headers, as sent.
    pub head: String,
    /// `N` of a `Range: bytes=N-` header.
    pub range_from: Option<u64>,
}

impl Recorded {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    bytes_served: u64,
    open: usize,
    max_open: usize,
}

struct Shared {
    serve: Mutex<Serve>,
    log: Mutex<Log>,
    stop: AtomicBool,
}

/// The running server; stops when dropped.
pub struct DataServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl DataServer {
    pub fn start(serve: Serve) -> DataServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the data server");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            serve: Mutex::new(serve),
            log: Mutex::new(Log::default()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    thread::spawn(move || answer(&s, conn));
                }
            }
        });
        DataServer { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut Serve)) {
        f(&mut self.shared.serve.lock().unwrap());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().requests.clone()
    }

    /// Body bytes written to all clients so far.
    pub fn bytes_served(&self) -> u64 {
        self.shared.log.lock().unwrap().bytes_served
    }

    /// The most responses that were being sent at the same time.
    pub fn max_open(&self) -> usize {
        self.shared.log.lock().unwrap().max_open
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(s: &Shared, mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = String::new();
    {
        let mut r = BufReader::new(&mut conn);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
        }
    }
    let mut rec = Recorded {
        head,
        range_from: None,
    };
    rec.range_from = rec
        .header("range")
        .and_then(|v| v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
    let (serve, cut) = {
        let mut serve = s.serve.lock().unwrap();
        let cut = serve.cuts.pop_front();
        (serve.clone(), cut)
    };
    {
        let mut log = s.log.lock().unwrap();
        log.requests.push(rec.clone());
        log.open += 1;
        log.max_open = log.max_open.max(log.open);
    }
    if let Some(to) = &serve.redirect {
        let _ = write!(
            conn,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.log.lock().unwrap().open -= 1;
        return;
    }
    let total = serve.data.len() as u64;
    let from = match rec.range_from {
        Some(n) if serve.honour_range && n <= total => n,
        _ => 0,
    };
    let body = &serve.data[from as usize..];
    let mut head = if from > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{total}\r\n",
            total.saturating_sub(1)
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_owned()
    };
    match serve.declare {
        Declare::Exact => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        Declare::Length(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Declare::Nothing => {}
    }
    head.push_str("Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
    let limit = cut.unwrap_or(u64::MAX).min(body.len() as u64) as usize;
    let mut sent = 0usize;
    let ok = conn.write_all(head.as_bytes()).is_ok();
    while ok && sent < limit {
        // The pace as set now, so a test can speed up a response under way.
        let (fast_bytes, slow_delay, slow_chunk) = {
            let now = s.serve.lock().unwrap();
            (now.fast_bytes, now.slow_delay, now.slow_chunk)
        };
        let fast = (fast_bytes as usize).saturating_sub(sent);
        let n = if fast > 0 {
            fast.min(256 << 10)
        } else {
            thread::sleep(slow_delay);
            slow_chunk
        }
        .min(limit - sent);
        if conn.write_all(&body[sent..sent + n]).is_err() {
            break;
        }
        sent += n;
        s.log.lock().unwrap().bytes_served += n as u64;
    }
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
    s.log.lock().unwrap().open -= 1;
}
