//! The driver's side of the `wake` operation (`super::super::wake`): arming it and the
//! bookkeeping its completions need.

use crate::sys::uring::UringDriver;
use crate::sys::uring::TAG_WAKE;
use crate::sys::Completion;

impl UringDriver {
    /// Arms the first ring's read of the wake-up eventfd.
    pub(super) fn arm_wake(&mut self) {
        let e = self.wake.arm(super::ud(TAG_WAKE, 0));
        self.push(0, e);
    }

    /// The wake-up read completed: report it and read again.
    #[inline]
    pub(super) fn on_wake(&mut self, f: &mut dyn FnMut(Completion<'_>)) {
        self.wake.fired();
        f(Completion::Wake);
        self.arm_wake();
    }
}
