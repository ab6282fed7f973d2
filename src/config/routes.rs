//! `[[route]]`s: where the cards of some sources or risk levels go (a Telegram chat or a
//! Slack channel) and who decides them. One list for every channel, first match wins:
//! the one home of the routing rule ([`first`]). A card no route matches goes to the
//! default chat of every configured channel (`telegram.chat_id`, `slack.channel`); a
//! catch-all route last makes one channel the default.

use super::settings::{self, Raw, Setting};
use serde::Deserialize;

/// A `[[route]]`: which cards (sources, risks) and where they go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Source globs (`web-*`); empty: any source.
    pub sources: Vec<glob::Pattern>,
    /// Risk levels (`low`, `medium`, `high`); empty: any.
    pub risks: Vec<String>,
    pub to: Dest,
}

/// Where a route sends its cards: one channel's chat, and who decides there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Telegram {
        chat_id: i64,
        /// A forum topic (`message_thread_id`).
        topic: Option<i32>,
        /// Who may decide this route's cards; `None`: `telegram.operators`.
        operators: Option<Vec<u64>>,
    },
    Slack {
        /// A Slack channel id (`C…`, `G…`).
        channel: String,
        /// Slack user ids (`U…`); `None`: `slack.operators`.
        operators: Option<Vec<String>>,
    },
}

impl Dest {
    /// The channel this destination belongs to (`telegram`, `slack`).
    pub fn channel(&self) -> &'static str {
        match self {
            Dest::Telegram { .. } => "telegram",
            Dest::Slack { .. } => "slack",
        }
    }
}

impl Route {
    pub fn matches(&self, source: &str, risk: &str) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|g| g.matches(source)))
            && (self.risks.is_empty() || self.risks.iter().any(|r| r == risk))
    }

    /// The sources and risks it matches, for `doctor`: `web-* , risk high`.
    pub fn describe(&self) -> String {
        let sources = if self.sources.is_empty() {
            "any source".to_string()
        } else {
            let globs: Vec<&str> = self.sources.iter().map(|g| g.as_str()).collect();
            globs.join(" ")
        };
        if self.risks.is_empty() {
            sources
        } else {
            format!("{sources}, risk {}", self.risks.join(" "))
        }
    }
}

/// How a card of `source` and `risk` is routed: the first matching route's destination,
/// or `None` when no route matches (every configured channel's default chat).
pub fn first<'a>(routes: &'a [Route], source: &str, risk: &str) -> Option<&'a Dest> {
    routes
        .iter()
        .find(|r| r.matches(source, risk))
        .map(|r| &r.to)
}

/// The operators a route lists: Telegram ids as numbers, Slack ids as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileOperators {
    Telegram(Vec<u64>),
    Slack(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    risk: Vec<String>,
    /// `telegram` or `slack`; unset: `slack` when `slack_channel` is set, else `telegram`.
    channel: Option<String>,
    chat_id: Option<i64>,
    topic: Option<i32>,
    slack_channel: Option<String>,
    operators: Option<FileOperators>,
}

pub(super) fn parse(s: &Setting, raw: Raw<'_>) -> Result<Vec<Route>, String> {
    let file: Vec<FileRoute> = settings::toml_value(s, raw)?;
    file.into_iter()
        .enumerate()
        .map(|(n, r)| route(n + 1, r))
        .collect()
}

fn route(n: usize, r: FileRoute) -> Result<Route, String> {
    let sources = r
        .sources
        .iter()
        .map(|g| glob::Pattern::new(g).map_err(|e| format!("route {n}: source glob {g:?}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    let risks = r
        .risk
        .iter()
        .map(|risk| {
            let level = risk.trim().to_ascii_lowercase();
            match level.as_str() {
                "low" | "medium" | "high" => Ok(level),
                _ => Err(format!(
                    "route {n}: risk {risk:?}: expected low, medium or high"
                )),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    let channel = match (r.channel.as_deref(), &r.slack_channel) {
        (Some(c), _) => c.trim().to_ascii_lowercase(),
        (None, Some(_)) => "slack".to_string(),
        (None, None) => "telegram".to_string(),
    };
    let empty = |what: &str| {
        format!("route {n}: operators = []: nobody could decide its cards; leave it out to use {what}.operators")
    };
    let to = match channel.as_str() {
        "telegram" => {
            if r.slack_channel.is_some() {
                return Err(format!(
                    "route {n}: slack_channel is for channel = \"slack\"; a Telegram route takes chat_id"
                ));
            }
            let Some(chat_id) = r.chat_id else {
                return Err(format!(
                    "route {n}: missing field `chat_id` (a Telegram route; a Slack route takes slack_channel)"
                ));
            };
            let operators = match r.operators {
                None => None,
                Some(FileOperators::Telegram(ids)) if ids.is_empty() => {
                    return Err(empty("telegram"))
                }
                Some(FileOperators::Telegram(ids)) => Some(ids),
                Some(FileOperators::Slack(_)) => {
                    return Err(format!(
                        "route {n}: operators: a Telegram route lists Telegram user ids (numbers)"
                    ))
                }
            };
            Dest::Telegram {
                chat_id,
                topic: r.topic,
                operators,
            }
        }
        "slack" => {
            if r.chat_id.is_some() || r.topic.is_some() {
                return Err(format!(
                    "route {n}: chat_id and topic are Telegram's; a Slack route takes slack_channel"
                ));
            }
            let Some(slack_channel) = r.slack_channel else {
                return Err(format!(
                    "route {n}: missing field `slack_channel` (a Slack channel id such as C0123ABCD)"
                ));
            };
            let slack_channel =
                super::slack::channel_id(&slack_channel).map_err(|e| format!("route {n}: {e}"))?;
            let operators = match r.operators {
                None => None,
                Some(FileOperators::Slack(ids)) if ids.is_empty() => return Err(empty("slack")),
                Some(FileOperators::Telegram(ids)) if ids.is_empty() => return Err(empty("slack")),
                Some(FileOperators::Slack(ids)) => Some(
                    ids.iter()
                        .map(|u| super::slack::user_id(u).map_err(|e| format!("route {n}: {e}")))
                        .collect::<Result<Vec<_>, String>>()?,
                ),
                Some(FileOperators::Telegram(_)) => {
                    return Err(format!(
                        "route {n}: operators: a Slack route lists Slack user ids (\"U012AB3CD\")"
                    ))
                }
            };
            Dest::Slack {
                channel: slack_channel,
                operators,
            }
        }
        other => {
            return Err(format!(
                "route {n}: channel = {other:?}: expected \"telegram\" or \"slack\""
            ))
        }
    };
    Ok(Route { sources, risks, to })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::settings::ROUTES;

    fn parse_text(text: &str) -> Result<Vec<Route>, String> {
        parse(&ROUTES, Raw::Text(text))
    }

    #[test]
    fn a_telegram_route_reads_as_before_and_a_slack_route_names_its_channel() {
        let routes = parse_text(
            r#"[{ sources = ["db-*"], risk = ["high"], chat_id = -100111, topic = 7, operators = [222] },
                { risk = ["high"], slack_channel = "C0456EFGH", operators = ["U045CD6EF"] },
                { sources = ["web-*"], channel = "slack", slack_channel = "C0123ABCD" }]"#,
        )
        .unwrap();
        assert_eq!(
            routes[0].to,
            Dest::Telegram {
                chat_id: -100111,
                topic: Some(7),
                operators: Some(vec![222])
            }
        );
        assert_eq!(
            routes[1].to,
            Dest::Slack {
                channel: "C0456EFGH".into(),
                operators: Some(vec!["U045CD6EF".into()])
            }
        );
        assert_eq!(routes[2].to.channel(), "slack");
        assert_eq!(first(&routes, "db-1", "high"), Some(&routes[0].to));
        assert_eq!(first(&routes, "web-1", "high"), Some(&routes[1].to));
        assert_eq!(first(&routes, "web-1", "low"), Some(&routes[2].to));
        assert_eq!(first(&routes, "other", "low"), None);
    }

    #[test]
    fn a_route_that_mixes_channels_or_names_a_channel_by_name_is_refused() {
        for (text, says) in [
            (
                r#"[{ chat_id = 1, slack_channel = "C0123ABCD" }]"#,
                "chat_id and topic are Telegram's",
            ),
            (
                r#"[{ channel = "telegram", chat_id = 1, slack_channel = "C0123ABCD" }]"#,
                "slack_channel is for",
            ),
            (
                r#"[{ channel = "slack", chat_id = 1 }]"#,
                "chat_id and topic are Telegram's",
            ),
            (
                r##"[{ slack_channel = "#ops" }]"##,
                "not a Slack channel id",
            ),
            (
                r#"[{ slack_channel = "C0123ABCD", operators = [1] }]"#,
                "Slack user ids",
            ),
            (
                r#"[{ chat_id = 1, operators = ["U012AB3CD"] }]"#,
                "Telegram user ids",
            ),
            (
                r#"[{ slack_channel = "C0123ABCD", operators = [] }]"#,
                "slack.operators",
            ),
            (
                r#"[{ channel = "teams", chat_id = 1 }]"#,
                "expected \"telegram\" or \"slack\"",
            ),
            (r#"[{ sources = ["web-*"] }]"#, "missing field `chat_id`"),
        ] {
            let e = parse_text(text).unwrap_err();
            assert!(e.contains("route 1") && e.contains(says), "{text}: {e}");
        }
    }
}
