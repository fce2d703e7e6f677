//! What tells how a signal was sent and to which terminal: a task's saved user registers
//! (pt_regs) and a controlling tty.

use sigtrace_common::{REGS_WINDOW, TTY_NAME_LEN};

use super::{Pid, TTY_WINDOW, at, load, read};
use crate::maps::conf;

/// A `struct tty_struct *`.
#[derive(Clone, Copy)]
pub struct Tty(pub u64);

impl Tty {
    /// Copies its name into `name` and returns its foreground group's struct pid: one read
    /// when both fields fit in the window (they sit 96 bytes apart on x86_64), two
    /// otherwise.
    #[inline(always)]
    pub fn name_and_pgrp(
        self,
        window: &mut [u8; TTY_WINDOW],
        name: &mut [u8; TTY_NAME_LEN],
    ) -> Pid {
        let name_at = conf!(offsets.tty_name);
        let pgrp_at = conf!(offsets.tty_pgrp);
        if name_at < pgrp_at && pgrp_at + 8 - name_at <= TTY_WINDOW as u32 {
            if !load(window, self.0, name_at, pgrp_at + 8 - name_at) {
                return Pid(0);
            }
            *name = at(window, name_at, name_at);
            return Pid(at(window, name_at, pgrp_at));
        }
        *name = read(self.0, name_at);
        Pid(read(self.0, pgrp_at))
    }
}

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
}

/// A task's saved user registers (dx, si, di, orig_ax), copied by [`Task::load_user_regs`].
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
}
