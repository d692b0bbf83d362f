//! Finds the optional tools of the browser and TensorBoard tests: a test
//! whose tool is missing is compiled `#[ignore]`d, so it shows as ignored,
//! never as passed. `.ci/run` installs both and checks that they work.
//! Installed a tool after a build? `touch build.rs` to look again.

use std::process::Command;

fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_chromium)");
    println!("cargo::rustc-check-cfg=cfg(has_tensorboard)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=COGRPO_CHROMIUM");
    let chromium = std::env::var("COGRPO_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    if works(&chromium, &["--version"]) {
        println!("cargo::rustc-cfg=has_chromium");
    }
    if works("python3", &["-c", "import tensorboard"]) {
        println!("cargo::rustc-cfg=has_tensorboard");
    }
}
