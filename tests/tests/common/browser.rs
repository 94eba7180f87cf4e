//! A real, headless Chromium driven over the DevTools protocol (CDP): launched with a
//! throw-away profile, pages opened through its HTTP endpoint, JavaScript evaluated and
//! screenshots taken over its WebSocket. `.ci/setup.sh` installs the Debian package.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message as WsMessage, WebSocket};

/// How long one DevTools command may take (a page's script may run a while).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The browser, if this machine has one. Without one a test is skipped with a message,
/// except under CI (`CI` set), where the setup step must have installed it: a missing
/// browser fails there rather than passing unseen.
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| PathBuf::from(d).join(b))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no chromium on PATH under CI: .ci/setup.sh installs the Debian package"
        );
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium)");
    }
    found
}

/// A headless Chromium with its own profile directory; killed when dropped.
pub struct Browser {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Browser {
    /// Starts `bin` and waits for its DevTools endpoint.
    pub fn launch(bin: &PathBuf) -> Browser {
        Self::launch_with(bin, &[])
    }

    /// As [`Browser::launch`], with more command-line switches.
    pub fn launch_with(bin: &PathBuf, extra: &[&str]) -> Browser {
        let dir = std::env::temp_dir().join(format!(
            "ringwire-chromium-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(rand_u32())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--window-size=1280,1300",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let mut b = Browser { child, dir, port: 0 };
        let file = b.dir.join("DevToolsActivePort");
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Some(p) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                b.port = p;
                return b;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chromium did not open its DevTools port within 30 s");
    }

    /// Opens `url` in a new tab and attaches to it.
    pub fn open(&self, url: &str) -> Page {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "PUT /json/new?{url} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let target: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("DevTools /json/new answered {answer:?}: {e}"));
        let ws_url = target["webSocketDebuggerUrl"].as_str().expect("a debugger URL").to_owned();
        let (mut ws, _) = tungstenite::connect(ws_url.as_str()).expect("attach to the page");
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        }
        let mut page = Page { ws, next: 0, exceptions: Vec::new() };
        page.call("Page.enable", json!({}));
        page.call("Runtime.enable", json!({}));
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u32::from_ne_bytes(b)
}

/// One tab, attached over the DevTools WebSocket.
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    /// Uncaught exceptions the page's scripts threw (`Runtime.exceptionThrown`), as
    /// reported so far.
    pub exceptions: Vec<String>,
}

impl Page {
    /// Sends a DevTools command and returns its `result` (events in between are
    /// skipped); panics on an error answer.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let cmd = json!({ "id": id, "method": method, "params": params });
        self.ws.send(WsMessage::text(cmd.to_string())).expect("send a DevTools command");
        loop {
            let msg = self.ws.read().unwrap_or_else(|e| panic!("{method}: no answer: {e}"));
            let WsMessage::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("DevTools sends JSON");
            if v["method"] == "Runtime.exceptionThrown" {
                let d = &v["params"]["exceptionDetails"];
                let what = d["exception"]["description"].as_str().unwrap_or_default();
                self.exceptions.push(format!("{} {what}", d["text"]));
            }
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(e) = v.get("error") {
                panic!("{method} failed: {e}");
            }
            return v["result"].clone();
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("script threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// The text of the element with `id` (`None` if there is none).
    pub fn text(&mut self, id: &str) -> Option<String> {
        let v = self.eval(&format!(
            "(() => {{ const e = document.getElementById({id:?}); return e ? e.textContent : null; }})()"
        ));
        v.as_str().map(str::to_owned)
    }

    /// Pixels of canvas `id` that are not blank (what a chart drew).
    pub fn canvas_ink(&mut self, id: &str) -> u64 {
        let v = self.eval(&format!(
            "(() => {{ const c = document.getElementById({id:?}); \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
             let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }})()"
        ));
        v.as_u64().unwrap_or(0)
    }

    /// A PNG of the page as shown.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = r["data"].as_str().expect("image data");
        base64::engine::general_purpose::STANDARD.decode(data).expect("base64 PNG")
    }
}
