//! Memory figures: resident set size from the OS (through `sysinfo`) and the bytes the
//! process's allocator currently hands out (through [`CountingAllocator`]).
//!
//! RSS is what the operating system charges and what pressure levels are judged on; the
//! allocator's in-use bytes are what a cleanup can actually give back, so they measure
//! what a cleanup freed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

const SHARDS: usize = 16;

/// One counter per cache line, so threads allocating at once do not fight over one line.
#[repr(align(64))]
struct Shard(AtomicIsize);

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Shard = Shard(AtomicIsize::new(0));
static IN_USE: [Shard; SHARDS] = [ZERO; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` initialisation and no destructor: safe to touch from inside the allocator.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard() -> &'static AtomicIsize {
    let i = SHARD
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS);
            }
            s.get()
        })
        .unwrap_or(0);
    &IN_USE[i].0
}

/// The system allocator, counting the bytes it has handed out and not yet got back.
/// Install it with `#[global_allocator]` in the binary.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to `System`; the counters are plain atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            shard().fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            shard().fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shard().fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shard().fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

/// Bytes currently allocated through [`CountingAllocator`] (0 if it is not installed).
pub fn allocated_bytes() -> u64 {
    IN_USE
        .iter()
        .map(|s| s.0.load(Relaxed))
        .sum::<isize>()
        .max(0) as u64
}

/// One reading of the process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Allocator bytes in use.
    pub heap_bytes: u64,
    /// Physical memory of the machine, bytes.
    pub system_total_bytes: u64,
}

/// Bytes in a mebibyte.
pub const MIB: u64 = 1024 * 1024;

impl Sample {
    /// RSS in MiB.
    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / MIB as f64
    }
    /// In-use heap in MiB.
    pub fn heap_mb(&self) -> f64 {
        self.heap_bytes as f64 / MIB as f64
    }
    /// Machine memory in MiB.
    pub fn system_total_mb(&self) -> f64 {
        self.system_total_bytes as f64 / MIB as f64
    }
}

/// Reads this process's memory through `sysinfo`.
pub struct Sampler {
    system: Mutex<Option<sysinfo::System>>,
    pid: Option<sysinfo::Pid>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// A sampler for the current process.
    pub fn new() -> Self {
        Self {
            system: Mutex::new(sysinfo::System::new().ok()),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    /// Takes a reading (a few system calls; call it from a blocking-tolerant context).
    pub fn sample(&self) -> Sample {
        let heap_bytes = allocated_bytes();
        let mut guard = self.system.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(system), Some(pid)) = (guard.as_mut(), self.pid) else {
            return Sample {
                heap_bytes,
                ..Sample::default()
            };
        };
        system.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            false,
            sysinfo::ProcessRefreshKind::nothing().with_memory(),
        );
        Sample {
            rss_bytes: system.process(pid).map_or(0, |p| p.memory()),
            heap_bytes,
            system_total_bytes: system.total_memory(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_reports_own_resident_memory() {
        let s = Sampler::new().sample();
        assert!(s.rss_bytes > 1024 * 1024, "{s:?}");
        assert!(s.system_total_bytes > s.rss_bytes);
    }
}
