//! Watermark acknowledgement: which source positions are safe to commit.
//!
//! Records are registered in the order a source read them. Each partition keeps its records in
//! flight in read order; a position becomes committable when its record and every earlier record
//! of the same partition are done (delivered or dead-lettered). A failed record is never done, so
//! the watermark of its partition stops before it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::record::Position;

/// A handle for one registered record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    partition: Arc<str>,
    seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
    Failed,
}

#[derive(Debug, Default)]
struct Partition {
    /// Sequence number of `pending.front()`.
    base: u64,
    pending: VecDeque<(Position, State)>,
}

/// Tracks records in flight for one source and yields committable positions.
#[derive(Debug, Default)]
pub struct WatermarkTracker {
    partitions: HashMap<Arc<str>, Partition>,
    /// Newest committable position per partition not yet taken.
    ready: BTreeMap<Arc<str>, Position>,
}

impl WatermarkTracker {
    /// Registers a record read from `position`; records of one partition must be registered in
    /// read order.
    pub fn register(&mut self, position: Position) -> Ticket {
        let partition = self.partitions.entry(position.partition.clone()).or_default();
        let seq = partition.base + partition.pending.len() as u64;
        let ticket = Ticket { partition: position.partition.clone(), seq };
        partition.pending.push_back((position, State::InFlight));
        ticket
    }

    /// Marks a record done (`ok`: delivered or dead-lettered) or failed (never committable).
    pub fn complete(&mut self, ticket: &Ticket, ok: bool) {
        let Some(partition) = self.partitions.get_mut(&ticket.partition) else { return };
        let Some(index) = ticket.seq.checked_sub(partition.base) else { return };
        let Some(slot) = partition.pending.get_mut(index as usize) else { return };
        if slot.1 == State::InFlight {
            slot.1 = if ok { State::Done } else { State::Failed };
        }
        while let Some((_, State::Done)) = partition.pending.front() {
            if let Some((position, _)) = partition.pending.pop_front() {
                partition.base += 1;
                self.ready.insert(ticket.partition.clone(), position);
            }
        }
    }

    /// Positions that became committable since the last call, one per partition (the newest).
    pub fn take_committable(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.ready).into_values().collect()
    }

    /// Records registered and not yet done (failed ones included).
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Offset;
    use proptest::prelude::*;

    fn pos(partition: &str, offset: u64) -> Position {
        Position { source: "s".into(), partition: partition.into(), offset: Offset::Index(offset) }
    }

    #[test]
    fn out_of_order_completion_waits_for_the_oldest() {
        let mut t = WatermarkTracker::default();
        let a = t.register(pos("p", 1));
        let b = t.register(pos("p", 2));
        t.complete(&b, true);
        assert!(t.take_committable().is_empty());
        t.complete(&a, true);
        assert_eq!(t.take_committable(), vec![pos("p", 2)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_failed_record_holds_its_partition_only() {
        let mut t = WatermarkTracker::default();
        let a = t.register(pos("p", 1));
        let b = t.register(pos("p", 2));
        let c = t.register(pos("q", 1));
        t.complete(&a, false);
        t.complete(&b, true);
        t.complete(&c, true);
        assert_eq!(t.take_committable(), vec![pos("q", 1)]);
        assert_eq!(t.in_flight(), 2);
    }

    proptest! {
        /// A commit never passes a record that is not done, and once every record is done the
        /// watermark reaches the last record of each partition that had no failure.
        #[test]
        fn commits_never_pass_an_undone_record(
            partitions in proptest::collection::vec(0u8..4, 1..200),
            order_seed in any::<u64>(),
            failures in proptest::collection::vec(any::<bool>(), 200),
            fail_rate in 0u8..3,
        ) {
            let mut t = WatermarkTracker::default();
            let mut next_offset: HashMap<u8, u64> = HashMap::new();
            let mut tickets = Vec::new();
            for &p in &partitions {
                let offset = next_offset.entry(p).or_insert(0);
                *offset += 1;
                tickets.push((p, *offset, t.register(pos(&p.to_string(), *offset))));
            }
            // A deterministic shuffle from the seed.
            let mut order: Vec<usize> = (0..tickets.len()).collect();
            let mut state = order_seed | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let ok_of = |i: usize| fail_rate == 0 || !(failures[i] && i.is_multiple_of(fail_rate as usize + 1));
            let mut done = vec![false; tickets.len()];
            let mut committed: HashMap<String, u64> = HashMap::new();
            for &i in &order {
                let ok = ok_of(i);
                t.complete(&tickets[i].2, ok);
                done[i] = ok;
                for position in t.take_committable() {
                    let Offset::Index(offset) = position.offset else { unreachable!() };
                    let part: u8 = position.partition.parse().unwrap();
                    // Every record of this partition up to `offset` must be done.
                    for (j, (p, o, _)) in tickets.iter().enumerate() {
                        if *p == part && *o <= offset {
                            prop_assert!(done[j], "committed {part}@{offset} past undone record @{o}");
                        }
                    }
                    let prev = committed.insert(position.partition.to_string(), offset);
                    prop_assert!(prev.is_none_or(|prev| prev < offset), "watermark went backwards");
                }
            }
            // End state: each partition's watermark sits just before its first failure.
            for (&part, &last) in &next_offset {
                let first_failed = tickets.iter().enumerate()
                    .filter(|(j, (p, _, _))| *p == part && !done[*j])
                    .map(|(_, (_, o, _))| *o)
                    .min();
                let expected = match first_failed { Some(f) => f - 1, None => last };
                let got = committed.get(&part.to_string()).copied().unwrap_or(0);
                prop_assert_eq!(got, expected);
            }
        }
    }
}
