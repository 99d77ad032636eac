//! The harness: a store under test with what it needs ([`Fixture`]), the table of scenarios
//! ([`SCENARIOS`]), the runners ([`check_all`], [`run_all`]) and the test macro.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::support::TempStore;
use crate::{FsOptions, Store};

/// A store under test, and whatever must outlive it (a temporary directory, say).
pub struct Fixture {
    store: Arc<dyn Store>,
    // Declared after `store`, so dropped after it: the directory must outlive the store's files.
    guard: Option<Box<dyn Any>>,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("guard", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Wraps a store.
    pub fn new(store: impl Store + 'static) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Wraps a store that is already shared.
    #[must_use]
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self { store, guard: None }
    }

    /// Keeps `guard` alive until the fixture is dropped, and drops it after the store.
    #[must_use]
    pub fn keeping(mut self, guard: impl Any) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The store, borrowed.
    #[must_use]
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The store, shared (for scenarios that hand it to spawned threads).
    #[must_use]
    pub fn shared(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
}

impl<S: Store + 'static> From<S> for Fixture {
    fn from(store: S) -> Self {
        Self::new(store)
    }
}

impl From<Arc<dyn Store>> for Fixture {
    fn from(store: Arc<dyn Store>) -> Self {
        Self::from_arc(store)
    }
}

/// A fresh [`FsStore`] in a new temporary directory (removed when the fixture is dropped). The
/// store's root is a subdirectory that does not exist yet, so opening it also creates it.
///
/// # Panics
/// If the directory cannot be created or the store cannot be opened.
#[must_use]
pub fn temp_fs_store(options: FsOptions) -> Fixture {
    TempStore::with_options(options).into_fixture()
}

/// One scenario of the suite, by name.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// The scenario's name: the name of its function in this module, read as a specification.
    pub name: &'static str,
    /// Runs it against the fixture's store; panics on failure.
    pub run: fn(&Fixture),
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A scenario that failed, with its panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The scenario's name.
    pub scenario: &'static str,
    /// What it reported.
    pub message: String,
}

/// Every scenario of the suite, in the order the module lists them.
pub const SCENARIOS: &[Scenario] = crate::__annals_scenarios!(__annals_scenario_table {});

/// Runs every scenario, each against a store fresh from `fresh`, and returns the ones that
/// failed (empty if the store conforms). Each failure's panic is also reported by the panic
/// hook as usual.
pub fn check_all(mut fresh: impl FnMut() -> Fixture) -> Vec<Failure> {
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let fixture = fresh();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (scenario.run)(&fixture))) {
            failures.push(Failure {
                scenario: scenario.name,
                message: panic_message(payload.as_ref()),
            });
        }
    }
    failures
}

/// Runs every scenario (see [`check_all`]).
///
/// # Panics
/// If any scenario fails, naming every one that did.
pub fn run_all(fresh: impl FnMut() -> Fixture) {
    let failures = check_all(fresh);
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|f| format!("  {}: {}", f.scenario, f.message))
            .collect();
        panic!(
            "{} of {} conformance scenarios failed:\n{}",
            failures.len(),
            SCENARIOS.len(),
            list.join("\n")
        );
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __annals_scenario_table {
    (store: [$($store:ident),* $(,)?], shared: [$($shared:ident),* $(,)?], ) => {
        &[
            $($crate::testing::Scenario {
                name: stringify!($store),
                run: |fixture| $crate::testing::$store(fixture.store()),
            },)*
            $($crate::testing::Scenario {
                name: stringify!($shared),
                run: |fixture| $crate::testing::$shared(fixture.shared()),
            },)*
        ]
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __annals_conformance_tests {
    (fixture: ($fixture:expr), store: [$($store:ident),* $(,)?], shared: [$($shared:ident),* $(,)?], ) => {
        $(
            #[test]
            fn $store() {
                let fixture = $crate::testing::Fixture::from($fixture);
                $crate::testing::$store(fixture.store());
            }
        )*
        $(
            #[test]
            fn $shared() {
                let fixture = $crate::testing::Fixture::from($fixture);
                $crate::testing::$shared(fixture.shared());
            }
        )*
    };
}

/// Expands to one `#[test]` per conformance scenario, each running against a fresh store made
/// by evaluating the expression (a [`Store`], an `Arc<dyn Store>` or a
/// [`Fixture`](crate::testing::Fixture)). Put it in its own module when you run the suite
/// against several configurations, since the test functions are named after the scenarios.
/// Needs the `testing` feature. See [`testing`](crate::testing).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr $(,)?) => {
        $crate::__annals_scenarios! {
            __annals_conformance_tests { fixture: ($fixture), }
        }
    };
}
