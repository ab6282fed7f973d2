//! A vote is a verified identity and the risk is the policy's, through the real binary and
//! the fake Bot API: `--as` is only a label, `SUDO_UID` typed into a root shell is root's
//! vote, a lower-labelled spelling of an action cannot supersede a riskier one with fewer
//! votes than that one needs, and `[policy] risk` raises what the model labelled low.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::Fake;
use common::*;
use serde_json::{json, Value};

const ALICE: u64 = 1001;
const BOB: u64 = 2002;

struct Tg {
    env: Env,
    fake: Fake,
    config: std::path::PathBuf,
}

impl Tg {
    fn new(config: &str) -> Tg {
        let env = Env::new();
        let path = env.dir.path().join("opsgate.toml");
        std::fs::write(&path, config).unwrap();
        Tg {
            env,
            fake: Fake::start(),
            config: path,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.env
            .cmd(args)
            .telegram(&self.fake, &format!("{ALICE},{BOB}"))
            .env("OPSGATE_CONFIG", self.config.to_str().unwrap())
    }

    fn ingest(&self, commands: &[(&str, &str)]) {
        let items: Vec<Value> = commands
            .iter()
            .enumerate()
            .map(|(i, (command, risk))| {
                json!({"id": format!("x{i}"), "command": command, "reason": "r", "risk": risk})
            })
            .collect();
        let input = json!({"summary": "s", "approval_needed": items}).to_string();
        self.run(&["ingest", "--source", "h"]).stdin(input).ok();
        self.run(&["notify"]).ok();
    }

    fn poll(&self) {
        self.run(&["poll"]).ok();
    }

    /// The one message whose text contains `needle`.
    fn card_with(&self, needle: &str) -> i64 {
        let found: Vec<i64> = self
            .fake
            .messages()
            .into_iter()
            .filter(|(_, m)| m.text.contains(needle))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found.len(), 1, "cards containing {needle:?}: {found:?}");
        found[0]
    }

    fn text(&self, card: i64) -> String {
        self.fake.message(card).text
    }
}

/// The account this test runs as, as opsgate names it.
fn me() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .unwrap()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{uid}"))
}

const QUORUM: &str = "[policy]\nquorum = { high = 2 }\n";

#[test]
fn two_as_labels_of_one_account_count_once_and_the_card_never_names_a_label_as_a_voter() {
    let tg = Tg::new(QUORUM);
    tg.ingest(&[("systemctl restart nginx", "high")]);
    tg.run(&["approve", "1", "--as", "@u111"]).ok();
    let second = tg.run(&["approve", "1", "--as", "@u222"]).output();
    assert!(
        stdout(&second).contains("(1 of 2)") || stderr(&second).contains("(1 of 2)"),
        "{}{}",
        stdout(&second),
        stderr(&second)
    );
    assert_eq!(tg.env.state_of(1), "pending", "one account is one vote");
    let approvals = tg.env.audit("approval");
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        approvals[0].1,
        format!("local:{}", me()),
        "the verified account"
    );
    tg.run(&["notify"]).ok();
    let card = tg.card_with("restart nginx");
    let text = tg.text(card);
    assert!(
        text.contains(&format!("approvals 1/2: {} (shell, as \"@u111\")", me())),
        "the verified name first, the label after it: {text}"
    );
    assert!(!text.contains("approvals 1/2: @u111"), "{text}");
    assert!(
        !text.contains("@u222"),
        "a label that counted nothing: {text}"
    );

    // A Telegram operator is the second person; the card names both as verified.
    tg.fake.tap(card, BOB, "bob", "a:1");
    tg.poll();
    assert_eq!(tg.env.state_of(1), "approved");
    let text = tg.text(card);
    assert!(text.contains("approved by @bob"), "{text}");
    let actors: Vec<String> = tg
        .env
        .audit("approve")
        .into_iter()
        .map(|(_, actor, _)| actor)
        .collect();
    assert_eq!(actors, [format!("telegram:{BOB} @bob")]);
}

#[test]
fn sudo_uid_typed_into_a_root_shell_counts_as_root_not_as_another_voter() {
    let tg = Tg::new(QUORUM);
    tg.ingest(&[("systemctl restart nginx", "high")]);
    // The variables sudo would set, set by hand (this test's parent is no sudo).
    for (uid, user) in [("1", "daemon"), ("2", "bin"), ("65534", "nobody")] {
        tg.run(&["approve", "1"])
            .env("SUDO_UID", uid)
            .env("SUDO_USER", user)
            .output();
    }
    assert_eq!(
        tg.env.state_of(1),
        "pending",
        "three SUDO_UIDs from one shell are one vote"
    );
    let approvals = tg.env.audit("approval");
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0].1, format!("local:{}", me()));
    assert_eq!(approvals[0].2, Some(format!("{} (shell)", me())));
}

#[test]
fn a_low_labelled_spelling_cannot_approve_with_one_vote_nor_supersede_the_high_variant_waiting_for_a_second(
) {
    let tg = Tg::new(QUORUM);
    tg.ingest(&[
        ("docker stop web", "high"),
        ("docker container stop web", "low"),
    ]);
    let card = tg.card_with("docker container stop web");
    tg.fake.tap(card, ALICE, "alice", "a:1");
    tg.poll();
    assert_eq!(tg.env.state_of(1), "pending", "one vote of two");
    let text = tg.text(card);
    assert!(
        text.contains("approvals 0/2"),
        "the low spelling shows the quorum of the variant it would supersede: {text}"
    );
    // The same person approves the other spelling: still one person.
    tg.fake.tap(card, ALICE, "alice", "a:2");
    tg.poll();
    assert_eq!(tg.env.state_of(2), "pending", "one vote cannot approve it");
    assert_eq!(tg.env.state_of(1), "pending", "nor supersede the high one");
    // A second person's vote on the low spelling approves it, and only then is the
    // high one superseded.
    tg.fake.tap(card, BOB, "bob", "a:2");
    tg.poll();
    assert_eq!(tg.env.state_of(2), "approved");
    assert_eq!(tg.env.state_of(1), "cancelled");
    let text = tg.text(card);
    assert!(text.contains("approvals 2/2: @alice, @bob"), "{text}");
    let supersede = tg.env.audit("supersede");
    assert_eq!(supersede.len(), 1);
    assert_eq!(supersede[0].2.as_deref(), Some("superseded by #2"));
}

#[test]
fn a_policy_risk_rule_raises_a_model_labelled_low_command_to_high_and_two_votes() {
    let tg = Tg::new(
        "[policy]\nquorum = { high = 2 }\nrisk = [\n  { verbs = [\"rm\", \"prune\"], level = \"high\" },\n  { pattern = 'truncate', level = \"high\" },\n]\n",
    );
    tg.ingest(&[
        ("docker rm -f web", "low"),
        ("truncate -s 0 /var/log/app.log", "low"),
        ("docker restart cache", "low"),
    ]);
    let list = tg.env.list_json(&[]);
    let risks: Vec<&str> = list.iter().map(|p| p["risk"].as_str().unwrap()).collect();
    assert_eq!(risks, ["high", "high", "low"], "{list:?}");
    let rm = tg.card_with("docker rm -f web");
    let text = tg.text(rm);
    assert!(
        text.contains("risk high"),
        "the card shows the effective risk: {text}"
    );
    tg.fake.tap(rm, ALICE, "alice", "a:1");
    tg.poll();
    assert_eq!(tg.env.state_of(1), "pending", "a high command needs two");
    tg.fake.tap(rm, BOB, "bob", "a:1");
    tg.poll();
    assert_eq!(tg.env.state_of(1), "approved");
    let truncate = tg.card_with("truncate -s 0");
    tg.fake.tap(truncate, ALICE, "alice", "a:2");
    tg.poll();
    assert_eq!(
        tg.env.state_of(2),
        "pending",
        "a pattern rule raises it too"
    );
    // No rule matches: the model's label stands.
    let cache = tg.card_with("docker restart cache");
    tg.fake.tap(cache, ALICE, "alice", "a:3");
    tg.poll();
    assert_eq!(tg.env.state_of(3), "approved");

    // A rule that would match everything, or names an unknown level, is a config error.
    for bad in [
        "[policy]\nrisk = [{ level = \"high\" }]\n",
        "[policy]\nrisk = [{ verbs = [\"rm\"], level = \"critical\" }]\n",
        "[policy]\nrisk = [{ pattern = '(', level = \"high\" }]\n",
    ] {
        std::fs::write(&tg.config, bad).unwrap();
        let out = tg
            .run(&["ingest", "--source", "h"])
            .stdin(json!({"approval_needed": []}).to_string())
            .output();
        assert_eq!(out.status.code(), Some(78), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("policy.risk"), "{}", stderr(&out));
    }
}
