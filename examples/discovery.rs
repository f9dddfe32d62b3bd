//! A long-running caller that discovers adders once and keeps a watched copy, instead of asking the
//! registry on every call: `cargo run --example discovery -- 127.0.0.1:6666` while `just cluster` runs.
//!
//! It prints the instances it knows, then makes ten calls balanced with power-of-two-choices.

use mini::balance::Strategy;
use mini::client::Balanced;
use mini::discovery::Discovery;
use mini::proto::ServiceName;
use std::time::Duration;

fn main() {
    let registry = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6666".to_string());
    let registries = vec![registry];
    let add = ServiceName::default();
    mini::rt::block_on(async {
        let adders = Discovery::start(&registries, &add, Strategy::P2c, None);
        if !adders.ready(Duration::from_secs(2)).await {
            eprintln!("no listing from {}", registries[0]);
            std::process::exit(1);
        }
        println!("known adders: {}", adders.instances().join(", "));
        drop(adders);

        let caller = Balanced::start(&registries, &add, Strategy::P2c, None);
        caller.ready(Duration::from_secs(2)).await;
        for i in 0..10 {
            match caller.add(i, 100).await {
                Ok(answer) => println!("{i} + 100 = {} (from {})", answer.sum, answer.addr),
                Err(e) => println!("{i} + 100 failed: {e}"),
            }
        }
    });
}
