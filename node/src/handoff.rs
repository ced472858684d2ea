//! Handing a relayed client's connection to the libp2p host in the same process.
//!
//! When the node whose HTTP server took a WebSocket upgrade is also the lease holder, the
//! relay does not dial its own host over loopback and splice bytes between two sockets
//! (two extra reads, writes and thread switches per message each way): it gives the
//! client's socket to the host's WebSocket listener ([`HandOffs`]), which then serves it
//! as if the client had dialed it. The host learns the client's real address with it.
//!
//! The client already has its `101` from the HTTP server, and the host's WebSocket layer
//! wants a request of its own: [`HandedOff`] reads the host a made-up upgrade request
//! first, then the client's bytes, and checks and swallows the host's `101` answer
//! instead of writing it to the client. Every other byte passes untouched, counted by the
//! relay's [`Meter`].
//!
//! Also here, because the dialing relay (http::relay) uses them too: the upgrade request
//! the relay sends a host ([`upgrade_request`]) and the check of its answer ([`switched`]).
//!
//! Layer: a leaf (futures-io, async-net and the core's head reader), so `http` gives
//! and `p2p` takes without either importing the other.

use std::{
    collections::VecDeque,
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
};

use async_net::TcpStream;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use dealport_core::relay::{head_end, RELAYED_FOR};
use futures::{task::AtomicWaker, AsyncRead, AsyncWrite};

use crate::rewound::Rewound;

/// Largest `101` answer head accepted from a host.
pub const MAX_ANSWER_HEAD: usize = 16 << 10;

/// A WebSocket upgrade request for `GET /` on `host`, with `key` (base64 of 16 bytes) and
/// optionally the relay's signed [`RELAYED_FOR`] value.
pub fn upgrade_request(host: &str, key: &str, relayed_for: Option<&str>) -> String {
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(v) = relayed_for {
        request.push_str(&format!("{RELAYED_FOR}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// A fresh `Sec-WebSocket-Key`.
pub fn new_key() -> io::Result<String> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(nonce))
}

/// Whether `head` is a 101 answer to `key`, with no extension or subprotocol (frames
/// pass as they are, so nothing may transform them).
pub fn switched(head: &[u8], key: &str) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    match answer.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("unreadable answer".into()),
    }
    if answer.code != Some(101) {
        return Err(format!("answered {:?} instead of 101", answer.code));
    }
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if header("sec-websocket-accept").map(|v| v.trim_ascii()) != Some(want.as_bytes()) {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    if header("sec-websocket-extensions").is_some() || header("sec-websocket-protocol").is_some() {
        return Err("an extension or subprotocol the relay did not ask for".into());
    }
    Ok(())
}

/// What the relay counts of a handed-off connection. Dropped when the host drops the
/// connection, so an implementation's `Drop` is where the relay ends.
pub trait Meter: Send + Sync + 'static {
    fn client_to_host(&self, bytes: u64);
    fn host_to_client(&self, bytes: u64);
}

/// An upgraded client connection given to the host: reads the made-up upgrade request,
/// then the client; swallows the host's answer to it; counts the rest.
pub struct HandedOff<T = TcpStream> {
    conn: Rewound<T>,
    /// Bytes of the made-up request still to be read (not the client's, not counted).
    made_up: usize,
    /// The host's answer head while it is being swallowed, and the key it must answer.
    answer: Option<(BytesMut, String)>,
    meter: Box<dyn Meter>,
}

impl<T> fmt::Debug for HandedOff<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandedOff")
            .field("made_up", &self.made_up)
            .field("answered", &self.answer.is_none())
            .finish_non_exhaustive()
    }
}

impl<T> HandedOff<T> {
    /// `client` is the upgraded socket, `read_ahead` what the HTTP server read past the
    /// client's upgrade request.
    pub fn new(client: T, read_ahead: Bytes, meter: Box<dyn Meter>) -> io::Result<Self> {
        let key = new_key()?;
        let request = upgrade_request("dealport-relay", &key, None);
        let mut prefix = BytesMut::with_capacity(request.len() + read_ahead.len());
        prefix.extend_from_slice(request.as_bytes());
        prefix.extend_from_slice(&read_ahead);
        Ok(HandedOff {
            conn: Rewound::new(prefix.freeze(), client),
            made_up: request.len(),
            answer: Some((BytesMut::new(), key)),
            meter,
        })
    }

    /// Take what the host writes while its answer head is unfinished: how many bytes of
    /// `buf` are the answer's (the rest is the client's and is written next call).
    fn swallow(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((head, key)) = self.answer.as_mut() else {
            return Ok(0);
        };
        let before = head.len();
        head.extend_from_slice(buf);
        let Some(end) = head_end(head) else {
            if head.len() > MAX_ANSWER_HEAD {
                return Err(io::Error::other("the host's answer head is too large"));
            }
            return Ok(buf.len());
        };
        switched(&head[..end], key).map_err(|e| io::Error::other(format!("host answer: {e}")))?;
        self.answer = None;
        Ok(end - before)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HandedOff<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = futures::ready!(Pin::new(&mut this.conn).poll_read(cx, buf))?;
        let made_up = n.min(this.made_up);
        this.made_up -= made_up;
        if n > made_up {
            this.meter.client_to_host((n - made_up) as u64);
        }
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HandedOff<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.answer.is_some() {
            return Poll::Ready(this.swallow(buf));
        }
        let n = futures::ready!(Pin::new(&mut this.conn).poll_write(cx, buf))?;
        this.meter.host_to_client(n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_close(cx)
    }
}

/// A handed-off connection and the client address the host should count it under.
#[derive(Debug)]
pub struct HandOff {
    pub conn: Box<HandedOff>,
    pub remote: SocketAddr,
}

/// The queue from the HTTP server to the host's WebSocket listener: bounded, drained by
/// whichever host runs now.
pub struct HandOffs {
    queue: Mutex<VecDeque<HandOff>>,
    waker: AtomicWaker,
    capacity: usize,
}

impl fmt::Debug for HandOffs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandOffs")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl HandOffs {
    pub fn new(capacity: usize) -> HandOffs {
        HandOffs {
            queue: Mutex::new(VecDeque::new()),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<HandOff>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a connection given now would be queued (the host is keeping up).
    pub fn has_room(&self) -> bool {
        self.queue().len() < self.capacity
    }

    /// Queue `h` for the host; gives it back when the queue is full.
    pub fn give(&self, h: HandOff) -> Result<(), HandOff> {
        {
            let mut q = self.queue();
            if q.len() >= self.capacity {
                return Err(h);
            }
            q.push_back(h);
        }
        self.waker.wake();
        Ok(())
    }

    /// The next queued connection, or `Pending` with the caller woken on the next give.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<HandOff> {
        if let Some(h) = self.queue().pop_front() {
            return Poll::Ready(h);
        }
        self.waker.register(cx.waker());
        // A give between the pop and the registration woke the old waker: look again.
        match self.queue().pop_front() {
            Some(h) => Poll::Ready(h),
            None => Poll::Pending,
        }
    }

    /// Close every queued connection (the host that would take them stopped).
    pub fn clear(&self) {
        let dropped = std::mem::take(&mut *self.queue());
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{executor::block_on, AsyncReadExt, AsyncWriteExt};
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    /// A client socket: reads from `input`, writes into `output`.
    struct Socket {
        input: futures::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl AsyncRead for Socket {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Clone, Default)]
    struct Counts(Arc<[AtomicU64; 2]>);

    impl Meter for Counts {
        fn client_to_host(&self, bytes: u64) {
            self.0[0].fetch_add(bytes, Ordering::Relaxed);
        }
        fn host_to_client(&self, bytes: u64) {
            self.0[1].fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn handed(client_sends: &[u8], read_ahead: &[u8]) -> (HandedOff<Socket>, Counts) {
        let counts = Counts::default();
        let socket = Socket {
            input: futures::io::Cursor::new(client_sends.to_vec()),
            output: Vec::new(),
        };
        let h = HandedOff::new(
            socket,
            Bytes::copy_from_slice(read_ahead),
            Box::new(counts.clone()),
        )
        .unwrap();
        (h, counts)
    }

    fn key_of(request: &[u8]) -> String {
        let text = std::str::from_utf8(request).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        line.to_owned()
    }

    fn answer(key: &str) -> String {
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
    }

    #[test]
    fn the_host_reads_a_request_then_the_client_and_its_answer_never_reaches_the_client() {
        let (mut h, counts) = handed(b"frames", b"early");
        let mut read = Vec::new();
        block_on(h.read_to_end(&mut read)).unwrap();
        let end = head_end(&read).unwrap();
        assert!(read.starts_with(b"GET / HTTP/1.1\r\n"));
        assert_eq!(&read[end..], b"earlyframes");
        assert_eq!(
            counts.0[0].load(Ordering::Relaxed),
            11,
            "made-up bytes not counted"
        );

        let answer = answer(&key_of(&read[..end]));
        let (first, rest) = answer.as_bytes().split_at(20);
        block_on(async {
            h.write_all(first).await?;
            h.write_all(&[rest, b"reply"].concat()).await?;
            h.flush().await
        })
        .unwrap();
        assert_eq!(h.conn.get_ref().output, b"reply");
        assert_eq!(counts.0[1].load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_wrong_or_endless_answer_fails_the_connection() {
        let (mut h, _) = handed(b"", b"");
        let wrong = answer("AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(block_on(h.write_all(wrong.as_bytes())).is_err());
        assert!(h.conn.get_ref().output.is_empty());

        let (mut h, _) = handed(b"", b"");
        let endless = vec![b'x'; MAX_ANSWER_HEAD + 2];
        assert!(block_on(h.write_all(&endless)).is_err());
        assert!(h.conn.get_ref().output.is_empty());
    }

    #[test]
    fn upgrade_request_names_the_key_and_the_relayed_client() {
        let r = upgrade_request("h:1", "k==", Some("v"));
        assert!(r.starts_with("GET / HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(r.contains("Sec-WebSocket-Key: k==\r\n"));
        assert!(r.contains(&format!("{RELAYED_FOR}: v\r\n")));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!upgrade_request("h", "k", None).contains(RELAYED_FOR));
    }

    #[test]
    fn switched_wants_101_with_the_right_accept_and_nothing_else() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(switched(ok.as_bytes(), key), Ok(()));
        let not_101 = ok.replace("101 Switching Protocols", "200 OK");
        assert!(switched(not_101.as_bytes(), key).is_err());
        assert!(switched(ok.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
        let ext = ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: x\r\n\r\n");
        assert!(switched(ext.as_bytes(), key).is_err());
        assert!(switched(b"garbage\r\n\r\n", key).is_err());
    }
}
