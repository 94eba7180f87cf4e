//! The bridge thread: a current-thread tokio runtime with the NATS client, between the
//! workers' queues ([`ClusterShared`]) and the broker.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;

use futures_util::StreamExt;

use super::{subject_token, ClusterConfig, ClusterShared};
use crate::handle::{Publisher, Topic};

/// A running bridge; [`Bridge::stop`] ends it.
pub(crate) struct Bridge {
    shared: Arc<ClusterShared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("stats", &self.shared.stats()).finish()
    }
}

impl Bridge {
    /// Starts the bridge for `config`; `local` delivers to this node's workers only.
    pub(crate) fn start(
        config: &ClusterConfig,
        shared: Arc<ClusterShared>,
        local: Publisher,
    ) -> std::io::Result<Self> {
        let mut servers = Vec::new();
        for s in &config.servers {
            let addr = s.parse::<async_nats::ServerAddr>().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{s}: {e}"))
            })?;
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a cluster needs at least one NATS server",
            ));
        }
        let prefix = config.subject_prefix.clone();
        let sh = shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread =
            std::thread::Builder::new().name("ringwire-cluster".into()).spawn(move || {
                runtime.block_on(run(servers, prefix, sh, local));
            })?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Stops the bridge: what is queued is handed to the client and flushed (briefly),
    /// the subscriptions end, the thread is joined.
    pub(crate) fn stop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.shared.stop.store(true, SeqCst);
        self.shared.waker.wake();
        let _ = t.join();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A topic the node is subscribed to: how many of its workers have subscribers, and the
/// task forwarding what arrives.
struct Interest {
    workers: u32,
    task: tokio::task::JoinHandle<()>,
}

async fn run(
    servers: Vec<async_nats::ServerAddr>,
    prefix: String,
    shared: Arc<ClusterShared>,
    local: Publisher,
) {
    let events = shared.clone();
    let ever = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connect = async_nats::ConnectOptions::new()
        .no_echo() // this node's own publishes never come back to it
        .retry_on_initial_connect()
        .max_reconnects(None)
        .name("ringwire")
        .event_callback(move |ev| {
            let (s, ever) = (events.clone(), ever.clone());
            async move {
                match ev {
                    async_nats::Event::Connected => {
                        s.connected.store(true, Relaxed);
                        if ever.swap(true, Relaxed) {
                            s.reconnects.fetch_add(1, Relaxed);
                        }
                        s.nudge(); // what waited while it was away goes out now
                        tracing::info!("cluster: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        s.connected.store(false, Relaxed);
                        tracing::warn!("cluster: NATS connection lost; reconnecting");
                    }
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            }
        });
    let client = match connect.connect(servers).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot start the NATS client");
            return;
        }
    };
    let subject = |topic: &str| format!("{prefix}.{}", subject_token(topic));
    let mut topics: HashMap<Topic, Interest> = HashMap::new();
    loop {
        // Wait for work (or the stop), then take all of it.
        poll_fn(|cx| {
            shared.waker.register(cx.waker());
            if shared.nudged.swap(false, Relaxed) || shared.stop.load(SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        while let Some((topic, on)) = shared.interest.pop() {
            change_interest(&client, &mut topics, &shared, &local, topic, on, &subject).await;
        }
        // While the broker is gone publishes wait in `out` (bounded, counted when it
        // drops), not in the client's own buffers: what is lost is what the policy says.
        while shared.connected.load(Relaxed) {
            let Some((topic, frame)) = shared.next_out() else { break };
            match client.publish(subject(&topic), frame).await {
                Ok(()) => shared.published.fetch_add(1, Relaxed),
                Err(_) => shared.failed.fetch_add(1, Relaxed),
            };
        }
        if shared.stop.load(SeqCst) {
            break;
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.flush()).await;
    for (_, i) in topics.drain() {
        i.task.abort();
    }
    shared.subscriptions.store(0, Relaxed);
}

async fn change_interest(
    client: &async_nats::Client,
    topics: &mut HashMap<Topic, Interest>,
    shared: &Arc<ClusterShared>,
    local: &Publisher,
    topic: Topic,
    on: bool,
    subject: &impl Fn(&str) -> String,
) {
    if !on {
        if let Some(i) = topics.get_mut(&topic) {
            i.workers -= 1;
            if i.workers == 0 {
                // Dropping the subscriber (with its task) unsubscribes.
                if let Some(i) = topics.remove(&topic) {
                    i.task.abort();
                }
                shared.subscriptions.fetch_sub(1, Relaxed);
            }
        }
        return;
    }
    if let Some(i) = topics.get_mut(&topic) {
        i.workers += 1;
        return;
    }
    let mut sub = match client.subscribe(subject(&topic)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%topic, error = %e, "cluster: cannot subscribe");
            return;
        }
    };
    let (sh, local, name) = (shared.clone(), local.clone(), topic.clone());
    let task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            sh.received.fetch_add(1, Relaxed);
            // Encoded once by the publishing node: this node's workers fan it out as is.
            local.deliver_frame(&name, msg.payload);
        }
    });
    topics.insert(topic, Interest { workers: 1, task });
    shared.subscriptions.fetch_add(1, Relaxed);
}
