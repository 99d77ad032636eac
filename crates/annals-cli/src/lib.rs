//! The library half of the `annals` tool: what the command line and the web viewer (`annals
//! serve`) share, so that both find and show the same entries.
//!
//! - [`search`]: entries of a store matching a pattern and filters (`annals grep`, the viewer's
//!   search box), with the filter and time parsing both use.
//! - [`lineage`]: a session's fork tree (`annals tree`, `cat --all`, the search order).
//! - [`transcript`]: an entry's role and text, for one-line views.
//!
//! Not a stable API for other programs: it follows the tool's needs.

pub mod lineage;
pub mod search;
pub mod transcript;
