//! keel's Rust SDK, carried in the binary so `keel new --lang rust` needs
//! no source checkout: the `keel-sdk` crate and its `agent` world crate,
//! as they are in keel's `sdk` folder, and the WIT they bind (`../wit` and
//! `../../wit` from their manifests).

/// The folder, inside a new project, that holds the SDK's crates.
pub(super) const DIR: &str = "keel-sdk";

/// `(path under DIR, contents)`.
pub(super) const FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../sdk/README.md")),
    ("Cargo.toml", include_str!("../../../sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/core.rs", include_str!("../../../sdk/src/core.rs")),
    ("src/http.rs", include_str!("../../../sdk/src/http.rs")),
    ("src/net.rs", include_str!("../../../sdk/src/net.rs")),
    (
        "agent/Cargo.toml",
        include_str!("../../../sdk/agent/Cargo.toml"),
    ),
    (
        "agent/src/lib.rs",
        include_str!("../../../sdk/agent/src/lib.rs"),
    ),
];

/// Where the crates find the WIT: `wit/` beside `DIR`, in the project.
pub(super) const WIT: &str = "wit/host.wit";

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every source file of the crates a Rust agent builds is carried, so
    /// a module added to the SDK cannot be left out of new projects.
    #[test]
    fn every_file_of_the_sdk_and_agent_crates_is_carried() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        for folder in ["src", "agent/src"] {
            for entry in std::fs::read_dir(sdk.join(folder)).unwrap() {
                let name = entry.unwrap().file_name();
                let rel = format!("{folder}/{}", name.to_string_lossy());
                assert!(
                    super::FILES.iter().any(|(path, _)| *path == rel),
                    "sdk/{rel} is not in scaffold::sdk::FILES"
                );
            }
        }
    }
}
