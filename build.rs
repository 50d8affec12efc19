//! Tells the test suite which outside programs this machine has, so that a test that
//! cannot run here is reported as `ignored`, with the reason, rather than passing without
//! running. Sets:
//!
//! - `no_browser`: no Chromium or no chromedriver on `PATH`;
//! - `no_postgres`: no PostgreSQL to test against (neither Debian's server programs for a
//!   throwaway cluster nor `FACTLOG_TEST_POSTGRES_URL`);
//! - `no_pg_cluster`: no throwaway cluster of our own (the tests that restart the server
//!   or give it TLS need one; a server of `FACTLOG_TEST_POSTGRES_URL` is not ours to
//!   reconfigure);
//! - `no_nginx`: no nginx, on `PATH` or at Debian's `/usr/sbin/nginx` (the tests of the
//!   README's nginx recipes run it).
//!
//! It also gives the binary its git commit, for the `factlog_build_info` metric, as the
//! variable `FACTLOG_GIT_COMMIT` (see [`git_commit`]).
//!
//! `FACTLOG_REQUIRE_BROWSER=1`, `FACTLOG_REQUIRE_POSTGRES=1` and `FACTLOG_REQUIRE_NGINX=1`
//! (set by `.ci/run`) set none of them: the tests run, and fail where the programs are
//! missing.

use std::path::Path;
use std::process::Command;

fn main() {
    git_commit();
    for cfg in ["no_browser", "no_postgres", "no_pg_cluster", "no_nginx"] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "PATH",
        "FACTLOG_REQUIRE_BROWSER",
        "FACTLOG_REQUIRE_POSTGRES",
        "FACTLOG_REQUIRE_NGINX",
        "FACTLOG_TEST_POSTGRES_URL",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // Installing a package adds its programs to these folders, which changes their times:
    // the next build looks again. (A folder that does not exist would make cargo rerun this
    // script on every build, so only existing ones are watched.)
    for dir in [
        "/usr/bin",
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/lib/postgresql",
    ] {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }

    let required = |var: &str| std::env::var(var).is_ok_and(|v| v == "1");
    let browser =
        on_path(&["chromium", "chromium-browser", "google-chrome"]) && on_path(&["chromedriver"]);
    if !browser && !required("FACTLOG_REQUIRE_BROWSER") {
        println!("cargo::rustc-cfg=no_browser");
    }
    // Debian installs nginx in /usr/sbin, which is not on a user's PATH.
    let nginx = on_path(&["nginx"]) || Path::new("/usr/sbin/nginx").is_file();
    if !nginx && !required("FACTLOG_REQUIRE_NGINX") {
        println!("cargo::rustc-cfg=no_nginx");
    }
    let cluster =
        postgres_server_programs() && std::env::var_os("FACTLOG_TEST_POSTGRES_URL").is_none();
    let postgres = cluster || std::env::var_os("FACTLOG_TEST_POSTGRES_URL").is_some();
    if !required("FACTLOG_REQUIRE_POSTGRES") {
        if !postgres {
            println!("cargo::rustc-cfg=no_postgres");
        }
        if !cluster {
            println!("cargo::rustc-cfg=no_pg_cluster");
        }
    }
}

/// Whether one of `names` is a file in a folder of `PATH`.
fn on_path(names: &[&str]) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| names.iter().any(|name| dir.join(name).is_file()))
}

/// Whether Debian's PostgreSQL server programs are installed (what the test harness starts
/// throwaway clusters with).
fn postgres_server_programs() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .filter_map(Result::ok)
            .any(|version| version.path().join("bin/initdb").is_file())
    })
}

/// Sets `FACTLOG_GIT_COMMIT` for the crate: the variable's own value when the build's
/// environment sets it (a build from a source archive can say where it came from), else
/// the checkout's `HEAD` as `git rev-parse` gives it. Without git or a checkout, nothing:
/// the metric then says `unknown`, and the build goes on.
fn git_commit() {
    println!("cargo::rerun-if-env-changed=FACTLOG_GIT_COMMIT");
    if let Ok(commit) = std::env::var("FACTLOG_GIT_COMMIT") {
        println!("cargo::rustc-env=FACTLOG_GIT_COMMIT={commit}");
        return;
    }
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let text = text.trim();
        (output.status.success() && !text.is_empty()).then(|| text.to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    // A commit or a checkout changes HEAD, the branch it names, or the packed refs: the
    // next build asks again. Only files that exist are watched (see `main`).
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = [
        Some("HEAD".to_owned()),
        branch,
        Some("packed-refs".to_owned()),
    ];
    for name in watched.into_iter().flatten() {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo::rerun-if-changed={path}");
            }
        }
    }
    println!("cargo::rustc-env=FACTLOG_GIT_COMMIT={commit}");
}
