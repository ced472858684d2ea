//! The HTTP/1.1 side the JSON-RPC test doubles share (the Lotus one and the lotus-miner
//! one): a loopback listener with a thread per connection, one request read at a time
//! (request line, `Authorization`, a `Content-Length` body), and JSON or empty answers.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
};

use serde_json::Value;

/// Listen on 127.0.0.1 at a free port; every connection is handed to `serve` on its
/// own thread.
pub fn listen<F>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(conn));
        }
    });
    addr
}

/// One request as the doubles need it.
#[derive(Debug)]
pub struct Request {
    /// The request line, e.g. `POST /rpc/v0 HTTP/1.1`.
    pub line: String,
    /// The `Authorization` header as sent.
    pub auth: Option<String>,
    pub body: Vec<u8>,
}

/// The next request on the connection; `None` once the client closed it.
pub fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let (mut len, mut auth) = (0usize, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "authorization" => auth = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(Request { line, auth, body }))
}

/// `200 OK` with `answer` as JSON.
pub fn write_json(w: &mut TcpStream, answer: &Value) -> std::io::Result<()> {
    let text = answer.to_string();
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )?;
    w.flush()
}

/// An empty answer with `status`, e.g. `401 Unauthorized`.
pub fn write_empty(w: &mut TcpStream, status: &str) -> std::io::Result<()> {
    write!(w, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n")?;
    w.flush()
}
