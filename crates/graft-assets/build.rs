//! Whether the Lite0 weights are in this copy of the crate: a clone of the repository has them; a
//! package from the registry does not (crates.io's size limit), and `LITE0` is then `None`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lite0_bundled)");
    println!("cargo::rerun-if-changed=weights");
    if std::path::Path::new("weights/efficientnet-lite0-57934424.pth").is_file() {
        println!("cargo::rustc-cfg=lite0_bundled");
    }
}
