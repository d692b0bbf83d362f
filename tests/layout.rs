//! The structure rules of README's Layout section hold on the whole tree:
//! no import circle between the module files of any crate, and no function
//! past 80 lines outside tests (`scripts/layout.py` reads the sources).

use std::process::Command;

#[test]
fn no_import_circle_and_no_overlong_function() {
    let root = env!("CARGO_MANIFEST_DIR");
    let o = Command::new("python3")
        .arg(format!("{root}/scripts/layout.py"))
        .output()
        .expect("python3 runs (the tests need it on PATH)");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(said.contains("0 layout problem(s)"), "{said}");
}

/// The check finds what it looks for: a crate whose two files import each
/// other, and an 81-line function.
#[test]
fn the_check_reports_a_circle_and_a_long_function() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("demo/src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        tmp.path().join("demo/Cargo.toml"),
        "[package]\nname = \"demo\"\n",
    )
    .unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    let body = "    let _ = 1;\n".repeat(79);
    let b = format!("use crate::a::A;\npub struct B;\nfn long() {{\n{body}}}\n");
    std::fs::write(src.join("b.rs"), b).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let o = Command::new("python3")
        .arg(format!("{root}/scripts/layout.py"))
        .arg(tmp.path())
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("import circle in demo/src: a <-> b"),
        "{said}"
    );
    assert!(said.contains("fn long is 81 lines"), "{said}");
    assert!(said.contains("2 layout problem(s)"), "{said}");
}
