//! `https`: the `fanout` and `idle` scenarios over HTTPS with HTTP/2 beside the same over
//! plain HTTP/1.1, in turn, in the same run: what TLS and HTTP/2 cost per delivery and per
//! idle stream. Over HTTPS three ways: HTTP/2 with 100 streams to a connection (a browser's
//! tabs share one), HTTP/2 with one, and HTTP/1.1 with one (as most programs' clients,
//! curl, Node's and Python's, connect). Publishers speak HTTP/1.1 over TLS.

use factlog_testkit::tls::TestCert;

use crate::crowd::Spread;
use crate::report;
use crate::scenarios::{Bench, Results, record};
use crate::secure;
use crate::target::{Running, Spec};

impl Bench<'_> {
    /// The `https` scenario.
    pub(crate) async fn https(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        // Outside the scratch directory, which is cleaned between runs.
        let dir = tempfile::TempDir::new()?;
        let cert = TestCert::write(dir.path(), "factlog load generator");
        let tls = |name: &str| Spec::Factlog {
            name: name.to_owned(),
            flags: vec![
                "--tls-cert".to_owned(),
                cert.cert.display().to_string(),
                "--tls-key".to_owned(),
                cert.key.display().to_string(),
            ],
        };
        // Each with the streams it puts on one HTTP/2 connection (none: plain HTTP/1.1; 0:
        // HTTP/1.1 over TLS).
        let variants = [
            (
                Spec::Factlog {
                    name: "HTTP/1.1".to_owned(),
                    flags: Vec::new(),
                },
                None,
            ),
            (tls("HTTPS, HTTP/2, 100 streams a connection"), Some(100)),
            (tls("HTTPS, HTTP/2, 1 stream a connection"), Some(1)),
            (tls("HTTPS, HTTP/1.1"), Some(0)),
        ];
        let mut fanouts = Results::new();
        let mut idles = Results::new();
        for round in 1..=args.runs {
            // Every other round in reverse, so that running first or last falls on each
            // alike.
            let mut order: Vec<usize> = (0..variants.len()).collect();
            if round % 2 == 0 {
                order.reverse();
            }
            for i in order {
                let (spec, streams_per_connection) = &variants[i];
                let server = Running::start(spec, &self.scratch, None)?;
                if let Some(streams) = streams_per_connection {
                    secure::register(server.addr, &cert.pem, *streams)?;
                }
                let fanout = self
                    .fanout(std::slice::from_ref(&server), None, Spread::default())
                    .await;
                let idle = self.idle(&server).await;
                secure::unregister(server.addr);
                server.stop();
                self.clean_scratch();
                record(
                    &mut fanouts,
                    i,
                    &spec.name(),
                    round,
                    "https fanout",
                    fanout?,
                );
                record(&mut idles, i, &spec.name(), round, "https idle", idle?);
            }
        }
        report(
            "https-fanout",
            serde_json::json!({
                "subscribers": args.subscribers, "events": args.events, "size": args.size,
                "publishers": args.publishers,
            }),
            &fanouts,
        );
        report(
            "https-idle",
            serde_json::json!({
                "streams": args.streams, "burst": args.burst, "burst_size": args.burst_size,
            }),
            &idles,
        );
        Ok(())
    }
}
