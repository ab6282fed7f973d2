//! `authority`, `completions`, `man`: text about opsgate itself.

use super::print_out;
use crate::error;
use anyhow::{Context, Result};

/// The contract to paste into an ops bot's prompt.
pub const AUTHORITY: &str = include_str!("../../AUTHORITY.md");

pub fn authority() -> Result<u8> {
    print_out(AUTHORITY)?;
    Ok(error::OK)
}

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::command(), "opsgate", &mut out);
    print_out(&String::from_utf8_lossy(&out))?;
    Ok(error::OK)
}

pub fn man() -> Result<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::cli::command())
        .render(&mut out)
        .context("rendering the man page")?;
    print_out(&String::from_utf8_lossy(&out))?;
    Ok(error::OK)
}
