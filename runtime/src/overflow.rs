//! Stack overflow reports.
//!
//! Every process stack has a guard page below it. Running into it raises SIGSEGV
//! on the overflowing stack, which has no room left, so worker threads have an
//! alternate signal stack and the handler runs there. If the faulting address is in
//! the guard page of the carrier this thread is running, the handler writes which
//! process overflowed and aborts; any other fault goes to the handler that was
//! installed before ours (Rust's own reports overflows of thread stacks).

use std::cell::Cell;
use std::mem;
use std::ptr;
use std::sync::OnceLock;

/// Bytes of alternate signal stack per worker thread. The handler only formats a
/// line into a buffer on its own frame, far below this.
const ALT_STACK_SIZE: usize = 64 * 1024;

/// The guard page of the carrier running on this thread, as
/// `(start, end, process id, stack size)`; zeros when none runs.
#[derive(Clone, Copy)]
struct Guard {
    start: usize,
    end: usize,
    pid: u64,
    stack_size: usize,
}

thread_local! {
    static GUARD: Cell<Guard> = const { Cell::new(Guard { start: 0, end: 0, pid: 0, stack_size: 0 }) };
}

/// The handlers that were installed before ours, for SIGSEGV and SIGBUS.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

/// Records the guard page of the carrier this thread is about to resume.
pub(crate) fn enter(guard: (usize, usize), pid: u64, stack_size: usize) {
    GUARD.with(|g| {
        g.set(Guard {
            start: guard.0,
            end: guard.1,
            pid,
            stack_size,
        })
    });
}

/// The carrier has switched back to the worker.
pub(crate) fn leave() {
    GUARD.with(|g| {
        g.set(Guard {
            start: 0,
            end: 0,
            pid: 0,
            stack_size: 0,
        })
    });
}

/// An alternate signal stack owned by a worker thread; unmapped when dropped.
pub(crate) struct AltStack {
    /// The mapping, or null if this thread already had an alternate stack.
    base: *mut libc::c_void,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if self.base.is_null() {
            return;
        }
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: ALT_STACK_SIZE,
        };
        // Safety: the mapping is ours and this thread's alternate stack; it is
        // disabled before it is unmapped, and no handler runs on it right now
        // because this code is not a signal handler.
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.base, ALT_STACK_SIZE);
        }
    }
}

/// Installs the handler (once per OS process) and gives this thread an alternate
/// signal stack if it has none.
pub(crate) fn prepare_thread() -> AltStack {
    PREVIOUS.get_or_init(install);
    // Safety: sigaltstack with a null new stack only reads the current setting.
    let mut current: libc::stack_t = unsafe { mem::zeroed() };
    unsafe { libc::sigaltstack(ptr::null(), &mut current) };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return AltStack {
            base: ptr::null_mut(),
        };
    }
    // Safety: an anonymous private mapping with no address hint has no preconditions.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            ALT_STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        // Without an alternate stack an overflow is a plain SIGSEGV; not worth failing
        // the runtime for.
        return AltStack {
            base: ptr::null_mut(),
        };
    }
    let stack = libc::stack_t {
        ss_sp: base,
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // Safety: the mapping is valid, writable and ALT_STACK_SIZE long, and outlives its
    // use as this thread's alternate stack (AltStack disables it before unmapping).
    unsafe { libc::sigaltstack(&stack, ptr::null_mut()) };
    AltStack { base }
}

fn install() -> [libc::sigaction; 2] {
    // Safety: a zeroed sigaction is a valid "no handler" value to fill in.
    let mut previous: [libc::sigaction; 2] = unsafe { mem::zeroed() };
    for (i, signal) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        // Safety: as above; the handler below only does async-signal-safe work.
        unsafe {
            let mut action: libc::sigaction = mem::zeroed();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, &mut previous[i]);
        }
    }
    previous
}

extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // Safety: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let address = unsafe { (*info).si_addr() } as usize;
    let guard = GUARD.with(Cell::get);
    if guard.end != 0 && address >= guard.start && address < guard.end {
        let mut line = Line::new();
        line.push(b"fibra: process <0.");
        line.number(guard.pid);
        line.push(b"> overflowed its stack of ");
        line.number(guard.stack_size as u64);
        line.push(b" bytes; aborting (give processes more with Builder::stack_size)\n");
        // Safety: write(2) and abort(3) are async-signal-safe.
        unsafe {
            libc::write(2, line.buf.as_ptr().cast(), line.len);
            libc::abort();
        }
    }
    // Not ours: put the previous handler back and return; the faulting instruction
    // runs again and faults under it.
    let index = usize::from(signal != libc::SIGSEGV);
    if let Some(previous) = PREVIOUS.get() {
        // Safety: restoring a sigaction the kernel gave us.
        unsafe { libc::sigaction(signal, &previous[index], ptr::null_mut()) };
    }
}

/// A fixed buffer to format the report without allocating (signal handlers must
/// not).
struct Line {
    buf: [u8; 192],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 192],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let tail = digits;
        self.push(&tail[i..]);
    }
}
