//! `FakeLotus`: a TEST DOUBLE of a Lotus full node's JSON-RPC v1 endpoint on 127.0.0.1
//! (no Lotus node runs here). It answers `POST /rpc/v1` with canned results, results
//! computed from the params, JSON-RPC errors or delays, and records every call. Tests that
//! use it copy each canned answer's JSON shape from the method's documented example in
//! filecoin-project/lotus `documentation/en/api-methods-v1-stable.md` and cite it.
use std::{
    collections::HashMap,
    io::BufReader,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};

use crate::rpc_server;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
    /// The `Authorization` header as sent.
    pub auth: Option<String>,
}

type Handler = Box<dyn Fn(&Value) -> Value + Send>;

#[derive(Default)]
struct FakeState {
    results: HashMap<String, Value>,
    /// Results computed from the request's params.
    handlers: HashMap<String, Handler>,
    errors: HashMap<String, String>,
    delays: HashMap<String, Duration>,
    calls: Vec<Call>,
}

/// TEST DOUBLE: answers Lotus JSON-RPC v1 POSTs with canned results, errors or delays,
/// and records every call. One thread per connection, plain std sockets.
#[derive(Clone)]
pub struct FakeLotus {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

impl FakeLotus {
    pub fn start() -> FakeLotus {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let st = state.clone();
        let addr = rpc_server::listen(move |conn| {
            let _ = serve(conn, st.clone());
        });
        FakeLotus { addr, state }
    }

    pub fn set(&self, method: &str, result: Value) {
        let mut s = self.state.lock().unwrap();
        s.errors.remove(method);
        s.results.insert(format!("Filecoin.{method}"), result);
    }
    pub fn set_fn(&self, method: &str, h: impl Fn(&Value) -> Value + Send + 'static) {
        self.state
            .lock()
            .unwrap()
            .handlers
            .insert(format!("Filecoin.{method}"), Box::new(h));
    }
    /// A JSON-RPC error answer, as go-jsonrpc writes it (`{"code":1,"message":…}`).
    pub fn fail(&self, method: &str) {
        self.state.lock().unwrap().errors.insert(
            format!("Filecoin.{method}"),
            format!("{method} failed (fake)"),
        );
    }
    pub fn delay(&self, method: &str, d: Duration) {
        self.state
            .lock()
            .unwrap()
            .delays
            .insert(format!("Filecoin.{method}"), d);
    }
    /// Lotus's `FULLNODE_API_INFO` form for this server: `token:/ip4/127.0.0.1/tcp/<port>/http`.
    pub fn api_info(&self, token: &str) -> String {
        format!("{token}:/ip4/127.0.0.1/tcp/{}/http", self.addr.port())
    }
    /// Stop answering `method` with an error set by [`FakeLotus::fail`].
    pub fn heal(&self, method: &str) {
        self.state
            .lock()
            .unwrap()
            .errors
            .remove(&format!("Filecoin.{method}"));
    }
    pub fn calls(&self, method: &str) -> Vec<Call> {
        let m = format!("Filecoin.{method}");
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.method == m)
            .cloned()
            .collect()
    }
}

fn serve(conn: std::net::TcpStream, st: Arc<Mutex<FakeState>>) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    while let Some(rpc_server::Request { line, auth, body }) = rpc_server::read_request(&mut r)? {
        assert!(
            line.starts_with("POST /rpc/v1 HTTP/1.1"),
            "request line {line:?}"
        );
        let req: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(req["jsonrpc"], "2.0");
        let method = req["method"].as_str().unwrap().to_owned();
        let (delay, answer) = {
            let mut s = st.lock().unwrap();
            s.calls.push(Call {
                method: method.clone(),
                params: req["params"].clone(),
                auth,
            });
            let answer = if let Some(msg) = s.errors.get(&method) {
                json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": 1, "message": msg}})
            } else if let Some(h) = s.handlers.get(&method) {
                json!({"jsonrpc": "2.0", "id": req["id"], "result": h(&req["params"])})
            } else if let Some(res) = s.results.get(&method) {
                json!({"jsonrpc": "2.0", "id": req["id"], "result": res})
            } else {
                json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": format!("method '{method}' not found")}})
            };
            (s.delays.get(&method).copied(), answer)
        };
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        rpc_server::write_json(&mut w, &answer)?;
    }
    Ok(())
}
