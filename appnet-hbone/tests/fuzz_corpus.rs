//! Replays the `hbone_wire` fuzz target's seed corpus
//! (`fuzz/corpus/hbone_wire/`) through the entry point the target calls, so
//! the target never rots; and checks that the seeds really parse (a corpus
//! of rejected inputs would only exercise the error paths).

use std::path::PathBuf;

use appnet_hbone::{Authority, Baggage, ProxyHeader, TraceParent, parse_forwarded_for};

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/hbone_wire");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, std::fs::read(&path).unwrap()));
    }
    out
}

#[test]
fn hbone_wire_corpus_replays() {
    let seeds = seeds();
    assert!(seeds.len() >= 5, "seed corpus is too small");
    for (_, data) in &seeds {
        appnet_hbone::fuzzing::wire_parsers(data);
    }
}

#[test]
fn hbone_wire_seeds_are_valid_inputs() {
    for (name, data) in seeds() {
        let (which, rest) = data.split_first().expect("non-empty seed");
        let text = String::from_utf8_lossy(rest);
        let ok = match which % 5 {
            0 => text.parse::<Authority>().is_ok(),
            1 => text.parse::<Baggage>().is_ok(),
            2 => text.parse::<TraceParent>().is_ok(),
            3 => parse_forwarded_for(&text).is_ok(),
            _ => matches!(ProxyHeader::parse(rest), Ok((Some(_), _))),
        };
        assert!(ok, "seed {name} does not parse");
    }
}
