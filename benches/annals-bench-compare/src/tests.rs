//! Every contender must do the same work, or the ratios mean nothing: each stores and returns
//! exactly the entries it was given, in order, in both modes, from one thread or many.

use annals_bench::entries::{Corpus, Message, Variant};
use annals_bench::realshape::{Event, RealCorpus};

use crate::{contenders, Contender, Guarantee, Mode};

fn each(mode: Mode, mut check: impl FnMut(&str, &dyn Contender)) {
    let mut seen = 0;
    for (name, opener) in contenders() {
        let dir = tempfile::tempdir().unwrap();
        if let Some(store) = opener(dir.path(), mode) {
            check(name, store.as_ref());
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} contenders in {mode:?}");
}

#[test]
fn every_contender_returns_what_it_was_given_one_by_one_and_in_batches() {
    let corpus = Corpus::get(Variant::Small);
    for mode in [Mode::Buffered, Mode::Durable] {
        each(mode, |name, store| {
            let log = store.new_log();
            let other = store.new_log();
            for seq in 0..10 {
                store.append(log, seq, corpus.raw_at(seq));
            }
            store.append_batch(log, 10, &corpus.raw[10..74]);
            store.append(other, 0, corpus.raw_at(500));
            let mut got = Vec::new();
            assert_eq!(
                store.replay_messages(log, &mut |m| got.push(m)),
                74,
                "{name}"
            );
            assert_eq!(got, corpus.messages[..74], "{name} {mode:?}");
            if let Some(n) = store.count(log) {
                assert_eq!(n, 74, "{name}");
            }
            assert_eq!(store.count(other).unwrap_or(1), 1, "{name}");
            store.settle();
            let mut again: Vec<Message> = Vec::new();
            store.replay_messages(log, &mut |m| again.push(m));
            assert_eq!(again, got, "{name} after settle");
        });
    }
}

#[test]
fn every_contender_returns_real_shaped_entries_exactly() {
    let corpus = RealCorpus::get();
    let session = &corpus.session()[..300];
    each(Mode::Buffered, |name, store| {
        let log = store.new_log();
        for (k, chunk) in session.chunks(16).enumerate() {
            store.append_batch(log, (k * 16) as u64, chunk);
        }
        let mut got: Vec<Event> = Vec::new();
        assert_eq!(
            store.replay_events(log, &mut |e| got.push(e)),
            300,
            "{name}"
        );
        assert_eq!(got, corpus.events[..300], "{name}");
    });
}

#[test]
fn threads_appending_to_one_log_get_every_entry_once() {
    let corpus = Corpus::get(Variant::Small);
    each(Mode::Durable, |name, store| {
        let log = store.new_log();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    for i in 0..5 {
                        store.append_next(log, corpus.raw_at(t * 5 + i));
                    }
                });
            }
        });
        let mut got = Vec::new();
        assert_eq!(
            store.replay_messages(log, &mut |m| got.push(m)),
            20,
            "{name}"
        );
        got.sort_by(|a, b| a.id.cmp(&b.id));
        let mut want = corpus.messages[..20].to_vec();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, want, "{name}");
        if let Some(n) = store.count(log) {
            assert_eq!(n, 20, "{name}");
        }
    });
}

#[test]
fn guarantees_are_stated_per_mode() {
    each(Mode::Durable, |name, store| {
        assert_eq!(store.guarantee(), Guarantee::PowerCut, "{name}");
    });
    each(Mode::Buffered, |name, store| {
        let want = if name == "redb" {
            Guarantee::Nothing
        } else {
            Guarantee::ProcessCrash
        };
        assert_eq!(store.guarantee(), want, "{name}");
    });
}
