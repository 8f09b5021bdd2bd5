//! `tandem-chaos`: a fault harness with real hosts. Members of the `kv-store` or
//! `matching-engine` sample run as processes in network namespaces of their own; a client
//! load runs while faults are injected on a seeded schedule; at the end it checks that no
//! acknowledged operation was lost or applied twice, that the members' state hashes agree
//! and (kv) that the history is linearizable. Run as root.
//!
//! ```text
//! tandem-chaos --seed 1 --duration 150 --cluster-size 3
//! tandem-chaos --seed 7 --duration 600 --cluster-size 5 --service matching --json out.json
//! tandem-chaos --seed 3 --duration 60 --faults kill-leader,partition,proxy
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    tandem_samples::chaos::main()
}
