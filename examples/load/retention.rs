//! `retention`: what deleting old facts costs appends, and whether a bound bounds the file.
//!
//! - Appends (the `append` scenario, `--sync full`) with `--retain-facts` of a tenth of
//!   `--facts`, and with `--retain-age 1s`, so that for most of the run the writer deletes
//!   as fast as it appends, beside the same without a bound, alternating, in the same run.
//! - Size: `--retention-facts` facts (1,000,000) appended with `--retain-facts 10000`; the
//!   database file's size, and its write-ahead log's, after the first 20,000 and at the
//!   end.

use std::path::Path;

use crate::crowd::Spread;
use crate::report;
use crate::scenarios::{Bench, Results, record};
use crate::target::{Running, Spec};

/// The bound of the size run.
const KEEP: u64 = 10_000;
/// The size run's first measurement, after this many facts.
const EARLY: u64 = 20_000;

impl Bench<'_> {
    /// The `retention` scenario.
    pub(crate) async fn retention(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        let factlog = |name: &str, bound: &[&str]| Spec::Factlog {
            name: name.to_owned(),
            flags: ["--sync", "full"]
                .iter()
                .chain(bound)
                .map(|flag| (*flag).to_owned())
                .collect(),
        };
        let keep = (args.facts / 10).max(1).to_string();
        let variants = [
            factlog("no bound", &[]),
            factlog(&format!("retain {keep}"), &["--retain-facts", &keep]),
            factlog("retain 1s", &["--retain-age", "1s"]),
        ];
        let mut appends = Results::new();
        for round in 1..=args.runs {
            // Every other round in reverse, so that whatever running first or last does to
            // a run (the machine's state after the previous server) falls on each alike.
            let mut order: Vec<usize> = (0..variants.len()).collect();
            if round % 2 == 0 {
                order.reverse();
            }
            for i in order {
                let spec = &variants[i];
                let server = Running::start(spec, &self.scratch, None)?;
                let metrics = self.append(&server, Spread::default(), args.facts).await;
                server.stop();
                self.clean_scratch();
                record(
                    &mut appends,
                    i,
                    &spec.name(),
                    round,
                    "retention append",
                    metrics?,
                );
            }
        }
        report(
            "retention-append",
            serde_json::json!({
                "connections": args.connections, "facts": args.facts, "size": args.size,
                "retain_facts": keep, "retain_age": "1s",
            }),
            &appends,
        );

        let spec = factlog(
            &format!("retain {KEEP}"),
            &["--retain-facts", &KEEP.to_string()],
        );
        // Named like the scenarios' fresh databases, so that cleaning the scratch
        // directory removes it.
        let db = self.scratch.join("fresh-retention.db");
        let server = Running::start(&spec, &self.scratch, Some(&db))?;
        let early = self.append(&server, Spread::default(), EARLY).await;
        let early_sizes = sizes_kib(&db);
        let rest = args.retention_facts.saturating_sub(EARLY);
        let late = self.append(&server, Spread::default(), rest).await;
        let end_sizes = sizes_kib(&db);
        server.stop();
        self.clean_scratch();
        let (early, late) = (early?, late?);
        let rate = |metrics: &crate::Metrics| {
            metrics
                .iter()
                .find(|(key, _)| *key == "facts_per_s")
                .map_or(f64::NAN, |(_, v)| *v)
        };
        let mut sizes = Results::new();
        record(
            &mut sizes,
            0,
            &spec.name(),
            1,
            "retention size",
            vec![
                ("db_kib_after_20000", early_sizes.0),
                ("wal_kib_after_20000", early_sizes.1),
                ("db_kib_at_end", end_sizes.0),
                ("wal_kib_at_end", end_sizes.1),
                ("end_over_early", end_sizes.0 / early_sizes.0),
                ("facts_per_s_first_20000", rate(&early)),
                ("facts_per_s_rest", rate(&late)),
            ],
        );
        report(
            "retention-size",
            serde_json::json!({
                "facts": args.retention_facts, "retain_facts": KEEP, "size": args.size,
                "connections": args.connections,
            }),
            &sizes,
        );
        Ok(())
    }
}

/// The sizes of the SQLite file at `db` and of its write-ahead log, in KiB (0 when one is
/// missing).
fn sizes_kib(db: &Path) -> (f64, f64) {
    let kib = |path: &Path| std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1024.0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (kib(db), kib(Path::new(&wal)))
}
