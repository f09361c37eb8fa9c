//! One Envoy process: its bootstrap, log and admin address in a work
//! directory, started with the admin endpoint on a free loopback port
//! (`--admin-address-path` says which), awaited on `/ready`, killed on drop.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bootstrap::Bootstrap;
use crate::client;

/// How Envoy runs: worker threads and logging.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--concurrency`: worker threads, each with its own wasm VMs.
    pub concurrency: u32,
    /// `--log-level`.
    pub log_level: &'static str,
    /// `--log-format`, when the caller reads the log line by line.
    pub log_format: Option<&'static str>,
}

impl Default for Options {
    /// One worker, warnings and errors only, Envoy's log format.
    fn default() -> Self {
        Self {
            concurrency: 1,
            log_level: "warn",
            log_format: None,
        }
    }
}

/// Why Envoy did not become ready.
#[derive(Debug)]
pub enum StartError {
    /// The process ended during start-up (a rejected bootstrap, or a wasm
    /// plugin that failed to load or configure): the reason is in its log.
    Exited { log: String },
    /// Still not ready when the time was up.
    TimedOut { after: Duration, log: String },
}

impl StartError {
    /// Envoy's log up to the failure.
    pub fn log(&self) -> &str {
        match self {
            Self::Exited { log } | Self::TimedOut { log, .. } => log,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = tail(self.log(), 40);
        match self {
            Self::Exited { .. } => write!(f, "envoy exited during start-up:\n{tail}"),
            Self::TimedOut { after, .. } => {
                write!(
                    f,
                    "envoy was not ready after {} s:\n{tail}",
                    after.as_secs()
                )
            }
        }
    }
}

impl std::error::Error for StartError {}

/// A running Envoy, stopped (killed, then reaped) on drop.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    name: String,
    log_path: PathBuf,
    admin_path: PathBuf,
    admin: Option<SocketAddr>,
}

impl Envoy {
    /// Writes `bootstrap` to `dir/<name>.yaml` and starts `binary` on it,
    /// its log in `dir/<name>.log`. Returns at once: await [`Envoy::ready`].
    pub fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        bootstrap: &Bootstrap,
        options: &Options,
    ) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let config = dir.join(format!("{name}.yaml"));
        fs::write(&config, bootstrap.to_yaml()?)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log_path = dir.join(format!("{name}.log"));
        let admin_path = dir.join(format!("{name}.admin"));
        let _ = fs::remove_file(&admin_path);
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .args(["--log-level", options.log_level])
            // No shared memory: several Envoys run side by side.
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path);
        if let Some(format) = options.log_format {
            command.args(["--log-format", format]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Self {
            child,
            name: name.to_owned(),
            log_path,
            admin_path,
            admin: None,
        })
    }

    /// Waits until the admin endpoint answers `/ready` with 200 (listeners
    /// bound, wasm modules compiled and configured); returns its address.
    pub async fn ready(&mut self, timeout: Duration) -> Result<SocketAddr, StartError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(StartError::Exited { log: self.log() });
            }
            if start.elapsed() > timeout {
                return Err(StartError::TimedOut {
                    after: timeout,
                    log: self.log(),
                });
            }
            let admin = fs::read_to_string(&self.admin_path)
                .ok()
                .and_then(|a| a.trim().parse::<SocketAddr>().ok());
            if let Some(admin) = admin
                && client::get(admin, "/ready", &[])
                    .await
                    .is_ok_and(|r| r.status == 200)
            {
                self.admin = Some(admin);
                return Ok(admin);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The admin endpoint's address, once [`Envoy::ready`] returned it.
    pub fn admin(&self) -> Result<SocketAddr, String> {
        self.admin
            .ok_or_else(|| format!("envoy {} is not ready", self.name))
    }

    /// The address the listener `name` is bound to (its port may have been
    /// 0), from the admin endpoint's `/listeners`.
    pub async fn listener(&self, name: &str) -> Result<SocketAddr, String> {
        let answer = client::get(self.admin()?, "/listeners?format=json", &[]).await?;
        let value: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("/listeners is not JSON: {e}"))?;
        let statuses = value["listener_statuses"].as_array().into_iter().flatten();
        for status in statuses {
            if status["name"] == name {
                let socket = &status["local_address"]["socket_address"];
                let ip = socket["address"].as_str().unwrap_or("127.0.0.1");
                let port = socket["port_value"].as_u64().unwrap_or(0);
                return format!("{ip}:{port}")
                    .parse()
                    .map_err(|e| format!("listener {name} at {socket}: {e}"));
            }
        }
        Err(format!("envoy {} has no listener {name}", self.name))
    }

    /// `GET path` on the admin endpoint: the body as text.
    pub async fn admin_get(&self, path: &str) -> Result<String, String> {
        let answer = client::get(self.admin()?, path, &[]).await?;
        if answer.status == 200 {
            Ok(answer.text())
        } else {
            Err(format!("admin {path}: status {}", answer.status))
        }
    }

    /// The process id (for its CPU time, or a profiler).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `log`.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
