//! The documents point only at what exists: every relative link of the Markdown files (README,
//! BENCHMARKS, `docs/`, the crates' and Docker's READMEs) and every repository path they quote in
//! backticks (`master/src/…`, `examples/tests/…`) must name a file or folder of the checkout.
//! Files move (issue 28 found three stale paths in the README); this test fails on the next one.

use std::path::{Path, PathBuf};

/// The top-level folders whose paths the documents quote.
const ROOTS: [&str; 8] = [
    "master/",
    "node/",
    "client/",
    "shared/",
    "examples/",
    "bench/",
    "docker/",
    "docs/",
];

/// The checkout's root (this crate is `examples/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The Markdown files checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    let mut folders = vec![root.join("docs"), root.join("docker")];
    for krate in ["master", "node", "client", "shared", "examples", "bench"] {
        files.push(root.join(krate).join("README.md"));
    }
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.retain(|f| f.exists());
    files
}

/// The targets of the relative links `[text](target)` of `text` (no scheme, no pure anchor).
fn links(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find([')', ' ']).unwrap_or(rest.len());
        let target = rest[..end].split('#').next().unwrap_or("");
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target);
        }
    }
    out
}

/// The repository paths quoted in backticks in `text`: `` `master/src/lib.rs` ``.
fn quoted_paths(text: &str) -> Vec<&str> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| ROOTS.iter().any(|r| quoted.starts_with(r)))
        .filter(|quoted| quoted.chars().all(path_char))
        .map(|quoted| quoted.trim_end_matches('.'))
        .collect()
}

#[test]
fn every_relative_link_and_quoted_path_of_the_documents_exists() {
    let root = root();
    let documents = documents(&root);
    assert!(
        documents.len() >= 3,
        "the documents are found: {documents:?}"
    );
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        let folder = document.parent().unwrap();
        for link in links(&text) {
            checked += 1;
            if !folder.join(link).exists() {
                missing.push(format!("{}: link {link}", document.display()));
            }
        }
        for path in quoted_paths(&text) {
            checked += 1;
            if !root.join(path).exists() {
                missing.push(format!("{}: path {path}", document.display()));
            }
        }
    }
    assert!(checked > 50, "links and paths were found ({checked})");
    assert!(
        missing.is_empty(),
        "{} missing:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_scanners_find_links_and_paths() {
    let text = "see [the docs](docs/a.md#x), [web](https://x.y), `master/src/lib.rs`, \
                `cargo test`, `node/src/*.rs`, and `examples/tests/`.";
    assert_eq!(links(text), ["docs/a.md"]);
    assert_eq!(quoted_paths(text), ["master/src/lib.rs", "examples/tests/"]);
}
