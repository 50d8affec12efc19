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
//! `FACTLOG_REQUIRE_BROWSER=1`, `FACTLOG_REQUIRE_POSTGRES=1` and `FACTLOG_REQUIRE_NGINX=1`
//! (set by `.ci/run`) set none of them: the tests run, and fail where the programs are
//! missing.

use std::path::Path;

fn main() {
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
