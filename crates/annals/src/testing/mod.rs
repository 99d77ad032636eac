//! The conformance suite: the behaviour every [`Store`](crate::Store) must have, written once and run against
//! every backend (the filesystem store, the memory store, and yours).
//!
//! Each scenario is a public function taking the store under test — `&dyn Store`, or
//! `Arc<dyn Store>` for the ones that spawn threads — and panicking with a message that says
//! what went wrong. Scenarios write only to sessions they create, but the listing scenario
//! expects no newer session to appear while it runs: give each scenario a fresh store (the
//! macro and [`run_all`] do). A scenario runs in well under a second on the in-memory and
//! filesystem stores; a few spawn up to eight threads.
//!
//! # Running it against a third-party backend
//!
//! Add `annals = { version = "…", features = ["testing"] }` to your `[dev-dependencies]`, then
//! in an integration test:
//!
//! ```
//! // tests/conformance.rs of your crate. The expression is evaluated once per test, so each
//! // test gets a fresh store. It may be a store, an `Arc<dyn Store>`, or a `Fixture` that also
//! // keeps alive what the store needs (a temporary directory, a server connection).
//! annals::conformance_tests!(annals::MemStore::new());
//! # fn main() {}
//! ```
//!
//! This expands to one `#[test]` per scenario, named after it, so a failure names the
//! behaviour that broke. A backend that keeps data on disk wraps its temporary directory in
//! the fixture:
//!
//! ```
//! use annals::testing::Fixture;
//!
//! fn fresh() -> Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = annals::FsStore::open(dir.path()).unwrap();
//!     // The directory is removed when the fixture is dropped, after the store.
//!     Fixture::new(store).keeping(dir)
//! }
//!
//! annals::conformance_tests!(fresh());
//! # fn main() {}
//! ```
//!
//! Without the macro (a custom harness, or one test that runs everything), [`run_all`] runs
//! every scenario and panics with the list of the ones that failed; [`check_all`] returns that
//! list instead:
//!
//! ```
//! annals::testing::run_all(|| annals::MemStore::new().into());
//! ```
//!
//! The scenarios are also listed in [`SCENARIOS`], to run one at a time.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test suite reports a failure by panicking, with the index or value at fault"
)]

// The harness: fixtures, the scenario table, the runners and the macros.
mod harness;
// Helpers the scenarios share: assertions and views of a segment through the `Store` trait.
mod check;
pub mod support;

// The scenarios, one file per family of behaviour. Each file's public functions are the
// scenarios (re-exported here, where the test macro and `SCENARIOS` find them by name).
mod append;
mod concurrency;
mod detector;
mod lease;
mod replay;
mod sessions;
mod sizes;
mod traces;
mod truncate_fork;

pub use self::append::*;
pub use self::concurrency::*;
pub use self::detector::*;
pub use self::harness::{check_all, run_all, temp_fs_store, Failure, Fixture, Scenario, SCENARIOS};
pub use self::lease::*;
pub use self::replay::*;
pub use self::sessions::*;
pub use self::sizes::*;
pub use self::traces::*;
pub use self::truncate_fork::*;

/// The list of scenarios, handed to `$callback` (a macro exported by this crate) after
/// `$args`. The one place that lists them: the test macro and [`SCENARIOS`] both come from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __annals_scenarios {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! {
            $($args)*
            store: [
                typed_entries_round_trip_with_nested_data_unicode_and_escapes,
                reading_into_a_type_that_does_not_fit_names_the_entry,
                create_segment_starts_with_its_initial_entries,
                create_segment_refuses_to_clobber_and_changes_nothing,
                batch_append_numbers_entries_consecutively_in_order,
                empty_batch_writes_nothing_and_returns_the_tip,
                operations_on_a_missing_segment_fail_with_segment_not_found,
                operations_on_a_missing_session_fail_with_not_found_and_create_nothing,
                entry_exactly_at_the_line_limit_is_accepted,
                entries_of_every_size_up_to_the_maximum_round_trip_through_every_write_path,
                entry_over_the_store_maximum_is_refused_with_nothing_written,
                batch_with_one_entry_over_the_maximum_writes_nothing,
                raw_replay_hands_out_blob_references_that_get_blob_resolves,
                attachments_are_stored_once_listed_in_order_and_read_back_checked,
                gc_removes_only_blobs_that_nothing_refers_to,
                tip_and_entry_count_follow_every_operation,
                truncate_keeps_the_first_entries_and_bumps_the_generation,
                truncate_beyond_the_end_is_refused_and_changes_nothing,
                append_if_refuses_a_stale_tip_and_writes_nothing,
                append_then_truncate_back_to_the_same_count_is_still_detected,
                writer_resync_accepts_the_current_tip_and_continues,
                writer_fork_continues_in_a_new_segment_and_leaves_the_old_one_alone,
                segment_writer_keeps_its_own_tally,
                fork_copies_the_prefix_and_records_lineage,
                fork_beyond_the_end_is_refused_and_creates_nothing,
                fork_into_an_existing_segment_is_refused_and_changes_nothing,
                listings_are_newest_first_and_describe_each_segment,
                find_session_and_exists_locate_segments,
                deleted_session_is_not_found_anywhere_and_can_be_created_again,
                session_modified_moves_forward_on_append_and_not_on_reads,
                trace_is_separate_from_the_log_and_survives_truncate,
                replay_from_seq_delivers_later_entries_and_checks_all,
                replay_stops_with_the_sink_error,
                replay_stops_early_when_the_sink_breaks,
                entries_carry_their_append_time_where_the_backend_records_it,
                sync_changes_nothing_visible_and_needs_the_segment,
                writer_truncate_keeps_its_tally_and_is_refused_when_stale,
                tolerant_replay_and_verify_of_a_clean_segment_are_clean,
                pretty_multi_line_json_is_stored_as_one_line_and_reads_back_equal,
                large_segments_are_cut_and_copied_at_exactly_the_right_entry,
                a_borrowed_store_serves_several_threads_at_once,
                replays_during_appends_and_truncates_always_see_a_whole_segment,
                a_lease_appends_truncates_and_forks_like_the_store_and_readers_read_throughout,
                a_second_lease_is_refused_with_locked_naming_the_holder_until_the_first_is_dropped,
            ],
            shared: [
                concurrent_appends_from_many_threads_get_unique_consecutive_sequence_numbers,
                concurrent_detector_writers_never_both_succeed_on_one_tip,
                an_owned_writer_moves_to_another_thread_and_keeps_detecting,
                a_writer_without_the_lease_waits_for_it_and_its_detector_sees_the_lease,
                threads_sharing_a_lease_get_unique_consecutive_sequence_numbers,
            ],
        }
    };
}
