//! Identity beyond docker: the key-grammar table, table-driven. Spellings that must share
//! a subject, the same names under different managers or namespaces that must not,
//! read-only forms that yield no key, wrappers and nested shells, and the cmd_hash of
//! every known command unchanged by any of it.
#![allow(clippy::unwrap_used)]

use opsgate::canon::{canonicalize, subject_label};
use std::collections::BTreeSet;

fn subjects(command: &str) -> BTreeSet<String> {
    canonicalize(command).subjects().into_iter().collect()
}

fn keys(command: &str) -> Vec<String> {
    canonicalize(command).logical_keys
}

#[test]
fn spellings_of_one_action_share_a_subject() {
    let groups: &[(&str, &[&str])] = &[
        (
            "k8s:shop/deployment/api",
            &[
                "kubectl -n shop rollout undo deployment/api --to-revision=41",
                "kubectl -n shop rollout undo deployment/api --to-revision=41 && kubectl -n shop rollout status deployment/api --timeout=5m",
                "kubectl rollout undo deploy/api -n shop",
                "kubectl --namespace=shop scale deployment api --replicas=3",
                "kubectl -n shop set image deployment/api api=ghcr.io/x/api:1.2",
                "kubectl delete -n shop deployments/api",
                "k3s kubectl -n shop rollout restart deployment/api",
                "microk8s kubectl -n shop rollout restart deployment.apps/api",
                "oc -n shop rollout pause deploy/api",
                "sudo kubectl -n shop patch deployment api -p '{\"spec\":{}}'",
            ],
        ),
        (
            "unit:fail2ban.service",
            &[
                "systemctl restart fail2ban",
                "sudo systemctl restart fail2ban.service",
                "cp /tmp/jail.local /etc/fail2ban/jail.d/sshd.conf && sudo systemctl restart fail2ban",
                "cp /tmp/other.local /etc/fail2ban/jail.d/x.conf && sudo systemctl restart fail2ban",
                "service fail2ban restart",
                "systemctl --no-block reload-or-restart fail2ban",
                "sudo systemctl enable --now fail2ban",
                "timeout 30 systemctl stop fail2ban",
                "systemctl -q try-restart fail2ban",
            ],
        ),
        (
            "monitoring-loki-1",
            &[
                "docker compose -f /opt/monitoring/docker-compose.yml restart loki",
                "docker restart monitoring-loki-1",
                "docker-compose -p monitoring stop loki",
                "COMPOSE_PROJECT_NAME=monitoring docker compose restart loki",
                "docker compose --project-directory /opt/monitoring restart loki",
                "cd /opt/monitoring && docker compose -p Monitoring restart loki",
            ],
        ),
        (
            "journal:system",
            &[
                "journalctl --vacuum-size=500M",
                "sudo journalctl --vacuum-time=7d",
                "journalctl --rotate && journalctl --vacuum-files=5",
            ],
        ),
        ("cri:3f2a9c", &["crictl stop 3f2a9c", "k3s crictl rm 3f2a9c"]),
        (
            "web",
            &[
                "docker stop web",
                "sh -c 'docker stop web && docker rm web'",
                "sudo sh -c 'docker rm -f web'",
                "bash -lc \"docker restart web\"",
                "bash -c \"bash -c 'docker restart web'\"",
                "sudo -u root -E -- docker stop web",
                "env -i PATH=/usr/bin docker stop web",
                "nohup docker stop web",
                "timeout -s KILL -k 5 30s docker stop web",
                "nice -n 10 docker stop web",
                "ionice -c 2 -n 7 docker stop web",
                "stdbuf -oL docker stop web",
                "setsid docker stop web",
            ],
        ),
    ];
    for (subject, spellings) in groups {
        for spelling in *spellings {
            assert!(
                subjects(spelling).contains(*subject),
                "{spelling:?} should name {subject}, names {:?}",
                subjects(spelling)
            );
        }
    }
}

#[test]
fn the_same_name_under_different_managers_or_namespaces_is_different() {
    let pairs = [
        ("systemctl stop web", "docker stop web"),
        ("docker stop web", "kubectl delete pod web"),
        ("systemctl stop web", "kubectl delete pod web"),
        (
            "kubectl -n shop delete pod web",
            "kubectl -n blog delete pod web",
        ),
        (
            "kubectl -n shop delete deployment api",
            "kubectl -n shop delete pod api",
        ),
        (
            "kubectl --context prod -n shop rollout restart deploy/api",
            "kubectl --context staging -n shop rollout restart deploy/api",
        ),
        (
            "KUBECONFIG=/etc/a.yaml kubectl delete pod web",
            "kubectl delete pod web",
        ),
        ("systemctl --user restart web", "systemctl restart web"),
        (
            "systemctl -H db1 restart postgresql",
            "systemctl restart postgresql",
        ),
        ("crictl stop web", "docker stop web"),
        ("crictl stopp abc", "crictl stop abc"),
        ("nerdctl stop web", "docker stop web"),
        ("nerdctl -n k8s.io stop web", "nerdctl stop web"),
        (
            "docker compose -p shop stop web",
            "docker compose -p blog stop web",
        ),
        ("docker -H ssh://a stop web", "docker stop web"),
        ("journalctl --vacuum-size=1G", "docker stop journal"),
    ];
    for (a, b) in pairs {
        let (sa, sb) = (subjects(a), subjects(b));
        assert!(
            !sa.is_empty() && !sb.is_empty(),
            "{a:?} {sa:?} / {b:?} {sb:?}"
        );
        assert!(sa.is_disjoint(&sb), "{a:?} and {b:?} share {sa:?}");
    }
}

#[test]
fn read_only_forms_and_other_hosts_yield_no_key() {
    for command in [
        "systemctl status nginx",
        "systemctl show nginx -p ActiveState",
        "systemctl cat nginx",
        "systemctl is-active nginx",
        "systemctl list-units --failed",
        "journalctl -u nginx --since today",
        "journalctl -xe",
        "kubectl get pods -n shop",
        "kubectl describe deploy/api",
        "kubectl logs -n shop deploy/api",
        "kubectl top pods",
        "kubectl rollout status deployment/api",
        "kubectl rollout history deploy/api",
        "kubectl explain pod",
        "kubectl get events",
        "kubectl auth can-i delete pods",
        "kubectl delete pods -l app=web",
        "kubectl delete pods --all -n shop",
        "kubectl -A delete pod web",
        "service nginx status",
        "crictl ps -a",
        "crictl images",
        "crictl rm -a",
        "docker logs web",
        "ssh db docker stop web",
        "chroot /mnt docker stop web",
        "docker exec web systemctl restart nginx",
        "sh -c \"$CMD\"",
        "bash script.sh",
        "command -v docker",
        "echo systemctl restart nginx",
    ] {
        assert!(
            keys(command).is_empty(),
            "{command:?} gave {:?}",
            keys(command)
        );
    }
}

#[test]
fn keys_name_the_verb_and_the_target() {
    let table: &[(&str, &[&str])] = &[
        (
            "kubectl -n shop rollout undo deployment/api --to-revision=41",
            &["undo:k8s:shop/deployment/api"],
        ),
        (
            "systemctl enable --now fail2ban",
            &[
                "enable:unit:fail2ban.service",
                "start:unit:fail2ban.service",
            ],
        ),
        (
            "systemctl disable --now web.socket",
            &["disable:unit:web.socket", "stop:unit:web.socket"],
        ),
        (
            "kubectl drain node-3 --ignore-daemonsets",
            &["drain:k8s:node/node-3"],
        ),
        (
            "kubectl apply -f /opt/k8s/api.yaml",
            &["apply:k8s:file:/opt/k8s/api.yaml"],
        ),
        ("crictl rmi --prune", &["prune:cri:images"]),
        ("journalctl --vacuum-size=500M", &["vacuum:journal:system"]),
        (
            "systemctl -H db1 restart postgresql",
            &["restart:unit:postgresql.service@db1"],
        ),
        (
            "kubectl delete pod web-1 web-2 -n shop",
            &["delete:k8s:shop/pod/web-1", "delete:k8s:shop/pod/web-2"],
        ),
        (
            "kubectl label pod web app=x",
            &["label:k8s:default/pod/web"],
        ),
        ("kubectl cordon node-1", &["cordon:k8s:node/node-1"]),
        ("nerdctl -n k8s.io stop web", &["stop:nerdctl:k8s.io/web"]),
        ("service nginx reload", &["reload:unit:nginx.service"]),
    ];
    for (command, expected) in table {
        assert_eq!(keys(command), *expected, "{command:?}");
    }
}

#[test]
fn nested_shells_are_read_to_depth_two_and_malformed_ones_fall_back() {
    assert_eq!(keys("sh -c 'docker stop web'"), ["stop:web"]);
    assert_eq!(
        keys("bash -c \"sh -c 'docker stop web && systemctl stop db'\""),
        ["stop:unit:db.service", "stop:web"]
    );
    // Depth three is not read.
    assert!(keys("sh -c \"sh -c 'sh -c \\\"docker stop web\\\"'\"").is_empty());
    for malformed in [
        "sh -c \"docker stop 'web\"",
        "sh -c",
        "bash -c ''",
        "sh -c 'sh -c \"'",
        "bash -c \"$(cat <<EOF\ndocker stop web\nEOF\n)\"",
        "sudo sh -c 'docker stop $(",
    ] {
        let c = canonicalize(malformed);
        assert!(
            c.logical_keys.is_empty(),
            "{malformed:?}: {:?}",
            c.logical_keys
        );
    }
}

#[test]
fn cards_name_subjects_readably() {
    for (subject, label) in [
        ("web", "container web"),
        ("postgres@ssh://db", "container postgres on ssh://db"),
        ("unit:fail2ban.service", "unit fail2ban.service"),
        ("k8s:shop/deployment/api", "deployment shop/api"),
        ("k8s:node/node-3", "node node-3"),
        ("k8s:file:/opt/a.yaml", "manifest /opt/a.yaml"),
        ("journal:system", "the system journal"),
        ("prune:image", "image prune"),
    ] {
        assert_eq!(subject_label(subject), label);
    }
}

#[test]
fn no_cmd_hash_changes_when_grammars_grow() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cmd_hashes.jsonl"
    );
    let mut checked = 0;
    for line in std::fs::read_to_string(fixture).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let command = v["command"].as_str().unwrap();
        assert_eq!(
            canonicalize(command).cmd_hash,
            v["cmd_hash"].as_str().unwrap(),
            "{command:?}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "{checked}");
    // (The bundled samples are a copy of shared/samples, which lives outside the
    // repository: a clean clone cannot compare them, so no test here pretends to.)
}

mod common;

#[test]
fn in_flight_proposals_keyed_by_an_older_grammar_are_rekeyed_once() {
    let env = common::Env::new();
    env.ingest(
        "h",
        &common::cycle(
            0,
            &[
                "cp /tmp/a.local /etc/fail2ban/jail.d/a.conf && sudo systemctl restart fail2ban",
                "kubectl -n shop rollout undo deployment/api --to-revision=41",
            ],
        ),
    );
    env.ingest(
        "h",
        &common::cycle(
            1,
            &["cp /tmp/b.local /etc/fail2ban/jail.d/b.conf && sudo systemctl restart fail2ban"],
        ),
    );
    // A database written before these grammars existed: no keys, no subjects.
    let conn = env.sql();
    conn.execute_batch(
        "UPDATE proposals SET logical_keys = '[]'; DELETE FROM subjects;
         UPDATE meta SET value = '1' WHERE key = 'grammar_version';",
    )
    .unwrap();
    drop(conn);
    let list = env.list_json(&[]);
    let keys: Vec<&serde_json::Value> = list.iter().map(|p| &p["logical_keys"]).collect();
    assert_eq!(
        keys[0],
        &serde_json::json!(["restart:unit:fail2ban.service"])
    );
    assert_eq!(
        keys[1],
        &serde_json::json!(["undo:k8s:shop/deployment/api"])
    );
    assert_eq!(
        keys[2],
        &serde_json::json!(["restart:unit:fail2ban.service"])
    );
    assert_eq!(
        env.store().grammar_version().unwrap(),
        opsgate::canon::GRAMMAR_VERSION
    );
    // Clusters stay as they were; the next proposal on the unit gathers them on one card.
    let out = env.ingest("h", &common::cycle(2, &["service fail2ban restart"]));
    assert!(
        common::stdout(&out).contains("joined cluster"),
        "{}",
        common::stdout(&out)
    );
    let clusters: BTreeSet<i64> = env
        .list_json(&[])
        .iter()
        .filter(|p| {
            p["logical_keys"][0]
                .as_str()
                .unwrap_or("")
                .contains("fail2ban")
        })
        .map(|p| p["cluster_id"].as_i64().unwrap())
        .collect();
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    // Once: a second open changes nothing.
    let before = env.dump();
    env.list_json(&[]);
    assert_eq!(env.dump(), before);
}
