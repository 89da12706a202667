//! Memory readings from `/proc`, for the per-process cost and peak RSS metrics, and
//! the process's CPU time.
//!
//! A benchmark that cannot read them has nothing to report, so a reading that fails
//! panics with the file it came from.

use std::mem::MaybeUninit;

/// Bytes resident now: the second field of `/proc/self/statm` (pages) times the page size.
pub fn resident_bytes() -> u64 {
    let statm = read("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("/proc/self/statm: no resident field in {statm:?}"));
    pages * page_size()
}

/// Peak resident bytes of this process so far: `VmHWM` in `/proc/self/status`.
pub fn peak_resident_bytes() -> u64 {
    let status = read("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/self/status: no VmHWM line"));
    kib * 1024
}

/// User plus system CPU time this process has used so far, all threads together:
/// fields 14 and 15 of `/proc/self/stat`, in clock ticks.
pub fn cpu_time() -> std::time::Duration {
    let stat = read("/proc/self/stat");
    // The command name (field 2) may hold spaces; the fields after it follow its `)`.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("/proc/self/stat: no command name in {stat:?}"));
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| {
            field
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("/proc/self/stat: bad time field {field:?}"))
        })
        .sum();
    std::time::Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

/// The kernel's limit on memory mappings per process, which caps how many guarded
/// stacks can exist at once. `None` where `/proc/sys/vm/max_map_count` is unreadable.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes to every byte of `vec`'s spare capacity so its pages are resident before an
/// RSS baseline is taken; pushing into it later then charges nothing to what is pushed.
pub fn fault_in<T>(vec: &mut Vec<T>) {
    for slot in vec.spare_capacity_mut() {
        *slot = MaybeUninit::zeroed();
    }
    std::hint::black_box(vec);
}

/// The page size, from the auxiliary vector the kernel gave this process (`AT_PAGESZ`;
/// on 64-bit Linux the vector is pairs of native-endian `u64` key and value).
fn page_size() -> u64 {
    /// `AT_PAGESZ` in `<elf.h>`.
    const AT_PAGESZ: u64 = 6;
    // Every Linux target fibra runs on has 4 KiB pages unless it says otherwise.
    auxv(AT_PAGESZ).unwrap_or(4096)
}

/// The kernel's clock ticks per second, the unit of `/proc/self/stat`'s times.
fn clock_ticks_per_second() -> u64 {
    /// `AT_CLKTCK` in `<elf.h>`.
    const AT_CLKTCK: u64 = 17;
    // Linux has reported 100 to user space on every architecture for decades.
    auxv(AT_CLKTCK).filter(|&ticks| ticks > 0).unwrap_or(100)
}

/// The value of entry `key` of this process's ELF auxiliary vector.
fn auxv(key: u64) -> Option<u64> {
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    auxv.chunks_exact(16).find_map(|entry| {
        let (entry_key, value) = entry.split_at(8);
        let entry_key = u64::from_ne_bytes(entry_key.try_into().ok()?);
        let value = u64::from_ne_bytes(value.try_into().ok()?);
        (entry_key == key).then_some(value)
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
