//! Runs fuzz inputs through their target's check on stable Rust, without libFuzzer:
//! `cargo run --example replay -- <target> <file>...` (set `ANNALS_FUZZ_TRACE=1` for
//! `store_ops` to print every operation and the files after it).

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let Some((_, check)) = annals_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
    else {
        let names: Vec<&str> = annals_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: replay <{}> <file>...", names.join("|"));
        std::process::exit(2);
    };
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("{target}: {path}");
        check(&data);
    }
}
