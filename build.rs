//! Build step: a gzip copy of each compressible asset (`assets/`: JS, CSS, SVG, JSON),
//! embedded in the binary beside the asset, so responses are compressed with no work at run
//! time. Writes `$OUT_DIR/gzipped_assets.rs`, which `src/assets.rs` includes.

use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=assets");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut files = Vec::new();
    walk(Path::new("assets"), &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for path in files {
        let rel = path.strip_prefix("assets").expect("under assets").to_string_lossy().replace('\\', "/");
        let compressible = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("js" | "css" | "svg" | "json" | "webmanifest" | "html" | "txt")
        );
        if !compressible {
            continue;
        }
        let data = std::fs::read(&path).expect("an asset is readable");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&data).expect("gzip into memory");
        let gz = gz.finish().expect("gzip into memory");
        if gz.len() >= data.len() {
            continue;
        }
        let name = format!("{}.gz", rel.replace('/', "__"));
        std::fs::write(out.join(&name), gz).expect("OUT_DIR is writable");
        table += &format!("    ({rel:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}\"))),\n");
    }
    table += "]\n";
    std::fs::write(out.join("gzipped_assets.rs"), table).expect("OUT_DIR is writable");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("assets/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}
