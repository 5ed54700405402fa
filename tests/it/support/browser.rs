//! A real browser for the dashboard tests: Debian's headless Chromium
//! driven through its WebDriver server (`chromedriver`, installed by
//! `scripts/provision.sh`) with plain W3C WebDriver requests. Each
//! `Browser` has its own driver, port and empty profile, and ends them
//! when it drops.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::ChildGuard;
use super::kedge::wait_for;
use super::net::spawn_listening;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    session: String,
    base: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
    _driver: ChildGuard,
}

/// What a WebDriver command answered: its value, or its error.
type Answer = Result<Value, String>;

impl Browser {
    /// A fresh headless Chromium with a `width`×`height` window.
    pub fn new(width: u32, height: u32) -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: run scripts/provision.sh (it installs chromium and chromium-driver)"
            );
        }
        let (driver, port) = spawn_listening("chromedriver", None, |port| {
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver")
        });
        let driver = ChildGuard(driver);
        let profile = tempfile::tempdir().unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        // Chromium as root, with nothing that reaches past loopback (this
        // machine's network is closed) and a profile of its own.
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = post(&agent, &format!("{base}/session"), &caps)
            .unwrap_or_else(|e| panic!("chromedriver did not start a browser: {e}"));
        let session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            session,
            base,
            agent,
            _profile: profile,
            _driver: driver,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn cmd(&self, path: &str, body: Value) -> Answer {
        post(&self.agent, &self.url(path), &body)
    }

    fn get(&self, path: &str) -> Answer {
        let mut res = self
            .agent
            .get(&self.url(path))
            .call()
            .map_err(|e| e.to_string())?;
        value(parse(res.body_mut().read_to_string())?)
    }

    /// Goes to `url` and waits for the page to load.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.cmd("/url", json!({ "url": url }))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    #[track_caller]
    pub fn current_url(&self) -> String {
        self.get("/url")
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, if there is one.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self
            .cmd("/element", json!({"using": "css selector", "value": css}))
            .ok()?;
        found[ELEMENT].as_str().map(String::from)
    }

    /// The visible text of the first element matching `css`.
    pub fn text(&self, css: &str) -> Option<String> {
        let id = self.find(css)?;
        self.get(&format!("/element/{id}/text"))
            .ok()?
            .as_str()
            .map(String::from)
    }

    /// Waits until the element matching `css` exists and its text
    /// contains `needle`; returns the text.
    #[track_caller]
    pub fn wait_text(&self, secs: u64, css: &str, needle: &str) -> String {
        wait_for(secs, &format!("`{css}` to show {needle:?}"), || {
            self.text(css).filter(|t| t.contains(needle))
        })
    }

    #[track_caller]
    pub fn click(&self, css: &str) {
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("nothing matches `{css}` on {}", self.current_url()));
        self.cmd(&format!("/element/{id}/click"), json!({}))
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
    }

    #[track_caller]
    pub fn fill(&self, css: &str, text: &str) {
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("nothing matches `{css}`"));
        self.cmd(&format!("/element/{id}/clear"), json!({}))
            .unwrap();
        self.cmd(&format!("/element/{id}/value"), json!({ "text": text }))
            .unwrap_or_else(|e| panic!("cannot type into `{css}`: {e}"));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    #[track_caller]
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("/execute/sync", json!({"script": script, "args": args}))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script`, which calls its last argument with the result.
    #[track_caller]
    pub fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd("/execute/async", json!({"script": script, "args": args}))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The text of an open alert, confirm or prompt dialog, if one is open.
    pub fn dialog(&self) -> Option<String> {
        self.get("/alert/text")
            .ok()
            .map(|v| v.as_str().unwrap_or_default().to_string())
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.cmd("/window/rect", json!({"width": width, "height": height}))
            .expect("resize the window");
    }

    /// A PNG of the whole page at `width` pixels: the window grows to the
    /// page's height (at most 3000 px) for the shot.
    #[track_caller]
    pub fn screenshot(&self, width: u32, path: &Path) {
        self.resize(width, 900);
        let height = self
            .js("return document.documentElement.scrollHeight;", json!([]))
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 3000) as u32;
        // The window's frame: what the viewport lacks of the window's height.
        let chrome = self
            .js("return window.outerHeight - window.innerHeight;", json!([]))
            .as_u64()
            .unwrap_or(0) as u32;
        self.resize(width, height + chrome);
        let png = self.get("/screenshot").expect("a screenshot");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium; the driver goes with its guard.
        let _ = self.agent.delete(&self.url("")).call();
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Answer {
    let mut res = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| e.to_string())?;
    value(parse(res.body_mut().read_to_string())?)
}

fn parse(body: Result<String, ureq::Error>) -> Result<Value, String> {
    let body = body.map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))
}

/// A WebDriver answer's `value`, or its error as text.
fn value(mut doc: Value) -> Answer {
    let v = doc["value"].take();
    match v.get("error").and_then(Value::as_str) {
        Some(error) => Err(format!(
            "{error}: {}",
            v["message"].as_str().unwrap_or_default()
        )),
        None => Ok(v),
    }
}
