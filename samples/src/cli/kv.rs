//! The key-value store's client commands, load profile and HTTP front.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tandem_cluster::node::{ClientConfig, ClusterClient};

use super::http::{self, Response, json_string};
use super::load::{self, Answer, Profile, Totals};
use super::matching::Rng;
use super::{ClientArgs, secs, split_commands};
use crate::kv::{KvReply, KvRequest};

/// Random sets and gets over 1000 keys; each answered by its reply.
#[derive(Debug)]
pub struct KvLoad {
    rng: Rng,
}

impl KvLoad {
    /// A load seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
        }
    }
}

impl Profile for KvLoad {
    fn request(&mut self, seq: u64) -> Vec<u8> {
        let key = format!("key-{}", self.rng.below(1000)).into_bytes();
        let req = if self.rng.below(2) == 0 {
            KvRequest::Get { key }
        } else {
            KvRequest::Set {
                key,
                value: format!("value-{seq}").into_bytes(),
            }
        };
        req.encode().to_vec()
    }

    fn answer(&mut self, request_seq: u64, reply: &[u8]) -> Answer {
        match KvReply::decode(reply) {
            Ok(KvReply::Rejected { .. }) | Err(_) => Answer::Rejected(request_seq),
            Ok(_) => Answer::Accepted(request_seq),
        }
    }
}

fn opt(s: &str) -> Option<Vec<u8>> {
    (s != "-").then(|| s.as_bytes().to_vec())
}

/// Parses `set KEY VALUE`, `get KEY`, `delete KEY`, `cas KEY EXPECTED|- NEW|-`.
///
/// # Errors
/// A message naming the bad command.
pub fn parse_commands(words: &[String]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for cmd in split_commands(words, &["set", "get", "delete", "cas"])? {
        let text = cmd.join(" ");
        let b = |s: &String| s.as_bytes().to_vec();
        let req = match (cmd[0].as_str(), &cmd[1..]) {
            ("set", [k, v]) => KvRequest::Set {
                key: b(k),
                value: b(v),
            },
            ("get", [k]) => KvRequest::Get { key: b(k) },
            ("delete", [k]) => KvRequest::Delete { key: b(k) },
            ("cas", [k, e, n]) => KvRequest::CompareAndSet {
                key: b(k),
                expected: opt(e),
                new: opt(n),
            },
            _ => return Err(format!("bad command {text:?}")),
        };
        out.push((text, req.encode().to_vec()));
    }
    Ok(out)
}

fn text(v: &Option<Vec<u8>>) -> String {
    match v {
        Some(v) => json_string(&String::from_utf8_lossy(v)),
        None => "null".into(),
    }
}

/// A reply as JSON.
pub fn reply_json(reply: &KvReply) -> String {
    match reply {
        KvReply::Stored { previous } => format!("{{\"previous\":{}}}", text(previous)),
        KvReply::Value { value } => format!("{{\"value\":{}}}", text(value)),
        KvReply::Deleted { previous } => format!("{{\"previous\":{}}}", text(previous)),
        KvReply::Swapped { success, current } => {
            format!("{{\"success\":{success},\"current\":{}}}", text(current))
        }
        KvReply::Rejected { reason } => format!("{{\"error\":\"{reason:?}\"}}"),
    }
}

fn describe(reply: &[u8]) -> String {
    match KvReply::decode(reply) {
        Ok(r) => reply_json(&r),
        Err(e) => format!("undecodable reply ({e})"),
    }
}

/// `kv-store client`: a load, or the commands given on the command line.
pub fn client(args: &ClientArgs) -> ExitCode {
    if !args.is_load() {
        let requests = match parse_commands(&args.commands) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kv-store client: {e}");
                return ExitCode::from(2);
            }
        };
        let result = args.connect().and_then(|mut c| {
            let r = super::send_commands(&mut c, &requests, secs(args.timeout), describe);
            c.close();
            r
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kv-store client: {e}");
                ExitCode::from(1)
            }
        };
    }
    let run = load::run_sessions(
        args.clients,
        args.rate.unwrap_or(1000.0),
        Some(secs(args.duration.unwrap_or(10.0))),
        secs(args.timeout),
        |i| {
            let c = args.connect()?;
            Ok((c, Box::new(KvLoad::new(i as u64 + 1)) as Box<dyn Profile>))
        },
    );
    match run {
        Ok((reports, elapsed)) => {
            let t = Totals::of(&reports);
            t.print("commands", elapsed);
            if t.ok() {
                ExitCode::SUCCESS
            } else {
                println!("FAILED: some acknowledged commands went missing or were doubled");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("kv-store client: {e}");
            ExitCode::from(1)
        }
    }
}

/// The HTTP front's cluster session: connected lazily, reconnected after a session error.
#[derive(Debug)]
pub struct Forwarder {
    cfg: ClientConfig,
    client: Option<ClusterClient>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder to the cluster `cfg` describes; `timeout` bounds each request.
    pub fn new(cfg: ClientConfig, timeout: Duration) -> Self {
        Self {
            cfg,
            client: None,
            timeout,
        }
    }

    /// Submits `req` through the cluster and waits for its reply.
    ///
    /// # Errors
    /// A message if no leader answered or the reply did not come within the timeout.
    pub fn submit(&mut self, req: &KvRequest) -> Result<KvReply, String> {
        let result = self.try_submit(req);
        if result.is_err() {
            // Start over with a fresh session next time.
            if let Some(c) = self.client.take() {
                c.close();
            }
        }
        result
    }

    fn try_submit(&mut self, req: &KvRequest) -> Result<KvReply, String> {
        if self.client.is_none() {
            self.client = Some(super::connect(self.cfg.clone(), self.timeout)?);
        }
        let client = self.client.as_mut().expect("connected");
        let mut reply: Option<(u64, Vec<u8>)> = None;
        let seq = client
            .offer_blocking(&req.encode(), self.timeout, |s, r| {
                reply = Some((s, r.to_vec()))
            })
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        loop {
            if let Some((s, r)) = &reply
                && *s == seq
            {
                return KvReply::decode(r).map_err(|e| e.to_string());
            }
            if start.elapsed() > self.timeout {
                return Err(format!("no reply within {:?}", self.timeout));
            }
            let n = client
                .poll(|s, r| {
                    if s == seq {
                        reply = Some((s, r.to_vec()));
                    }
                })
                .map_err(|e| e.to_string())?;
            if n == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Keeps the session alive (call between requests).
    pub fn idle(&mut self) {
        if let Some(c) = self.client.as_mut()
            && c.poll(|_, _| {}).is_err()
        {
            self.client = None;
        }
    }

    /// Answers one HTTP request.
    pub fn handle(&mut self, r: &http::Request) -> Response {
        let bad = |m: &str| Response {
            status: 400,
            body: format!("{{\"error\":{}}}", json_string(m)),
        };
        let Some(key) = r.param("key") else {
            return bad("missing key parameter");
        };
        let key = key.as_bytes().to_vec();
        let req = match r.path.as_str() {
            "/set" => match r.param("value") {
                Some(v) => KvRequest::Set {
                    key,
                    value: v.as_bytes().to_vec(),
                },
                None => return bad("missing value parameter"),
            },
            "/get" => KvRequest::Get { key },
            "/delete" => KvRequest::Delete { key },
            _ => {
                return Response {
                    status: 404,
                    body: "{\"error\":\"use /set?key=K&value=V, /get?key=K or /delete?key=K\"}"
                        .into(),
                };
            }
        };
        match self.submit(&req) {
            Ok(reply @ KvReply::Rejected { .. }) => Response {
                status: 400,
                body: reply_json(&reply),
            },
            Ok(reply) => Response {
                status: 200,
                body: reply_json(&reply),
            },
            Err(e) => Response {
                status: 503,
                body: format!("{{\"error\":{}}}", json_string(&e)),
            },
        }
    }
}

/// Starts the HTTP front on `addr` in a thread (until `stop`).
///
/// # Errors
/// A message if the address cannot be bound.
pub fn start_http(
    addr: &str,
    cfg: ClientConfig,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("--http {addr}: {e}"))?;
    println!(
        "kv-store: HTTP on http://{}/ (GET /set?key=K&value=V, /get?key=K, /delete?key=K)",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    std::thread::Builder::new()
        .name("kv-http".into())
        .spawn(move || {
            let fwd = std::cell::RefCell::new(Forwarder::new(cfg, Duration::from_secs(10)));
            http::serve(
                listener,
                stop,
                |r| fwd.borrow_mut().handle(r),
                || fwd.borrow_mut().idle(),
            );
        })
        .map_err(|e| e.to_string())
}
