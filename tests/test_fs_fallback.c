/*
 * test_fs_fallback.c - the same checks as test_fs.c with every opcode taken
 * away (URT_RING_NO_OPS=all, set before the runtime is created), so each
 * file call runs its syscall fallback on the blocking pool: the same
 * results, the same bounds and cancellation where a call waits for
 * readiness; an open that has started blocking (a FIFO) ends with its fd,
 * which is returned.
 */
#define FS_SUITE fs_fallback
#define FS_FALLBACK 1
#include "tests/support/fs_checks.h"
