//! Debian's nginx in front of factlog, configured with a block of the README exactly as a
//! user pastes it: only the site-specific parts (the port, the certificate's files, the
//! log file, the upstream addresses) are replaced, so the recipe is what is tested.
//!
//! A README block is the inside of `http { }` (what goes in `/etc/nginx/conf.d/`); the
//! harness wraps it in a main configuration of its own whose pid file, logs and temporary
//! folders are all in a temporary prefix, and runs `nginx -p <prefix> -g 'daemon off;'`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::WAIT;
use crate::tls::TestCert;

/// The README's marker before the one-instance block ("Behind nginx").
pub const ONE_INSTANCE: &str = "<!-- nginx: one instance";
/// The README's marker before the several-instances block.
pub const SEVERAL_INSTANCES: &str = "<!-- nginx: several instances";

/// The lines of a README block that name things of the site it was written for.
const LISTEN: &str = "listen 443 ssl http2;";
const CERT: &str = "/etc/letsencrypt/live/log.example.com/fullchain.pem";
const KEY: &str = "/etc/letsencrypt/live/log.example.com/privkey.pem";
const ACCESS_LOG: &str = "/var/log/nginx/factlog.log";

/// Where nginx is: on `PATH`, or Debian's `/usr/sbin/nginx` (not on a user's `PATH`).
pub fn nginx_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nginx");
        debian.is_file().then_some(debian)
    })
}

/// The README's text.
pub fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).expect("the README")
}

/// Every ```` ```nginx ```` block of `readme`, with the marker line just before it (empty
/// when there is none).
pub fn nginx_blocks(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("```nginx\n") {
        let before = rest[..start].trim_end_matches('\n');
        let marker = before.rsplit('\n').next().unwrap_or("");
        let marker = if marker.starts_with("<!-- nginx:") {
            marker.to_owned()
        } else {
            String::new()
        };
        let body = &rest[start + "```nginx\n".len()..];
        let end = body.find("```").expect("a closed nginx block");
        blocks.push((marker, body[..end].to_owned()));
        rest = &body[end..];
    }
    blocks
}

/// The README's nginx block after the marker starting with `marker`.
pub fn readme_block(marker: &str) -> String {
    nginx_blocks(&readme())
        .into_iter()
        .find(|(m, _)| m.starts_with(marker))
        .map(|(_, block)| block)
        .unwrap_or_else(|| panic!("the README has an nginx block after {marker}"))
}

/// A port nothing listens on now: a free one, let go. (Another program may take it
/// meanwhile: for nginx's own port, [`Nginx::start`] tries again.)
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An address of 127.0.0.1 where connections are refused for as long as this lives: a
/// socket bound to it that never listens, so no other test's server can take the port.
/// What nginx sees of a factlog that is down.
pub struct DownAddr {
    /// The address.
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl DownAddr {
    /// Binds a new one.
    pub fn new() -> DownAddr {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("a free port");
        DownAddr {
            addr: socket.local_addr().expect("its address"),
            _socket: socket,
        }
    }
}

impl Default for DownAddr {
    fn default() -> Self {
        Self::new()
    }
}

/// A README block made runnable in `prefix`: served on `port` with `cert`, logging into the
/// prefix, each `(written, actual)` upstream address replaced. Every replaced text must be
/// in the block, so a README that changes them fails here rather than testing something
/// else.
fn localize(
    block: &str,
    prefix: &Path,
    port: u16,
    cert: &TestCert,
    upstreams: &[(&str, SocketAddr)],
) -> String {
    let log = prefix.join("factlog.log");
    let mut replacements: Vec<(String, String)> = vec![
        (LISTEN.into(), format!("listen 127.0.0.1:{port} ssl http2;")),
        (CERT.into(), cert.cert.display().to_string()),
        (KEY.into(), cert.key.display().to_string()),
        (ACCESS_LOG.into(), log.display().to_string()),
    ];
    replacements.extend(
        upstreams
            .iter()
            .map(|(written, actual)| ((*written).to_owned(), actual.to_string())),
    );
    let mut block = block.to_owned();
    for (from, to) in replacements {
        assert!(block.contains(&from), "the nginx block has {from:?}");
        block = block.replace(&from, &to);
    }
    block
}

/// The main configuration around a block: everything nginx writes stays in `prefix`.
fn main_conf(prefix: &Path, block: &Path) -> String {
    let p = prefix.display();
    format!(
        "worker_processes 1;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
             default_type application/octet-stream;\n\
             access_log {p}/access.log;\n\
             client_body_temp_path {p}/client_body;\n\
             proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n\
             scgi_temp_path {p}/scgi;\n\
             include {block};\n\
         }}\n",
        block = block.display()
    )
}

/// A prefix with a README block and its main configuration written into it.
struct Prefix {
    dir: TempDir,
    conf: PathBuf,
    cert: TestCert,
}

impl Prefix {
    fn write(block: &str, port: u16, upstreams: &[(&str, SocketAddr)]) -> Prefix {
        let dir = TempDir::new().expect("a prefix directory");
        // nginx started as root runs its workers as `nobody`, which must reach the
        // temporary folders it creates here.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("the prefix is readable");
        }
        let cert = TestCert::write(dir.path(), "factlog behind nginx");
        let block = localize(block, dir.path(), port, &cert, upstreams);
        let block_path = dir.path().join("factlog.conf");
        std::fs::write(&block_path, block).expect("the block is written");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main_conf(dir.path(), &block_path)).expect("nginx.conf");
        Prefix { dir, conf, cert }
    }

    fn command(&self, nginx: &Path) -> Command {
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&self.conf)
            // Before it reads the configuration, nginx logs to the compiled-in path.
            .arg("-e")
            .arg(self.dir.path().join("error.log"));
        command
    }
}

/// `nginx -t` of a README block, localized as [`Nginx::start`] does it.
pub fn test_config(block: &str, upstreams: &[(&str, SocketAddr)]) -> Output {
    let nginx = nginx_binary().expect("nginx (Debian: apt-get install nginx)");
    let prefix = Prefix::write(block, free_port(), upstreams);
    prefix
        .command(&nginx)
        .arg("-t")
        .output()
        .expect("nginx -t runs")
}

/// nginx serving a README block over HTTPS (HTTP/2 and HTTP/1.1) on a free port of
/// 127.0.0.1. It stops on drop.
pub struct Nginx {
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The certificate nginx serves (for `127.0.0.1` and `localhost`).
    pub cert: TestCert,
    /// A client that trusts that certificate.
    pub client: reqwest::Client,
    prefix: TempDir,
    child: Child,
}

impl Nginx {
    /// Starts nginx with `block`, its upstream addresses replaced as `upstreams` says
    /// (`("127.0.0.1:3001", app.addr)`), and waits until it accepts connections.
    pub fn start(block: &str, upstreams: &[(&str, SocketAddr)]) -> Nginx {
        // The free port found may be taken by another test before nginx binds it: then
        // nginx exits at once, and another port is tried.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Nginx::try_start(block, upstreams) {
                Ok(nginx) => return nginx,
                Err(log) if attempts < 3 && log.contains("Address already in use") => {}
                Err(log) => panic!("nginx did not start: {log}"),
            }
        }
    }

    /// One attempt on one free port; the error log when nginx exits instead of listening.
    fn try_start(block: &str, upstreams: &[(&str, SocketAddr)]) -> Result<Nginx, String> {
        let nginx = nginx_binary().expect("nginx (Debian: apt-get install nginx)");
        let port = free_port();
        let prefix = Prefix::write(block, port, upstreams);
        let mut child = prefix
            .command(&nginx)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let Prefix { dir, cert, .. } = prefix;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().expect("nginx's state");
            if exited.is_some() || started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.path().join("error.log"));
                return Err(format!(
                    "not listening on {port} ({exited:?}): {}",
                    log.unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let client = crate::tls::client_trusting(&cert.pem);
        Ok(Nginx {
            base: format!("https://127.0.0.1:{port}"),
            cert,
            client,
            prefix: dir,
            child,
        })
    }

    /// The URL of `path` through nginx.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The block's access log so far (written when a request ends).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("factlog.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its workers, which SIGKILL would leave
        // running.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < WAIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
