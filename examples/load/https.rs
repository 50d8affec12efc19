//! `https`: the `fanout` and `idle` scenarios over HTTPS with HTTP/2 (streams sharing
//! connections, as a browser's tabs do; publishers on HTTP/1.1 over TLS) beside the same
//! over plain HTTP/1.1, alternating, in the same run: what TLS and HTTP/2 cost per
//! delivery and per idle stream.

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
        let variants = [
            Spec::Factlog {
                name: "HTTP/1.1".to_owned(),
                flags: Vec::new(),
            },
            Spec::Factlog {
                name: "HTTPS, HTTP/2".to_owned(),
                flags: vec![
                    "--tls-cert".to_owned(),
                    cert.cert.display().to_string(),
                    "--tls-key".to_owned(),
                    cert.key.display().to_string(),
                ],
            },
        ];
        let mut fanouts = Results::new();
        let mut idles = Results::new();
        for round in 1..=args.runs {
            // Every other round in reverse, so that running first or second falls on each
            // alike.
            let order: Vec<usize> = if round % 2 == 0 {
                vec![1, 0]
            } else {
                vec![0, 1]
            };
            for i in order {
                let spec = &variants[i];
                let server = Running::start(spec, &self.scratch, None)?;
                if i == 1 {
                    secure::register(server.addr, &cert.pem)?;
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
                "publishers": args.publishers, "streams_per_h2_connection": 100,
            }),
            &fanouts,
        );
        report(
            "https-idle",
            serde_json::json!({
                "streams": args.streams, "burst": args.burst, "burst_size": args.burst_size,
                "streams_per_h2_connection": 100,
            }),
            &idles,
        );
        Ok(())
    }
}
