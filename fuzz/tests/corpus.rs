//! The checked-in corpus on stable Rust, without libFuzzer: every file goes through the same
//! check as its fuzz target, and the generated seeds must match the generator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn files(target: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_target() {
    for (target, check) in annals_fuzz::TARGETS {
        let files = files(target);
        assert!(!files.is_empty(), "no corpus for {target}");
        for path in files {
            let data = std::fs::read(&path).expect("corpus file");
            println!("{target}: {}", path.display());
            check(&data);
        }
    }
}

#[test]
fn generated_seeds_match_the_checked_in_corpus() {
    for (target, seeds) in annals_fuzz::seeds::all() {
        let names: BTreeSet<&str> = seeds.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), seeds.len(), "duplicate seed names in {target}");
        for (name, bytes) in &seeds {
            let path = corpus_dir(target).join(name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == *bytes,
                "{} differs from the generator: run `cargo run --example seeds`",
                path.display()
            );
        }
        for path in files(target) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                names.contains(name.as_str()) || name.starts_with("regress-"),
                "{}: neither a generated seed nor a regress- input",
                path.display()
            );
        }
    }
}
