#![allow(missing_docs)]
//! The engine's examples run here as they run for a user (`cargo run -p ringwire
//! --example NAME`): their code is compiled into this test (`#[path]`), each scenario
//! runs on both backends, and what it reports is checked.

#[allow(dead_code)] // its `main`
#[path = "../../engine/examples/reconnecting_client.rs"]
mod reconnecting_client;

#[allow(dead_code)] // its `main`
#[path = "../../engine/examples/chat.rs"]
mod chat;

mod common;

/// Connected, lost when the upstream stops, refused while it is down, connected again
/// when it is back (the greeting echoed on both connections), closed by the application.
fn reconnects(backend: ringwire::BackendChoice) {
    let events = reconnecting_client::run(backend).expect("the example runs");
    let pos = |from: usize, what: &str| {
        events[from..]
            .iter()
            .position(|e| e.contains(what))
            .map(|i| from + i)
            .unwrap_or_else(|| panic!("no {what:?} after event {from} in {events:#?}"))
    };
    let up = pos(0, "Connecting -> Connected (upgrade accepted)");
    let echo = pos(up, "message: hello, upstream");
    let lost = pos(echo, "Connected -> Reconnecting");
    let refused = pos(lost, "Connecting -> Reconnecting (connect failed: connection refused");
    let back = pos(refused, "Connecting -> Connected (upgrade accepted)");
    let again = pos(back, "message: hello, upstream");
    pos(again, "Connected -> Closed (closed by the application)");
}

/// Every member heard its welcome first, then the three lines (its own included).
fn chats(backend: ringwire::BackendChoice) {
    let report = chat::run(backend).expect("the example runs");
    assert_eq!(report.len(), 3);
    let mut said: Vec<String> =
        report.iter().map(|(name, _)| format!("{name}: hello, room")).collect();
    said.sort();
    for (name, lines) in &report {
        assert_eq!(lines.first().map(String::as_str), Some("joined"), "{name}: {lines:?}");
        let mut heard = lines[1..].to_vec();
        heard.sort();
        assert_eq!(heard, said, "{name} heard each line once");
    }
}

both_backends! {
    reconnects => reconnecting_client_example_io_uring, reconnecting_client_example_epoll;
    chats => chat_example_io_uring, chat_example_epoll;
}
