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
                "kubectl -nshop patch deployment api -p '{\"spec\":{}}'",
                "kubectl rollout restart deploy/api --namespace=shop",
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
        ("compose:/opt/shop/web", "compose service web in /opt/shop"),
        ("web@as:alice", "container web of user alice"),
        (
            "user-unit:x.service@as:alice",
            "user unit x.service of user alice",
        ),
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

/// Issue 18, finding 3: what can change where a command acts, anywhere earlier in its
/// line, is part of the subject when it is a literal, and takes the key away when it is
/// not certain. Each row: two commands on different targets that must share no key.
const DIFFERENT_TARGETS: &[(&str, &str)] = &[
    // The pairs found by the adversarial test.
    (
        "cd /opt/shop && docker compose stop web",
        "cd /opt/blog && docker compose stop web",
    ),
    (
        "env -C /opt/shop docker compose stop web",
        "env -C /opt/blog docker compose stop web",
    ),
    (
        "env --chdir=/opt/shop docker compose stop web",
        "cd /opt/blog && docker compose stop web",
    ),
    ("docker -Hssh://prod-db stop web", "docker stop web"),
    (
        "export DOCKER_HOST=ssh://prod-db; docker stop web",
        "docker stop web",
    ),
    ("kubectl -nprod delete pod x", "kubectl delete pod x"),
    ("kubectl --cluster=a delete pod x", "kubectl delete pod x"),
    (
        "kubectl --server=https://10.0.0.9:6443 delete pod x",
        "kubectl delete pod x",
    ),
    (
        "kubectl -s https://10.0.0.9:6443 delete pod x",
        "kubectl delete pod x",
    ),
    ("kubectl --user=admin delete pod x", "kubectl delete pod x"),
    (
        "export KUBECONFIG=/etc/k/prod.conf; kubectl delete pod x",
        "kubectl delete pod x",
    ),
    (
        "systemctl -Hroot@lb1 restart nginx",
        "systemctl restart nginx",
    ),
    (
        "systemctl --root=/mnt/rescue enable nginx",
        "systemctl enable nginx",
    ),
    (
        "sudo -u alice systemctl --user restart x",
        "sudo -u bob systemctl --user restart x",
    ),
    ("sudo -u alice podman stop web", "docker stop web"),
    // The same rule elsewhere.
    (
        "cd /opt/shop && docker compose stop web",
        "docker compose stop web",
    ),
    (
        "cd /opt/shop && docker compose stop web",
        "docker compose -p shop stop web",
    ),
    (
        "cd /opt/a && kubectl apply -f api.yaml",
        "cd /opt/b && kubectl apply -f api.yaml",
    ),
    (
        "cd /opt/a && docker compose -f docker-compose.yml stop web",
        "cd /opt/b && docker compose -f docker-compose.yml stop web",
    ),
    (
        "export COMPOSE_PROJECT_NAME=shop; docker compose stop web",
        "docker compose stop web",
    ),
    (
        "export COMPOSE_FILE=/opt/shop/compose.yaml; docker compose stop web",
        "docker compose stop web",
    ),
    (
        "export DOCKER_CONTEXT=prod; docker stop web",
        "docker stop web",
    ),
    (
        "export CONTAINER_HOST=ssh://db/run/podman.sock; podman stop web",
        "podman stop web",
    ),
    ("podman --url ssh://db stop web", "podman stop web"),
    ("docker -Hssh://a stop web", "docker -Hssh://b stop web"),
    (
        "kubectl -nprod delete pod x",
        "kubectl -nstaging delete pod x",
    ),
    (
        "kubectl --kubeconfig /etc/k/a.conf delete pod x",
        "kubectl delete pod x",
    ),
    ("sudo -u alice kubectl delete pod x", "kubectl delete pod x"),
    ("systemctl -M db1 restart x", "systemctl -H db1 restart x"),
    (
        "systemctl --image=/srv/os.raw enable x",
        "systemctl enable x",
    ),
    ("systemctl --global enable x", "systemctl enable x"),
    ("systemctl --global enable x", "systemctl --user enable x"),
    (
        "sudo -u alice systemctl --user restart x",
        "systemctl --user restart x",
    ),
    (
        "sudo systemctl --user restart x",
        "systemctl --user restart x",
    ),
    (
        "sudo -u alice podman stop web",
        "sudo -u bob podman stop web",
    ),
    ("sudo -ualice podman stop web", "podman stop web"),
    ("sudo podman stop web", "podman stop web"),
    ("sudo -u alice nerdctl stop web", "nerdctl stop web"),
    ("nerdctl -H unix:///run/k.sock stop web", "nerdctl stop web"),
    (
        "export CONTAINERD_NAMESPACE=k8s.io; nerdctl stop web",
        "nerdctl stop web",
    ),
    (
        "journalctl -D /var/log/journal/remote --vacuum-size=1G",
        "journalctl --vacuum-size=1G",
    ),
    (
        "crictl -r unix:///run/crio.sock stop 3f2a",
        "crictl stop 3f2a",
    ),
];

#[test]
fn commands_on_different_targets_share_no_key() {
    for (a, b) in DIFFERENT_TARGETS {
        let (ka, kb) = (keys(a), keys(b));
        assert!(
            !kb.is_empty() || !ka.is_empty(),
            "{a:?} / {b:?}: no keys at all"
        );
        assert!(
            ka.iter().all(|k| !kb.contains(k)),
            "{a:?} {ka:?} / {b:?} {kb:?}"
        );
        assert!(
            subjects(a).is_disjoint(&subjects(b)),
            "{a:?} and {b:?} share {:?}",
            subjects(a)
        );
    }
}

#[test]
fn one_target_spelled_differently_still_shares_its_subject() {
    let groups: &[(&str, &[&str])] = &[
        (
            "compose:/opt/shop/web",
            &[
                "cd /opt/shop && docker compose stop web",
                "cd /opt/shop/ && docker compose restart web",
                "cd /opt/shop || exit 1; docker compose stop web",
                "cd /opt && cd ./shop && docker compose stop web",
                "cd /opt/blog/../shop && docker compose stop web",
                "env -C /opt/shop docker compose stop web",
                "sudo -D /opt/shop docker compose stop web",
                "cd /opt/shop && sh -c 'docker compose stop web'",
                "cd /opt/shop && sudo docker compose stop web",
            ],
        ),
        (
            "shop-web-1",
            &[
                "docker compose -p shop stop web",
                "cd /opt/shop && docker compose -p shop stop web",
                "cd $SOMEWHERE && docker compose -p shop stop web",
                "export COMPOSE_PROJECT_NAME=shop; docker compose stop web",
                "cd /opt && docker compose -f shop/docker-compose.yml stop web",
                "docker compose -f /opt/shop/docker-compose.yml stop web",
                "export COMPOSE_FILE=/srv/shop/compose.yaml; docker compose stop web",
            ],
        ),
        (
            "web@ssh://prod-db",
            &[
                "docker -Hssh://prod-db stop web",
                "docker -H ssh://prod-db stop web",
                "docker -H=ssh://prod-db stop web",
                "docker --host=ssh://prod-db stop web",
                "DOCKER_HOST=ssh://prod-db docker stop web",
                "export DOCKER_HOST=ssh://prod-db; docker stop web",
                "export DOCKER_HOST=ssh://prod-db && cd /tmp && docker stop web",
                "export DOCKER_HOST=ssh://prod-db; sudo -E docker stop web",
                "export DOCKER_HOST=ssh://prod-db; DOCKER_HOST=ssh://prod-db; docker stop web",
                "export DOCKER_HOST=ssh://prod-db; sh -c 'docker stop web'",
                "export DOCKER_HOST=$OLD; docker -H ssh://prod-db stop web",
                "export DOCKER_HOST=ssh://prod-db; sudo --preserve-env=DOCKER_HOST docker stop web",
                "export DOCKER_HOST=ssh://prod-db; unset -f DOCKER_HOST; docker stop web",
                "export DOCKER_HOST=ssh://prod-db; printf 'x\\n' > /tmp/x; docker stop web",
            ],
        ),
        (
            "web",
            &[
                "docker stop web",
                "cd /opt/shop && docker stop web",
                "cd $SOMEWHERE; docker stop web",
                "export DOCKER_HOST=ssh://prod-db; unset DOCKER_HOST; docker stop web",
                "export DOCKER_HOST=ssh://prod-db; env -u DOCKER_HOST docker stop web",
                "export DOCKER_HOST=ssh://prod-db; env -i docker stop web",
                "(export DOCKER_HOST=ssh://prod-db); docker stop web",
                "export DOCKER_HOST=ssh://prod-db & docker stop web",
                "docker compose stop web",
                "(cd /opt/blog); docker compose stop web",
                "cd /opt/blog | cat; docker compose stop web",
                "sudo -u alice docker stop web",
            ],
        ),
        (
            "k8s:prod/pod/x",
            &[
                "kubectl -nprod delete pod x",
                "kubectl -n prod delete pod x",
                "kubectl delete pod x -n=prod",
                "kubectl --namespace=prod delete pod/x",
                "cd /tmp && kubectl -n prod delete pod x",
                "kubectl config view && kubectl -n prod delete pod x",
            ],
        ),
        (
            "k8s:default/pod/x@kubeconfig:/etc/k/prod.conf",
            &[
                "export KUBECONFIG=/etc/k/prod.conf; kubectl delete pod x",
                "KUBECONFIG=/etc/k/prod.conf kubectl delete pod x",
                "kubectl --kubeconfig /etc/k/prod.conf delete pod x",
                "cd /etc/k && kubectl --kubeconfig=./prod.conf delete pod x",
                "sudo -u alice kubectl --kubeconfig /etc/k/prod.conf delete pod x",
            ],
        ),
        (
            "k8s:file:/opt/k8s/api.yaml",
            &[
                "kubectl apply -f /opt/k8s/api.yaml",
                "cd /opt/k8s && kubectl apply -f api.yaml",
                "cd /opt/k8s && kubectl apply -f ./api.yaml",
            ],
        ),
        (
            "unit:nginx.service@root@lb1",
            &[
                "systemctl -Hroot@lb1 restart nginx",
                "systemctl -H root@lb1 restart nginx",
                "systemctl --host=root@lb1 restart nginx",
                "systemctl -qHroot@lb1 restart nginx",
            ],
        ),
        (
            "user-unit:x.service@as:alice",
            &[
                "sudo -u alice systemctl --user restart x",
                "sudo -ualice systemctl --user restart x",
                "sudo --user=alice systemctl --user restart x",
                "doas -u alice systemctl --user restart x",
            ],
        ),
        (
            "unit:nginx.service",
            &[
                "systemctl restart nginx",
                "sudo -u alice systemctl restart nginx",
                "cd /opt/shop && systemctl restart nginx",
                "export DOCKER_HOST=$X; systemctl restart nginx",
            ],
        ),
        (
            "web@as:alice",
            &[
                "sudo -u alice podman stop web",
                "sudo -u alice -- podman rm -f web",
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
fn an_uncertain_target_yields_no_key() {
    for command in [
        // A directory decided at run time, relative, or maybe not entered.
        "cd $DIR && docker compose stop web",
        "cd shop && docker compose stop web",
        "cd - && docker compose stop web",
        "cd && docker compose stop web",
        "cd ~/shop && docker compose stop web",
        "cd /opt/shop; docker compose stop web",
        "cd /opt/shop && true; docker compose stop web",
        "cd /opt/shop || true; docker compose stop web",
        "cd -P /opt/x/../shop && docker compose stop web",
        "pushd /opt/shop && popd && docker compose stop web",
        "env -C $DIR docker compose stop web",
        "sudo -i docker compose stop web",
        "cd $DIR && kubectl apply -f api.yaml",
        // Control flow that may or may not run the change.
        "if true; then cd /opt/blog; fi; docker compose stop web",
        "for d in /opt/a /opt/b; do cd $d; done; docker compose stop web",
        "f() { cd /opt/blog; }; f; docker compose stop web",
        "function f { cd /opt/blog; }; f; docker compose stop web",
        "trap 'cd /opt/blog' DEBUG; docker compose stop web",
        "printf -v DOCKER_HOST ssh://a; docker stop web",
        "export DOCKER_HOST=ssh://a; sudo --preserve-env=PATH docker stop web",
        "{ cd /opt/blog; }; docker compose stop web",
        "eval 'cd /opt/blog'; docker compose stop web",
        ". ./env.sh; docker stop web",
        "$CMD /opt/blog; docker compose stop web",
        "time cd /opt/blog; docker compose stop web",
        "case x in x) cd /opt/blog;; esac; docker compose stop web",
        // Variables decided at run time, not exported, or maybe dropped by sudo.
        "export DOCKER_HOST=$HOST; docker stop web",
        "DOCKER_HOST=ssh://prod-db; docker stop web",
        "export DOCKER_HOST=ssh://prod-db; sudo docker stop web",
        "export $VAR=ssh://prod-db; docker stop web",
        "read DOCKER_HOST; docker stop web",
        "for DOCKER_HOST in ssh://a ssh://b; do :; done; docker stop web",
        "export DOCKER_CONFIG=/srv/docker; docker stop web",
        "HOME=/home/alice docker stop web",
        // Commands that change a manager's default target.
        "docker context use prod && docker stop web",
        "kubectl config set-context --current --namespace=prod && kubectl delete pod x",
        "kubectl config use-context prod; kubectl delete pod x",
        "kubens prod && kubectl delete pod x",
        "oc project prod && oc delete pod x",
        "podman system connection default prod && podman stop web",
        "exit 0; docker stop web",
        "export CONTAINER_HOST=ssh://db; docker stop web",
        "export KUBECONFIG=$K; kubectl delete pod x",
        "export HOME=/home/alice; kubectl delete pod x",
        "export COMPOSE_PROJECT_NAME=$P; docker compose stop web",
        // Options whose value is decided at run time.
        "docker -H \"$HOST\" stop web",
        "docker -H$HOST stop web",
        "kubectl -n $NS delete pod x",
        "kubectl --context=$CTX delete pod x",
        "systemctl -H $HOST restart nginx",
        "docker compose -p $P stop web",
        "docker --config /srv/cfg stop web",
        // A user decided at run time, and managers found through a user's environment.
        "sudo -u $U systemctl --user restart x",
        "sudo -u $U podman stop web",
        "sudo -u $U kubectl delete pod x",
        "export XDG_RUNTIME_DIR=/run/user/1001; systemctl --user restart x",
        // Other users' shells are not read.
        "su -c 'systemctl --user restart x' alice",
        "su alice -c 'podman stop web'",
        "runuser -u alice -- podman stop web",
        "env -S 'docker stop' web",
    ] {
        assert!(
            keys(command).is_empty(),
            "{command:?} gave {:?}",
            keys(command)
        );
    }
}

use super::common;

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
    // The copy's destination is a file subject too (grammar 3).
    assert_eq!(
        keys[0],
        &serde_json::json!([
            "edit:file:/etc/fail2ban/jail.d/a.conf",
            "restart:unit:fail2ban.service"
        ])
    );
    assert_eq!(
        keys[1],
        &serde_json::json!(["undo:k8s:shop/deployment/api"])
    );
    assert_eq!(
        keys[2],
        &serde_json::json!([
            "edit:file:/etc/fail2ban/jail.d/b.conf",
            "restart:unit:fail2ban.service"
        ])
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

/// The shared samples beside the checkout (CI lays `../shared` there) are byte for byte
/// the bundled copies the identity tests use.
#[test]
fn the_bundled_samples_are_the_shared_samples_byte_for_byte() {
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/samples/vps-analytics"
    );
    let missing = std::fs::read_dir(shared)
        .is_err()
        .then(|| format!("no shared samples at {shared}"));
    if !common::need::require("shared-samples", missing) {
        return;
    }
    let mut compared = 0;
    for entry in std::fs::read_dir(shared).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue; // the samples' README is not bundled
        }
        let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/vps-analytics")
            .join(path.file_name().unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&bundled).unwrap(),
            "{} differs from its bundled copy",
            path.display()
        );
        compared += 1;
    }
    assert!(compared >= 4, "{compared}");
}

/// Issue 24: files as subjects. Rows: (command, the file/unit subjects it must name).
#[test]
fn commands_that_change_a_file_name_it_as_a_subject() {
    let f = "file:/etc/x.conf";
    let rows: &[(&str, &[&str])] = &[
        ("sed -i s/a/b/ /etc/x.conf", &[f]),
        ("sudo sed -i.bak -e s/a/b/ /etc//./x.conf", &[f]),
        ("cd /etc && sed -i s/a/b/ x.conf", &[f]),
        ("sudo -D /etc sed --in-place 's/c/d/' ./x.conf", &[f]),
        ("echo a | sudo tee -a /etc/x.conf", &[f]),
        ("echo a >> /etc/x.conf", &[f]),
        ("cd /etc && echo a > x.conf 2>/dev/null", &[f]),
        ("sudo sh -c 'echo a > /etc/x.conf'", &[f]),
        ("cp /tmp/new.conf /etc/x.conf", &[f]),
        ("install -m 644 /tmp/new.conf /etc/", &["file:/etc/new.conf"]),
        ("mv /etc/x.conf /etc/y.conf", &[f, "file:/etc/y.conf"]),
        ("rm -f /etc/x.conf", &[f]),
        ("truncate -s 0 /etc/x.conf", &[f]),
        ("chmod 600 /etc/x.conf", &[f]),
        ("chown root:root /etc/x.conf", &[f]),
        (
            "ln -sf /etc/nginx/sites-available/api /etc/nginx/sites-enabled/",
            &["file:/etc/nginx/sites-enabled/api"],
        ),
        ("patch /etc/x.conf < /tmp/fix.diff", &[f]),
        ("sudo crontab -u backup -r", &["crontab:backup"]),
        ("sudo crontab /tmp/cron.txt", &["crontab:root"]),
        (
            "sudo certbot certonly --nginx --cert-name api.example.com",
            &["cert:api.example.com"],
        ),
        // The issue's first example: the quadlet edit names its unit, as the restart does.
        (
            "sudo sed -i 's/^Memory=512m$/Memory=1g/' /etc/containers/systemd/billing-worker.container && sudo systemctl daemon-reload",
            &[
                "file:/etc/containers/systemd/billing-worker.container",
                "unit:billing-worker.service",
            ],
        ),
        ("systemctl restart billing-worker", &["unit:billing-worker.service"]),
        (
            "rm /etc/containers/systemd/shop.pod",
            &["file:/etc/containers/systemd/shop.pod", "unit:shop-pod.service"],
        ),
        // The issue's second example: the mv's source end, whatever follows it.
        (
            "sudo mv /etc/nginx/sites-enabled/api.conf.bak /root/api.conf.bak-20261203 && sudo nginx -t",
            &["file:/etc/nginx/sites-enabled/api.conf.bak"],
        ),
        (
            "sudo mv /etc/nginx/sites-enabled/api.conf.bak /root/ && sudo systemctl start certbot",
            &["file:/etc/nginx/sites-enabled/api.conf.bak", "unit:certbot.service"],
        ),
    ];
    for (command, want) in rows {
        let got = subjects(command);
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{command:?}: keys {:?}", keys(command));
    }
    // One verb for every change of a file: two edits share the key (and so the card).
    assert_eq!(
        keys("sed -i s/a/b/ /etc/x.conf"),
        keys("sudo tee /etc//x.conf")
    );
    assert_eq!(
        keys("rm /etc/x.conf"),
        vec!["edit:file:/etc/x.conf".to_string()]
    );
}

#[test]
fn reading_a_file_backups_and_uncertain_paths_give_no_file_key() {
    for command in [
        // Reading.
        "cat /etc/x.conf",
        "grep -n a /etc/x.conf",
        "sed -n 1,5p /etc/x.conf",
        "sed s/a/b/ /etc/x.conf",
        "wc -l < /etc/x.conf",
        "patch --dry-run /etc/x.conf < /tmp/fix.diff",
        "crontab -l",
        "certbot certificates --cert-name api.example.com",
        "docker logs web > /dev/null 2>&1",
        "echo a >&2",
        // Relative paths where the working directory is not certain.
        "sed -i s/a/b/ x.conf",
        "cd $DIR && sed -i s/a/b/ x.conf",
        "cd etc && sed -i s/a/b/ x.conf",
        "sudo -i sed -i s/a/b/ x.conf",
        "echo a > x.conf",
        "sed -i s/a/b/ ~/x.conf",
        "sed -i s/a/b/ /etc/../etc/x.conf",
        "rm -f /tmp/*.log",
        "sed -i s/a/b/ \"$F\"",
        // Backups to fresh names: the copy is no shared subject.
        "cp -a /etc/x.conf /etc/x.conf.bak-20261203",
        "cp /etc/x.conf /etc/x.conf.bak",
        "cp /etc/x.conf /etc/x.conf.orig",
        "cp /etc/x.conf /etc/x.conf~",
        "cp /etc/x.conf /etc/x.conf.2026-12-03",
        "cp -a /etc/x.conf /etc/x.conf.$(date +%F)",
    ] {
        assert_eq!(keys(command), Vec::<String>::new(), "{command:?}");
    }
    // A backup by mv keeps its source end.
    assert_eq!(
        keys("mv /etc/x.conf /root/x.conf.old"),
        vec!["edit:file:/etc/x.conf".to_string()]
    );
}

#[test]
fn different_files_share_no_file_key() {
    for (a, b) in [
        ("sed -i s/a/b/ /etc/x.conf", "sed -i s/a/b/ /etc/y.conf"),
        (
            "cd /etc && sed -i s/a/b/ x.conf",
            "cd /opt && sed -i s/a/b/ x.conf",
        ),
        ("echo a > /etc/x.conf", "echo a > /etc/x.conf.d/x.conf"),
        ("sudo crontab -u a -r", "sudo crontab -u b -r"),
        (
            "certbot renew --cert-name a.example.com",
            "certbot renew --cert-name b.example.com",
        ),
    ] {
        let (ka, kb) = (keys(a), keys(b));
        assert!(
            !ka.is_empty() && !kb.is_empty(),
            "{a:?} {ka:?} / {b:?} {kb:?}"
        );
        assert!(
            ka.iter().all(|k| !kb.contains(k)),
            "{a:?} / {b:?}: {ka:?} {kb:?}"
        );
    }
    assert_eq!(
        subject_label("file:/etc/pgbouncer/pgbouncer.ini"),
        "file /etc/pgbouncer/pgbouncer.ini"
    );
    assert_eq!(subject_label("crontab:root"), "crontab of user root");
    assert_eq!(
        subject_label("cert:a.example.com"),
        "certificate a.example.com"
    );
}

/// Issue 24: database and cache administration as subjects. Each group: spellings of one
/// action that must share the key.
#[test]
fn spellings_of_one_database_action_share_its_key() {
    let groups: &[(&str, &[&str])] = &[
        (
            "drop:pg-slot:standby_b@local:5432",
            &[
                // The issue's three spellings.
                "sudo -u postgres psql -Atc \"select pg_drop_replication_slot('standby_b')\"",
                "sudo -u postgres psql -v ON_ERROR_STOP=1 -Atc \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'standby_b' AND NOT active\"",
                "sudo -u postgres psql -v ON_ERROR_STOP=1 -Atc \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'standby_b' AND NOT active\" && sudo -u postgres psql -c CHECKPOINT",
                // A slot is the server's: the database connected to does not matter.
                "psql -d app -c \"SELECT pg_catalog.pg_drop_replication_slot('standby_b')\"",
                "psql -h /var/run/postgresql -p 5432 -c \"SELECT pg_drop_replication_slot('standby_b');\"",
                "sudo -u postgres psql <<'EOF'\nSELECT pg_drop_replication_slot('standby_b');\nCHECKPOINT;\nEOF",
                "sudo -u postgres psql -X -f - <<EOF\nselect pg_drop_replication_slot('standby_b')\nEOF",
                "sudo -u postgres sh -c \"psql -c \\\"select pg_drop_replication_slot('standby_b')\\\"\"",
            ],
        ),
        (
            "set=20GB:pg-setting:max_slot_wal_keep_size@local:5432",
            &[
                "sudo -u postgres psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"",
                "sudo -u postgres psql -c \"alter system set MAX_SLOT_WAL_KEEP_SIZE to '20GB'; select pg_reload_conf();\"",
                "sudo -u postgres psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\" -c 'SELECT pg_reload_conf()'",
            ],
        ),
        (
            "set=20GB:pg-setting:max_slot_wal_keep_size@db-1:5432",
            &[
                "psql -h db-1 -U postgres -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"",
                "psql 'host=db-1 user=postgres' -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"",
                "psql postgresql://postgres@db-1/postgres -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"",
                "PGHOST=db-1 psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"",
                "export PGHOST=db-1 && psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\"",
            ],
        ),
        (
            "reload:pg-config:server@local:5432",
            &[
                "sudo -u postgres psql -c 'SELECT pg_reload_conf()'",
                "sudo -u postgres psql -tAc 'select pg_catalog.pg_reload_conf() as ok'",
            ],
        ),
        (
            "terminate:pg-backend:4242@local:5432",
            &[
                "sudo -u postgres psql -c 'SELECT pg_terminate_backend(4242)'",
                "sudo -u postgres psql -c 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = 4242'",
            ],
        ),
        (
            "vacuum:pg-table:public.orders@db-1:5432/shop",
            &[
                "psql -h db-1 -d shop -c 'VACUUM public.orders'",
                "psql -h db-1 shop -c 'vacuum (verbose) PUBLIC.ORDERS'",
                "psql -h db-1 -d shop -c 'VACUUM ANALYZE public.orders'",
                "psql 'host=db-1 dbname=shop' -c 'VACUUM (ANALYZE, PARALLEL 4) public.orders'",
                "psql postgresql://db-1:5432/shop -c 'VACUUM public.orders'",
            ],
        ),
        (
            "reindex:pg-index:orders_pkey@local:5432/postgres",
            &[
                "sudo -u postgres psql -c 'REINDEX INDEX orders_pkey'",
                "sudo -u postgres psql -c 'REINDEX INDEX CONCURRENTLY orders_pkey'",
                "sudo -u postgres psql -d postgres -c 'reindex (verbose) index orders_pkey'",
            ],
        ),
        (
            "drop:pg-index:idx_orders_day@local:5432/shop",
            &[
                "sudo -u postgres psql -d shop -c 'DROP INDEX idx_orders_day'",
                "sudo -u postgres psql shop -c 'DROP INDEX CONCURRENTLY IF EXISTS idx_orders_day'",
            ],
        ),
        (
            "drop:pg-role:old_app@local:5432",
            &[
                "sudo -u postgres psql -c 'DROP ROLE old_app'",
                "sudo -u postgres psql -c 'DROP USER IF EXISTS old_app'",
            ],
        ),
        (
            "set=500:mysql-setting:max_connections@db-2:3306",
            &[
                "mysql -h db-2 -e 'SET GLOBAL max_connections = 500'",
                "mysql --host=db-2 -P 3306 --execute='set global max_connections=500'",
            ],
        ),
        (
            "set=2gb:redis-config:maxmemory@local:6379",
            &[
                "redis-cli CONFIG SET maxmemory 2gb",
                "redis-cli -h 127.0.0.1 -p 6379 config set maxmemory 2gb",
                "redis-cli -u redis://127.0.0.1:6379 CONFIG SET MAXMEMORY 2gb",
            ],
        ),
        (
            "flush:redis-db:2@cache:6379",
            &[
                "redis-cli -h cache -n 2 FLUSHDB",
                "redis-cli -u redis://cache/2 flushdb async",
            ],
        ),
    ];
    for (key, spellings) in groups {
        for spelling in *spellings {
            assert!(
                keys(spelling).iter().any(|k| k == key),
                "{spelling:?} should give {key}, gives {:?}",
                keys(spelling)
            );
        }
    }
}

#[test]
fn database_keys_name_the_verb_and_the_target() {
    let table: &[(&str, &[&str])] = &[
        (
            "sudo -u postgres psql -c \"ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'\" -c 'SELECT pg_reload_conf()'",
            &[
                "reload:pg-config:server@local:5432",
                "set=20GB:pg-setting:max_slot_wal_keep_size@local:5432",
            ],
        ),
        (
            "sudo -u postgres psql -c 'ALTER SYSTEM RESET work_mem'",
            &["reset:pg-setting:work_mem@local:5432"],
        ),
        (
            // A value a key cannot spell: the setting is named, not the change.
            "sudo -u postgres psql -c \"ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements,auto_explain'\"",
            &["edit:pg-setting:shared_preload_libraries@local:5432"],
        ),
        (
            "psql -h db-1 -d shop -c 'VACUUM FULL orders; ANALYZE customers; CLUSTER events'",
            &[
                "analyze:pg-table:customers@db-1:5432/shop",
                "cluster:pg-table:events@db-1:5432/shop",
                "vacuum-full:pg-table:orders@db-1:5432/shop",
            ],
        ),
        (
            "sudo -u postgres psql -d shop <<'SQL'\nCREATE INDEX CONCURRENTLY idx_a ON orders (a);\nALTER ROLE app CONNECTION LIMIT 50;\nSELECT pg_cancel_backend(77);\nSQL",
            &[
                "cancel:pg-backend:77@local:5432",
                "edit:pg-index:idx_a@local:5432/shop",
                "edit:pg-role:app@local:5432",
            ],
        ),
        (
            "mysql -h db -e 'KILL 42; KILL QUERY 43; DROP INDEX i ON t' shop",
            &[
                "cancel:mysql-backend:43@db:3306",
                "drop:mysql-index:t.i@db:3306/shop",
                "terminate:mysql-backend:42@db:3306",
            ],
        ),
        (
            "sudo mysql -e 'SET GLOBAL max_connections = 500'",
            &["set=500:mysql-setting:max_connections@local:3306,as:root"],
        ),
        (
            // CASCADE drops what depends on the index too: another verb, the same card.
            "sudo -u postgres psql -d shop -c 'DROP INDEX i CASCADE; DROP TABLE t'",
            &[
                "drop-cascade:pg-index:i@local:5432/shop",
                "drop:pg-table:t@local:5432/shop",
            ],
        ),
        (
            "redis-cli -h cache FLUSHALL",
            &["flush:redis-db:all@cache:6379"],
        ),
        (
            "redis-cli -s /run/redis/redis.sock CONFIG SET appendonly yes save ''",
            &[
                "edit:redis-config:save@/run/redis/redis.sock",
                "set=yes:redis-config:appendonly@/run/redis/redis.sock",
            ],
        ),
    ];
    for (command, expected) in table {
        assert_eq!(keys(command), *expected, "{command:?}");
    }
}

/// Two commands on different servers, databases or objects: no shared subject.
#[test]
fn database_objects_in_different_places_share_no_key() {
    let slot =
        |prefix: &str| format!("{prefix} -c \"select pg_drop_replication_slot('standby_b')\"");
    let pairs = [
        (slot("sudo -u postgres psql"), slot("psql -h db-1")),
        (slot("psql -h db-1"), slot("psql -h db-2")),
        (slot("psql -h db-1"), slot("psql -h db-1 -p 5433")),
        (slot("psql"), slot("psql -h localhost")),
        (slot("PGPORT=5433 psql"), slot("psql")),
        (slot("psql service=replica"), slot("psql")),
        (
            slot("psql -h db-1"),
            "psql -h db-1 -c \"select pg_drop_replication_slot('standby_c')\"".to_string(),
        ),
        (
            "psql -h db-1 -d shop -c 'VACUUM orders'".into(),
            "psql -h db-1 -d blog -c 'VACUUM orders'".into(),
        ),
        (
            "psql -h db-1 -d shop -c 'VACUUM orders'".into(),
            "psql -h db-1 -d shop -c 'VACUUM archive.orders'".into(),
        ),
        (
            "sudo -u postgres psql -c 'REINDEX TABLE orders'".into(),
            "sudo -u app psql -c 'REINDEX TABLE orders'".into(),
        ),
        (
            "sudo -u postgres psql -c 'SELECT pg_terminate_backend(1)'".into(),
            "sudo -u postgres psql -c 'SELECT pg_terminate_backend(2)'".into(),
        ),
        (
            "sudo -u postgres psql -c 'ALTER SYSTEM SET work_mem = 1' ".into(),
            "sudo -u postgres psql -c 'ALTER SYSTEM SET maintenance_work_mem = 1'".into(),
        ),
        (
            "mysql -h db -e 'SET GLOBAL max_connections = 500'".into(),
            "mysql -h db -P 3307 -e 'SET GLOBAL max_connections = 500'".into(),
        ),
        (
            "mysql -e 'SET GLOBAL max_connections = 500'".into(),
            "sudo mysql -e 'SET GLOBAL max_connections = 500'".into(),
        ),
        (
            "redis-cli -n 1 flushdb".into(),
            "redis-cli -n 2 flushdb".into(),
        ),
        (
            "redis-cli flushdb".into(),
            "redis-cli -p 6380 flushdb".into(),
        ),
        ("redis-cli flushall".into(), "redis-cli flushdb".into()),
        (
            "redis-cli config set maxmemory 1gb".into(),
            "redis-cli -h cache config set maxmemory 1gb".into(),
        ),
        // The same name under another manager.
        (
            "sudo -u postgres psql -c 'DROP INDEX i'".into(),
            "sudo -u postgres mysql -e 'DROP INDEX i ON t' postgres".into(),
        ),
    ];
    for (a, b) in &pairs {
        let (sa, sb) = (subjects(a), subjects(b));
        assert!(
            !sa.is_empty() && !sb.is_empty(),
            "{a:?} {sa:?} / {b:?} {sb:?}"
        );
        assert!(sa.is_disjoint(&sb), "{a:?} and {b:?} share {sa:?}");
    }
}

/// The wrong-merge guard: a server or database the line does not make certain, SQL that
/// is not in the line or may act elsewhere, and reading, give no key.
#[test]
fn an_uncertain_database_or_a_read_gives_no_database_key() {
    for command in [
        // Reads.
        "sudo -u postgres psql -c 'SELECT * FROM pg_stat_activity'",
        "sudo -u postgres psql -Atc \"SELECT slot_name, active FROM pg_replication_slots\"",
        "sudo -u postgres psql -c CHECKPOINT",
        "sudo -u postgres psql -l",
        "mysql -e 'SHOW PROCESSLIST'",
        "redis-cli CONFIG GET maxmemory",
        "redis-cli INFO memory",
        // A selection no literal pins.
        "sudo -u postgres psql -c 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = $$idle$$'",
        "sudo -u postgres psql -c \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active\"",
        "sudo -u postgres psql -c \"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'a' OR slot_name = 'b'\"",
        // The server is decided at run time or by something the line changed.
        "psql -h \"$DB\" -c \"select pg_drop_replication_slot('x')\"",
        "export PGHOST=$H; psql -c \"select pg_drop_replication_slot('x')\"",
        "export PGHOST=db-1; sudo -u postgres psql -c \"select pg_drop_replication_slot('x')\"",
        "PGSERVICEFILE=/tmp/s psql service=a -c \"select pg_drop_replication_slot('x')\"",
        "psql 'host=a,b' -c \"select pg_drop_replication_slot('x')\"",
        "psql -h db-1 'host=db-2' -c \"select pg_drop_replication_slot('x')\"",
        "psql --cluster 15/main -c \"select pg_drop_replication_slot('x')\"",
        "mysql --defaults-file=/etc/x.cnf -e 'KILL 4'",
        "redis-cli -h $R flushall",
        "redis-cli -u redis://a -h b flushall",
        // The SQL is not in the line, or may move before it acts.
        "sudo -u postgres psql -f /tmp/drop.sql",
        "sudo -u postgres psql -c \"$SQL\"",
        "sudo -u postgres psql <<EOF\nSELECT pg_drop_replication_slot('$SLOT');\nEOF",
        "sudo -u postgres psql < /tmp/drop.sql",
        "sudo -u postgres psql -c '\\c other' -c \"select pg_drop_replication_slot('x')\"",
        "sudo -u postgres psql -v s=x -c \"select pg_drop_replication_slot(:'s')\"",
        "mysql -h db -e 'USE other; DROP INDEX i ON t' shop",
        "mysql -h db -e 'source /tmp/x.sql; DROP INDEX i ON t' shop",
        "redis-cli -x CONFIG SET maxmemory",
        // The database of a table is not certain (the runner's user names it).
        "psql -c 'VACUUM orders'",
        "psql -h db-1 -c 'VACUUM orders'",
        "sudo -u postgres psql -c 'SET search_path = x; VACUUM orders'",
        // Statements sqlparser or the grammar does not read.
        "sudo -u postgres psql -c 'VACUUM'",
        "sudo -u postgres psql -c 'REINDEX DATABASE shop'",
        "sudo -u postgres psql -c 'ALTER SYSTEM RESET ALL'",
        "sudo -u postgres psql -c 'VACUUM orders (a)'",
    ] {
        assert!(
            keys(command).is_empty(),
            "{command:?} gave {:?}",
            keys(command)
        );
    }
    // A server-wide object keeps its key when only the database is uncertain.
    assert_eq!(
        keys("psql -c \"select pg_drop_replication_slot('x')\""),
        ["drop:pg-slot:x@local:5432"]
    );
}

#[test]
fn cards_name_database_subjects_readably() {
    for (subject, label) in [
        (
            "pg-slot:standby_b@local:5432",
            "slot standby_b on local:5432",
        ),
        (
            "pg-setting:max_slot_wal_keep_size@db-1:5432",
            "setting max_slot_wal_keep_size on db-1:5432",
        ),
        (
            "pg-config:server@local:5432",
            "configuration of server on local:5432",
        ),
        ("pg-backend:4242@local:5432", "backend 4242 on local:5432"),
        ("pg-role:app@db-1:5432", "role app on db-1:5432"),
        (
            "pg-table:public.orders@db-1:5432/shop",
            "table public.orders in shop on db-1:5432",
        ),
        (
            "pg-index:orders_pkey@local:5432/postgres",
            "index orders_pkey in postgres on local:5432",
        ),
        (
            "mysql-setting:max_connections@db:3306",
            "MySQL setting max_connections on db:3306",
        ),
        ("redis-db:2@cache:6379", "redis database 2 on cache:6379"),
        (
            "redis-db:all@cache:6379",
            "every redis database on cache:6379",
        ),
        (
            "redis-config:maxmemory@local:6379",
            "redis setting maxmemory on local:6379",
        ),
    ] {
        assert_eq!(subject_label(subject), label);
    }
}

/// Hostile SQL (deep nesting, long chains of operators) is refused by sqlparser's
/// recursion limit, never a stack overflow, even on a test thread's small stack in a
/// debug build; it gives no key.
#[test]
fn deeply_nested_sql_neither_overflows_the_stack_nor_gives_a_key() {
    for sql in [
        format!("select {}1{}", "(".repeat(5000), ")".repeat(5000)),
        format!("select {}1{}", "(".repeat(49), ")".repeat(49)),
        format!("select {}1", "-".repeat(5000)),
        format!("select {}1", "not ".repeat(5000)),
        format!("select {}1", "1+".repeat(20000)),
        format!(
            "select pg_drop_replication_slot({}'x'{})",
            "(".repeat(60),
            ")".repeat(60)
        ),
        format!("VACUUM {}", "t, ".repeat(5000)),
        // Within the bound (96 tokens): nesting without brackets, chains of operators.
        format!(
            "select {}1{}",
            "case when true then ".repeat(8),
            " end".repeat(8)
        ),
        format!("select 1{}", "^1".repeat(45)),
        format!("select 1{}", "::int".repeat(45)),
        format!("select {}1", "@ ".repeat(90)),
        format!("select {}1", "|/ ".repeat(90)),
        format!("select 1{}", " is not null".repeat(30)),
        format!("select a{}", " collate x".repeat(45)),
        format!("select x{}", " between 1 and 2".repeat(20)),
        format!("select {}1{}", "interval ".repeat(90), ""),
        format!("select {}1", "- ~ ".repeat(45)),
        format!("select {} 1 ", "exists ".repeat(90)),
    ] {
        let command = format!("sudo -u postgres psql -c \"{sql}\"");
        assert!(keys(&command).is_empty(), "{:?}", keys(&command));
    }
}
