//! The card shows what runs, with secrets masked only inside one shell word's literal
//! characters (issue: masking hid code). Regression tests per attack and per leaking class
//! through the real binary's cards, and the card/run equivalence property over generated
//! commands and the corpus of real samples.
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;
use opsgate::canon::{self, SourceChar, Sourced};
use opsgate::mask::{self, PLACEHOLDER};
use opsgate::redact::Redactor;
use proptest::prelude::*;

const MARKER: &str = "•••• (secret, ";

/// The shown command blocks of every variant on the console cards, by proposal id.
fn card_commands(card: &str) -> Vec<(i64, String)> {
    let lines: Vec<&str> = card.lines().collect();
    let mut out = Vec::new();
    let header = regex::Regex::new(r"^\d+\. #(\d+) ").unwrap();
    let hash_line = regex::Regex::new(r"^[0-9a-f]{12}\b").unwrap();
    let mut i = 0;
    while i < lines.len() {
        if let Some(c) = header.captures(lines[i]) {
            let id: i64 = c[1].parse().unwrap();
            let mut j = i + 1;
            while j < lines.len() && lines[j].starts_with('⚠') {
                j += 1;
            }
            let start = j;
            while j < lines.len() && !hash_line.is_match(lines[j]) {
                j += 1;
            }
            out.push((id, lines[start..j].join("\n")));
            i = j;
        }
        i += 1;
    }
    out
}

/// `shown` with each `•••• (secret, N chars)` read as one opaque word.
fn unmask(shown: &str) -> String {
    let re = regex::Regex::new(r"•••• \(secret, \d+ chars\)").unwrap();
    re.replace_all(shown, PLACEHOLDER).into_owned()
}

/// The raw text of every expansion in each unit, in order.
fn expansions(text: &str, sources: &[Sourced]) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    sources
        .iter()
        .map(|s| {
            s.chars
                .iter()
                .filter_map(|c| match *c {
                    SourceChar::Expansion { start, end } => {
                        Some(chars[start..end].iter().collect())
                    }
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The contract: `shown` (masks read as opaque words) tokenizes to the same words and
/// operators as `raw`, and is `raw` with some literal text replaced by masks.
fn check_equivalent(raw: &str, shown: &str) -> Result<(), String> {
    let unmasked = unmask(shown);
    if unmasked == raw {
        return Ok(());
    }
    // The card is the raw command with substrings replaced by masks, nothing else.
    let pattern = format!(
        "(?s)^{}$",
        regex::escape(&unmasked).replace(PLACEHOLDER, "(.+?)")
    );
    if !regex::Regex::new(&pattern).unwrap().is_match(raw) {
        return Err(format!("the card is not the command: {shown:?} vs {raw:?}"));
    }
    let (a, sa) = canon::tokenize_sourced(raw)
        .map_err(|e| format!("masked an opaque command {raw:?}: {e:?}"))?;
    let (b, sb) = canon::tokenize_sourced(&unmasked)
        .map_err(|e| format!("the card does not tokenize: {unmasked:?}: {e:?}"))?;
    if !canon::same_shape(&a, &b) {
        return Err(format!(
            "different words or operators: {raw:?} shown as {shown:?}"
        ));
    }
    if expansions(raw, &sa) != expansions(&unmasked, &sb) {
        return Err(format!(
            "an expansion was masked: {raw:?} shown as {shown:?}"
        ));
    }
    Ok(())
}

/// Ingests `commands` (one cycle, one source) and returns (id, raw, shown on the card).
fn through_cards(env: &Env, commands: &[&str]) -> Vec<(i64, String, String)> {
    env.ingest("vps-1", &cycle(1, commands));
    let card = stdout(&env.cmd(&["notify", "--console"]).ok());
    let shown = card_commands(&card);
    let mut out = Vec::new();
    for p in env.list_json(&["--state", "in-flight"]) {
        let id = p["id"].as_i64().unwrap();
        let v: serde_json::Value = serde_json::from_slice(
            &env.cmd(&["show", &id.to_string(), "--json", "--reveal"])
                .ok()
                .stdout,
        )
        .unwrap();
        let raw = v["command"].as_str().unwrap().to_string();
        let on_card = shown
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("#{id} not on any card:\n{card}"));
        out.push((id, raw, on_card));
    }
    out
}

#[test]
fn masking_never_hides_code_the_six_attacks_run_what_the_card_shows() {
    // Each crafted "secret" swallowed code under the old regex masking; now every byte of
    // shell syntax stays on the card.
    let attacks = [
        (
            "df -h /srv # PASSWORD='\nrm -rf /tmp/opsgate-attack-1 #'",
            "rm -rf /tmp/opsgate-attack-1",
        ),
        (
            "echo \"PASSWORD='x\"; touch /tmp/opsgate-attack-2; echo \"'\"",
            "touch /tmp/opsgate-attack-2",
        ),
        (
            "curl -s http://backup:$(touch /tmp/opsgate-attack-3)@127.0.0.1:9/",
            "$(touch /tmp/opsgate-attack-3)",
        ),
        (
            "export API_TOKEN=abc`touch /tmp/opsgate-attack-4` && true",
            "`touch /tmp/opsgate-attack-4`",
        ),
        (
            "export API_TOKEN=abc>/tmp/opsgate-attack-5 && true",
            ">/tmp/opsgate-attack-5",
        ),
        (
            "printf '%s\\n' '-----BEGIN RSA PRIVATE KEY-----'; touch /tmp/opsgate-attack-6; echo '-----END RSA PRIVATE KEY-----'",
            "touch /tmp/opsgate-attack-6",
        ),
    ];
    let env = Env::new();
    let cmds: Vec<&str> = attacks.iter().map(|a| a.0).collect();
    let shown = through_cards(&env, &cmds);
    assert_eq!(shown.len(), attacks.len());
    for (_, raw, card) in &shown {
        let (_, code) = attacks.iter().find(|a| a.0 == raw).unwrap();
        assert!(
            card.contains(code),
            "the card hides code that runs: {raw:?} shown as {card:?}"
        );
        check_equivalent(raw, card).unwrap();
    }
}

/// Realistic ops commands with a credential, and the secret each holds.
const LEAKS: &[(&str, &str)] = &[
    ("PGPASSWORD='ab''cd-pw9' psql -h db -U app -c 'select 1'", "cd-pw9"),
    ("PGPASSWORD=ab\\ cd-pw9 psql -h db -U app", "cd-pw9"),
    ("mysql -uroot -pHunter2x9 -e 'show databases'", "Hunter2x9"),
    ("mysqladmin -uroot -p'Hunter2x9' status", "Hunter2x9"),
    ("curl -fsS -u admin:Hunter2x9 https://ci.example/api", "Hunter2x9"),
    ("sshpass -p Hunter2x9 ssh backup@10.0.0.5 uptime", "Hunter2x9"),
    ("docker login -u deploy -p Hunter2x9 registry.example", "Hunter2x9"),
    ("htpasswd -b /etc/nginx/.htpasswd alice Hunter2x9", "Hunter2x9"),
    ("sqlcmd -S db -U sa -P 'Hunter2x9' -Q 'SELECT 1'", "Hunter2x9"),
    ("redis-cli -a Hunter2x9 -h cache INFO memory", "Hunter2x9"),
    ("openssl pkcs12 -export -in c.pem -out c.p12 -passout pass:Hunter2x9", "Hunter2x9"),
    ("ldapsearch -x -D cn=admin,dc=ex -w Hunter2x9 -b dc=ex", "Hunter2x9"),
    ("gpg --batch --passphrase Hunter2x9 -d backup.gpg", "Hunter2x9"),
    ("zip -P Hunter2x9 -r /tmp/logs.zip /var/log/app", "Hunter2x9"),
    ("smbclient //nas/share -U backup%Hunter2x9 -c ls", "Hunter2x9"),
    ("rabbitmqctl change_password app Hunter2x9", "Hunter2x9"),
    ("echo 'deploy:Hunter2x9' | sudo chpasswd", "Hunter2x9"),
    (
        "kubectl create secret generic db --from-literal=DB_PW=Hunter2x9",
        "Hunter2x9",
    ),
    ("docker run -d -e DB_PW=Hunter2x9 app:latest", "Hunter2x9"),
    (
        "sudo -u postgres psql <<'SQL'\nALTER USER app WITH PASSWORD 'Hunter2x9';\nSQL",
        "Hunter2x9",
    ),
    (
        "mysql -e \"CREATE USER 'a'@'%' IDENTIFIED BY 'Hunter2x9'\"",
        "Hunter2x9",
    ),
    (
        "curl -X POST -u sk_live_4eC39HqLyjWDarjtT1zdp7dc: https://api.stripe.com/v1/refunds",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ),
    (
        "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U' https://api/x",
        "dozjgNryP4J3jVmNHl0w5N",
    ),
    (
        "curl -X POST -d 'text=hi' https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abcdefghijklmnopqrstuvwx",
        "abcdefghijklmnopqrstuvwx",
    ),
    (
        "curl -s https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ/getMe",
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ",
    ),
    ("VAULT_ADDR=https://v:8200 vault login hvs.CAESIJ4q0abcdefghijklmnopqrs", "hvs.CAESIJ4q0abcdefghijklmnopqrs"),
    (
        "aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG",
    ),
    (
        "curl -X POST -H 'Content-Type: application/json' -d '{\"user\":\"admin\",\"password\":\"Hunter2x9\"}' https://app/login",
        "Hunter2x9",
    ),
    ("curl http://backup:p/a@ss9@10.0.0.9/dump", "p/a@ss9"),
    ("export API_TOKEN='abc def ghi9'", "abc def ghi9"),
    ("MYSQL_PWD=Hunter2x9 mysqldump app > /root/app.sql", "Hunter2x9"),
    ("mysqldump --password=Hunter2x9 app", "Hunter2x9"),
    ("git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE aws s3 ls", "AKIAIOSFODNN7EXAMPLE"),
    ("psql 'postgresql://app:Hunter2x9@db:5432/app' -c 'select 1'", "Hunter2x9"),
    ("redis-cli -u redis://:Hunter2x9@cache:6379 ping", "Hunter2x9"),
    ("wget --user=admin --password=Hunter2x9 https://x/f", "Hunter2x9"),
    ("mongosh --username admin -p Hunter2x9 --eval 'db.stats()'", "Hunter2x9"),
    ("7z a -pHunter2x9 /tmp/a.7z /srv/data", "Hunter2x9"),
    ("curl -H 'X-Api-Key: Hunter2x9abc' https://api/x", "Hunter2x9abc"),
    (
        "cat > /root/.pgpass <<'EOF'\ndb:5432:app:app:Hunter2x9\nEOF",
        "Hunter2x9",
    ),
];

#[test]
fn secrets_of_every_leaking_class_stay_off_the_card_and_the_card_stays_the_command() {
    let env = Env::new();
    let cmds: Vec<&str> = LEAKS.iter().map(|l| l.0).collect();
    let shown = through_cards(&env, &cmds);
    assert_eq!(shown.len(), LEAKS.len());
    let mut leaked = Vec::new();
    for (_, raw, card) in &shown {
        let (_, secret) = LEAKS.iter().find(|l| l.0 == raw).unwrap();
        if card.contains(secret) {
            leaked.push(raw.clone());
        }
        check_equivalent(raw, card).unwrap();
    }
    assert!(leaked.is_empty(), "secrets on the card: {leaked:#?}");
    // The JSON output masks them too.
    let json = stdout(&env.cmd(&["list", "--json"]).ok());
    for (_, secret) in LEAKS {
        assert!(!json.contains(secret), "{secret} in list --json");
    }
}

#[test]
fn a_secret_mixed_with_shell_syntax_is_shown_with_a_note_rather_than_hiding_code() {
    let env = Env::new();
    let raw = "deploy --password=Hunter$(id -u)x9";
    let shown = through_cards(&env, &[raw]);
    assert_eq!(shown[0].2, raw);
    let card = stdout(&env.cmd(&["notify", "--console"]).ok());
    assert!(card.contains("⚠ secret shown"), "{card}");
}

#[test]
fn runner_env_values_are_secrets_unless_marked_public() {
    let env = Env::new();
    let cfg = env.dir.path().join("opsgate.toml");
    std::fs::write(
        &cfg,
        "[runner]\nenv = [\"SLACK_WEBHOOK=https://hooks.example/T1/B2/zzsecretzz\", \"REGION=eu-west-3a\"]\npublic_env = [\"REGION\"]\n",
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    env.cmd(&["--config", &cfg, "ingest", "--source", "vps-1"])
        .stdin(cycle(
            1,
            &["curl -d x https://hooks.example/T1/B2/zzsecretzz --region eu-west-3a"],
        ))
        .ok();
    let card = stdout(&env.cmd(&["--config", &cfg, "notify", "--console"]).ok());
    assert!(!card.contains("zzsecretzz"), "{card}");
    assert!(
        card.contains("eu-west-3a"),
        "a public value is shown: {card}"
    );
}

#[test]
fn ids_keys_and_outputs_in_json_are_masked() {
    let env = Env::new();
    let input = serde_json::json!({"approval_needed": [{
        "id": "fix-ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "command": "docker restart web",
        "reason": "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 expired"
    }]})
    .to_string();
    env.cmd(&["ingest", "--source", "vps-1"]).stdin(&input).ok();
    for args in [
        &["list", "--json"][..],
        &["show", "1", "--json"],
        &["history", "1", "--json"],
    ] {
        let out = stdout(&env.cmd(args).ok());
        assert!(!out.contains("ghp_abcdefghij"), "{args:?}: {out}");
    }
}

#[test]
fn the_card_is_the_command_for_every_sample_of_real_llm_output() {
    let env = Env::new();
    for f in ["cycle1.txt", "cycle2.json", "cycle3.json"] {
        env.ingest("vps-1", &sample(f));
    }
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples");
    if let Ok(dirs) = std::fs::read_dir(&shared) {
        for d in dirs.flatten() {
            for f in ["cycle1.txt", "cycle2.json", "cycle3.json"] {
                if let Ok(text) = std::fs::read_to_string(d.path().join(f)) {
                    env.ingest("shared", &text);
                }
            }
        }
    }
    let card = stdout(&env.cmd(&["notify", "--console"]).ok());
    let shown = card_commands(&card);
    assert!(shown.len() >= 5, "{card}");
    for (id, on_card) in shown {
        let v: serde_json::Value = serde_json::from_slice(
            &env.cmd(&["show", &id.to_string(), "--json", "--reveal"])
                .ok()
                .stdout,
        )
        .unwrap();
        check_equivalent(v["command"].as_str().unwrap(), &on_card).unwrap();
    }
}

/// Pieces of commands: secrets of every class, and the shell syntax around them.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("PASSWORD='s3cr3t-v4lue'".to_string()),
        Just("PGPASSWORD='ab''cd'".to_string()),
        Just("export API_TOKEN=abc".to_string()),
        Just("mysql -phunter22".to_string()),
        Just("curl -u admin:hunter22".to_string()),
        Just("http://u:p4ss@host/".to_string()),
        Just("AKIAIOSFODNN7EXAMPLE".to_string()),
        Just("ghp_abcdefghijklmnopqrstuvwxyz0123456789".to_string()),
        Just("'-----BEGIN RSA PRIVATE KEY-----'".to_string()),
        Just("-----END RSA PRIVATE KEY-----".to_string()),
        Just("--password=x1y2".to_string()),
        Just("--token".to_string()),
        Just("sk_live_abcdefghij0123".to_string()),
        Just("KNOWNsecret-123".to_string()),
        Just("$(touch /tmp/x)".to_string()),
        Just("`id`".to_string()),
        Just("$HOME".to_string()),
        Just("*".to_string()),
        Just(">".to_string()),
        Just("<".to_string()),
        Just(";".to_string()),
        Just("&&".to_string()),
        Just("|".to_string()),
        Just("\n".to_string()),
        Just("#".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("=".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("rm -rf /x".to_string()),
        Just("<<'EOF'\nPASSWORD 'x1'\nEOF\n".to_string()),
        Just("<<EOF\npassword: $(id)\nEOF\n".to_string()),
        "[a-z]{1,5}",
    ]
}

fn command() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            piece(),
            prop_oneof![Just(""), Just(" "), Just(" "), Just("=")],
        ),
        1..10,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(p, sep)| format!("{p}{sep}"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The card/run equivalence property over generated commands: whatever the masks, the
    /// masked command has the raw command's words and operators.
    #[test]
    fn a_masked_command_has_the_raw_commands_words_and_operators(cmd in command()) {
        let r = Redactor::new(true, Vec::new(), vec!["KNOWNsecret-123".into()]);
        let m = mask::masks_with(&r, &cmd);
        let mut shown = String::new();
        let mut at = 0;
        for &(s, e) in &m.spans {
            shown.push_str(&cmd[at..s]);
            shown.push_str(&format!("{MARKER}{} chars)", cmd[s..e].chars().count()));
            at = e;
        }
        shown.push_str(&cmd[at..]);
        if canon::tokenize(&cmd).is_err() {
            prop_assert!(m.spans.is_empty(), "masked an opaque command {:?}", cmd);
        }
        if let Err(e) = check_equivalent(&cmd, &shown) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn structured_secrets_in_an_output_tail_stay_off_the_card() {
    let env = Env::new();
    let fake = common::fake_telegram::Fake::start();
    env.cmd(&["ingest", "--source", "vps-1", "--notify"])
        .stdin(cycle(
            1,
            &["printf '%s\\n' db: '  password: Hunter2x9' '{\"token\": \"Tok3nTok3n\"}' db:5432:app:app:Pgp4ssw0rd"],
        ))
        .telegram(&fake, "1001")
        .ok();
    env.cmd(&["approve", "1"]).telegram(&fake, "1001").ok();
    env.cmd(&["run"]).telegram(&fake, "1001").ok();
    env.cmd(&["notify"]).telegram(&fake, "1001").ok();
    let card = fake.messages().into_values().last().unwrap().text;
    assert!(card.contains("completed"), "{card}");
    assert!(
        card.contains("stdout:\ndb:\n  password: •••• (secret, 9 chars)"),
        "{card}"
    );
    assert!(
        card.contains("{\"token\": \"•••• (secret, 10 chars)\"}"),
        "{card}"
    );
    for secret in ["Hunter2x9", "Tok3nTok3n", "Pgp4ssw0rd"] {
        assert!(!card.contains(secret), "{secret} on the card: {card}");
        let show = stdout(&env.cmd(&["show", "1", "--json"]).ok());
        assert!(!show.contains(secret), "{secret} in show --json: {show}");
    }
}
