//! Hostile input, in the normal suite: every input kept in `fuzz/regressions/<target>/` (hand-made
//! hostile cases, the documented examples, and every crash the fuzzers found) goes through the
//! check of its fuzz target (`linkbus_tests::hostile`), which must return without a panic.

use linkbus_tests::hostile::TARGETS;
use linkbus_tests::repo_root;

#[test]
fn every_kept_hostile_input_is_handled_without_a_panic() {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let dir = repo_root().join("fuzz/regressions").join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "{target}: no regression input in {}", dir.display());
        replayed += inputs;
    }
    println!("{replayed} hostile inputs handled across {} targets", TARGETS.len());
}
