//! systemd's readiness protocol, with a datagram socket standing in for systemd: factlog
//! says READY=1 once it is migrated and listening (never when it fails to start), and
//! RELOADING=1 / READY=1 around a SIGHUP, and STOPPING=1 when it stops.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;

use factlog_testkit::*;

/// The stand-in for systemd: a socket `NOTIFY_SOCKET` names.
struct Systemd {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl Systemd {
    fn new(dir: &std::path::Path) -> Self {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).expect("the socket is bound");
        socket.set_read_timeout(Some(WAIT)).expect("a timeout");
        Self { socket, path }
    }

    /// The next notification, as its lines.
    fn next(&self) -> Vec<String> {
        let mut buf = [0; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Nothing was sent (what was sent before this is already queued).
    fn nothing_sent(&self) -> bool {
        self.socket.set_nonblocking(true).expect("non-blocking");
        let mut buf = [0; 4096];
        matches!(self.socket.recv(&mut buf), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
    }
}

#[tokio::test]
async fn factlog_tells_systemd_it_is_ready_reloading_and_stopping() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let systemd = Systemd::new(dir.path());
    let mut command = factlog_command(&dir.path().join("facts.db"), "127.0.0.1:0", &[]);
    command.env("NOTIFY_SOCKET", &systemd.path);
    let server = Process::spawn(command);

    let ready = systemd.next();
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on {}", server.base())),
        "{ready:?}"
    );
    // Ready means ready: a request right after it is answered.
    let health = reqwest::get(format!("{}/healthz", server.base()))
        .await
        .expect("answered");
    assert_eq!(health.status(), 200);

    server.signal("HUP");
    let reloading = systemd.next();
    assert!(
        reloading.contains(&"RELOADING=1".to_owned()),
        "{reloading:?}"
    );
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    assert_eq!(systemd.next(), ["READY=1"]);

    server.signal("TERM");
    assert_eq!(systemd.next(), ["STOPPING=1"]);
    assert!(server.wait(WAIT));
}

#[tokio::test]
async fn a_server_that_cannot_start_never_says_it_is_ready() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let systemd = Systemd::new(dir.path());
    // --no-migrate on a database that does not exist: the start fails.
    let mut command = factlog_command(
        &dir.path().join("missing.db"),
        "127.0.0.1:0",
        &["--no-migrate"],
    );
    command
        .env("NOTIFY_SOCKET", &systemd.path)
        .stderr(Stdio::null());
    let status = command.status().expect("the binary runs");
    assert!(!status.success());
    assert!(systemd.nothing_sent());
}

/// The README shows the unit and the environment file the package installs, as they are.
#[test]
fn the_readme_shows_the_packaged_unit_and_environment_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect(path);
    let readme = read("README.md");
    let block_after = |marker: &str| -> String {
        let start = readme.find(marker).expect(marker) + marker.len();
        let rest = &readme[start..];
        rest[..rest.find("```").expect("the block ends")].to_owned()
    };
    assert_eq!(
        block_after("# /usr/lib/systemd/system/factlog.service\n"),
        read("packaging/debian/factlog.service")
    );
    let env = read("packaging/env");
    let shown = block_after("starts as:\n\n```sh\n");
    assert!(env.ends_with(&shown), "{env}\n---\n{shown}");
}
