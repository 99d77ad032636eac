//! Damaged stores: torn tails, flipped bytes, truncated files; what verify, cat, ls and stats
//! report, that they change nothing, and repair.

use std::fs;

use predicates::str::contains;
use serde_json::Value;

use crate::{count, flip_byte, stderr_of, stdout_of, tear, Fixture};

#[test]
fn a_torn_tail_is_a_note_not_a_problem() {
    let fx = Fixture::new();
    let key = fx.segment(4);
    let offset = tear(&fx.path(key));
    let out = fx.annals().arg("verify").output().unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "{}: note: torn tail of 24 bytes at byte {offset}",
            fx.path(key).display()
        )),
        "{text}"
    );
    assert!(text.contains("clean (1 torn tail, not damage)"), "{text}");
    // Readers skip it.
    let out = fx
        .annals()
        .args(["cat", &key.1.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(stdout_of(&out).lines().count(), 4);
}

#[test]
fn a_flipped_byte_is_reported_as_path_line_offset_reason_with_exit_1() {
    let fx = Fixture::new();
    let key = fx.segment(5);
    let _healthy = fx.segment(2);
    let path = fx.path(key);
    let offset = flip_byte(&path, 4);
    let out = fx.annals().arg("verify").output().unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("{}:4:{offset}: CRC mismatch", path.display())),
        "{text}"
    );
    assert!(
        text.contains("2 problems in 1 file"),
        "the bad CRC and the gap it leaves: {text}"
    );

    let out = fx.annals().args(["verify", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["clean"], false);
    assert_eq!(doc["summary"]["problems"], 2);
    let file = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["segment"] == key.1.to_string())
        .unwrap();
    assert_eq!(file["problems"][0]["line"], 4);
    assert_eq!(file["problems"][0]["offset"], offset);
    assert_eq!(file["valid_up_to"], offset);

    // The healthy segment alone is clean.
    fx.annals()
        .args(["verify", &_healthy.1.to_string()])
        .assert()
        .code(0);
}

#[test]
fn cat_stops_at_damage_in_strict_mode_and_skips_it_with_tolerant() {
    let fx = Fixture::new();
    let key = fx.segment(5);
    let path = fx.path(key);
    let offset = flip_byte(&path, 4);
    let out = fx
        .annals()
        .args(["cat", &key.1.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:4:{offset}", path.display())),
        "{err}"
    );
    assert!(err.contains("CRC mismatch"), "{err}");
    assert!(err.contains("annals repair"), "says what to do: {err}");

    let out = fx
        .annals()
        .args(["cat", &key.1.to_string(), "--tolerant"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "damage was found");
    let ns: Vec<u64> = stdout_of(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, vec![0, 1, 3, 4], "entry 2 (line 4) is skipped");
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "skipped damaged line, {}:4:{offset}",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn tail_of_a_segment_with_a_damaged_last_line_needs_tolerant() {
    let fx = Fixture::new();
    let key = fx.segment(5);
    flip_byte(&fx.path(key), 6);
    fx.annals()
        .args(["cat", &key.1.to_string(), "--tail", "2"])
        .assert()
        .code(1)
        .stderr(contains("CRC mismatch"));
    let out = fx
        .annals()
        .args(["cat", &key.1.to_string(), "--tail", "2", "--tolerant"])
        .output()
        .unwrap();
    let ns: Vec<u64> = stdout_of(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, vec![2, 3]);
}

#[test]
fn a_file_cut_short_mid_line_reads_as_a_torn_tail() {
    let fx = Fixture::new();
    let key = fx.segment(6);
    let path = fx.path(key);
    let bytes = fs::read(&path).unwrap();
    let cut = crate::line_start(&bytes, 6) + 20;
    fs::write(&path, &bytes[..cut]).unwrap();
    let out = fx.annals().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout_of(&out));
    assert!(stdout_of(&out).contains("torn tail of 20 bytes"));
    assert_eq!(
        stdout_of(
            &fx.annals()
                .args(["cat", &key.1.to_string()])
                .output()
                .unwrap()
        )
        .lines()
        .count(),
        4
    );
}

#[test]
fn a_file_cut_inside_its_header_is_damage_everywhere() {
    let fx = Fixture::new();
    let key = fx.segment(3);
    let path = fx.path(key);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..10]).unwrap();
    let out = fx.annals().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    assert!(stdout_of(&out).contains(&format!("{}:1:0:", path.display())));
    let out = fx
        .annals()
        .args(["ls", &key.0.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "damage seen: exit 1, as stats");
    assert!(stdout_of(&out).contains("DAMAGED"), "{}", stdout_of(&out));
    let out = fx.annals().args(["stats", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["damaged_count"], 1);
    fx.annals()
        .args(["repair", &key.1.to_string(), "--yes"])
        .assert()
        .code(1)
        .stderr(contains("nothing can be kept"));
    assert_eq!(fs::read(&path).unwrap(), &bytes[..10], "left alone");
}

#[test]
fn read_only_commands_leave_every_byte_alone_even_a_torn_tail() {
    let fx = Fixture::new();
    let torn = fx.segment(4);
    tear(&fx.path(torn));
    let flipped = fx.segment(4);
    flip_byte(&fx.path(flipped), 3);
    let healthy = fx.segment(3);
    annals::StoreExt::append_trace(
        &fx.store,
        healthy.0,
        healthy.1,
        &serde_json::json!({"e": 1}),
    )
    .unwrap();
    let before = fx.snapshot();
    let runs: Vec<Vec<String>> = vec![
        vec!["ls".into()],
        vec!["ls".into(), "--json".into()],
        vec!["ls".into(), torn.0.to_string()],
        vec!["cat".into(), torn.1.to_string()],
        vec![
            "cat".into(),
            torn.1.to_string(),
            "--tail".into(),
            "2".into(),
        ],
        vec!["cat".into(), flipped.1.to_string(), "--tolerant".into()],
        vec!["cat".into(), flipped.1.to_string()],
        vec!["verify".into()],
        vec!["verify".into(), "--json".into()],
        vec!["stats".into()],
        vec!["repair".into(), torn.1.to_string(), "--dry-run".into()],
        vec!["repair".into(), flipped.1.to_string(), "--dry-run".into()],
        vec!["repair".into(), flipped.1.to_string()],
    ];
    for args in &runs {
        fx.annals().args(args).output().unwrap();
        assert_eq!(
            fx.snapshot(),
            before,
            "`annals {}` changed the store",
            args.join(" ")
        );
    }
}

#[test]
fn repair_shows_the_cut_then_keeps_the_dropped_bytes_and_verifies_clean() {
    let fx = Fixture::new();
    let key = fx.segment(6);
    let path = fx.path(key);
    let offset = flip_byte(&path, 5);
    let original = fs::read(&path).unwrap();

    let out = fx
        .annals()
        .args(["repair", &key.1.to_string(), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let plan = stdout_of(&out);
    assert!(plan.contains("keep:  3 entries"), "{plan}");
    assert!(
        plan.contains(&format!(
            "drop:  {} bytes from byte {offset}",
            original.len() as u64 - offset
        )),
        "{plan}"
    );
    assert!(plan.contains("first problem: line 5"), "{plan}");
    assert!(plan.contains("dry run: nothing was changed"), "{plan}");

    // Not a terminal and no --yes: refused, nothing changed.
    fx.annals()
        .args(["repair", &key.1.to_string()])
        .assert()
        .code(2)
        .stderr(contains("--yes"));
    assert_eq!(fs::read(&path).unwrap(), original);

    let out = fx
        .annals()
        .args(["repair", &key.1.to_string(), "--yes"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr_of(&out));
    let shown_first = text.find("drop:").unwrap();
    let done = text.find("repaired:").unwrap();
    assert!(
        shown_first < done,
        "the plan is printed before the repair: {text}"
    );
    let backup = text
        .lines()
        .find_map(|l| l.strip_prefix("the dropped bytes are saved in "))
        .unwrap();
    assert_eq!(
        fs::read(backup).unwrap(),
        &original[usize::try_from(offset).unwrap()..]
    );
    assert_eq!(count(&fx.store, key), 3);
    fx.annals().arg("verify").assert().code(0);
    fx.annals()
        .args(["repair", &key.1.to_string(), "--yes"])
        .assert()
        .success()
        .stdout(contains("healthy"));
}

#[test]
fn repair_of_a_torn_tail_cuts_only_the_tail() {
    let fx = Fixture::new();
    let key = fx.segment(3);
    let path = fx.path(key);
    let len = tear(&path);
    let out = fx
        .annals()
        .args(["repair", &key.1.to_string(), "--yes"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("torn tail: 24 bytes at byte {len}")),
        "{text}"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    assert_eq!(count(&fx.store, key), 3);
}

#[test]
fn repair_never_touches_a_healthy_segment() {
    let fx = Fixture::new();
    let key = fx.segment(3);
    let before = fx.snapshot();
    fx.annals()
        .args(["repair", &key.1.to_string(), "--yes"])
        .assert()
        .success()
        .stdout(contains("healthy ("))
        .stdout(contains("nothing to do"));
    assert_eq!(fx.snapshot(), before);
}
