//! `--shard K/N`: this process's deterministic share of a grid's cells.

use std::fmt;
use std::str::FromStr;

use super::{Cell, SweepError};

/// Shard `index` of `count` (0-based, as Slurm's `SLURM_ARRAY_TASK_ID` and Kubernetes'
/// `JOB_COMPLETION_INDEX` are): cell `i` of [`super::Grid::cells`] belongs to shard `i mod count`.
/// Cells are listed seed by seed, so every shard gets a mix of attacks and ratios, and the
/// shares differ in size by at most one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole grid in one process.
    pub const ALL: Self = Self { index: 0, count: 1 };

    /// True when cell number `cell` (in grid order) is this shard's.
    pub fn owns(&self, cell: usize) -> bool {
        cell % self.count == self.index
    }

    /// This shard's cells, in grid order.
    pub fn share<'a>(&self, cells: &'a [Cell]) -> Vec<&'a Cell> {
        cells
            .iter()
            .enumerate()
            .filter(|(i, _)| self.owns(*i))
            .map(|(_, c)| c)
            .collect()
    }
}

impl FromStr for Shard {
    type Err = SweepError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SweepError::Shard(text.to_owned());
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_cell_once() {
        for count in 1..=7 {
            let mut owners = vec![0; 27];
            for index in 0..count {
                let shard: Shard = format!("{index}/{count}").parse().unwrap();
                for (cell, owner) in owners.iter_mut().enumerate() {
                    *owner += usize::from(shard.owns(cell));
                }
            }
            assert!(owners.iter().all(|&n| n == 1), "{count}: {owners:?}");
        }
        for bad in ["", "1", "2/2", "0/0", "-1/2", "a/b", "1/2/3", "3/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
