//! What tells how a signal was sent and to which terminal: a task's saved user registers
//! (pt_regs) and a controlling tty.

use sigtrace_common::REGS_WINDOW;

use super::{at, read};
use crate::maps::conf;

/// A `struct tty_struct *`.
#[derive(Clone, Copy)]
pub struct Tty(pub u64);

// Its name and foreground group: `name_and_pgrp`, in `crate::access` (a window or plain
// loads).

/// A `struct pt_regs *` (x86_64), as the sys_enter and sys_exit tracepoints pass it.
#[derive(Clone, Copy)]
pub struct Regs(pub u64);

impl Regs {
    /// The syscall number.
    #[inline(always)]
    pub fn orig_ax(self) -> u64 {
        read(self.0, conf!(offsets.regs_orig_ax))
    }
    /// The first argument.
    #[inline(always)]
    pub fn di(self) -> u64 {
        read(self.0, conf!(offsets.regs_di))
    }
    /// The second argument.
    #[inline(always)]
    pub fn si(self) -> u64 {
        read(self.0, conf!(offsets.regs_si))
    }
    /// The user stack pointer.
    #[inline(always)]
    pub fn sp(self) -> u64 {
        read(self.0, conf!(offsets.regs_sp))
    }
    /// The user code segment: 64- or 32-bit code.
    #[inline(always)]
    pub fn cs(self) -> u64 {
        read(self.0, conf!(offsets.regs_cs))
    }
}

/// A task's saved user registers (ax, dx, si, di, orig_ax, cs, sp), copied by
/// [`Task::load_user_regs`].
#[repr(transparent)]
pub struct RegsWindow(pub(super) [u8; REGS_WINDOW]);

impl RegsWindow {
    #[inline(always)]
    fn field(&self, off: u32) -> u64 {
        at(&self.0, conf!(offsets.regs_window_start), off)
    }
    #[inline(always)]
    pub fn orig_ax(&self) -> u64 {
        self.field(conf!(offsets.regs_orig_ax))
    }
    #[inline(always)]
    pub fn di(&self) -> u64 {
        self.field(conf!(offsets.regs_di))
    }
    #[inline(always)]
    pub fn si(&self) -> u64 {
        self.field(conf!(offsets.regs_si))
    }
    #[inline(always)]
    pub fn dx(&self) -> u64 {
        self.field(conf!(offsets.regs_dx))
    }
    /// The syscall's return value so far.
    #[inline(always)]
    pub fn ax(&self) -> u64 {
        self.field(conf!(offsets.regs_ax))
    }
    /// The user code segment: 64- or 32-bit code.
    #[inline(always)]
    pub fn cs(&self) -> u64 {
        self.field(conf!(offsets.regs_cs))
    }
    /// The user stack pointer.
    #[inline(always)]
    pub fn sp(&self) -> u64 {
        self.field(conf!(offsets.regs_sp))
    }
}
