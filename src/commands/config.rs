//! `cogrpo config`: the experiment file's reference, read off the code.

use clap::Args;

/// Print the config reference (every key, its default and meaning) as
/// Markdown (docs/config.md), or the JSON schema of an experiment file.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  cogrpo config --markdown > docs/config.md\n  \
    cogrpo config --schema > cogrpo-config.schema.json   # for an editor's TOML checks"
)]
pub struct ConfigArgs {
    /// The JSON schema instead of the Markdown reference.
    #[arg(long, conflicts_with = "markdown")]
    schema: bool,
    /// The Markdown reference (the default).
    #[arg(long)]
    markdown: bool,
}

impl ConfigArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if self.schema {
            let schema = cogrpo_config::reference::schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
        } else {
            print!("{}", cogrpo_config::reference::markdown());
        }
        Ok(())
    }
}
