//! Which shards the emulator reads, and when. As with the AWS event source mapping (and the
//! Kinesis Client Library), the children of a split or merge are read only after every parent
//! has been read to its end and all of its records delivered, so that the records of one
//! partition key reach the function in order across a reshard.

use std::collections::BTreeMap;

use super::StartingPosition;

/// One shard as ListShards describes it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The shard id.
    pub id: String,
    /// The shard it was split from, or the two it was merged from.
    pub parents: Vec<String>,
    /// Whether the shard is closed (it has an ending sequence number).
    pub closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not started: some parent is not finished yet.
    Waiting,
    Reading,
    /// Read to its end (closed) and every record delivered.
    Finished,
    /// Its reader stopped early (Ctrl-C or `--exit-when-idle-s`); its children never start.
    Stopped,
}

#[derive(Debug)]
struct Entry {
    parents: Vec<String>,
    start: StartingPosition,
    state: State,
}

/// The shards seen so far and the state of each.
#[derive(Debug, Default)]
pub struct ShardTable {
    shards: BTreeMap<String, Entry>,
    listed_before: bool,
}

impl ShardTable {
    /// Adds the shards not seen before from a full listing; returns how many were new. A
    /// waiting shard missing from the listing is gone (past retention) and counts as finished.
    ///
    /// In the first listing, shards start where `first_start` says, with two exceptions for
    /// `StartingPosition::Latest`: a closed shard counts as finished (nothing new arrives in it), and a
    /// shard whose parent is listed open (a reshard between ListShards pages) waits for that
    /// parent and starts at its beginning. A shard first seen in a later listing was made by a
    /// reshard after the emulator started, and is read from its beginning once its parents are
    /// finished.
    pub fn add(&mut self, listed: Vec<Listed>, first_start: StartingPosition) -> usize {
        let first = !self.listed_before;
        self.listed_before = true;
        let open: std::collections::HashSet<String> =
            listed.iter().filter(|s| !s.closed).map(|s| s.id.clone()).collect();
        let ids: std::collections::HashSet<String> = listed.iter().map(|s| s.id.clone()).collect();
        for (id, entry) in &mut self.shards {
            if entry.state == State::Waiting && !ids.contains(id) {
                entry.state = State::Finished;
            }
        }
        let mut added = 0;
        for shard in listed {
            if self.shards.contains_key(&shard.id) {
                continue;
            }
            let parent_open = shard.parents.iter().any(|p| open.contains(p));
            let (start, state) = match (first, first_start, shard.closed, parent_open) {
                (true, StartingPosition::Latest, true, _) => (StartingPosition::Latest, State::Finished),
                (true, StartingPosition::Latest, false, true) | (false, _, _, _) => {
                    (StartingPosition::TrimHorizon, State::Waiting)
                }
                (true, start, _, _) => (start, State::Waiting),
            };
            self.shards.insert(shard.id, Entry { parents: shard.parents, start, state });
            added += 1;
        }
        added
    }

    /// The waiting shards whose parents are all finished (or were never listed: past the
    /// retention period already), marked as reading, with where each starts.
    pub fn start_ready(&mut self) -> Vec<(String, StartingPosition)> {
        let ready: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, entry)| entry.state == State::Waiting)
            .filter(|(_, entry)| {
                entry.parents.iter().all(|p| self.shards.get(p).is_none_or(|parent| parent.state == State::Finished))
            })
            .map(|(id, _)| id.clone())
            .collect();
        ready
            .into_iter()
            .filter_map(|id| {
                let entry = self.shards.get_mut(&id)?;
                entry.state = State::Reading;
                Some((id, entry.start))
            })
            .collect()
    }

    /// Records that a shard's reader returned: `closed` when it read the shard to its end.
    pub fn ended(&mut self, id: &str, closed: bool) {
        if let Some(entry) = self.shards.get_mut(id) {
            entry.state = if closed { State::Finished } else { State::Stopped };
        }
    }

    /// How many shards the table knows.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether the table knows no shard.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> Listed {
        Listed { id: id.into(), parents: parents.iter().map(|p| (*p).to_string()).collect(), closed }
    }

    fn ids(started: &[(String, StartingPosition)]) -> Vec<&str> {
        started.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn children_wait_until_every_parent_is_read_to_its_end() {
        let mut table = ShardTable::default();
        // Shard 0 was split into 1 and 2; 2 and 3 were later merged into 4.
        let listing = vec![
            shard("0", &[], true),
            shard("1", &["0"], false),
            shard("2", &["0"], true),
            shard("3", &[], true),
            shard("4", &["2", "3"], false),
        ];
        assert_eq!(table.add(listing.clone(), StartingPosition::TrimHorizon), 5);
        assert_eq!(table.add(listing, StartingPosition::TrimHorizon), 0, "known shards are not added again");
        assert_eq!(
            table.start_ready(),
            vec![("0".into(), StartingPosition::TrimHorizon), ("3".into(), StartingPosition::TrimHorizon)]
        );
        assert!(table.start_ready().is_empty(), "a started shard is not started again");
        table.ended("0", true);
        assert_eq!(ids(&table.start_ready()), ["1", "2"]);
        table.ended("2", true);
        assert!(table.start_ready().is_empty(), "4 still waits for 3");
        table.ended("3", true);
        assert_eq!(ids(&table.start_ready()), ["4"]);
    }

    #[test]
    fn a_stopped_parent_holds_its_children_and_a_parent_past_retention_does_not() {
        let mut table = ShardTable::default();
        table.add(
            vec![shard("1", &["0"], false), shard("3", &["2"], false), shard("2", &[], false)],
            StartingPosition::Latest,
        );
        // 0 is no longer listed (trimmed): 1 may start. 2 is open: 3 waits for it.
        assert_eq!(
            table.start_ready(),
            vec![("1".into(), StartingPosition::Latest), ("2".into(), StartingPosition::Latest)]
        );
        table.ended("2", false);
        assert!(table.start_ready().is_empty());
    }

    #[test]
    fn latest_skips_closed_shards_and_later_shards_start_at_their_beginning() {
        let mut table = ShardTable::default();
        table.add(
            vec![shard("0", &[], true), shard("1", &["0"], false), shard("2", &["0"], false)],
            StartingPosition::Latest,
        );
        assert_eq!(
            table.start_ready(),
            vec![("1".into(), StartingPosition::Latest), ("2".into(), StartingPosition::Latest)]
        );
        // Shard 1 is split after the emulator started: its children start at TRIM_HORIZON.
        assert_eq!(table.add(vec![shard("3", &["1"], false), shard("4", &["1"], false)], StartingPosition::Latest), 2);
        assert!(table.start_ready().is_empty());
        table.ended("1", true);
        assert_eq!(
            table.start_ready(),
            vec![("3".into(), StartingPosition::TrimHorizon), ("4".into(), StartingPosition::TrimHorizon)]
        );
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn with_latest_a_child_of_an_open_parent_waits_and_starts_at_its_beginning() {
        // The parent was split between two ListShards pages: listed open, its child listed too.
        let mut table = ShardTable::default();
        table.add(vec![shard("0", &[], false), shard("1", &["0"], false)], StartingPosition::Latest);
        assert_eq!(table.start_ready(), vec![("0".into(), StartingPosition::Latest)]);
        table.ended("0", true);
        assert_eq!(table.start_ready(), vec![("1".into(), StartingPosition::TrimHorizon)]);
    }

    #[test]
    fn a_waiting_shard_that_disappears_from_the_listing_releases_its_children() {
        let mut table = ShardTable::default();
        table.add(
            vec![shard("0", &[], false), shard("1", &["0"], false), shard("2", &["1"], false)],
            StartingPosition::TrimHorizon,
        );
        assert_eq!(ids(&table.start_ready()), ["0"]);
        // 0 and 1 fall out of the listing (past retention). 1 was waiting: it can never be
        // read, so it counts as finished and 2 starts. (0's reader ends when Kinesis answers
        // that its shard is gone.)
        assert_eq!(table.add(vec![shard("2", &["1"], false)], StartingPosition::TrimHorizon), 0);
        assert_eq!(table.start_ready(), vec![("2".into(), StartingPosition::TrimHorizon)]);
    }

    #[test]
    fn at_a_timestamp_the_first_listing_starts_there_parents_first_and_later_shards_at_their_beginning() {
        let mut table = ShardTable::default();
        let at = StartingPosition::AtTimestamp;
        table.add(vec![shard("0", &[], true), shard("1", &["0"], false)], at);
        // The closed parent is read from the timestamp (it may hold records after it), then its child.
        assert_eq!(table.start_ready(), vec![("0".into(), at)]);
        table.ended("0", true);
        assert_eq!(table.start_ready(), vec![("1".into(), at)]);
        table.ended("1", true);
        table.add(vec![shard("2", &["1"], false)], at);
        assert_eq!(table.start_ready(), vec![("2".into(), StartingPosition::TrimHorizon)]);
    }
}
