//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.
//! Files the fuzzer found (`regress-*`) are left alone.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in annals_fuzz::seeds::all() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes)?;
        }
        println!("{}: written", dir.display());
    }
    Ok(())
}
