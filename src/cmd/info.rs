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
    // The help's closing text becomes ENVIRONMENT and EXIT STATUS sections on every page,
    // not clap_mangen's `.SH EXTRA`.
    let mut cmd = crate::cli::command()
        .after_help(None::<&str>)
        .disable_help_subcommand(true);
    cmd.build();
    let mut subs = Vec::new();
    collect(&cmd, &mut subs);
    let render = |man: clap_mangen::Man, see_also: &[String]| -> Result<(String, String)> {
        let name = man.get_filename();
        let mut out = Vec::new();
        man.render(&mut out)
            .with_context(|| format!("rendering the man page {name}"))?;
        let mut roff = String::from_utf8_lossy(&out).into_owned();
        let closing = closing_sections();
        match roff.find(".SH VERSION") {
            Some(at) => roff.insert_str(at, &closing),
            None => roff.push_str(&closing),
        }
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

/// The ENVIRONMENT and EXIT STATUS sections, from the settings table and the exit-code
/// table (the same ones `--help` and the README list).
fn closing_sections() -> String {
    let mut out = String::from(".SH ENVIRONMENT\n");
    for s in crate::config::SETTINGS {
        let Some(env) = s.env else { continue };
        let default = if s.default.is_empty() {
            String::new()
        } else {
            format!(" (default {})", s.default)
        };
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff_escape(env),
            roff_escape(&format!("{}{default}", s.help))
        ));
    }
    out.push_str(".SH \"EXIT STATUS\"\n.TP\n\\fB0\\fR\nsuccess\n");
    for (_, code, meaning) in crate::error::TABLE {
        out.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff_escape(meaning)));
    }
    out.push_str(&format!(".PP\n{}\n", roff_escape(crate::error::RUN_EXIT)));
    out
}

/// Text as a roff line: backslashes and hyphens escaped, a leading control character
/// guarded.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
