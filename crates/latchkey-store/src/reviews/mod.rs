//! Access review storage: campaigns and their templates, the snapshot of items a campaign
//! reviews (with evidence and reviewers), decisions, and the manual tasks of revokes that
//! provisioning cannot carry out. The rules (who reviews, what to recommend, when a campaign
//! ends) live in `latchkey-reviews`; this module only reads and writes.

mod campaigns;
mod items;
mod manual;
mod snapshot;

pub use campaigns::*;
pub use items::*;
pub use manual::*;
pub use snapshot::*;
