//! Test harness for end-to-end tests: runs the real `sigil` binary as separate processes (server,
//! agent, CLI, workloads) on temporary directories and free loopback ports, and talks to them only
//! through their public interfaces (admin socket via the CLI, Workload API socket).

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the `sigil` binary under test.
pub fn sigil_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sigil")
}

/// The target directory holding the workspace's other binaries (e.g. interop clients).
pub fn target_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &'static str, dir: &Path, args: &[&str]) -> Self {
        Self::spawn_with_env(name, dir, args, &[])
    }

    /// Like [`Daemon::spawn`], with `env` added to the process environment.
    pub fn spawn_with_env(
        name: &'static str,
        dir: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(sigil_bin())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SIGIL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn sigil");
        Self { child, name, log }
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to 10 s; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().ok();
        None
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited, with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.terminate();
        }
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// Runs `sigil args...` to completion.
pub fn sigil(args: &[&str]) -> Output {
    Command::new(sigil_bin())
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run sigil")
}

/// Runs `sigil args...` as a workload of the agent at `socket`.
pub fn workload(socket: &Path, args: &[&str]) -> Output {
    Command::new(sigil_bin())
        .args(args)
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run sigil")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command failed with exactly one line on stderr containing `needle`.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "stderr is not one line: {err:?}"
    );
    assert!(
        err.contains(needle),
        "stderr {err:?} does not mention {needle:?}"
    );
}

/// A server started from a config file, with its admin socket ready.
pub struct TestServer {
    /// Kept so the server runs as long as the test holds this value.
    daemon: Daemon,
    dir: PathBuf,
    config: PathBuf,
    pub admin_socket: PathBuf,
    pub port: u16,
    pub trust_domain: String,
    /// Added to the server process's environment, at every (re)start.
    env: Vec<(String, String)>,
}

impl TestServer {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// Like [`TestServer::start`], with `extra_server_toml_lines` appended to the `[server]`
    /// table (e.g. `agent_svid_ttl = "6s"\n`).
    pub fn start_with(dir: &Path, extra_server_toml_lines: &str) -> Self {
        Self::start_in_domain(dir, "example.org", extra_server_toml_lines)
    }

    /// Like [`TestServer::start_with`], for `trust_domain`.
    pub fn start_in_domain(dir: &Path, trust_domain: &str, extra_server_toml_lines: &str) -> Self {
        Self::start_in_domain_with_env(dir, trust_domain, extra_server_toml_lines, Vec::new())
    }

    /// Like [`TestServer::start_in_domain`], with `env` added to the server's environment.
    pub fn start_in_domain_with_env(
        dir: &Path,
        trust_domain: &str,
        extra_server_toml_lines: &str,
        env: Vec<(String, String)>,
    ) -> Self {
        let trust_domain = trust_domain.to_owned();
        let port = free_port();
        let data_dir = dir.join("server");
        let admin_socket = dir.join("admin").join("admin.sock");
        let config = dir.join("server.toml");
        std::fs::create_dir_all(dir).expect("server dir");
        std::fs::write(
            &config,
            format!(
                "[server]\ntrust_domain = \"{trust_domain}\"\nbind_address = \"127.0.0.1:{port}\"\n\
                 data_dir = \"{}\"\nadmin_socket_path = \"{}\"\n{extra_server_toml_lines}",
                data_dir.display(),
                admin_socket.display()
            ),
        )
        .expect("write server.toml");
        let daemon = Daemon::spawn_with_env(
            "server",
            dir,
            &["server", "run", "-c", config.to_str().unwrap()],
            &env,
        );
        let server = Self {
            daemon,
            dir: dir.to_owned(),
            config,
            admin_socket,
            port,
            trust_domain,
            env,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        wait_for(Duration::from_secs(30), "the server's admin API", || {
            let o = self.admin(&["bundle", "show"]);
            o.status.success().then_some(())
        });
    }

    /// Stops the server with SIGTERM (asserting a clean exit) and starts it again on the same
    /// configuration, data and port.
    pub fn restart(&mut self) {
        self.restart_after(|| {});
    }

    /// Like [`TestServer::restart`], running `while_down` while the server is stopped.
    pub fn restart_after(&mut self, while_down: impl FnOnce()) {
        let status = self.daemon.terminate().expect("server stops on SIGTERM");
        assert!(
            status.success(),
            "server exit status {status}: {}",
            self.daemon.log()
        );
        while_down();
        self.daemon = Daemon::spawn_with_env(
            "server",
            &self.dir,
            &["server", "run", "-c", self.config.to_str().unwrap()],
            &self.env,
        );
        self.wait_ready();
    }

    /// The server process (its log, its exit status).
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Starts the server process again on the same configuration, data and port (after it was
    /// killed), and waits until it answers.
    pub fn respawn(&mut self) {
        self.daemon = Daemon::spawn_with_env(
            "server",
            &self.dir,
            &["server", "run", "-c", self.config.to_str().unwrap()],
            &self.env,
        );
        self.wait_ready();
    }

    /// The server process, to stop or kill it.
    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }

    /// Runs an admin CLI command against this server.
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--admin-socket");
        let sock = self.admin_socket.to_str().unwrap().to_owned();
        let sock: &'static str = Box::leak(sock.into_boxed_str());
        all.push(sock);
        sigil(&all)
    }

    /// Creates a join token; returns (token, agent_id).
    pub fn join_token(&self, ttl: &str) -> (String, String) {
        let o = self.admin(&["token", "create", "--ttl", ttl, "--output", "json"]);
        assert!(o.status.success(), "token create: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("token json");
        (
            v["token"].as_str().expect("token").to_owned(),
            v["agent_id"].as_str().expect("agent_id").to_owned(),
        )
    }

    /// Appends `toml` to the server's configuration file (it takes effect at the next restart).
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).expect("read server.toml");
        text.push_str(toml);
        std::fs::write(&self.config, text).expect("write server.toml");
    }

    /// Writes the server's bundle as PEM to `path`.
    pub fn write_bundle(&self, path: &Path) {
        let o = self.admin(&["bundle", "show"]);
        assert!(o.status.success(), "bundle show: {}", stderr(&o));
        std::fs::write(path, &o.stdout).expect("write bundle");
    }
}

/// Paths of an agent under test.
pub struct AgentPaths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
}

/// Writes an agent config for `server` under `dir`, with `token` if given.
pub fn agent_config(dir: &Path, server: &TestServer, token: Option<&str>) -> AgentPaths {
    let address = format!("server_address = \"127.0.0.1:{}\"", server.port);
    write_agent_config(dir, server, token, &address)
}

/// Like [`agent_config`], with `server_addresses` listing `addresses` (`host:port`) in order.
pub fn agent_config_with_addresses(
    dir: &Path,
    server: &TestServer,
    token: Option<&str>,
    addresses: &[String],
) -> AgentPaths {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    let line = format!("server_addresses = [{}]", list.join(", "));
    write_agent_config(dir, server, token, &line)
}

/// Writes an agent config trusting `server`'s bundle, with `address_line` naming the servers.
fn write_agent_config(
    dir: &Path,
    server: &TestServer,
    token: Option<&str>,
    address_line: &str,
) -> AgentPaths {
    std::fs::create_dir_all(dir).expect("agent dir");
    let bundle = dir.join("bootstrap-bundle.pem");
    server.write_bundle(&bundle);
    // The socket lives in a world-traversable directory so workloads of other uids can reach it.
    let public = dir.join("public");
    std::fs::create_dir_all(&public).expect("public dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = public.join("workload.sock");
    let config = dir.join("agent.toml");
    let token_line = token
        .map(|t| format!("join_token = \"{t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[agent]\ntrust_domain = \"{}\"\n{address_line}\n\
             trust_bundle_path = \"{}\"\ndata_dir = \"{}\"\nsocket_path = \"{}\"\n{token_line}",
            server.trust_domain,
            bundle.display(),
            dir.join("data").display(),
            socket.display()
        ),
    )
    .expect("write agent.toml");
    AgentPaths {
        dir: dir.to_owned(),
        config,
        socket,
    }
}

/// Starts an agent and waits for its Workload API socket.
pub fn start_agent(paths: &AgentPaths) -> Daemon {
    let _ = std::fs::remove_file(&paths.socket);
    let mut daemon = Daemon::spawn(
        "agent",
        &paths.dir,
        &["agent", "run", "-c", paths.config.to_str().unwrap()],
    );
    wait_for(
        Duration::from_secs(30),
        "the agent's Workload API socket",
        || {
            if let Some(status) = daemon.exited() {
                panic!("agent exited early ({status}):\n{}", daemon.log());
            }
            paths.socket.exists().then_some(())
        },
    );
    daemon
}

/// The uid of this test process.
pub fn my_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Creates an entry for this test process's uid under `parent`; returns its id.
pub fn create_uid_entry(server: &TestServer, spiffe_id: &str, parent: &str) -> String {
    create_uid_entry_with(server, spiffe_id, parent, &[])
}

/// Like [`create_uid_entry`], with extra `entry create` arguments.
pub fn create_uid_entry_with(
    server: &TestServer,
    spiffe_id: &str,
    parent: &str,
    extra: &[&str],
) -> String {
    let selector = format!("unix:uid:{}", my_uid());
    let mut args = vec![
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        parent,
        "--selector",
        &selector,
        "--owner",
        "team-e2e",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let o = server.admin(&args);
    assert!(o.status.success(), "entry create: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("entry json");
    v["id"].as_str().expect("entry id").to_owned()
}

/// Fetches SVIDs into `out` as a workload, retrying until the entry has propagated.
pub fn fetch_svid_files(socket: &Path, out: &Path) -> Output {
    wait_for(
        Duration::from_secs(30),
        "an X509-SVID for the workload",
        || {
            let o = workload(socket, &["svid", "fetch", "--write", out.to_str().unwrap()]);
            o.status.success().then_some(o)
        },
    )
}

/// Whether a missing test prerequisite (root, the py-spiffe venv, an interop binary) must fail
/// the test instead of skipping it: on CI (`CI=true`) or when `SIGIL_REQUIRE_INTEROP` is set.
pub fn prerequisites_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var_os("SIGIL_REQUIRE_INTEROP").is_some()
}

/// Reports a missing prerequisite: panics (the test fails) when [`prerequisites_required`], else
/// prints why the test is skipped. The caller returns right after.
pub fn missing_prerequisite(what: &str) {
    assert!(
        !prerequisites_required(),
        "{what} (required because CI=true or SIGIL_REQUIRE_INTEROP is set)"
    );
    eprintln!("skipped: {what}");
}

/// The directory of the py-spiffe interop client and its scripts (interop/python).
pub fn pyspiffe_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/python")
}

/// The Python of the pinned py-spiffe venv (`SIGIL_INTEROP_PYTHON`, else
/// interop/python/.venv/bin/python); `None` after reporting it missing with
/// [`missing_prerequisite`] (which fails the test on CI).
pub fn pyspiffe_python() -> Option<PathBuf> {
    let python = std::env::var("SIGIL_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| pyspiffe_dir().join(".venv/bin/python"));
    if python.exists() {
        return Some(python);
    }
    missing_prerequisite(&format!(
        "{} is missing (run interop/python/setup.sh)",
        python.display()
    ));
    None
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("time fits i64")
}

impl TestServer {
    /// The server's JWT signing key, read from its key directory (`<data_dir>/keys`): the key
    /// among those stored there that verifies `token`, a JWT-SVID the server issued.
    pub fn jwt_signing_key(&self, token: &str) -> std::sync::Arc<sigil_keys::PrivateKey> {
        use sigil_keys::KeyManager as _;
        let dir = self.dir.join("server").join("keys");
        let keys = sigil_keys::DiskKeyManager::new(dir.clone());
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let key_id = name.strip_suffix(".key")?;
                keys.load(key_id).ok().flatten()
            })
            .find(|key| {
                let public = key.public_key();
                sigil_keys::jws::verify_compact(token, |_| Some(public.clone())).is_ok()
            })
            .unwrap_or_else(|| panic!("no key in {} verifies the JWT-SVID", dir.display()))
    }

    /// Tokens that parse but must be refused ([`sigil_keys::jwt_forgery::refusal_matrix`]),
    /// built from `genuine`, a JWT-SVID this server issued for `audience`.
    pub fn jwt_refusal_matrix(
        &self,
        genuine: &str,
        audience: &str,
    ) -> Vec<sigil_keys::jwt_forgery::RefusalCase> {
        let key = self.jwt_signing_key(genuine);
        sigil_keys::jwt_forgery::refusal_matrix(genuine, &key, audience, unix_now())
            .expect("build the JWT refusal matrix")
    }
}

/// What the agent's ValidateJWTSVID says when it refuses a token for the check `guarded_by`
/// (a [`sigil_keys::jwt_forgery::RefusalCase::guarded_by`]).
pub fn agent_refusal_reason(guarded_by: &str) -> &'static str {
    match guarded_by {
        "signature" => "signature does not verify",
        "alg" => "unsupported algorithm",
        "exp" => "expired",
        "aud" => "audience mismatch",
        other => panic!("unknown check `{other}`"),
    }
}

/// The refusal matrix as a JSON object `{name: token}`, for third-party clients.
pub fn refusal_cases_json(cases: &[sigil_keys::jwt_forgery::RefusalCase]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = cases
        .iter()
        .map(|c| {
            (
                c.name.to_owned(),
                serde_json::Value::String(c.token.clone()),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// A Workload API client of this test process (the workload) over the agent's Unix socket.
pub async fn workload_client(
    socket: &Path,
) -> sigil_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
    tonic::transport::Channel,
> {
    let target = socket.to_owned();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let target = target.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&target).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .expect("connect to the Workload API socket");
    sigil_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel)
}

/// `msg` as a Workload API request carrying `workload.spiffe.io: true`.
pub fn with_security_header<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        sigil_proto::WORKLOAD_API_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

/// Runs `interop/python/<script>` with `args` and the py-spiffe venv's `python` against the agent
/// at `socket`; it must succeed and print one JSON object, which is returned.
pub fn pyspiffe_json(python: &Path, socket: &Path, script: &str, args: &[&str]) -> Value {
    let o = Command::new(python)
        .arg(pyspiffe_dir().join(script))
        .args(args)
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script} {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Longest a py-spiffe watcher waits for its next event; only ever a failure bound.
pub const PYSPIFFE_PATIENCE: Duration = Duration::from_secs(30);

/// A workload watching its X.509 contexts with py-spiffe (interop/python/pyspiffe_watch.py),
/// each event it reports as JSON; killed when dropped.
pub struct PySpiffeWatch {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl PySpiffeWatch {
    /// Starts watching the agent at `socket`; `None` (after [`missing_prerequisite`]) without
    /// the py-spiffe venv.
    pub fn start(socket: &std::path::Path) -> Option<Self> {
        let python = pyspiffe_python()?;
        let mut child = Command::new(python)
            .arg(pyspiffe_dir().join("pyspiffe_watch.py"))
            .args(["--timeout", "120"])
            .env(
                "SPIFFE_ENDPOINT_SOCKET",
                format!("unix://{}", socket.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the py-spiffe watcher");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("py-spiffe watcher printed non-JSON ({e}): {line}"));
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Some(Self { child, events })
    }

    /// The next event, within [`PYSPIFFE_PATIENCE`].
    pub fn next(&self) -> Value {
        self.events
            .recv_timeout(PYSPIFFE_PATIENCE)
            .expect("no event from the py-spiffe watcher in time")
    }

    /// Skips updates until the stream ends; returns the end event and how long it took.
    pub fn wait_end(&self) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let event = self.next();
            if event["event"] != "update" {
                return (event, start.elapsed());
            }
        }
    }
}

impl Drop for PySpiffeWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// openssl verifies the SVID in `dir` against the bundle file `bundle`.
pub fn openssl_verifies(dir: &Path, bundle: &Path) {
    let o = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(bundle)
        .arg("-untrusted")
        .arg(dir.join("svid.pem"))
        .arg(dir.join("svid.pem"))
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(
        o.status.success(),
        "openssl verify: {}{}",
        stdout(&o),
        stderr(&o)
    );
}
