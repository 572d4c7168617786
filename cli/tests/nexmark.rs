//! `weir nexmark`: generate a file, run q0 on it with a malformed line, and read the figures.

use std::path::Path;
use std::process::{Command, Output};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("the weir binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn nexmark_generates_a_file_runs_q0_on_it_and_prints_its_figures() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_nexmark_q0");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creatable");
    let events = dir.join("events.ndjson");
    let gen = weir(&[
        "nexmark",
        "gen",
        "--events",
        "500",
        "--out",
        &events.to_string_lossy(),
    ]);
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let mut lines = std::fs::read_to_string(&events).expect("written");
    assert_eq!(lines.lines().count(), 500);
    lines.push_str("not an event\n");
    std::fs::write(&events, lines).expect("writable");

    let out = dir.join("q0.ndjson");
    let run = weir(&[
        "nexmark",
        "--query",
        "0",
        "--input",
        &events.to_string_lossy(),
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("1 malformed lines"), "{stdout}");
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a last line")).expect("JSON");
    assert_eq!(last["query"], "q0");
    assert_eq!(last["events"], 500);
    for key in ["events_per_s", "peak_rss_bytes"] {
        assert!(last[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {last}");
    }
    // 500 events may take less than one 10 ms tick of CPU time: then the figure is null.
    let per_cpu = &last["events_per_cpu_s"];
    assert!(
        per_cpu.is_null() || per_cpu.as_f64().is_some_and(|v| v > 0.0),
        "{last}"
    );
    assert!(last["latency_p99_ms"].is_null(), "unpaced: {last}");
    let rows = std::fs::read_to_string(&out).expect("results written");
    assert_eq!(rows.lines().count(), 460, "46 bids in every 50 events");

    // Paced: 2 000 events at 100 000 per second, every bid's row measured.
    let paced = weir(&[
        "nexmark",
        "--query",
        "0",
        "--events",
        "2000",
        "--pace-rate",
        "100000",
    ]);
    assert!(paced.status.success(), "{}", text(&paced.stderr));
    let stdout = text(&paced.stdout);
    assert!(
        stdout.contains("latency from creation to result (1840 rows)"),
        "{stdout}"
    );
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a last line")).expect("JSON");
    for key in ["latency_p50_ms", "latency_p99_ms", "latency_max_ms"] {
        assert!(
            last[key].as_f64().is_some_and(|v| v >= 0.0),
            "{key}: {last}"
        );
    }
    let both = weir(&[
        "nexmark",
        "--query",
        "0",
        "--input",
        &events.to_string_lossy(),
        "--pace-rate",
        "10",
    ]);
    assert!(!both.status.success(), "a file is not paced");

    let unbuilt = weir(&["nexmark", "--query", "6", "--events", "10"]);
    assert!(!unbuilt.status.success());
    assert!(text(&unbuilt.stderr).contains("no Nexmark query 6"));
}
