//! qcow2 images of a raw disk, written in one fixed layout.
//!
//! Version 3, 64 KiB clusters, 16-bit refcounts, no backing file, no compression, no
//! encryption, no snapshots, no feature bits, no header extensions (only the end marker),
//! header length 104, and no timestamps anywhere (qcow2 has none). A guest cluster whose
//! bytes are all zero is left unallocated (L2 entry 0): without a backing file it reads as
//! zeros, as `qemu-img convert` leaves it. The file holds, in order:
//! 1. the header (cluster 0);
//! 2. the refcount table;
//! 3. the L1 table;
//! 4. one L2 table for each 512 MiB of the disk that holds data, in guest order;
//! 5. the data clusters, in guest order;
//! 6. the refcount blocks, covering every cluster of the file (all refcounts are 1).
//!
//! L1 and L2 entries carry the COPIED flag (refcount 1). Checked by `qemu-img check` and
//! `qemu-img compare` against the raw disk.

use std::io;
use std::path::{Path, PathBuf};

use super::sink::{FileSink, Sink, for_each_chunk, is_zero};

/// log2 of the cluster size.
pub const CLUSTER_BITS: u32 = 16;
const C: u64 = 1 << CLUSTER_BITS;
const L2_ENTRIES: u64 = C / 8;
const REFS_PER_BLOCK: u64 = C / 2;
const COPIED: u64 = 1 << 63;

/// Errors of the qcow2 writer.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("cannot read the raw disk {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} changed while it was converted")]
    Changed { path: PathBuf },
    #[error("cannot write the qcow2 image {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where everything goes, in clusters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    size: u64,
    refcount_table: u64,
    refcount_table_clusters: u64,
    l1: u64,
    l1_entries: u64,
    /// L1 index -> cluster of its L2 table.
    l2: Vec<(u64, u64)>,
    /// Guest cluster -> host cluster, in guest order.
    data: Vec<(u64, u64)>,
    refblocks: u64,
    refblock_count: u64,
    total: u64,
}

impl Layout {
    fn new(size: u64, nonzero: &[u64]) -> Layout {
        let guest_clusters = size.div_ceil(C);
        let l1_entries = guest_clusters.div_ceil(L2_ENTRIES).max(1);
        let l1_clusters = (l1_entries * 8).div_ceil(C);
        let mut l2_indices: Vec<u64> = nonzero.iter().map(|g| g / L2_ENTRIES).collect();
        l2_indices.dedup();
        // The refcount table's size depends on the number of refcount blocks, which depends
        // on the file's size: grow both until they cover everything.
        let mut rt_clusters = 1;
        loop {
            let before_refblocks =
                1 + rt_clusters + l1_clusters + l2_indices.len() as u64 + nonzero.len() as u64;
            let mut refblocks = 1;
            while refblocks * REFS_PER_BLOCK < before_refblocks + refblocks {
                refblocks += 1;
            }
            if (refblocks * 8).div_ceil(C) <= rt_clusters {
                let l1 = 1 + rt_clusters;
                let l2_start = l1 + l1_clusters;
                let data_start = l2_start + l2_indices.len() as u64;
                return Layout {
                    size,
                    refcount_table: 1,
                    refcount_table_clusters: rt_clusters,
                    l1,
                    l1_entries,
                    l2: l2_indices
                        .iter()
                        .enumerate()
                        .map(|(i, &idx)| (idx, l2_start + i as u64))
                        .collect(),
                    data: nonzero
                        .iter()
                        .enumerate()
                        .map(|(i, &g)| (g, data_start + i as u64))
                        .collect(),
                    refblocks: before_refblocks,
                    refblock_count: refblocks,
                    total: before_refblocks + refblocks,
                };
            }
            rt_clusters += 1;
        }
    }

    fn header(&self) -> Vec<u8> {
        let mut h = vec![0u8; 104];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
        h[24..32].copy_from_slice(&self.size.to_be_bytes());
        h[36..40].copy_from_slice(&(self.l1_entries as u32).to_be_bytes());
        h[40..48].copy_from_slice(&(self.l1 * C).to_be_bytes());
        h[48..56].copy_from_slice(&(self.refcount_table * C).to_be_bytes());
        h[56..60].copy_from_slice(&(self.refcount_table_clusters as u32).to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&104u32.to_be_bytes());
        // The header-extension end marker (type 0, length 0) follows: eight zero bytes,
        // which the file already holds.
        h
    }

    fn refcount_table(&self) -> Vec<u8> {
        (0..self.refblock_count)
            .flat_map(|i| ((self.refblocks + i) * C).to_be_bytes())
            .collect()
    }

    fn l1_table(&self) -> Vec<u8> {
        let mut t = vec![0u8; (self.l1_entries * 8) as usize];
        for &(idx, cluster) in &self.l2 {
            let i = idx as usize * 8;
            t[i..i + 8].copy_from_slice(&((cluster * C) | COPIED).to_be_bytes());
        }
        t
    }

    fn l2_table(&self, l1_index: u64) -> Vec<u8> {
        let mut t = vec![0u8; C as usize];
        let lo = l1_index * L2_ENTRIES;
        let start = self.data.partition_point(|&(g, _)| g < lo);
        for &(g, host) in self.data[start..]
            .iter()
            .take_while(|&&(g, _)| g < lo + L2_ENTRIES)
        {
            let i = (g - lo) as usize * 8;
            t[i..i + 8].copy_from_slice(&((host * C) | COPIED).to_be_bytes());
        }
        t
    }

    /// Refcount block `i`: 1 for every cluster of the file it covers.
    fn refcount_block(&self, i: u64) -> Vec<u8> {
        let first = i * REFS_PER_BLOCK;
        let n = self.total.saturating_sub(first).min(REFS_PER_BLOCK);
        let mut b = vec![0u8; C as usize];
        for j in 0..n as usize {
            b[2 * j..2 * j + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        b
    }
}

/// Converts the raw disk `raw` into a qcow2 image at `out`. Returns the image's length.
pub fn write(raw: &Path, out: &Path) -> Result<u64, Qcow2Error> {
    let read_err = |source| Qcow2Error::Read {
        path: raw.to_path_buf(),
        source,
    };
    let werr = |source| Qcow2Error::Write {
        path: out.to_path_buf(),
        source,
    };
    // Pass 1: which guest clusters hold data.
    let mut nonzero = Vec::new();
    let size = for_each_chunk(raw, C as usize, read_err, |off, data| {
        if !is_zero(data) {
            nonzero.push(off / C);
        }
        Ok(())
    })?;
    let layout = Layout::new(size, &nonzero);

    let file = fs_err::File::create(out).map_err(werr)?;
    file.set_len(layout.total * C).map_err(werr)?;
    let mut sink = FileSink::new(file.file(), 0);
    sink.write_at(0, &layout.header()).map_err(werr)?;
    sink.write_at(layout.refcount_table * C, &layout.refcount_table())
        .map_err(werr)?;
    sink.write_at(layout.l1 * C, &layout.l1_table())
        .map_err(werr)?;
    for &(idx, cluster) in &layout.l2 {
        sink.write_at(cluster * C, &layout.l2_table(idx))
            .map_err(werr)?;
    }
    // Pass 2: copy the data clusters; the raw disk must not have changed.
    let mut next = layout.data.iter().peekable();
    let size2 = for_each_chunk(raw, C as usize, read_err, |off, data| {
        match next.peek() {
            Some(&&(g, host)) if g == off / C => {
                sink.write_at(host * C, data).map_err(werr)?;
                next.next();
            }
            _ if !is_zero(data) => {
                return Err(Qcow2Error::Changed {
                    path: raw.to_path_buf(),
                });
            }
            _ => {}
        }
        Ok(())
    })?;
    if size2 != size || next.peek().is_some() {
        return Err(Qcow2Error::Changed {
            path: raw.to_path_buf(),
        });
    }
    for i in 0..layout.refblock_count {
        sink.write_at((layout.refblocks + i) * C, &layout.refcount_block(i))
            .map_err(werr)?;
    }
    file.sync_all().map_err(werr)?;
    Ok(layout.total * C)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_counts_itself() {
        let l = Layout::new(3 * C + 100, &[0, 3]);
        // header, reftable, L1, one L2, two data clusters, one refblock
        assert_eq!(l.total, 7);
        assert_eq!(l.l1_entries, 1);
        assert_eq!(l.data, vec![(0, 4), (3, 5)]);
        assert_eq!(l.refblocks, 6);
        // A disk large enough that the refcount blocks must count themselves.
        let nonzero: Vec<u64> = (0..40_000).collect();
        let l = Layout::new(40_000 * C, &nonzero);
        assert!(l.refblock_count * REFS_PER_BLOCK >= l.total);
        assert_eq!(l.refblock_count, 2);
        assert_eq!(l.l2.len(), 5);
    }
}
