//! Family blocks: the skeleton lines of one family (names and labels, no values, no node
//! labels), stored once however many nodes expose exactly the same lines. Servers of one kind
//! repeat almost all of them, so a node's snapshot is a list of shared blocks plus its own
//! values. Blocks are content-addressed (a keyed hash, then a byte comparison) and counted by
//! the node layouts that use them; the pool forgets a block when the last of those goes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex};

/// One family's skeleton lines, immutable and shared by every node layout that has them.
#[derive(Debug)]
pub struct FamilyBlock {
    /// Content hash, the block's key in the pool.
    hash: u64,
    /// The family name, one `Arc` per name in the pool (and in the store's family index), so a
    /// render can match names by address.
    name: Arc<str>,
    /// Lines in the text.
    lines: u32,
    /// Series the lines belong to.
    series: u32,
    /// The skeleton lines (see [`crate::prepare::Prepared::text`]).
    text: Box<[u8]>,
}

impl FamilyBlock {
    /// The family name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The skeleton lines.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Lines (samples) in the block.
    pub fn lines(&self) -> usize {
        self.lines as usize
    }

    /// Series in the block.
    pub fn series(&self) -> usize {
        self.series as usize
    }

    /// Heap and inline bytes of the block, for the memory estimate of the benchmarks.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<FamilyBlock>() + self.text.len() + 2 * std::mem::size_of::<usize>()
    }
}

/// One family of an incoming snapshot, to be interned.
#[derive(Debug, Clone, Copy)]
pub struct BlockContent<'a> {
    /// Family name.
    pub name: &'a str,
    /// Its skeleton lines.
    pub text: &'a [u8],
    /// Lines in `text`.
    pub lines: u32,
    /// Series in the family.
    pub series: u32,
}

/// A pooled block and how many node layouts hold it.
#[derive(Debug)]
struct Entry {
    block: Arc<FamilyBlock>,
    refs: u32,
}

/// Every distinct block any stored node layout uses, by content hash, and their names.
#[derive(Debug, Default)]
pub struct BlockPool {
    /// Keyed per process, so no payload can be crafted to collide with another node's block.
    hasher: RandomState,
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    /// Blocks by content hash.
    blocks: HashMap<u64, Entry>,
    /// Every pooled block's name once, with how many pooled blocks have it.
    names: HashMap<Arc<str>, u32>,
}

impl Pool {
    fn new_block(&mut self, hash: u64, c: &BlockContent<'_>) -> FamilyBlock {
        let name = match self.names.get_key_value(c.name) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(c.name),
        };
        *self.names.entry(Arc::clone(&name)).or_insert(0) += 1;
        FamilyBlock {
            hash,
            name,
            lines: c.lines,
            series: c.series,
            text: c.text.into(),
        }
    }

    fn forget_name(&mut self, name: &str) {
        if let Some(n) = self.names.get_mut(name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.names.remove(name);
            }
        }
    }
}

impl BlockPool {
    /// An empty pool.
    pub fn new() -> Self {
        BlockPool::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The content hash of a block; computed outside the lock by whoever interns it.
    pub fn hash(&self, content: &BlockContent<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_usize(content.name.len());
        h.write(content.name.as_bytes());
        h.write(content.text);
        h.finish()
    }

    /// The pooled block for each of `contents` (with its `hashes`), adding the ones not held
    /// yet, each counted once more. Give every block back through [`BlockPool::release`].
    pub fn intern(&self, contents: &[BlockContent<'_>], hashes: &[u64]) -> Vec<Arc<FamilyBlock>> {
        let mut out = Vec::with_capacity(contents.len());
        let mut guard = self.lock();
        let pool = &mut *guard;
        for (c, &hash) in contents.iter().zip(hashes) {
            if let Some(entry) = pool.blocks.get_mut(&hash) {
                if *entry.block.name == *c.name && *entry.block.text == *c.text {
                    entry.refs += 1;
                    out.push(Arc::clone(&entry.block));
                } else {
                    // Two contents under one 64-bit keyed hash: as good as never. The block
                    // still works, unshared and outside the pool.
                    let name = match pool.names.get_key_value(c.name) {
                        Some((name, _)) => Arc::clone(name),
                        None => Arc::from(c.name),
                    };
                    out.push(Arc::new(FamilyBlock {
                        hash,
                        name,
                        lines: c.lines,
                        series: c.series,
                        text: c.text.into(),
                    }));
                }
                continue;
            }
            let block = Arc::new(pool.new_block(hash, c));
            pool.blocks.insert(
                hash,
                Entry {
                    block: Arc::clone(&block),
                    refs: 1,
                },
            );
            out.push(block);
        }
        out
    }

    /// Gives back blocks from [`BlockPool::intern`]; a block no layout holds any more leaves
    /// the pool (and is freed once the last render using it is done).
    pub fn release(&self, blocks: &[Arc<FamilyBlock>]) {
        if blocks.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let pool = &mut *guard;
        for b in blocks {
            let Some(entry) = pool.blocks.get_mut(&b.hash) else {
                continue;
            };
            if !Arc::ptr_eq(&entry.block, b) {
                continue;
            }
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                pool.blocks.remove(&b.hash);
                pool.forget_name(&b.name);
            }
        }
    }

    /// Blocks in the pool and their bytes (the pool's own tables included).
    pub fn stats(&self) -> (usize, usize) {
        let pool = self.lock();
        let bytes: usize = pool.blocks.values().map(|e| e.block.bytes()).sum::<usize>()
            + pool.blocks.capacity() * (std::mem::size_of::<(u64, Entry)>() + 1)
            + pool.names.keys().map(|n| n.len() + 16).sum::<usize>()
            + pool.names.capacity() * (std::mem::size_of::<(Arc<str>, u32)>() + 1);
        (pool.blocks.len(), bytes)
    }
}

/// Blocks held for one node layout (or an incoming snapshot), given back to the pool when
/// dropped.
#[derive(Debug)]
pub struct Held {
    /// The blocks, in the holder's order.
    pub blocks: Box<[Arc<FamilyBlock>]>,
    pool: Arc<BlockPool>,
}

impl Held {
    /// Interns `contents` in `pool`.
    pub fn intern(pool: &Arc<BlockPool>, contents: &[BlockContent<'_>], hashes: &[u64]) -> Self {
        Held {
            blocks: pool.intern(contents, hashes).into_boxed_slice(),
            pool: Arc::clone(pool),
        }
    }

    /// Splits off the blocks at the positions `keep` says, leaving the rest here.
    pub fn split(mut self, keep: &[bool]) -> (Held, Held) {
        let blocks = std::mem::take(&mut self.blocks);
        let mut kept = Vec::with_capacity(blocks.len());
        let mut rest = Vec::new();
        for (b, &k) in blocks.into_vec().into_iter().zip(keep) {
            if k {
                kept.push(b);
            } else {
                rest.push(b);
            }
        }
        self.blocks = rest.into_boxed_slice();
        let kept = Held {
            blocks: kept.into_boxed_slice(),
            pool: Arc::clone(&self.pool),
        };
        (kept, self)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pool.release(&self.blocks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(name: &'a str, text: &'a [u8]) -> BlockContent<'a> {
        BlockContent {
            name,
            text,
            lines: 1,
            series: 1,
        }
    }

    #[test]
    fn equal_content_is_stored_once_and_freed_with_its_last_holder() {
        let pool = Arc::new(BlockPool::new());
        let a = [content("m", b"m\xff\n"), content("n", b"n{a=\"1\"\xff}\n")];
        let hashes: Vec<u64> = a.iter().map(|c| pool.hash(c)).collect();
        let first = Held::intern(&pool, &a, &hashes);
        let second = Held::intern(&pool, &a, &hashes);
        assert!(Arc::ptr_eq(&first.blocks[0], &second.blocks[0]));
        // Blocks of one name share that name's allocation.
        let other_m = [content("m", b"m{x=\"1\"\xff}\n")];
        let m2 = Held::intern(&pool, &other_m, &[pool.hash(&other_m[0])]);
        assert!(Arc::ptr_eq(first.blocks[0].name(), m2.blocks[0].name()));
        drop(m2);
        assert_eq!(pool.stats().0, 2);
        // Same lines under another name are another block.
        let other = [content("o", b"m\xff\n")];
        let third = Held::intern(&pool, &other, &[pool.hash(&other[0])]);
        assert!(!Arc::ptr_eq(&first.blocks[0], &third.blocks[0]));
        assert_eq!(pool.stats().0, 3);
        drop(first);
        assert_eq!(pool.stats().0, 3, "still held by the second layout");
        drop(second);
        assert_eq!(pool.stats().0, 1);
        let (kept, dropped) = third.split(&[false]);
        assert!(kept.blocks.is_empty());
        drop(dropped);
        assert_eq!(pool.stats(), (0, pool.stats().1));
        drop(kept);
    }

    #[test]
    fn a_hash_collision_keeps_both_contents_apart() {
        let pool = Arc::new(BlockPool::new());
        let a = content("m", b"m\xff\n");
        let b = content("n", b"n\xff\n");
        // Interned under the same (forced) hash: the second is a private block.
        let held = Held::intern(&pool, &[a, b], &[7, 7]);
        assert_eq!(&**held.blocks[0].name(), "m");
        assert_eq!(&**held.blocks[1].name(), "n");
        assert_eq!(held.blocks[1].text(), b"n\xff\n");
        assert_eq!(pool.stats().0, 1);
        drop(held);
        assert_eq!(pool.stats().0, 0);
    }
}
