//! The game server's client commands and load profile.

use std::process::ExitCode;

use super::load::{self, Answer, Profile, Totals};
use super::matching::Rng;
use super::{ClientArgs, secs, split_commands};
use crate::game::{ActionKind, GameEvent, GameRequest};

/// Joins a room (message 1), then moves and acts; acknowledged when committed.
#[derive(Debug)]
pub struct GameLoad {
    rng: Rng,
    room: u32,
}

impl GameLoad {
    /// A player in `room`, seeded with `seed`.
    pub fn new(seed: u64, room: u32) -> Self {
        Self {
            rng: Rng::new(seed),
            room,
        }
    }
}

impl Profile for GameLoad {
    fn request(&mut self, seq: u64) -> Vec<u8> {
        let r = &mut self.rng;
        let req = if seq == 1 {
            GameRequest::Join {
                room: self.room,
                name: format!("bot-{}", r.below(10_000)),
            }
        } else if r.below(8) == 0 {
            GameRequest::Action {
                kind: if r.below(2) == 0 {
                    ActionKind::Attack
                } else {
                    ActionKind::Heal
                },
            }
        } else {
            GameRequest::Move {
                vx: r.below(21) as i32 - 10,
                vy: r.below(21) as i32 - 10,
            }
        };
        req.encode().to_vec()
    }

    fn answer(&mut self, _: u64, _: &[u8]) -> Answer {
        // Acknowledged by commit (moves and actions are not answered one by one).
        Answer::Other
    }

    fn answered_by_reply(&self) -> bool {
        false
    }
}

/// Parses `join ROOM NAME`, `move VX VY`, `attack`, `heal`, `leave`.
///
/// # Errors
/// A message naming the bad command.
pub fn parse_commands(words: &[String]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for cmd in split_commands(words, &["join", "move", "attack", "heal", "leave"])? {
        let text = cmd.join(" ");
        let bad = || format!("bad command {text:?}");
        let req = match (cmd[0].as_str(), &cmd[1..]) {
            ("join", [room, name]) => GameRequest::Join {
                room: room.parse().map_err(|_| bad())?,
                name: name.clone(),
            },
            ("move", [vx, vy]) => GameRequest::Move {
                vx: vx.parse().map_err(|_| bad())?,
                vy: vy.parse().map_err(|_| bad())?,
            },
            ("attack", []) => GameRequest::Action {
                kind: ActionKind::Attack,
            },
            ("heal", []) => GameRequest::Action {
                kind: ActionKind::Heal,
            },
            ("leave", []) => GameRequest::Leave,
            _ => return Err(bad()),
        };
        out.push((text, req.encode().to_vec()));
    }
    Ok(out)
}

fn describe(reply: &[u8]) -> String {
    match GameEvent::decode(reply) {
        Ok(e) => format!("{e:?}"),
        Err(e) => format!("undecodable reply ({e})"),
    }
}

/// `game-server client`: a load of players, or the commands given on the command line
/// (moves and actions are not answered: the state broadcasts at each tick show them).
pub fn client(args: &ClientArgs) -> ExitCode {
    if !args.is_load() {
        let requests = match parse_commands(&args.commands) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("game-server client: {e}");
                return ExitCode::from(2);
            }
        };
        let result = args.connect().and_then(|mut c| {
            let (mut first, mut rest) = (Vec::new(), Vec::new());
            for (t, b) in requests {
                // Only joins and leaves are answered; send the others without waiting.
                if t.starts_with("join") || t.starts_with("leave") {
                    first.push((t, b));
                } else {
                    rest.push((t, b));
                }
            }
            let mut r = super::send_commands(&mut c, &first, secs(args.timeout), describe);
            if r.is_ok() && !rest.is_empty() {
                for (t, b) in &rest {
                    match c.offer_blocking(b, secs(args.timeout), |s, m| {
                        println!("  reply to #{s}: {}", describe(m))
                    }) {
                        Ok(seq) => println!("#{seq}: {t}"),
                        Err(e) => r = Err(e.to_string()),
                    }
                }
                let start = std::time::Instant::now();
                while r.is_ok() && start.elapsed() < std::time::Duration::from_millis(300) {
                    if let Err(e) = c.poll(|s, m| println!("  reply to #{s}: {}", describe(m))) {
                        r = Err(e.to_string());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            c.close();
            r
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("game-server client: {e}");
                ExitCode::from(1)
            }
        };
    }
    let run = load::run_sessions(
        args.clients,
        args.rate.unwrap_or(200.0),
        Some(secs(args.duration.unwrap_or(10.0))),
        secs(args.timeout),
        |i| {
            let c = args.connect()?;
            Ok((
                c,
                Box::new(GameLoad::new(i as u64 + 1, (i % 4) as u32)) as Box<dyn Profile>,
            ))
        },
    );
    match run {
        Ok((reports, elapsed)) => {
            let t = Totals::of(&reports);
            t.print("messages", elapsed);
            if t.ok() {
                ExitCode::SUCCESS
            } else {
                println!("FAILED: some acknowledged messages went missing or were doubled");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("game-server client: {e}");
            ExitCode::from(1)
        }
    }
}
