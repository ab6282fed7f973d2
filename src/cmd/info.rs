//! `authority`, `completions`, `man`: text about opsgate itself.

use super::print_out;
use crate::cli::ManArgs;
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

/// The main page on stdout, or with `--dir` one page per subcommand beside it
/// (`opsgate.1`, `opsgate-SUBCOMMAND.1`), each naming the others under SEE ALSO.
pub fn man(args: &ManArgs) -> Result<u8> {
    let pages = man_pages()?;
    let Some(dir) = &args.dir else {
        let main = pages
            .first()
            .map(|(_, roff)| roff.as_str())
            .unwrap_or_default();
        print_out(main)?;
        return Ok(error::OK);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = String::new();
    for (name, roff) in &pages {
        let path = dir.join(name);
        std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    print_out(&written)?;
    Ok(error::OK)
}

/// Every page as (file name, roff): the main page first, then one per visible
/// subcommand. No `help` subcommand page: `opsgate help X` is `opsgate X --help`.
fn man_pages() -> Result<Vec<(String, String)>> {
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut subs = Vec::new();
    collect(&cmd, &mut subs);
    let render = |man: clap_mangen::Man, see_also: &[String]| -> Result<(String, String)> {
        let name = man.get_filename();
        let mut out = Vec::new();
        man.render(&mut out)
            .with_context(|| format!("rendering the man page {name}"))?;
        let mut roff = String::from_utf8_lossy(&out).into_owned();
        if !see_also.is_empty() {
            let refs: Vec<String> = see_also
                .iter()
                .map(|page| format!("{}(1)", page.replace('-', "\\-")))
                .collect();
            roff.push_str(&format!(".SH \"SEE ALSO\"\n{}\n", refs.join(", ")));
        }
        Ok((name, roff))
    };
    let names: Vec<String> = subs
        .iter()
        .map(|c| c.get_display_name().unwrap_or(c.get_name()).to_string())
        .collect();
    let mut pages = vec![render(clap_mangen::Man::new(cmd.clone()), &names)?];
    for sub in subs {
        pages.push(render(
            clap_mangen::Man::new(sub),
            &["opsgate".to_string()],
        )?);
    }
    Ok(pages)
}

/// The visible subcommands under `cmd`, depth first.
fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(sub.clone());
        collect(sub, out);
    }
}
