//! `dealport demo`: one offline deal on this machine, through the same paths as
//! production. A node (`dealport run`, a child process of this binary) in a temporary
//! data dir takes deals for f01000 on the offline chain and trusts a client key made for
//! the demo; the client proposes a deal for a small generated CAR over libp2p, asks its
//! status, imports the data through the node's API, asks again; then the node is stopped
//! with SIGTERM and the directory removed.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use dealport_client::{
    build_deal, car::one_block_car, cli::NetworkArg, commp::commp_file, node_api::import_file,
    propose, status, status_request, wallet::KeyKind, DataTransfer, DealProtocol, DealSpec, Target,
    Wallet,
};
use dealport_core::wire::{Address, DealStatusResponse, DealUuid, TokenAmount};
use libp2p::Multiaddr;

use crate::{CmdResult, Fail, Shell};

/// The demo's data: random bytes, small enough for one block.
const DATA_BYTES: usize = 200_000;
/// How long the node may take to start.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The node the demo runs; killed if still running when dropped.
struct DemoNode {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl DemoNode {
    fn start(dir: &Path) -> Result<DemoNode, Fail> {
        let exe = std::env::current_exe()
            .map_err(|e| Fail(format!("cannot find this program's path: {e}")))?;
        let mut child = Command::new(exe)
            .args(["run", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Fail(format!("cannot start the demo node: {e}")))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(DemoNode { child, lines })
    }

    /// Read the log until `ready`: the loopback TCP multiaddr and the HTTP address.
    fn ready(&mut self) -> Result<(Multiaddr, String), Fail> {
        let deadline = Instant::now() + START_LIMIT;
        let (mut tcp, mut http) = (None, None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).map_err(|_| {
                Fail(format!(
                    "the demo node did not start within {} s",
                    START_LIMIT.as_secs()
                ))
            })?;
            if let Some(a) = line.split("listening on ").nth(1) {
                let a = a.trim();
                if a.starts_with("/ip4/127.0.0.1/tcp/") && !a.contains("/ws") {
                    tcp = a.parse().ok();
                }
            }
            if let Some(a) = line.split("http listening on ").nth(1) {
                http = Some(a.trim().to_owned());
            }
            if line.ends_with("ready") {
                break;
            }
        }
        match (tcp, http) {
            (Some(t), Some(h)) => Ok((t, h)),
            _ => Err(Fail("the demo node logged no listen addresses".to_owned())),
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn stop(mut self) -> Result<(), Fail> {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| Fail(e.to_string()))? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(Fail(format!("the demo node exited with {status}")))
                };
            }
            if Instant::now() > deadline {
                return Err(Fail("the demo node did not stop within 15 s".to_owned()));
            }
            // A child's exit is only observable by polling its status.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo node's config: loopback only, random ports, the offline chain, one miner,
/// the demo client trusted with escrow, the API on with `token`.
fn demo_config(client: &Address, token: &str) -> String {
    format!(
        r#"# dealport demo: a throwaway node; see `dealport init` for a real config.
[libp2p]
listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]

[http]
listen = "127.0.0.1:0"

[api]
token = "{token}"

[[chain.offline.clients]]
address = "{client}"
escrow = "1000000000000000000"

[[miners]]
address = "f01000"
"#
    )
}

fn say_status(step: &str, s: &DealStatusResponse) {
    match &s.deal_status {
        Some(d) if d.sealing_status.is_empty() => println!("{step}: {}", d.status),
        Some(d) => println!("{step}: {} ({})", d.status, d.sealing_status),
        None => println!("{step}: {}", s.error),
    }
}

pub(crate) async fn demo(shell: Shell) -> CmdResult {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("dealport-demo-")
        .tempdir()
        .map_err(|e| Fail(format!("cannot create a temporary dir: {e}")))?;
    let data_dir = tmp.path().join("data");
    crate::files::create_private_dir(&data_dir)?;

    let wallet = Wallet::generate(KeyKind::Secp256k1)?;
    let client = wallet.address();
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| Fail(format!("no randomness: {e}")))?;
    let token = hex::encode(secret);
    let config = data_dir.join("config.toml");
    crate::files::write_private_file(&config, &demo_config(&client, &token))?;
    println!(
        "1. a node in {} for miner f01000, trusting client {client}",
        tmp.path().display()
    );

    let mut node = DemoNode::start(&data_dir)?;
    let (tcp, http) = node.ready()?;
    println!("2. the node is up: libp2p {tcp}, HTTP {http}");

    let mut data = vec![0u8; DATA_BYTES];
    getrandom::fill(&mut data).map_err(|e| Fail(format!("no randomness: {e}")))?;
    let (car, payload) = one_block_car(&data).map_err(Fail)?;
    let car_path = tmp.path().join("demo.car");
    std::fs::write(&car_path, &car).map_err(|e| Fail(e.to_string()))?;
    let piece = commp_file(&car_path).map_err(Fail)?;
    println!(
        "3. a {}-byte CAR (payload {payload}): piece {} of {} bytes",
        car.len(),
        piece.piece_cid,
        piece.piece_size
    );

    let mut uuid = [0u8; 16];
    getrandom::fill(&mut uuid).map_err(|e| Fail(format!("no randomness: {e}")))?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let uuid = DealUuid(uuid);
    let head = NetworkArg::Mainnet.head_now();
    let spec = DealSpec {
        uuid,
        miner: Address::parse("f01000").expect("a valid ID address"),
        piece_cid: piece.piece_cid.clone(),
        piece_size: piece.piece_size,
        payload_cid: payload,
        transfer: DataTransfer::Offline,
        start_epoch: head + 5_760,
        end_epoch: head + 5_760 + 518_400,
        price_per_epoch: TokenAmount::zero(),
        provider_collateral: TokenAmount::zero(),
        client_collateral: TokenAmount::zero(),
        verified: false,
        label: None,
        skip_ipni_announce: true,
        remove_unsealed_copy: false,
    };
    let params = build_deal(&spec, &wallet);
    let target = Target::Libp2p(tcp);
    let answer = propose(&target, &params, DealProtocol::V121).await?;
    if !answer.accepted {
        return Err(Fail(format!("the deal was rejected: {}", answer.message)));
    }
    println!("4. deal {uuid} proposed over libp2p: accepted");
    say_status(
        "5. status",
        &status(&target, &status_request(uuid, &wallet)).await?,
    );

    let (code, body) = import_file(
        shell.runtime.clone(),
        &format!("http://{http}"),
        &token,
        uuid,
        &car_path,
        Duration::from_secs(10),
    )
    .await
    .map_err(Fail)?;
    if code != 200 {
        return Err(Fail(format!(
            "the import was refused (HTTP {code}): {body}"
        )));
    }
    println!("6. the CAR imported through the node's API; its piece CID checked");
    let after = status(&target, &status_request(uuid, &wallet)).await?;
    say_status("7. status", &after);
    node.stop()?;
    drop(tmp);
    println!(
        "8. node stopped, demo dir removed; {:.1} s in all. With the offline chain a deal \
         stops at Transferred: `chain.mode = \"lotus\"` publishes it.",
        started.elapsed().as_secs_f64()
    );
    match after.deal_status.map(|d| d.status) {
        Some(s) if s == "Transferred" => Ok(()),
        other => Err(Fail(format!(
            "the deal ended at {other:?}, not Transferred"
        ))),
    }
}
